// Command headway-init is the first process of a process-runtime container
// (package containerinit) and, run as headway-crun, the managed
// containerd's OCI runtime wrapper on hybrid cgroup hosts (package
// ociwrap): the two alone, in a binary of about 2 MB. `make build`
// builds it and embeds it in headway (package initbin), and the node agent
// runs it instead of executing its own 138 MB binary again: on this
// project's machines a Go program's start costs per page it touches, and
// the small binary starts in a fifth of the CPU time.
package main

import (
	"fmt"
	"os"

	// Runs the container's init from its init function when argv[0] is
	// containerinit.Arg0; that never returns.
	_ "github.com/headway/headway/internal/agent/runtime/process/containerinit"
	// Wraps crun from its init function when executed as ociwrap.Name;
	// that never returns either.
	_ "github.com/headway/headway/internal/agent/containerd/ociwrap"
)

func main() {
	fmt.Fprintln(os.Stderr, "headway-init is run by the headway node agent as a container's first process; it takes no commands")
	os.Exit(2)
}
