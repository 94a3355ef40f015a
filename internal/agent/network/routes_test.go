package network_test

import (
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/headway/headway/internal/agent/network"
	"github.com/headway/headway/internal/testing/netnstest"
)

// routesNow are the routes carrying the package's protocol, by destination.
func routesNow(t *testing.T) map[netip.Prefix]netip.Addr {
	t.Helper()
	rs, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: network.RouteProtocol, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.Prefix]netip.Addr{}
	for _, r := range rs {
		a, _ := netip.AddrFromSlice(r.Dst.IP)
		bits, _ := r.Dst.Mask.Size()
		gw, _ := netip.AddrFromSlice(r.Gw)
		out[netip.PrefixFrom(a.Unmap(), bits)] = gw.Unmap()
	}
	return out
}

func TestSetNodeRoutes(t *testing.T) {
	if !netnstest.RunInOwn(t) {
		return
	}
	// The link network the other "nodes" sit on.
	la := netlink.NewLinkAttrs()
	la.Name = "hwlink0"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "hwlink1"}); err != nil {
		t.Fatal(err)
	}
	link, _ := netlink.LinkByName("hwlink0")
	addr, _ := netlink.ParseAddr("198.18.200.1/24")
	if err := netlink.AddrAdd(link, addr); err != nil {
		t.Fatal(err)
	}
	if err := netlink.LinkSetUp(link); err != nil {
		t.Fatal(err)
	}
	n, err := network.Open(network.Config{StateDir: t.TempDir(), Bridge: "hwtest0", ClusterCIDR: netip.MustParsePrefix("198.18.0.0/16"),
		PodCIDR: netip.MustParsePrefix("198.18.1.0/24"), Gateway: netip.MustParseAddr("198.18.1.1")})
	if err != nil {
		t.Fatal(err)
	}
	b, c := netip.MustParsePrefix("198.18.2.0/24"), netip.MustParsePrefix("198.18.3.0/24")
	viaB, viaC := netip.MustParseAddr("198.18.200.2"), netip.MustParseAddr("198.18.200.3")
	if err := n.SetNodeRoutes([]network.NodeRoute{{PodCIDR: b, Via: viaB}, {PodCIDR: c, Via: viaC}}); err != nil {
		t.Fatal(err)
	}
	if got := routesNow(t); len(got) != 2 || got[b] != viaB || got[c] != viaC {
		t.Fatalf("routes %v; want %s via %s and %s via %s", got, b, viaB, c, viaC)
	}
	// C moves to another address, B goes, and a node claiming our own
	// range is refused (the others are still made).
	err = n.SetNodeRoutes([]network.NodeRoute{{PodCIDR: c, Via: viaB}, {PodCIDR: netip.MustParsePrefix("198.18.1.0/24"), Via: viaC}})
	if err == nil {
		t.Fatal("a route to this node's own pod range was accepted")
	}
	if got := routesNow(t); len(got) != 1 || got[c] != viaB {
		t.Fatalf("routes %v; want only %s via %s", got, c, viaB)
	}
	if err := n.RemoveNodeRoutes(); err != nil {
		t.Fatal(err)
	}
	if got := routesNow(t); len(got) != 0 {
		t.Fatalf("routes %v left after RemoveNodeRoutes", got)
	}
}
