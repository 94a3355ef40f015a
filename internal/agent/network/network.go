// Package network gives pods their network: the bridge with the gateway
// address, one network namespace per pod joined to the bridge by a veth
// pair, addresses from a persisted IPAM, the cluster DNS address made local
// to the host (its traffic kept out of conntrack) and, with the node's DNS
// server in the process, to each pod, with DNS sockets in the pod's own
// namespace (poddns.go), and masquerading of traffic leaving the cluster
// ranges (both in its own nftables table). It also renders the pods'
// resolv.conf and hosts files.
//
// It owns the node's pod and bridge state; Service state (the local route
// of the service range, the Service rules) is the proxy's.
package network

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/headway/headway/internal/agent/nsfile"
)

// Config says which ranges and names the node network uses.
type Config struct {
	// StateDir holds the IPAM file and the pods' network namespace files
	// (<data-dir>/network).
	StateDir string
	// Bridge is the bridge's name.
	Bridge string
	// ClusterCIDR is the cluster's pod range: traffic to it is not
	// masqueraded.
	ClusterCIDR netip.Prefix
	// PodCIDR is this node's part of ClusterCIDR (node.spec.podCIDR):
	// pod addresses come from it and the bridge has its first. Zero: all
	// of ClusterCIDR (a cluster of one node).
	PodCIDR netip.Prefix
	// Gateway is the bridge's address in PodCIDR (its first), the pods'
	// default route.
	Gateway netip.Addr
	// ServiceCIDR is not masqueraded (the proxy routes it, locally).
	// Optional.
	ServiceCIDR netip.Prefix
	// DNSIP is made an address of the host (on lo), and its port 53
	// traffic is not tracked by conntrack. Optional.
	DNSIP netip.Addr
	// Masquerade traffic from pods to addresses outside the cluster ranges
	// (nftables).
	Masquerade bool
	// MTU of the bridge and veths; 0 is 1500.
	MTU int
	// PodDNS, when set (with DNSIP), serves each pod's own DNS sockets,
	// bound to DNSIP:53 in the pod's network namespace (see openPodDNS).
	PodDNS PodDNSServer
	Log    *slog.Logger
}

// Network is the node's pod network.
type Network struct {
	cfg     Config
	ipam    *IPAM
	gateway netip.Addr
	log     *slog.Logger

	mu         sync.Mutex
	bridgeIdx  int
	ownBridge  bool
	ownDNSAddr bool
	ownNFT     bool
	oldForward string

	dnsMu sync.Mutex
	// podDNS stops the serving of each pod's own DNS sockets (by owner).
	podDNS map[string]func()
}

// ErrUnsupported says the node cannot give pods their own network here (not
// root, or no network namespaces).
var ErrUnsupported = errors.New("pod networking is not available")

// Check says whether pod networks can be made here, and if not, why.
func Check() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%w: headway runs as uid %d; network namespaces, the bridge and veths need root (run `sudo headway server`)", ErrUnsupported, os.Geteuid())
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return fmt.Errorf("%w: this kernel has no network namespaces (%v)", ErrUnsupported, err)
	}
	return nil
}

