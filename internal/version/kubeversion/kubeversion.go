// Package kubeversion gives the Kubernetes libraries Headway embeds the
// Kubernetes version Headway serves: kubectl's `version` reads
// k8s.io/component-base/version, client-go's user agent reads
// k8s.io/client-go/pkg/version. Kubernetes' own builds stamp both with
// -ldflags -X; a plain `go build` or `go install` cannot, and would leave
// the placeholder v0.0.0-master+$Format:%H$, which kubectl's version skew
// check rejects. Importing this package (cmd/headway does) sets them at
// init from internal/version, unless -ldflags already did.
//
// Neither package has a setter for these variables
// (component-base's SetDynamicVersion only accepts versions with the
// placeholder's major.minor.patch), hence go:linkname, which the Go linker
// allows for symbols outside the standard library.
package kubeversion

import (
	_ "unsafe" // go:linkname

	_ "k8s.io/client-go/pkg/version"
	componentversion "k8s.io/component-base/version"

	"github.com/headway/headway/internal/version"
)

// placeholder is gitVersion in both packages when no -ldflags set it.
const placeholder = "v0.0.0-master+$Format:%H$"

//go:linkname clientMajor k8s.io/client-go/pkg/version.gitMajor
var clientMajor string

//go:linkname clientMinor k8s.io/client-go/pkg/version.gitMinor
var clientMinor string

//go:linkname clientVersion k8s.io/client-go/pkg/version.gitVersion
var clientVersion string

//go:linkname clientCommit k8s.io/client-go/pkg/version.gitCommit
var clientCommit string

//go:linkname clientTreeState k8s.io/client-go/pkg/version.gitTreeState
var clientTreeState string

//go:linkname clientBuildDate k8s.io/client-go/pkg/version.buildDate
var clientBuildDate string

//go:linkname componentMajor k8s.io/component-base/version.gitMajor
var componentMajor string

//go:linkname componentMinor k8s.io/component-base/version.gitMinor
var componentMinor string

//go:linkname componentVersion k8s.io/component-base/version.gitVersion
var componentVersion string

//go:linkname componentCommit k8s.io/component-base/version.gitCommit
var componentCommit string

//go:linkname componentTreeState k8s.io/component-base/version.gitTreeState
var componentTreeState string

//go:linkname componentBuildDate k8s.io/component-base/version.buildDate
var componentBuildDate string

func init() {
	if err := stamp(); err != nil {
		panic("kubeversion: " + err.Error())
	}
}

// stamp sets both packages' versions where they are the placeholder.
func stamp() error {
	for _, p := range []struct{ major, minor, version, commit, tree, date *string }{
		{&clientMajor, &clientMinor, &clientVersion, &clientCommit, &clientTreeState, &clientBuildDate},
		{&componentMajor, &componentMinor, &componentVersion, &componentCommit, &componentTreeState, &componentBuildDate},
	} {
		if *p.version != placeholder {
			continue
		}
		*p.major, *p.minor, *p.version = version.Major(), version.Minor(), version.Kubernetes
		*p.commit, *p.tree, *p.date = version.Commit, "clean", version.BuildDate
	}
	// component-base serves gitVersion through a copy taken at its init;
	// with gitVersion now ours this is the allowed no-op change.
	return componentversion.SetDynamicVersion(componentVersion)
}
