package version

import (
	"os"
	"regexp"
	"runtime/debug"
	"testing"
)

// The Kubernetes version is the one go.mod requires (k8s.io/client-go
// v0.X.Y → v1.X.Y): binaries take it from their build info, test binaries
// (which have no dependencies in theirs) from kubernetesDefault.
func TestKubernetesIsGoMods(t *testing.T) {
	mod, err := os.ReadFile("../../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^\s*k8s\.io/client-go (v\S+)`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod does not require k8s.io/client-go")
	}
	want, ok := KubernetesForClientGo(string(m[1]))
	if !ok {
		t.Fatalf("client-go %s: no Kubernetes version", m[1])
	}
	if kubernetesDefault != want {
		t.Fatalf("kubernetesDefault = %q, want %q: go.mod has client-go %s; update internal/version", kubernetesDefault, want, m[1])
	}
	if Kubernetes != want {
		t.Fatalf("Kubernetes = %q, want %q (go.mod has client-go %s)", Kubernetes, want, m[1])
	}
	if Major() != "1" || Minor() == "" || Info().GitVersion != want {
		t.Fatalf("Info() = %+v", Info())
	}
}

func TestKubernetesForClientGo(t *testing.T) {
	for in, want := range map[string]string{
		"v0.37.2":                               "v1.37.2",
		"v0.38.0-alpha.1":                       "v1.38.0-alpha.1",
		"v0.38.0-0.20260101120000-abcdefabcdef": "v1.38.0-0.20260101120000-abcdefabcdef",
		"v0.0.0-20260101120000-abcdefabcdef":    "",
		"v1.2.3":                                "",
		"":                                      "",
	} {
		got, ok := KubernetesForClientGo(in)
		if got != want || ok != (want != "") {
			t.Errorf("KubernetesForClientGo(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

// What -ldflags -X set is kept; what it left empty comes from the build
// info, else a default.
func TestFill(t *testing.T) {
	save := [4]string{Version, Commit, Kubernetes, BuildDate}
	defer func() { Version, Commit, Kubernetes, BuildDate = save[0], save[1], save[2], save[3] }()

	Version, Commit, Kubernetes, BuildDate = "v9.9.9", "", "", ""
	fill(&debug.BuildInfo{
		Main:     debug.Module{Path: "github.com/headway/headway", Version: "(devel)"},
		Deps:     []*debug.Module{{Path: "k8s.io/client-go", Version: "v0.36.1"}},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-01-02T03:04:05Z"}},
	})
	if Version != "v9.9.9" || Commit != "abc123" || Kubernetes != "v1.36.1" || BuildDate != "2026-01-02T03:04:05Z" {
		t.Fatalf("got %q %q %q %q", Version, Commit, Kubernetes, BuildDate)
	}

	Version, Commit, Kubernetes, BuildDate = "", "", "", ""
	fill(&debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}, Deps: []*debug.Module{
		{Path: "k8s.io/client-go", Version: "v0.36.1", Replace: &debug.Module{Path: "../client-go", Version: ""}},
	}})
	if Version != "v1.2.3" || Commit != "unknown" || Kubernetes != "v1.36.1" || BuildDate != "1970-01-01T00:00:00Z" {
		t.Fatalf("got %q %q %q %q", Version, Commit, Kubernetes, BuildDate)
	}
}