// Open loads the IPAM state; Setup then makes the host side.
func Open(cfg Config) (*Network, error) {
	if err := Check(); err != nil {
		return nil, err
	}
	if cfg.Bridge == "" {
		return nil, errors.New("no bridge name")
	}
	if cfg.MTU == 0 {
		cfg.MTU = 1500
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if !cfg.ClusterCIDR.IsValid() || !cfg.ClusterCIDR.Addr().Is4() {
		return nil, fmt.Errorf("pod range %v: want an IPv4 CIDR", cfg.ClusterCIDR)
	}
	if !cfg.PodCIDR.IsValid() {
		cfg.PodCIDR = cfg.ClusterCIDR
	}
	if !cfg.PodCIDR.Addr().Is4() || !cfg.ClusterCIDR.Contains(cfg.PodCIDR.Addr()) || cfg.PodCIDR.Bits() < cfg.ClusterCIDR.Bits() {
		return nil, fmt.Errorf("node pod range %v: want an IPv4 CIDR inside the cluster's %v", cfg.PodCIDR, cfg.ClusterCIDR)
	}
	gw := cfg.Gateway
	if !gw.IsValid() || !cfg.PodCIDR.Contains(gw) {
		return nil, fmt.Errorf("gateway %v: want an address in the pod range %v", gw, cfg.PodCIDR)
	}
	if err := os.MkdirAll(filepath.Join(cfg.StateDir, "netns"), 0o700); err != nil {
		return nil, err
	}
	// Runs before the proxy owned the service range's route marked it
	// here; the proxy adopts the route now.
	os.Remove(filepath.Join(cfg.StateDir, "own-service-route"))
	ipam, err := OpenIPAM(filepath.Join(cfg.StateDir, "ipam.json"), cfg.PodCIDR, gw)
	if err != nil {
		return nil, err
	}
	return &Network{cfg: cfg, ipam: ipam, gateway: gw, log: cfg.Log, podDNS: map[string]func(){}}, nil
}

// Gateway is the bridge's address, the pods' default route and the node's
// address as pods see it.
func (n *Network) Gateway() netip.Addr { return n.gateway }

// IPAM is the pod address allocator.
func (n *Network) IPAM() *IPAM { return n.ipam }

// Setup creates (or adopts) the bridge with the gateway address, makes the
// DNS address local, and installs the agent's nftables table (DNS without
// conntrack, masquerading).
func (n *Network) Setup() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	br, err := netlink.LinkByName(n.cfg.Bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if !errors.As(err, &nf) {
			return fmt.Errorf("looking up bridge %s: %w", n.cfg.Bridge, err)
		}
		la := netlink.NewLinkAttrs()
		la.Name, la.MTU = n.cfg.Bridge, n.cfg.MTU
		if err := netlink.LinkAdd(&netlink.Bridge{LinkAttrs: la}); err != nil {
			return fmt.Errorf("creating bridge %s: %w", n.cfg.Bridge, err)
		}
		n.ownBridge = true
		if br, err = netlink.LinkByName(n.cfg.Bridge); err != nil {
			return err
		}
	} else if br.Type() != "bridge" {
		return fmt.Errorf("%s exists and is a %s, not a bridge: remove it or pick another name", n.cfg.Bridge, br.Type())
	} else {
		// Left by an agent that did not stop cleanly: ours to remove.
		n.ownBridge = true
	}
	n.bridgeIdx = br.Attrs().Index
	gw := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(n.gateway, n.cfg.PodCIDR.Bits()))}
	if err := netlink.AddrReplace(br, gw); err != nil {
		return fmt.Errorf("giving %s the address %s: %w", n.cfg.Bridge, gw.IPNet, err)
	}
	if err := netlink.LinkSetUp(br); err != nil {
		return fmt.Errorf("bringing %s up: %w", n.cfg.Bridge, err)
	}
	lo, err := netlink.LinkByName("lo")
	if err != nil {
		return err
	}
	if n.cfg.DNSIP.IsValid() {
		a := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(n.cfg.DNSIP, 32)), Label: "lo"}
		switch err := netlink.AddrAdd(lo, a); {
		case err == nil:
			n.ownDNSAddr = n.mark("dns-address", true)
		case errors.Is(err, unix.EEXIST):
			// Ours when a run of ours that kept its pods left it.
			n.ownDNSAddr = n.marked("dns-address")
		default:
			return fmt.Errorf("making %s a local address: %w", n.cfg.DNSIP, err)
		}
	}
	if err := n.setupTable(); err != nil {
		n.log.Warn("the node's nftables table is missing: pods cannot reach addresses outside the cluster, and their DNS queries are tracked by conntrack",
			"table", agentTable(n.cfg.Bridge).Name, "masquerade", n.cfg.Masquerade, "err", err)
	}
	return nil
}

// mark records (or forgets) in the state dir that this node made a host
// resource, so a later run (after one that kept its pods running) knows
// the resource is its own to remove. It returns own.
func (n *Network) mark(what string, own bool) bool {
	path := filepath.Join(n.cfg.StateDir, "own-"+what)
	if own {
		os.WriteFile(path, nil, 0o600)
	} else {
		os.Remove(path)
	}
	return own
}

func (n *Network) marked(what string) bool {
	_, err := os.Stat(filepath.Join(n.cfg.StateDir, "own-"+what))
	return err == nil
}

