package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/headway/headway/internal/testing/leftover"
)

// TestHostStateAfterKill is issue 17's crash check of the host state: the
// server runs in a network namespace the test made, with a ClusterIP
// Service and a pod, and is killed with SIGKILL. What it set up (the
// bridge, the pod's veth, the DNS address on lo, the nftables tables, the
// routes) stays; a restart on the same data dir adopts it as its own
// without adding a second copy of anything, the pod keeps its address, and
// a clean stop then leaves the namespace exactly as it was before the
// first start.
func TestHostStateAfterKill(t *testing.T) {
	needRoot(t)
	ns := fmt.Sprintf("hwhost%d", os.Getpid())
	exec.Command("ip", "netns", "del", ns).Run() // one left by a killed run of this process ID
	ipCmd(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	before := hostState(t, ns)
	dataDir := t.TempDir()
	earlier := podSleepers() // left by other runs: not this test's to judge

	s := launchNetnsServer(t, ns, dataDir, "--store", "bolt")
	s.mustKubectl(t, "create", "service", "clusterip", "web", "--tcp=80:80")
	s.mustKubectl(t, "run", "p1", "--image=busybox:1.28", "--", "sleep", "3600")
	running := regexp.MustCompile(`^Running (198\.18\.\d+\.\d+)$`)
	podIP := func() string {
		out := s.waitKubectl(t, running, 60*time.Second, "get", "pod", "p1", "-o", "jsonpath={.status.phase} {.status.podIP}")
		return running.FindStringSubmatch(out)[1]
	}
	ip := podIP()
	first := hostState(t, ns)
	for _, want := range []string{"link headway0 198.18.0.1/16", "nft table ip headway", "route 198.18.0.0/16 dev headway0 proto kernel scope link src 198.18.0.1"} {
		if !slices.Contains(first, want) {
			t.Fatalf("while the server runs the namespace should have %q:\n%s", want, strings.Join(first, "\n"))
		}
	}
	if !slices.ContainsFunc(first, func(l string) bool { return strings.HasPrefix(l, "link lo ") && strings.Contains(l, " 198.19.0.10/32") }) {
		t.Fatalf("while the server runs lo should carry the cluster DNS address 198.19.0.10:\n%s", strings.Join(first, "\n"))
	}
	if !slices.ContainsFunc(first, func(l string) bool { return strings.HasPrefix(l, "link hw") }) {
		t.Fatalf("while the pod runs the namespace should have its veth:\n%s", strings.Join(first, "\n"))
	}

	var orphans []int // p1's container as the killed server left it
	for _, pid := range podSleepers() {
		if !slices.Contains(earlier, pid) {
			orphans = append(orphans, pid)
		}
	}
	if len(orphans) == 0 {
		t.Fatal("no process of pod p1's container (sleep 3600) found while it runs")
	}
	if err := s.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-s.done
	if got := hostState(t, ns); !slices.Equal(got, first) {
		t.Fatalf("SIGKILL changed the namespace (nothing runs to change it):\nbefore:\n%s\nafter:\n%s", strings.Join(first, "\n"), strings.Join(got, "\n"))
	}

	s = launchNetnsServer(t, ns, dataDir, "--store", "bolt")
	if got := podIP(); got != ip {
		t.Errorf("pod p1 had %s before the kill and %s after the restart", ip, got)
	}
	// The restart ends the container the killed server left (found by its
	// pid file) before it starts the pod again.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		left := slices.DeleteFunc(slices.Clone(orphans), func(pid int) bool { return !slices.Contains(podSleepers(), pid) })
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			for _, pid := range left {
				syscall.Kill(pid, syscall.SIGKILL)
			}
			t.Fatalf("the container processes %v the killed server left still run after the restart", left)
		}
	}
	// The restart replaced nothing twice: the same links, addresses,
	// routes and tables as the first run.
	s.waitKubectl(t, regexp.MustCompile(`^198\.19\.`), 30*time.Second, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
	deadline := time.Now().Add(30 * time.Second)
	for got := hostState(t, ns); !slices.Equal(got, first); got = hostState(t, ns) {
		if time.Now().After(deadline) {
			t.Fatalf("after the restart the namespace differs from the first run:\nfirst run:\n%s\nrestarted:\n%s", strings.Join(first, "\n"), strings.Join(got, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}

	s.stop()
	if got := hostState(t, ns); !slices.Equal(got, before) {
		t.Fatalf("a clean stop after the restart left state behind:\nbefore the first start:\n%s\nafter the stop:\n%s", strings.Join(before, "\n"), strings.Join(got, "\n"))
	}
}

// podSleepers are the PIDs of the processes running pod p1's container
// command here (`sleep 3600`, host name p1).
func podSleepers() []int {
	var out []int
	for _, pid := range allPIDs() {
		if !slices.Equal(leftover.Cmdline(pid), []string{"sleep", "3600"}) {
			continue
		}
		if env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid)); slices.Contains(strings.Split(string(env), "\x00"), "HOSTNAME=p1") {
			out = append(out, pid)
		}
	}
	return out
}

// hostState is what a server may change in the namespace ns, one sorted
// line each: links with their IPv4 and global addresses (link-local ones
// and peer interface indexes change when a veth is recreated), IPv4 and
// IPv6 routes, and nftables tables.
func hostState(t *testing.T, ns string) []string {
	t.Helper()
	var state []string
	out, err := exec.Command("ip", "-n", ns, "-br", "addr").CombinedOutput()
	if err != nil {
		t.Fatalf("ip -n %s -br addr: %v %s", ns, err, out)
	}
	peer := regexp.MustCompile(`@\S+$`)
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		l := "link " + peer.ReplaceAllString(f[0], "")
		for _, a := range f[2:] {
			if !strings.HasPrefix(a, "fe80:") {
				l += " " + a
			}
		}
		state = append(state, l)
	}
	for _, family := range []string{"-4", "-6"} {
		out, err := exec.Command("ip", "-n", ns, family, "route", "show", "table", "all").CombinedOutput()
		if err != nil {
			t.Fatalf("ip -n %s %s route: %v %s", ns, family, err, out)
		}
		for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
			if line != "" && !strings.Contains(line, "fe80::") && !strings.HasPrefix(line, "multicast") {
				state = append(state, "route "+strings.Join(strings.Fields(line), " "))
			}
		}
	}
	out, err = exec.Command("ip", "netns", "exec", ns, "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables in %s: %v %s", ns, err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line != "" {
			state = append(state, "nft "+line)
		}
	}
	slices.Sort(state)
	return state
}
