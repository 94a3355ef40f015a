// Package version holds the versions stamped into the binary at build time
// (make build sets them with -ldflags -X).
package version

import (
	"fmt"
	"runtime"
	"strings"

	apimachineryversion "k8s.io/apimachinery/pkg/version"
)

var (
	// Version is Headway's own version.
	Version = "v0.1.0-dev"
	// Commit is the git commit the binary was built from.
	Commit = "unknown"
	// Kubernetes is the Kubernetes API version Headway serves (the
	// k8s.io libraries it is built with).
	Kubernetes = "v1.37.2"
	// BuildDate is when the binary was built (RFC 3339).
	BuildDate = "1970-01-01T00:00:00Z"
)

// Info is what GET /version answers.
func Info() apimachineryversion.Info {
	major, minor := "1", "37"
	parts := strings.SplitN(strings.TrimPrefix(Kubernetes, "v"), ".", 3)
	if len(parts) >= 2 {
		major, minor = parts[0], parts[1]
	}
	return apimachineryversion.Info{
		Major:        major,
		Minor:        minor,
		GitVersion:   Kubernetes,
		GitCommit:    Commit,
		GitTreeState: "clean",
		BuildDate:    BuildDate,
		GoVersion:    runtime.Version(),
		Compiler:     runtime.Compiler,
		Platform:     fmt.Sprintf("%s/%s", runtime.GOOS, runtime.GOARCH),
	}
}