// Teardown removes what Setup made: the bridge, the DNS address, the
// nftables table. Pod networks must be removed first.
func (n *Network) Teardown() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	var errs []error
	if n.ownNFT {
		if err := removeTable(n.cfg.Bridge); err != nil {
			errs = append(errs, err)
		}
		if n.oldForward != "" {
			os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(n.oldForward), 0o644)
		}
		n.ownNFT = false
	}
	lo, err := netlink.LinkByName("lo")
	if err == nil && n.ownDNSAddr {
		a := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(n.cfg.DNSIP, 32))}
		if err := netlink.AddrDel(lo, a); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("removing %s from lo: %w", n.cfg.DNSIP, err))
		}
		n.ownDNSAddr = n.mark("dns-address", false)
	}
	if n.ownBridge {
		if br, err := netlink.LinkByName(n.cfg.Bridge); err == nil {
			if err := netlink.LinkDel(br); err != nil {
				errs = append(errs, fmt.Errorf("removing bridge %s: %w", n.cfg.Bridge, err))
			}
		}
		n.ownBridge = false
	}
	return errors.Join(errs...)
}

// PodNetwork is a pod's network namespace and address.
type PodNetwork struct {
	// NetNS is the path of the namespace file (a bind mount of nsfs).
	NetNS string
	IP    netip.Addr
	// Gateway is the pod's default route.
	Gateway netip.Addr
	// MAC is eth0's hardware address (set by AttachPod).
	MAC string
}

func (n *Network) nsPath(owner string) string {
	return filepath.Join(n.cfg.StateDir, "netns", owner)
}

// vethName is the host end's name: "hw" and 12 hex digits of the owner.
func vethName(owner string) string {
	sum := sha256.Sum256([]byte(owner))
	return "hw" + hex.EncodeToString(sum[:6])
}

// AddPod gives owner (a pod UID; name is namespace/name, see
// IPAM.AllocateNamed) a network namespace with lo up, eth0 with
// its address on the bridge and a default route via the gateway. Calling
// it again for a pod that has one returns the same.
func (n *Network) AddPod(owner, name string) (*PodNetwork, error) {
	ip, err := n.ipam.AllocateNamed(owner, name)
	if err != nil {
		return nil, err
	}
	pn := &PodNetwork{NetNS: n.nsPath(owner), IP: ip, Gateway: n.gateway}
	if nsfile.IsMount(pn.NetNS) {
		return pn, nil
	}
	if err := nsfile.Create(pn.NetNS, unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("creating the network namespace: %w", err)
	}
	if err := n.configurePod(pn, vethName(owner)); err != nil {
		nsfile.Remove(pn.NetNS)
		return nil, err
	}
	n.openPodDNS(owner, name, pn)
	return pn, nil
}

func (n *Network) configurePod(pn *PodNetwork, hostName string) error {
	ns, err := netns.GetFromPath(pn.NetNS)
	if err != nil {
		return err
	}
	defer ns.Close()
	if old, err := netlink.LinkByName(hostName); err == nil {
		netlink.LinkDel(old)
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.MTU, la.MasterIndex = hostName, n.cfg.MTU, n.bridgeIdx
	veth := &netlink.Veth{LinkAttrs: la, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns)), PeerMTU: uint32(n.cfg.MTU)}
	if err := netlink.LinkAdd(veth); err != nil {
		return fmt.Errorf("creating veth %s: %w", hostName, err)
	}
	host, err := netlink.LinkByName(hostName)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetUp(host); err != nil {
		netlink.LinkDel(host)
		return err
	}
	// Hairpin: a pod reaching a Service that sends it back to itself has
	// its packets (with bridge netfilter on) leave by the port they came in.
	if err := netlink.LinkSetHairpin(host, true); err != nil {
		netlink.LinkDel(host)
		return fmt.Errorf("setting hairpin mode on %s: %w", hostName, err)
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		netlink.LinkDel(host)
		return err
	}
	defer h.Close()
	err = func() error {
		lo, err := h.LinkByName("lo")
		if err != nil {
			return err
		}
		if err := h.LinkSetUp(lo); err != nil {
			return fmt.Errorf("bringing lo up: %w", err)
		}
		eth, err := h.LinkByName("eth0")
		if err != nil {
			return err
		}
		addr := &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(pn.IP, n.cfg.PodCIDR.Bits()))}
		if err := h.AddrAdd(eth, addr); err != nil {
			return fmt.Errorf("giving eth0 %s: %w", addr.IPNet, err)
		}
		if err := h.LinkSetUp(eth); err != nil {
			return err
		}
		pn.MAC = eth.Attrs().HardwareAddr.String()
		gw := net.IP(n.gateway.AsSlice())
		if err := h.RouteAdd(&netlink.Route{LinkIndex: eth.Attrs().Index, Gw: gw}); err != nil {
			return fmt.Errorf("adding the default route via %s: %w", gw, err)
		}
		return nil
	}()
	if err != nil {
		netlink.LinkDel(host)
	}
	return err
}

