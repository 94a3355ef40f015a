package e2e

import (
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// ageRE matches kubectl's AGE values (5s, 3m2s, 4h, 10d...) and the ISO
// creation times of default tables.
var ageRE = regexp.MustCompile(`\b\d+(?:s|m|h|d|y)(?:\d+(?:s|m|h))?\b`)

// normalize replaces ages with "AGE" and squeezes the column padding that
// depends on them.
func normalize(out string) string {
	var lines []string
	for _, l := range strings.Split(strings.TrimRight(out, "\n"), "\n") {
		l = ageRE.ReplaceAllString(l, "<age>")
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	return strings.Join(lines, "\n") + "\n"
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if string(want) != got {
		t.Errorf("%s differs from %s:\n--- got\n%s--- want\n%s", name, path, got, want)
	}
}

// TestKubectlColumns holds the columns kubectl prints for each resource, as
// Kubernetes prints them, in golden files (ages normalised).
func TestKubectlColumns(t *testing.T) {
	k := kubectls(t)[0]
	s := startServer(t, t.TempDir(), freePort(t))
	k.must(t, s, "create", "-f", repoFile("examples/headless.yaml"))
	k.must(t, s, "create", "-f", "testdata/objects.yaml")
	// The node was created with its status; status is ignored on create, so write it now.
	k.must(t, s, "patch", "node", "node-a", "--subresource=status", "--type=merge", "-p",
		`{"status":{"conditions":[{"type":"Ready","status":"True","reason":"KubeletReady","message":"kubelet is posting ready status"}],"addresses":[{"type":"InternalIP","address":"198.18.0.1"},{"type":"Hostname","address":"node-a"}],"nodeInfo":{"kubeletVersion":"v1.37.2","osImage":"Debian GNU/Linux 12 (bookworm)","kernelVersion":"6.1.0-test","containerRuntimeVersion":"headway-process://0.1.0","architecture":"amd64","operatingSystem":"linux","machineID":"","systemUUID":"","bootID":"","kubeProxyVersion":""}}}`)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"get-svc", []string{"get", "svc", "nginx-headless"}},
		{"get-svc-wide", []string{"get", "svc", "nginx-headless", "-o", "wide"}},
		{"get-sts", []string{"get", "statefulset", "web"}},
		{"get-sts-wide", []string{"get", "statefulset", "web", "-o", "wide"}},
		{"get-endpointslices", []string{"get", "endpointslices", "manual-abcde"}},
		{"get-nodes-wide", []string{"get", "nodes", "-o", "wide"}},
		{"get-ns", []string{"get", "namespaces"}},
		{"get-sc", []string{"get", "storageclass"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			golden(t, tc.name, normalize(k.must(t, s, tc.args...)))
		})
	}
	// The StatefulSet's first pod is scheduled onto the Ready node (no agent
	// runs it here, so it stays Pending); its wide columns.
	waitOutput(t, k, s, regexp.MustCompile(`node-a`), "get", "pod", "web-0", "-o", "wide")
	golden(t, "get-pods-wide", normalize(k.must(t, s, "get", "pods", "-o", "wide")))

	// describe runs without error and shows events.
	out := k.must(t, s, "describe", "pod", "web-0")
	for _, want := range []string{"Name:", "web-0", "Node:", "node-a", "Events:", "Scheduled", "Successfully assigned default/web-0 to node-a"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe pod lacks %q:\n%s", want, out)
		}
	}
	out = k.must(t, s, "describe", "svc", "nginx-headless")
	for _, want := range []string{"Name:", "nginx-headless", "IP:", "None", "Port:", "web  80/TCP", "Events:"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe svc lacks %q:\n%s", want, out)
		}
	}
	out = k.must(t, s, "describe", "statefulset", "web")
	for _, want := range []string{"Name:", "web", "Replicas:", "3 desired", "Pod Template:", "nginx:alpine", "Events:"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe statefulset lacks %q:\n%s", want, out)
		}
	}
	out = k.must(t, s, "get", "events")
	if !strings.Contains(out, "Scheduled") || !strings.Contains(out, "pod/web-0") {
		t.Errorf("get events:\n%s", out)
	}
}

func waitOutput(t *testing.T, k kubectl, s *server, re *regexp.Regexp, args ...string) {
	t.Helper()
	for i := 0; i < 400; i++ {
		if out, err := k.run(t, s, "", args...); err == nil && re.MatchString(out) {
			return
		}
		waitABit()
	}
	t.Fatalf("kubectl %s never matched %s", strings.Join(args, " "), re)
}
