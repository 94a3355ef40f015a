package proxy

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// The rule constructors: each returns the rule's nft text and expressions.
// Registers: 1 (= the first 32-bit register) for single values; 1, 9 and
// 10 (the next 32-bit registers) for concatenated keys.
const (
	// ipsDstNAT is the conntrack status bit of destination-translated
	// connections (IPS_DST_NAT).
	ipsDstNAT = 1 << 5

	reg1   = unix.NFT_REG_1
	reg32b = unix.NFT_REG32_01
	reg32c = unix.NFT_REG32_02
)

func r(text string, exprs ...expr.Any) rule { return rule{text: text, exprs: exprs} }

func loadSaddr(reg uint32) expr.Any {
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}
}

func loadDaddr(reg uint32) expr.Any {
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4}
}

func loadL4Proto(reg uint32) expr.Any { return &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg} }

func loadDport(reg uint32) expr.Any {
	return &expr.Payload{OperationType: expr.PayloadLoad, DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}
}

func verdict(kind expr.VerdictKind, chain string) expr.Any {
	return &expr.Verdict{Kind: kind, Chain: chain}
}

func protoNum(p corev1.Protocol) byte {
	if p == corev1.ProtocolUDP {
		return unix.IPPROTO_UDP
	}
	return unix.IPPROTO_TCP
}

// prefixMatch compares reg1 (an address) with a prefix.
func prefixMatch(p netip.Prefix, op expr.CmpOp) []expr.Any {
	p = p.Masked()
	mask := netipMask(p.Bits())
	a := p.Addr().As4()
	return []expr.Any{
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4, Mask: mask, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: op, Register: reg1, Data: a[:]},
	}
}

func netipMask(bits int) []byte {
	m := uint32(0)
	if bits > 0 {
		m = ^uint32(0) << (32 - bits)
	}
	return binary.BigEndian.AppendUint32(nil, m)
}

func rJump(chain string) rule { return r("jump "+chain, verdict(expr.VerdictJump, chain)) }

func rGoto(chain string) rule { return r("goto "+chain, verdict(expr.VerdictGoto, chain)) }

// rSaddrNotIn: ip saddr != prefix jump chain.
func rSaddrNotIn(p netip.Prefix, chain string) rule {
	ex := append([]expr.Any{loadSaddr(reg1)}, prefixMatch(p, expr.CmpOpNeq)...)
	ex = append(ex, verdict(expr.VerdictJump, chain))
	return r(fmt.Sprintf("ip saddr != %s jump %s", p.Masked(), chain), ex...)
}

// rSaddrIs: ip saddr == ip jump chain.
func rSaddrIs(ip netip.Addr, chain string) rule {
	a := ip.As4()
	return r(fmt.Sprintf("ip saddr %s jump %s", ip, chain),
		loadSaddr(reg1), &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: a[:]}, verdict(expr.VerdictJump, chain))
}

// rAffinityLookup: ip saddr @set goto chain.
func rAffinityLookup(set, chain string) rule {
	return r(fmt.Sprintf("ip saddr @%s goto %s", set, chain),
		loadSaddr(reg1), &expr.Lookup{SourceRegister: reg1, SetName: set}, verdict(expr.VerdictGoto, chain))
}

// rAffinityUpdate: update @set { ip saddr }.
func rAffinityUpdate(set string) rule {
	return r(fmt.Sprintf("update @%s { ip saddr }", set),
		loadSaddr(reg1), &expr.Dynset{SrcRegKey: reg1, SetName: set, Operation: unix.NFT_DYNSET_OP_UPDATE})
}

// rDNAT: meta l4proto <proto> dnat to ip:port.
func rDNAT(proto corev1.Protocol, ep Endpoint) rule {
	a := ep.IP.As4()
	return r(fmt.Sprintf("meta l4proto %s dnat to %s", strings.ToLower(string(proto)), ep),
		loadL4Proto(reg1), &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{protoNum(proto)}},
		&expr.Immediate{Register: reg1, Data: a[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(ep.Port)},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: reg1, RegProtoMin: 2, Specified: true})
}

// rSpread: numgen random mod N vmap { i : goto targets[i] }. The anonymous
// map is made when the rule is added (nftables.go).
func rSpread(targets []string) rule {
	var b strings.Builder
	fmt.Fprintf(&b, "numgen random mod %d vmap {", len(targets))
	for i, t := range targets {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, " %d : goto %s", i, t)
	}
	b.WriteString(" }")
	return rule{text: b.String(), spread: targets}
}

// spreadExprs builds the expressions of a spread rule around its map.
func spreadExprs(n int, set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Numgen{Register: reg1, Modulus: uint32(n), Type: unix.NFT_NG_RANDOM},
		&expr.Lookup{SourceRegister: reg1, DestRegister: 0, IsDestRegSet: true, SetName: set.Name, SetID: set.ID},
	}
}

