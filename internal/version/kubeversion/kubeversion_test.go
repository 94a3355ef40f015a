package kubeversion

import (
	"testing"

	apimachineryversion "k8s.io/apimachinery/pkg/version"
	clientversion "k8s.io/client-go/pkg/version"
	componentversion "k8s.io/component-base/version"

	"github.com/headway/headway/internal/version"
)

// Without -ldflags both libraries report the Kubernetes version Headway
// serves.
func TestStamped(t *testing.T) {
	want := version.Info()
	for name, got := range map[string]apimachineryversion.Info{
		"client-go": clientversion.Get(), "component-base": componentversion.Get(),
	} {
		if got.Major != want.Major || got.Minor != want.Minor || got.GitVersion != want.GitVersion || got.GitCommit != want.GitCommit {
			t.Errorf("%s reports %s.%s %s %s, want %s.%s %s %s", name, got.Major, got.Minor, got.GitVersion, got.GitCommit,
				want.Major, want.Minor, want.GitVersion, want.GitCommit)
		}
	}
	if err := stamp(); err != nil {
		t.Fatalf("stamping again: %v", err)
	}
}
