package process

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"

	"github.com/headway/headway/internal/agent/network"
	hwruntime "github.com/headway/headway/internal/agent/runtime"
	"github.com/headway/headway/internal/agent/runtime/runtimetest"
)

// The suite's pod network: a bridge and range of its own.
const (
	suiteBridge = "hwsuite1"
	suiteCIDR   = "198.18.236.0/24"
)

// TestSuite runs the runtime behaviour suite against the process runtime.
func TestSuite(t *testing.T) {
	if err := network.Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("skipping: the suite's containers run busybox (apt-get install busybox)")
	}
	dir := t.TempDir()
	prefix := netip.MustParsePrefix(suiteCIDR)
	n, err := network.Open(network.Config{StateDir: filepath.Join(dir, "network"), Bridge: suiteBridge, ClusterCIDR: prefix,
		Gateway: prefix.Addr().Next()})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Setup(); err != nil {
		n.Teardown()
		t.Fatal(err)
	}
	dns := network.DNSSettings{ClusterDNS: netip.MustParseAddr("198.19.0.10"), ClusterDomain: "cluster.local"}
	r, err := New(Config{PodsDir: filepath.Join(dir, "pods"), DataDir: dir, Network: n, DNS: dns, CgroupParent: testCgroupParent() + "-suite"})
	if err != nil {
		n.Teardown()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever a failed subtest left: its processes (by the PIDs in
		// their pid files), namespaces and addresses, then the bridge.
		if err := r.Cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		for _, uid := range n.PodNamespaces() {
			t.Errorf("pod namespace %s left", uid)
			r.RemoveSandbox(context.Background(), uid, true)
		}
		if err := r.cgroups.removeAll(true); err != nil {
			t.Errorf("removing the suite's cgroups: %v", err)
		}
		if err := n.Teardown(); err != nil {
			t.Error(err)
		}
		if _, err := netlink.LinkByName(suiteBridge); err == nil {
			t.Errorf("bridge %s left", suiteBridge)
		}
	})
	runtimetest.Run(t, runtimetest.Env{
		Runtime: r, Prefix: prefix, ClusterDNS: dns.ClusterDNS, ClusterDomain: dns.ClusterDomain,
		Leftovers: func(t *testing.T, sb *hwruntime.Sandbox) func() []string {
			return func() []string { return podLeftovers(n, sb) }
		},
	})
}

// podLeftovers lists what is left of a removed pod's network: its
// namespace file, a veth on the bridge, its address.
func podLeftovers(n *network.Network, sb *hwruntime.Sandbox) []string {
	var left []string
	if slices.Contains(n.PodNamespaces(), sb.UID) {
		left = append(left, "the network namespace "+sb.UID)
	}
	if sb.NetNS != "" {
		if _, err := os.Stat(sb.NetNS); err == nil {
			left = append(left, "the namespace file "+sb.NetNS)
		}
	}
	if ip, ok := n.IPAM().Lookup(sb.UID); ok {
		left = append(left, "the address "+ip.String())
	}
	left = append(left, bridgePorts(suiteBridge)...)
	return left
}

// bridgePorts lists the links on a bridge (pods' veths).
func bridgePorts(bridge string) []string {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil
	}
	links, _ := netlink.LinkList()
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			out = append(out, "veth "+l.Attrs().Name+" on "+bridge)
		}
	}
	return out
}