// AttachPod gives owner (a pod UID) its address and joins the network
// namespace at nsPath, made by someone else (the CRI runtime, through the
// headway-cni plugin), to the bridge: eth0 with the address and a default
// route via the gateway. Attaching again (a new sandbox) replaces the veth.
func (n *Network) AttachPod(owner, name, nsPath string) (*PodNetwork, error) {
	ip, err := n.ipam.AllocateNamed(owner, name)
	if err != nil {
		return nil, err
	}
	pn := &PodNetwork{NetNS: nsPath, IP: ip, Gateway: n.gateway}
	if err := n.configurePod(pn, vethName(owner)); err != nil {
		return nil, err
	}
	n.recordAttached(owner, name, nsPath)
	n.openPodDNS(owner, name, pn)
	return pn, nil
}

// Reattach puts owner's veth back on the bridge (after the bridge was made
// again, e.g. Headway restarted while CRI pods ran on): true when owner has
// a veth.
func (n *Network) Reattach(owner string) (bool, error) {
	l, err := netlink.LinkByName(vethName(owner))
	if err != nil {
		return false, nil
	}
	n.mu.Lock()
	idx := n.bridgeIdx
	n.mu.Unlock()
	if l.Attrs().MasterIndex != idx {
		if err := netlink.LinkSetMasterByIndex(l, idx); err != nil {
			return true, fmt.Errorf("putting veth %s on the bridge: %w", vethName(owner), err)
		}
		netlink.LinkSetHairpin(l, true)
	}
	if err := netlink.LinkSetUp(l); err != nil {
		return true, err
	}
	n.reopenPodDNS(owner)
	return true, nil
}

// reopenPodDNS gives an adopted attached pod its DNS sockets again (this
// process did not open them), or, without a DNS server here, takes away the
// route an earlier run left, so its queries reach the node's socket.
func (n *Network) reopenPodDNS(owner string) {
	name, nsPath, ok := n.attached(owner)
	if !ok || n.PodDNSOpen(owner) || !n.cfg.DNSIP.IsValid() {
		return
	}
	if n.cfg.PodDNS == nil {
		if err := removePodDNSRoute(nsPath, n.cfg.DNSIP); err != nil {
			n.log.Warn("the pod may not reach the cluster DNS", "pod", name, "err", err)
		}
		return
	}
	ip, ok := n.ipam.Lookup(owner)
	if !ok {
		return
	}
	n.openPodDNS(owner, name, &PodNetwork{NetNS: nsPath, IP: ip, Gateway: n.gateway})
}

// DetachPod removes owner's veth pair (the namespace is its maker's); the
// address stays owner's.
func (n *Network) DetachPod(owner string) error {
	n.closePodDNS(owner)
	os.Remove(n.attachedPath(owner))
	if l, err := netlink.LinkByName(vethName(owner)); err == nil {
		if err := netlink.LinkDel(l); err != nil {
			return fmt.Errorf("removing veth %s: %w", vethName(owner), err)
		}
	}
	return nil
}

// Prefix is the node's pod range.
func (n *Network) Prefix() netip.Prefix { return n.cfg.PodCIDR }

// RemovePod removes owner's network namespace (and with it the veth pair);
// with release, its address is freed too.
func (n *Network) RemovePod(owner string, release bool) error {
	// Deleting the host end removes the pair at once; the namespace itself
	// goes away asynchronously once unmounted, and once no socket of
	// ours is left in it.
	n.closePodDNS(owner)
	var err error
	if l, lerr := netlink.LinkByName(vethName(owner)); lerr == nil {
		if derr := netlink.LinkDel(l); derr != nil {
			err = fmt.Errorf("removing veth %s: %w", vethName(owner), derr)
		}
	}
	err = errors.Join(err, nsfile.Remove(n.nsPath(owner)))
	if release {
		err = errors.Join(err, n.ipam.Release(owner))
	}
	return err
}

// PodNamespaces lists the owners that have a network namespace file.
func (n *Network) PodNamespaces() []string {
	entries, _ := os.ReadDir(filepath.Join(n.cfg.StateDir, "netns"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: net.IP(p.Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}
