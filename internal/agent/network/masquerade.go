package network

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The agent's own nftables table, one per bridge ("ip headway-<bridge>"),
// programmed through netlink (no nft command). In nft syntax it is
//
//	table ip headway-<bridge> {
//		chain dns-prerouting {
//			type filter hook prerouting priority raw; policy accept;
//			ip daddr <dns> meta l4proto { tcp, udp } th dport 53 notrack
//		}
//		chain dns-output {
//			type filter hook output priority raw; policy accept;
//			ip saddr <dns> meta l4proto { tcp, udp } th sport 53 notrack
//			ip daddr <dns> meta l4proto { tcp, udp } th dport 53 notrack
//		}
//		chain postrouting {
//			type nat hook postrouting priority srcnat; policy accept;
//			ip saddr <pods> ip daddr != { <pods>, <services> } oifname != "<bridge>" masquerade
//		}
//	}
//
// The dns- chains (with a DNS address) keep the pods' queries to the
// cluster DNS address, and its answers, out of conntrack, as Kubernetes'
// NodeLocal DNSCache does for its address: the address is local on every
// node (the DNS server binds it), so nothing translates that traffic and
// the connection tracking is pure cost on every query (a lookup or an
// insert each way). Without conntrack the packets also skip the nat
// chains, which have nothing for them: kube-dns has no endpoints the proxy
// would DNAT to, and the masquerade rule leaves traffic to the service
// range and from the DNS address alone. The queries of pods in the host's
// network (prerouting does not see them) are caught in output.
//
// The postrouting chain is there with masquerading on. The Service
// proxy's table is another ("ip headway", see package proxy).

// nodeTable is what the agent's table holds.
type nodeTable struct {
	// masquerade: the postrouting chain, for traffic from pods to
	// addresses outside pods and services (services may be invalid: the
	// pod range only).
	masquerade     bool
	pods, services netip.Prefix
	// dns, when valid, is the cluster DNS address whose port 53 traffic is
	// not tracked.
	dns netip.Addr
}

func (nt nodeTable) empty() bool { return !nt.masquerade && !nt.dns.IsValid() }

// agentTable is the agent's table for bridge.
func agentTable(bridge string) *nftables.Table {
	return &nftables.Table{Name: "headway-" + bridge, Family: nftables.TableFamilyIPv4}
}

// The IDs of the table's anonymous sets, which name them to the rules of
// the same batch. Given here: google/nftables otherwise takes them from a
// package counter it does not lock, which the Service proxy's batches,
// built at the same time on another goroutine, increment too. (With an ID
// it leaves the name to us: "__set%d", which the kernel numbers.)
const (
	setIDNotrack = 1 // three sets: 1, 2, 3
	setIDCluster = 4
)

// installTable replaces bridge's table with nt's chains, in one
// transaction.
func installTable(bridge string, nt nodeTable) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := agentTable(bridge)
	// Add first so the delete finds it: the old table goes, the new one
	// comes, atomically.
	c.AddTable(t)
	c.DelTable(t)
	c.AddTable(t)
	accept := nftables.ChainPolicyAccept
	if nt.dns.IsValid() {
		pre := c.AddChain(&nftables.Chain{Name: "dns-prerouting", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRaw, Policy: &accept})
		out := c.AddChain(&nftables.Chain{Name: "dns-output", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRaw, Policy: &accept})
		// The address first: other packets leave each rule at its first
		// comparison.
		for i, r := range []struct {
			ch    *nftables.Chain
			toDNS bool
		}{{pre, true}, {out, false}, {out, true}} {
			protos := &nftables.Set{Table: t, Anonymous: true, Constant: true, KeyType: nftables.TypeInetProto,
				Name: "__set%d", ID: setIDNotrack + uint32(i)}
			if err := c.AddSet(protos, []nftables.SetElement{{Key: []byte{unix.IPPROTO_TCP}}, {Key: []byte{unix.IPPROTO_UDP}}}); err != nil {
				return err
			}
			c.AddRule(&nftables.Rule{Table: t, Chain: r.ch, Exprs: notrackDNS(nt.dns, protos, r.toDNS)})
		}
	}
	if nt.masquerade {
		if err := addMasquerade(c, t, bridge, nt.pods, nt.services); err != nil {
			return err
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables table %s: %w", t.Name, err)
	}
	return nil
}

// notrackDNS is "ip daddr <dns> meta l4proto <protos> th dport 53
// notrack" (toDNS) or "ip saddr <dns> meta l4proto <protos> th sport 53
// notrack".
func notrackDNS(dns netip.Addr, protos *nftables.Set, toDNS bool) []expr.Any {
	a := dns.As4()
	addrOff, portOff := uint32(12), uint32(0) // saddr, sport
	if toDNS {
		addrOff, portOff = 16, 2 // daddr, dport
	}
	return []expr.Any{
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseNetworkHeader, Offset: addrOff, Len: 4},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: a[:]},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: unix.NFT_REG_1},
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: protos.Name, SetID: protos.ID},
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseTransportHeader, Offset: portOff, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: binary.BigEndian.AppendUint16(nil, 53)},
		&expr.Notrack{},
	}
}

