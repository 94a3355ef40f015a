// Package netnstest runs a test in network and mount namespaces of its
// own, so that what it makes there (a bridge, routes, nftables tables,
// mounts) goes with the namespaces and never meets the machine's or other
// tests'.
package netnstest

import (
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/headway/headway/internal/agent/network"
)

// inNetNSEnv marks the copy of the test binary that runs in the new
// namespaces (its value is the test's name).
const inNetNSEnv = "HEADWAY_TEST_IN_NETNS"

// RunInOwn runs the calling test again in a new network and mount
// namespace (a copy of this test binary) and reports its result; it
// returns true in that copy, where the test goes on with lo up, and false
// in the caller, which then returns. It skips where network namespaces
// cannot be made (not root).
func RunInOwn(t *testing.T) bool {
	t.Helper()
	if os.Getenv(inNetNSEnv) == t.Name() {
		lo, err := netlink.LinkByName("lo")
		if err == nil {
			err = netlink.LinkSetUp(lo)
		}
		if err != nil {
			t.Fatalf("bringing up lo in the test's network namespace: %v", err)
		}
		return true
	}
	if err := network.Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), inNetNSEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()) {
		t.Fatalf("%s in its own network namespace: %v\n%s", t.Name(), err, out)
	}
	t.Logf("in its own network namespace:\n%s", out)
	return false
}
