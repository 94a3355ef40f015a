package kubectltranslations

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"k8s.io/kubectl/pkg/util/i18n"
)

const helperEnv = "HEADWAY_TEST_TRANSLATE"

// getShort is kubectl get's short help; zh_CN translates it.
const getShort = "Display one or many resources"

// TestMain doubles as the process under test: with helperEnv set it prints
// kubectl's translation of getShort, as this process's arguments decided.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) != "" {
		fmt.Print(i18n.T(getShort))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// translate runs this test binary with args after argv[0] in a Chinese
// locale and returns what i18n.T made of getShort there.
func translate(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), helperEnv+"=1", "LANG=zh_CN.UTF-8", "LC_ALL=", "LC_MESSAGES=")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %v\n%s", cmd.Args, err, out)
	}
	return string(out)
}

// TestOnlyKubectlLoadsTranslations: `headway kubectl` gets kubectl's
// translations for the locale; any other invocation (the server, the CNI
// plugin) skips loading them and gets the English text.
func TestOnlyKubectlLoadsTranslations(t *testing.T) {
	if got := translate(t, "kubectl", "get"); got == getShort || !strings.ContainsRune(got, '显') {
		t.Errorf("headway kubectl in zh_CN: got %q, want kubectl's Chinese translation", got)
	}
	for _, args := range [][]string{{"server"}, {"version"}, {}} {
		if got := translate(t, args...); got != getShort {
			t.Errorf("headway %v in zh_CN: got %q, want the English %q (translations not loaded)", args, got, getShort)
		}
	}
}

func TestRunsKubectl(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want bool
	}{
		{[]string{"headway", "kubectl", "get", "pods"}, true},
		{[]string{"headway", "kubectl"}, true},
		{[]string{"headway", "server", "kubectl"}, false},
		{[]string{"headway"}, false},
		{nil, false},
	} {
		if got := RunsKubectl(tc.args); got != tc.want {
			t.Errorf("RunsKubectl(%q) = %v, want %v", tc.args, got, tc.want)
		}
	}
}