// rVmapServiceIPs: ip daddr . meta l4proto . th dport vmap @m.
func rVmapServiceIPs(m string) rule {
	return r("ip daddr . meta l4proto . th dport vmap @"+m,
		loadDaddr(reg1), loadL4Proto(reg32b), loadDport(reg32c),
		&expr.Lookup{SourceRegister: reg1, DestRegister: 0, IsDestRegSet: true, SetName: m})
}

func fibDaddrType(op expr.CmpOp, typ uint32) []expr.Any {
	return []expr.Any{
		&expr.Fib{Register: reg1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: op, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(typ)},
	}
}

// rVmapNodePorts: fib daddr type local [ip daddr != 127.0.0.0/8] meta
// l4proto . th dport vmap @m.
func rVmapNodePorts(m string, notLoopback bool) rule {
	ex := fibDaddrType(expr.CmpOpEq, unix.RTN_LOCAL)
	text := "fib daddr type local "
	if notLoopback {
		ex = append(ex, loadDaddr(reg1))
		ex = append(ex, prefixMatch(netip.MustParsePrefix("127.0.0.0/8"), expr.CmpOpNeq)...)
		text += "ip daddr != 127.0.0.0/8 "
	}
	ex = append(ex, loadL4Proto(reg1), loadDport(reg32b),
		&expr.Lookup{SourceRegister: reg1, DestRegister: 0, IsDestRegSet: true, SetName: m})
	return r(text+"meta l4proto . th dport vmap @"+m, ex...)
}

// rCtNewJump: ct state new jump chain.
func rCtNewJump(chain string) rule {
	return r("ct state new jump "+chain,
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(expr.CtStateBitNEW), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
		verdict(expr.VerdictJump, chain))
}

// rUnroutedServiceIP: ip daddr <cidr> fib daddr type != local goto chain.
func rUnroutedServiceIP(cidr netip.Prefix, chain string) rule {
	ex := append([]expr.Any{loadDaddr(reg1)}, prefixMatch(cidr, expr.CmpOpEq)...)
	ex = append(ex, fibDaddrType(expr.CmpOpNeq, unix.RTN_LOCAL)...)
	ex = append(ex, verdict(expr.VerdictGoto, chain))
	return r(fmt.Sprintf("ip daddr %s fib daddr type != local goto %s", cidr.Masked(), chain), ex...)
}

// rMarkMasq: meta mark set meta mark | masqMark.
func rMarkMasq() rule {
	return r(fmt.Sprintf("meta mark set meta mark | 0x%x", masqMark),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^uint32(masqMark)), Xor: binaryutil.NativeEndian.PutUint32(masqMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1})
}

// rMasqMarked: masquerade packets carrying the mark, clearing it.
func rMasqMarked() rule {
	return r(fmt.Sprintf("meta mark & 0x%x == 0x%x meta mark set meta mark ^ 0x%x masquerade fully-random", masqMark, masqMark, masqMark),
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(masqMark), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(masqMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, Register: reg1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(^uint32(0)), Xor: binaryutil.NativeEndian.PutUint32(masqMark)},
		&expr.Meta{Key: expr.MetaKeyMARK, SourceRegister: true, Register: reg1},
		&expr.Masq{FullyRandom: true})
}

func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// rMasqBridgeHairpin: traffic translated to a pod that came in on the
// bridge and goes out on it is masqueraded, or the pod would answer the
// client directly, bypassing the translation.
func rMasqBridgeHairpin(bridge string) rule {
	return r(fmt.Sprintf("ct status dnat iifname %q oifname %q masquerade fully-random", bridge, bridge),
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATUS},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binaryutil.NativeEndian.PutUint32(0)},
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: ifname(bridge)},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: ifname(bridge)},
		&expr.Masq{FullyRandom: true})
}

// rRejectTCP and rRejectICMP: the reject chain.
func rRejectTCP() rule {
	return r("meta l4proto tcp reject with tcp reset",
		loadL4Proto(reg1), &expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Reject{Type: unix.NFT_REJECT_TCP_RST})
}

func rRejectICMP() rule {
	return r("reject with icmp port-unreachable", &expr.Reject{Type: unix.NFT_REJECT_ICMP_UNREACH, Code: 3})
}

// Element keys, padded to 32-bit registers as concatenations are.
func (k svcIPKey) bytes() []byte {
	a := k.IP.As4()
	b := make([]byte, 12)
	copy(b, a[:])
	b[4] = protoNum(k.Proto)
	binary.BigEndian.PutUint16(b[8:], k.Port)
	return b
}

func (k nodePortKey) bytes() []byte {
	b := make([]byte, 8)
	b[0] = protoNum(k.Proto)
	binary.BigEndian.PutUint16(b[4:], k.Port)
	return b
}
