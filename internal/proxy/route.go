package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// localRoute makes the service range local to the node (a "local" route in
// the local table, as `ip route add local 198.19.0.0/16 dev lo` does):
// packets to a cluster IP never leave the machine, whatever rules exist,
// and the userspace proxy can bind cluster IPs. The route is the proxy's
// alone (the node agent leaves it to the proxy): one already there, left by
// a run that kept its rules (LeaveRulesOnExit) or by an older agent, is
// adopted and removed with the rest.
type localRoute struct {
	cidr  netip.Prefix
	h     *netlink.Handle
	owned bool
}

func newLocalRoute(ns NetNS, cidr netip.Prefix) (*localRoute, error) {
	var h *netlink.Handle
	var err error
	if ns.Path == "" {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	} else {
		var fd netns.NsHandle
		fd, err = netns.GetFromPath(ns.Path)
		if err == nil {
			h, err = netlink.NewHandleAt(fd, unix.NETLINK_ROUTE)
			fd.Close()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("opening a route netlink socket: %w", err)
	}
	return &localRoute{cidr: cidr.Masked(), h: h}, nil
}

func (l *localRoute) route() (*netlink.Route, error) {
	lo, err := l.h.LinkByName("lo")
	if err != nil {
		return nil, err
	}
	return &netlink.Route{
		LinkIndex: lo.Attrs().Index,
		Dst:       &net.IPNet{IP: l.cidr.Addr().AsSlice(), Mask: net.CIDRMask(l.cidr.Bits(), 32)},
		Table:     unix.RT_TABLE_LOCAL,
		Type:      unix.RTN_LOCAL,
		Scope:     netlink.SCOPE_HOST,
	}, nil
}

// Ensure adds the route, or adopts it when it is there; it says whether it
// added it.
func (l *localRoute) Ensure() (bool, error) {
	rt, err := l.route()
	if err != nil {
		return false, err
	}
	switch err := l.h.RouteAdd(rt); {
	case err == nil:
		l.owned = true
		return true, nil
	case errors.Is(err, unix.EEXIST):
		l.owned = true
		return false, nil
	default:
		return false, fmt.Errorf("routing the service range %s locally: %w", l.cidr, err)
	}
}

// Close lets go of the netlink socket; the route stays.
func (l *localRoute) Close() { l.h.Close() }

// Remove deletes the route if Ensure added or adopted it.
func (l *localRoute) Remove() error {
	if !l.owned {
		return nil
	}
	rt, err := l.route()
	if err != nil {
		return err
	}
	if err := l.h.RouteDel(rt); err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("removing the local route for %s: %w", l.cidr, err)
	}
	l.owned = false
	return nil
}
