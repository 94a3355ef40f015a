// Package version holds Headway's versions: what `make build` stamps into
// the binary with -ldflags -X, and otherwise what the module build info
// says (a plain `go build` or `go install`): the Kubernetes version is that
// of the k8s.io/client-go module the binary is built with (v0.X.Y serves
// Kubernetes v1.X.Y).
package version

import (
	"fmt"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"

	apimachineryversion "k8s.io/apimachinery/pkg/version"
)

// Set with -ldflags -X; empty ones are filled in at init.
var (
	// Version is Headway's own version: the module version under `go
	// install ...@vX.Y.Z`, else v0.1.0-dev.
	Version = ""
	// Commit is the git commit the binary was built from (the build's
	// vcs.revision, else unknown).
	Commit = ""
	// Kubernetes is the Kubernetes API version Headway serves (the
	// k8s.io libraries it is built with).
	Kubernetes = ""
	// BuildDate is when the binary was built (RFC 3339; the commit's
	// time, else the epoch).
	BuildDate = ""
)

func init() {
	bi, _ := debug.ReadBuildInfo()
	fill(bi)
}

// fill sets what -ldflags left empty from the build info (nil: none).
func fill(bi *debug.BuildInfo) {
	var mainVersion, revision, vcsTime, k8s string
	if bi != nil {
		if v := bi.Main.Version; v != "" && v != "(devel)" {
			mainVersion = v
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				revision = s.Value
			case "vcs.time":
				vcsTime = s.Value
			}
		}
		// client-go, else apimachinery (always linked: Info uses it);
		// the k8s.io staging modules share their version numbers.
		for _, path := range []string{"k8s.io/client-go", "k8s.io/apimachinery"} {
			for _, d := range bi.Deps {
				if d.Path != path || k8s != "" {
					continue
				}
				if d.Replace != nil && d.Replace.Version != "" {
					d = d.Replace
				}
				k8s, _ = KubernetesForClientGo(d.Version)
			}
		}
	}
	set := func(v *string, vals ...string) {
		for _, s := range vals {
			if *v == "" {
				*v = s
			}
		}
	}
	set(&Version, mainVersion, "v0.1.0-dev")
	set(&Commit, revision, "unknown")
	set(&BuildDate, vcsTime, "1970-01-01T00:00:00Z")
	set(&Kubernetes, k8s, kubernetesDefault)
}

// kubernetesDefault is the Kubernetes version of a binary whose build info
// names no k8s.io module: test binaries (the go command records no
// dependencies for them). A test keeps it equal to go.mod's client-go.
const kubernetesDefault = "v1.37.2"

var clientGoVersion = regexp.MustCompile(`^v0\.([1-9][0-9]*)\.([0-9]+)(-[0-9A-Za-z.-]+)?$`)

// KubernetesForClientGo is the Kubernetes version of a k8s.io/client-go
// module version: v0.37.2 is v1.37.2 (a pre-release or pseudo-version
// keeps its suffix).
func KubernetesForClientGo(v string) (string, bool) {
	m := clientGoVersion.FindStringSubmatch(v)
	if m == nil {
		return "", false
	}
	return "v1." + m[1] + "." + m[2] + m[3], true
}

// Major is the Kubernetes major version ("1").
func Major() string { return part(0) }

// Minor is the Kubernetes minor version ("37").
func Minor() string { return part(1) }

func part(i int) string {
	parts := strings.SplitN(strings.TrimPrefix(Kubernetes, "v"), ".", 3)
	if len(parts) < 2 {
		return ""
	}
	return parts[i]
}

// Info is what GET /version answers.
func Info() apimachineryversion.Info {
	return apimachineryversion.Info{
		Major:        Major(),
		Minor:        Minor(),
		GitVersion:   Kubernetes,
		GitCommit:    Commit,
		GitTreeState: "clean",
		BuildDate:    BuildDate,
		GoVersion:    runtime.Version(),
		Compiler:     runtime.Compiler,
		Platform:     fmt.Sprintf("%s/%s", runtime.GOOS, runtime.GOARCH),
	}
}
