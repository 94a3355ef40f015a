// Package ociwrap is the OCI runtime the managed containerd's shims run when
// crun would refuse the host's cgroup layout as it is: a hybrid host (cgroup
// v1 controllers with a cgroup v2 hierarchy at /sys/fs/cgroup/unified) whose
// v2 hierarchy holds a controller. crun manages such a host's v1 hierarchies
// well, but refuses to start on seeing a v2 hierarchy with controllers in
// it. The wrapper gives each crun invocation a mount namespace of its own,
// a copy of the host's without /sys/fs/cgroup/unified, and executes crun
// there: crun then sees a legacy (v1) host. Nothing changes for the host or
// for the rest of the node (the copy is made at each invocation, so crun sees
// every mount the agent and containerd have made; the containers it creates
// get their own mount namespaces from that copy, as they would from the
// host's).
//
// A binary becomes the wrapper by being executed under the file name Name
// (a symlink to the small headway-init, or to headway itself): this
// package's init function then does the work and never returns. It
// executes the file named Target in the same directory, which the agent
// points at crun (a sealed in-memory copy, see package containerd).
package ociwrap

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

const (
	// Name is the wrapper's file name: the shims' BinaryName.
	Name = "headway-crun"
	// Target is the file name, in the wrapper's directory, of the crun it
	// executes.
	Target = "crun"
	// Unified is where a hybrid host mounts its cgroup v2 hierarchy.
	Unified = "/sys/fs/cgroup/unified"
)

func init() {
	if len(os.Args) == 0 || filepath.Base(os.Args[0]) != Name {
		return
	}
	os.Exit(run(os.Args))
}

// run hides Unified in a new mount namespace and executes crun with args'
// arguments; it returns only on failure, with crun's exit code for a
// runtime that could not be started.
func run(args []string) int {
	// The mount namespace is the calling thread's until the exec, which
	// makes it the process's: stay on this thread.
	runtime.LockOSThread()
	if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
		fmt.Fprintf(os.Stderr, "%s: a mount namespace for crun: %v\n", Name, err)
		return 127
	}
	// Private first, so the unmount below stays in this namespace even
	// where the host shares /sys/fs/cgroup with others.
	for _, p := range []string{"/sys/fs/cgroup", Unified} {
		if err := unix.Mount("", p, "", unix.MS_PRIVATE, ""); err != nil {
			fmt.Fprintf(os.Stderr, "%s: making %s private: %v\n", Name, p, err)
			return 127
		}
	}
	if err := unix.Unmount(Unified, unix.MNT_DETACH); err != nil {
		fmt.Fprintf(os.Stderr, "%s: hiding %s from crun: %v\n", Name, Unified, err)
		return 127
	}
	target := filepath.Join(filepath.Dir(args[0]), Target)
	argv := append([]string{"crun"}, args[1:]...)
	err := unix.Exec(target, argv, os.Environ())
	fmt.Fprintf(os.Stderr, "%s: executing %s: %v\n", Name, target, err)
	return 127
}
