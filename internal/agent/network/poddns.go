package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/headway/headway/internal/netnsrun"
)

// PodDNSServer serves the cluster DNS on sockets opened inside a pod's network
// namespace: the node's DNS server, when it runs in this process.
type PodDNSServer interface {
	// ServePod answers on udp and tcp (bound to the DNS Service address in
	// the pod's namespace) until stop is called; stop closes them and
	// returns once nothing uses them. pod names the pod in logs. An error
	// (the server has stopped) leaves the sockets to the caller.
	ServePod(pod string, udp *net.UDPConn, tcp *net.TCPListener) (stop func(), err error)
}

// The pod's own DNS path. With a PodDNSServer, each pod network namespace gets a
// local route for the DNS Service address on its lo (src the pod's own
// address, so that the server sees the pod's address as the query's
// source) and a UDP socket and TCP listener bound to DNSIP:53, made in the
// pod's namespace and served by the node's DNS server: a pod's queries go
// over its own loopback, not through its veth, the bridge and the node's
// routing. Without (no DNS server here, or opening failed), the pod has no
// such route and reaches DNSIP on the node as before.
//
// A socket keeps its network namespace alive: the pod's are closed before
// its namespace is removed (RemovePod, DetachPod).

// openPodDNS gives the pod at pn its own DNS sockets (replacing any it had:
// a new sandbox). A failure is logged, and the pod keeps the node's path.
func (n *Network) openPodDNS(owner, name string, pn *PodNetwork) {
	if n.cfg.PodDNS == nil || !n.cfg.DNSIP.IsValid() || pn.NetNS == "" {
		return
	}
	n.closePodDNS(owner)
	udp, tcp, err := listenPodDNS(pn.NetNS, n.cfg.DNSIP, pn.IP)
	var stop func()
	if err == nil {
		if stop, err = n.cfg.PodDNS.ServePod(name, udp, tcp); err != nil {
			udp.Close()
			tcp.Close()
		}
	}
	if err != nil {
		// Its queries take the node's socket; the route must go, or they
		// would stay in the pod and find nothing listening.
		rerr := removePodDNSRoute(pn.NetNS, n.cfg.DNSIP)
		n.log.Warn("the pod's DNS queries go through the bridge to the node's DNS socket: cannot open one in the pod's network namespace",
			"pod", name, "netns", pn.NetNS, "err", errors.Join(err, rerr))
		return
	}
	n.dnsMu.Lock()
	n.podDNS[owner] = stop
	n.dnsMu.Unlock()
}

// closePodDNS closes owner's DNS sockets (if it has them). Its route stays:
// the namespace is going, or openPodDNS replaces it.
func (n *Network) closePodDNS(owner string) {
	n.dnsMu.Lock()
	stop := n.podDNS[owner]
	delete(n.podDNS, owner)
	n.dnsMu.Unlock()
	if stop != nil {
		stop()
	}
}

// PodDNSOpen says whether owner's DNS sockets are open in its namespace.
func (n *Network) PodDNSOpen(owner string) bool {
	n.dnsMu.Lock()
	defer n.dnsMu.Unlock()
	return n.podDNS[owner] != nil
}

// listenPodDNS makes dnsIP local to the namespace at nsPath (a local route
// on lo whose preferred source is podIP) and binds dnsIP:53 there, UDP and
// TCP.
func listenPodDNS(nsPath string, dnsIP, podIP netip.Addr) (*net.UDPConn, *net.TCPListener, error) {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return nil, nil, err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, nil, err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return nil, nil, err
	}
	// A local route makes the address the namespace's own (binding it
	// needs no address on lo), and its src is the source the kernel picks
	// for a socket that sends to it unbound: the pod's address, not the
	// DNS address, so the server sees who asks.
	route := &netlink.Route{
		Type: unix.RTN_LOCAL, Table: unix.RT_TABLE_LOCAL, Scope: netlink.SCOPE_HOST, LinkIndex: lo.Attrs().Index,
		Dst: ipNet(netip.PrefixFrom(dnsIP, 32)), Src: net.IP(podIP.AsSlice()),
	}
	if err := h.RouteReplace(route); err != nil {
		return nil, nil, fmt.Errorf("making %s local to the pod (src %s): %w", dnsIP, podIP, err)
	}
	var udp *net.UDPConn
	var tcp *net.TCPListener
	err = netnsrun.Do(nsPath, func() error {
		addr := netip.AddrPortFrom(dnsIP, 53).String()
		var lc net.ListenConfig
		pc, err := lc.ListenPacket(context.Background(), "udp4", addr)
		if err != nil {
			return err
		}
		ln, err := lc.Listen(context.Background(), "tcp4", addr)
		if err != nil {
			pc.Close()
			return err
		}
		udp, tcp = pc.(*net.UDPConn), ln.(*net.TCPListener)
		return nil
	})
	return udp, tcp, err
}

// removePodDNSRoute removes the local route listenPodDNS made, so the pod's
// queries leave by eth0 for the node's socket again.
func removePodDNSRoute(nsPath string, dnsIP netip.Addr) error {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return err
	}
	err = h.RouteDel(&netlink.Route{Type: unix.RTN_LOCAL, Table: unix.RT_TABLE_LOCAL, Scope: netlink.SCOPE_HOST, LinkIndex: lo.Attrs().Index,
		Dst: ipNet(netip.PrefixFrom(dnsIP, 32))})
	if err != nil && !errors.Is(err, unix.ESRCH) {
		return fmt.Errorf("removing the pod's local route to %s: %w", dnsIP, err)
	}
	return nil
}

// The network namespace of an attached (CRI) pod is its runtime's; the
// agent records its path so that a later run, adopting the pod, can open
// the pod's DNS sockets again.

func (n *Network) attachedPath(owner string) string {
	return filepath.Join(n.cfg.StateDir, "attached", owner)
}

func (n *Network) recordAttached(owner, name, nsPath string) {
	p := n.attachedPath(owner)
	err := os.MkdirAll(filepath.Dir(p), 0o700)
	if err == nil {
		err = os.WriteFile(p, []byte(name+"\n"+nsPath+"\n"), 0o600)
	}
	if err != nil {
		n.log.Warn("cannot record the pod's network namespace: after a restart its DNS queries go through the bridge", "pod", name, "err", err)
	}
}

func (n *Network) attached(owner string) (name, nsPath string, ok bool) {
	b, err := os.ReadFile(n.attachedPath(owner))
	if err != nil {
		return "", "", false
	}
	name, nsPath, ok = strings.Cut(strings.TrimSuffix(string(b), "\n"), "\n")
	return name, nsPath, ok && nsPath != ""
}

// ForgetAttached drops the records of attached pods not in keep (gone
// while the agent was down).
func (n *Network) ForgetAttached(keep map[string]bool) {
	entries, _ := os.ReadDir(filepath.Join(n.cfg.StateDir, "attached"))
	for _, e := range entries {
		if !keep[e.Name()] {
			n.closePodDNS(e.Name())
			os.Remove(n.attachedPath(e.Name()))
		}
	}
}
