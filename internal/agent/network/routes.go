package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// RouteProtocol marks the routes to other nodes' pod ranges in the main
// table as this package's (a number of its own, as routing daemons have
// theirs in /etc/iproute2/rt_protos): what carries it is ours to replace
// and remove, also after a run that did not stop cleanly.
const RouteProtocol netlink.RouteProtocol = 0x68 // 'h'

// NodeRoute is a route to another node's pod range through that node's
// address.
type NodeRoute struct {
	PodCIDR netip.Prefix
	Via     netip.Addr
}

// SetNodeRoutes makes the host's routes to other nodes' pod ranges exactly
// want: missing ones are added, changed ones replaced, and ours that are no
// longer wanted removed. A route to a range that overlaps this node's own
// is never made. Errors name each route that could not be made; the others
// are still made.
func (n *Network) SetNodeRoutes(want []NodeRoute) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return setNodeRoutes(n.cfg.PodCIDR, want)
}

func setNodeRoutes(own netip.Prefix, want []NodeRoute) error {
	have, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN},
		netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("listing the routes to other nodes: %w", err)
	}
	wanted := map[netip.Prefix]netip.Addr{}
	var errs []error
	for _, r := range want {
		p := r.PodCIDR.Masked()
		if own.IsValid() && p.Overlaps(own) {
			errs = append(errs, fmt.Errorf("not routing %s via %s: it overlaps this node's pod range %s", p, r.Via, own))
			continue
		}
		wanted[p] = r.Via
	}
	for _, h := range have {
		if h.Dst == nil {
			continue
		}
		p, ok := prefixOf(h.Dst)
		gw, _ := netip.AddrFromSlice(h.Gw)
		if via, want := wanted[p]; ok && want && via == gw.Unmap() {
			delete(wanted, p) // already there
			continue
		}
		if _, want := wanted[p]; ok && want {
			continue // replaced below
		}
		if err := netlink.RouteDel(&h); err != nil && !errors.Is(err, unix.ESRCH) {
			errs = append(errs, fmt.Errorf("removing the route to %s: %w", h.Dst, err))
		}
	}
	for p, via := range wanted {
		r := &netlink.Route{Dst: ipNet(p), Gw: net.IP(via.AsSlice()), Protocol: RouteProtocol, Table: unix.RT_TABLE_MAIN}
		if err := netlink.RouteReplace(r); err != nil {
			errs = append(errs, fmt.Errorf("routing %s via %s (is %s on a directly connected network?): %w", p, via, via, err))
		}
	}
	return errors.Join(errs...)
}

// RemoveNodeRoutes removes every route SetNodeRoutes made.
func (n *Network) RemoveNodeRoutes() error {
	return n.SetNodeRoutes(nil)
}

func prefixOf(ipn *net.IPNet) (netip.Prefix, bool) {
	a, ok := netip.AddrFromSlice(ipn.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := ipn.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits).Masked(), true
}