// addMasquerade queues the postrouting chain masquerading traffic from
// pods to addresses outside the cluster ranges (service may be invalid:
// the pod range only).
func addMasquerade(c *nftables.Conn, t *nftables.Table, bridge string, pods, service netip.Prefix) error {
	accept := nftables.ChainPolicyAccept
	ch := c.AddChain(&nftables.Chain{Name: "postrouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPostrouting, Priority: nftables.ChainPriorityNATSource, Policy: &accept})
	cluster := []netip.Prefix{pods}
	if service.IsValid() {
		cluster = append(cluster, service)
	}
	set := &nftables.Set{Table: t, Anonymous: true, Constant: true, Interval: true, KeyType: nftables.TypeIPAddr,
		Name: "__set%d", ID: setIDCluster}
	if err := c.AddSet(set, intervalElements(cluster)); err != nil {
		return err
	}
	pods = pods.Masked()
	a := pods.Addr().As4()
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: []expr.Any{
		// ip saddr <pods>
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
		&expr.Bitwise{SourceRegister: unix.NFT_REG_1, DestRegister: unix.NFT_REG_1, Len: 4, Mask: mask4(pods.Bits()), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: unix.NFT_REG_1, Data: a[:]},
		// ip daddr != { <pods>, <services> }
		&expr.Payload{OperationType: expr.PayloadLoad, DestRegister: unix.NFT_REG_1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Lookup{SourceRegister: unix.NFT_REG_1, SetName: set.Name, SetID: set.ID, Invert: true},
		// oifname != "<bridge>"
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: unix.NFT_REG_1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: unix.NFT_REG_1, Data: ifname(bridge)},
		&expr.Masq{},
	}})
	return nil
}

// removeTable deletes bridge's table; gone already is fine.
func removeTable(bridge string) error {
	c, err := nftables.New()
	if err != nil {
		return err
	}
	t := agentTable(bridge)
	c.DelTable(t)
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("removing nftables table %s: %w", t.Name, err)
	}
	return nil
}

// intervalElements are the elements of an interval set of IPv4 prefixes as
// nft makes them: overlapping and adjacent ranges merged, each range its
// first address and the address after its last (an interval end), and an
// interval end at 0.0.0.0 unless a range starts there.
func intervalElements(prefixes []netip.Prefix) []nftables.SetElement {
	type span struct{ first, last uint32 }
	var spans []span
	for _, p := range prefixes {
		p = p.Masked()
		first := binary.BigEndian.Uint32(p.Addr().AsSlice())
		spans = append(spans, span{first, first | ^binary.BigEndian.Uint32(mask4(p.Bits()))})
	}
	slices.SortFunc(spans, func(a, b span) int { return cmp.Compare(a.first, b.first) })
	var merged []span
	for _, s := range spans {
		if n := len(merged); n > 0 && uint64(s.first) <= uint64(merged[n-1].last)+1 {
			merged[n-1].last = max(merged[n-1].last, s.last)
			continue
		}
		merged = append(merged, s)
	}
	var elems []nftables.SetElement
	if len(merged) > 0 && merged[0].first != 0 {
		elems = append(elems, nftables.SetElement{Key: make([]byte, 4), IntervalEnd: true})
	}
	for _, s := range merged {
		elems = append(elems, nftables.SetElement{Key: binary.BigEndian.AppendUint32(nil, s.first)})
		if s.last != ^uint32(0) {
			elems = append(elems, nftables.SetElement{Key: binary.BigEndian.AppendUint32(nil, s.last+1), IntervalEnd: true})
		}
	}
	return elems
}

// mask4 is an IPv4 netmask of bits ones.
func mask4(bits int) []byte {
	m := uint32(0)
	if bits > 0 {
		m = ^uint32(0) << (32 - bits)
	}
	return binary.BigEndian.AppendUint32(nil, m)
}

// ifname is an interface name as the kernel compares it: IFNAMSIZ bytes,
// zero padded.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// setupTable installs the table and, with masquerading, turns IPv4
// forwarding on, remembering the old setting for Teardown.
func (n *Network) setupTable() error {
	nt := nodeTable{masquerade: n.cfg.Masquerade, pods: n.cfg.ClusterCIDR, services: n.cfg.ServiceCIDR, dns: n.cfg.DNSIP}
	if nt.empty() {
		return nil
	}
	if err := installTable(n.cfg.Bridge, nt); err != nil {
		return err
	}
	n.ownNFT = true
	if !nt.masquerade {
		return nil
	}
	const fwd = "/proc/sys/net/ipv4/ip_forward"
	if old, err := os.ReadFile(fwd); err == nil && strings.TrimSpace(string(old)) != "1" {
		if err := os.WriteFile(fwd, []byte("1"), 0o644); err != nil {
			return fmt.Errorf("enabling IPv4 forwarding: %w", err)
		}
		n.oldForward = strings.TrimSpace(string(old))
	}
	return nil
}
