package dns

import (
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
)

// A Service's names in the index: one stub node under the Service's name,
// holding what they are built from (the Service and its slices, shared
// with the model, never copied). Its records and its _port._proto names
// are built the first time a query asks for them, once per published
// version of the Service; its endpoint names are looked up in per-slice
// tables, built the first time a query asks and kept with the slice, so
// that a change of one slice costs the next endpoint query that slice's
// table, not the Service's. Until then a Service costs the index one node,
// and an endpoint nothing beyond the model's record of it. An update
// replaces the stub: O(slices of the Service), whatever its number of
// endpoints.

// svcSource is what one Service's names are built from. Never modified.
type svcSource struct {
	svc    *svcInfo
	base   string       // the Service's name: <svc>.<ns>.svc.<zone>
	slices []*sliceInfo // its slices, in slice-key order
}

// svcNames are a Service's names as the index holds them.
type svcNames struct {
	src   svcSource
	zone  *zone
	stub  *node                // the index's node for the Service's name
	rec   atomic.Pointer[node] // the Service's name with its records
	ports atomic.Pointer[[]portNode]
}

// portNode is a _port._proto name of a Service.
type portNode struct {
	name, proto string
	n           *node
}

// hostTable is one slice's part of its Service's endpoint names, by
// label: the served addresses of the label labels[i] are
// addrs[start[i]:start[i+1]], in the slice's order (each with every port
// of the slice). It depends only on the slice and on whether the Service
// publishes not-ready addresses, and is kept with the slice
// (sliceInfo.hosts) for every version of the Service that has the slice.
type hostTable struct {
	publishNotReady bool
	labels          []string // sorted
	start           []int32
	addrs           []netip.Addr
	// nodes: the label's name as built for one version of the Service
	// (from this slice and the others of that version that have the
	// label), in the table of the version's first slice that has it.
	nodes []atomic.Pointer[hostNode]
}

// hostNode is an endpoint name as built for the version of its Service
// whose stub is stub.
type hostNode struct {
	stub *node
	n    *node
}

// entry is one (address, port) pair a name stands for, as CoreDNS'
// msg.Service: address records come from the addresses, SRV records from
// the ports, pointing at target.
type entry struct {
	addr   netip.Addr
	port   int32
	target string
}

// servedEp is one served address of a Service's endpoints.
type servedEp struct {
	addr     netip.Addr
	host     string // the endpoint's label
	explicit bool   // the label is its hostname
	ports    []portInfo
}

// eachServed calls f with every address of the Service's endpoints that
// DNS serves, in slice order, until f returns false.
func (src *svcSource) eachServed(f func(e servedEp) bool) {
	for _, slice := range src.slices {
		if !slice.eachServed(src.svc.publishNotReady, f) {
			return
		}
	}
}

// eachServed calls f with every address of the slice's endpoints that DNS
// serves, in order, until f returns false (then it returns false too).
func (slice *sliceInfo) eachServed(publishNotReady bool, f func(e servedEp) bool) bool {
	if slice.fqdn {
		return true
	}
	for i := range slice.endpoints {
		e := &slice.endpoints[i]
		if !served(e.ready, publishNotReady) {
			continue
		}
		for _, a := range e.addrs {
			h, explicit := endpointLabel(e.hostname, a)
			if !f(servedEp{addr: a, host: h, explicit: explicit, ports: slice.ports}) {
				return false
			}
		}
	}
	return true
}

// definesNames tells whether a (non-ExternalName) Service has names at
// all: a headless one only with served endpoints (else NXDOMAIN, as in
// CoreDNS), a ClusterIP one only with ports.
func (src *svcSource) definesNames() bool {
	if !src.svc.headless {
		return len(src.svc.ports) > 0
	}
	any := false
	src.eachServed(func(servedEp) bool { any = true; return false })
	return any
}

// owns tells whether the Service gives a the PTR record: a cluster IP of
// a ClusterIP Service, or a served endpoint address.
func (src *svcSource) owns(a netip.Addr) bool {
	if !src.svc.headless && slices.Contains(src.svc.clusterIPs, a) {
		return true
	}
	for _, sl := range src.slices {
		if sl.fqdn {
			continue
		}
		for i := range sl.endpoints {
			if e := &sl.endpoints[i]; served(e.ready, src.svc.publishNotReady) && slices.Contains(e.addrs, a) {
				return true
			}
		}
	}
	return false
}

// owned are the addresses the Service gives PTR records, sorted, each once.
func (src *svcSource) owned() []netip.Addr {
	var out []netip.Addr
	if !src.svc.headless {
		out = append(out, src.svc.clusterIPs...)
	}
	src.eachServed(func(e servedEp) bool { out = append(out, e.addr); return true })
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// ptrTargets are the names the Service gives a's PTR record: its own for
// its cluster IP, its endpoints' names for their addresses.
func (src *svcSource) ptrTargets(a netip.Addr, out []ptrTarget) []ptrTarget {
	if !src.svc.headless {
		for _, ip := range src.svc.clusterIPs {
			if ip == a {
				out = append(out, ptrTarget{name: src.base, prio: prioClusterIP})
			}
		}
	}
	src.eachServed(func(e servedEp) bool {
		if e.addr == a {
			t := ptrTarget{name: endpointName(e.host, src.base), prio: endpointPrio(e.explicit)}
			if !slices.Contains(out, t) {
				out = append(out, t)
			}
		}
		return true
	})
	return out
}

// newServiceStub is the index node of a Service that defines names
// (definesNames).
func newServiceStub(src svcSource, z *zone, change *changeMark) *node {
	sn := &svcNames{src: src, zone: z}
	n := &node{name: src.base, zone: z, flags: flagExists | flagHasRecords, svc: sn, change: change}
	sn.stub = n
	return n
}

// resolve is the node answering for n: n itself, or for a Service's stub
// the Service's name with its records.
func (n *node) resolve() *node {
	if n.svc == nil {
		return n
	}
	return n.svc.self()
}

// self is the Service's name with its records: a headless Service's
// endpoints, a ClusterIP Service's cluster IPs, for each of its ports.
func (sn *svcNames) self() *node {
	if n := sn.rec.Load(); n != nil {
		return n
	}
	return sn.build(&sn.rec, func() *node {
		s, base := sn.src.svc, sn.src.base
		var all []entry
		if s.headless {
			sn.src.eachServed(func(e servedEp) bool {
				target := endpointName(e.host, base)
				for _, p := range e.ports {
					all = append(all, entry{addr: e.addr, port: p.port, target: target})
				}
				return true
			})
		} else {
			for _, p := range s.ports {
				for _, ip := range s.clusterIPs {
					all = append(all, entry{addr: ip, port: p.port, target: base})
				}
			}
		}
		if len(all) == 0 {
			// No cluster IP allocated yet: the name exists, without
			// addresses.
			return &node{name: base, zone: sn.zone, flags: flagExists | flagHasRecords}
		}
		return entriesNode(sn.zone, base, all)
	})
}

// build publishes the node make returns in p once (concurrent builders
// agree on the first), with the stub's change mark.
func (sn *svcNames) build(p *atomic.Pointer[node], make func() *node) *node {
	n := make()
	n.change = sn.stub.change
	if !p.CompareAndSwap(nil, n) {
		return p.Load()
	}
	return n
}

// port is the Service's _<port>._<proto> name, nil when it has none;
// port and proto are the query's labels (with their underscores).
func (sn *svcNames) port(port, proto []byte) *node {
	ps := sn.ports.Load()
	if ps == nil {
		ps = sn.buildPorts()
	}
	for _, p := range *ps {
		if len(port) == len(p.name)+1 && len(proto) == len(p.proto)+1 &&
			string(port[1:]) == p.name && string(proto[1:]) == p.proto {
			return p.n
		}
	}
	return nil
}

// buildPorts builds the Service's port names: a headless Service's for
// the named ports of its endpoints' slices, a ClusterIP Service's for its
// named ports over its cluster IPs.
func (sn *svcNames) buildPorts() *[]portNode {
	s, base := sn.src.svc, sn.src.base
	var order [][2]string
	byPort := map[[2]string][]entry{}
	add := func(p portInfo, e entry) {
		if !portNamed(p) {
			return
		}
		k := [2]string{p.name, p.proto}
		if _, ok := byPort[k]; !ok {
			order = append(order, k)
		}
		byPort[k] = append(byPort[k], e)
	}
	if s.headless {
		sn.src.eachServed(func(e servedEp) bool {
			target := endpointName(e.host, base)
			for _, p := range e.ports {
				add(p, entry{addr: e.addr, port: p.port, target: target})
			}
			return true
		})
	} else {
		for _, p := range s.ports {
			for _, ip := range s.clusterIPs {
				add(p, entry{addr: ip, port: p.port, target: base})
			}
		}
	}
	ps := make([]portNode, 0, len(order))
	for _, k := range order {
		n := entriesNode(sn.zone, portName(k[0], k[1], base), byPort[k])
		n.change = sn.stub.change
		ps = append(ps, portNode{name: k[0], proto: k[1], n: n})
	}
	if !sn.ports.CompareAndSwap(nil, &ps) {
		return sn.ports.Load()
	}
	return &ps
}

// host is the endpoint name <label>.<Service's name>, nil when the
// Service has none: the entries of the label in each slice's table, in
// slice order.
func (sn *svcNames) host(label []byte) *node {
	var first *atomic.Pointer[hostNode]
	var es []entry
	var target string
	for _, sl := range sn.src.slices {
		if sl.fqdn {
			continue
		}
		t := sn.hostTableOf(sl)
		i, ok := t.find(label)
		if !ok {
			continue
		}
		if first == nil {
			first = &t.nodes[i]
			if c := first.Load(); c != nil && c.stub == sn.stub {
				return c.n
			}
			target = endpointName(t.labels[i], sn.src.base)
		}
		for _, a := range t.addrs[t.start[i]:t.start[i+1]] {
			for _, p := range sl.ports {
				es = append(es, entry{addr: a, port: p.port, target: target})
			}
		}
	}
	if first == nil {
		return nil
	}
	n := entriesNode(sn.zone, target, es)
	n.change = sn.stub.change
	first.Store(&hostNode{stub: sn.stub, n: n})
	return n
}

// find is the index of label in the table.
func (t *hostTable) find(label []byte) (int, bool) {
	i := sort.Search(len(t.labels), func(i int) bool { return t.labels[i] >= string(label) })
	return i, i < len(t.labels) && t.labels[i] == string(label)
}

// hostTableOf is the slice's table for the Service's version, built on
// first use.
func (sn *svcNames) hostTableOf(sl *sliceInfo) *hostTable {
	pnr := sn.src.svc.publishNotReady
	if t := sl.hosts.Load(); t != nil && t.publishNotReady == pnr {
		return t
	}
	t := buildHostTable(sl, pnr)
	sl.hosts.Store(t)
	return t
}

// buildHostTable builds a slice's table of endpoint names: for headless
// and ClusterIP Services alike (CoreDNS answers both), every served
// address under its endpoint's label, labels too long for DNS left out.
func buildHostTable(sl *sliceInfo, publishNotReady bool) *hostTable {
	type labeled struct {
		label string
		addr  netip.Addr
	}
	eps := make([]labeled, 0, len(sl.endpoints))
	sl.eachServed(publishNotReady, func(e servedEp) bool {
		if labelOK(e.host) {
			eps = append(eps, labeled{e.host, e.addr})
		}
		return true
	})
	slices.SortStableFunc(eps, func(a, b labeled) int { return strings.Compare(a.label, b.label) })
	t := &hostTable{publishNotReady: publishNotReady, addrs: make([]netip.Addr, len(eps))}
	for i, e := range eps {
		if i == 0 || e.label != eps[i-1].label {
			t.labels = append(t.labels, e.label)
			t.start = append(t.start, int32(i))
		}
		t.addrs[i] = e.addr
	}
	t.start = append(t.start, int32(len(eps)))
	t.nodes = make([]atomic.Pointer[hostNode], len(t.labels))
	return t
}

// ptrEntry is an address some Services give a PTR record: the wire keys of
// their names, sorted. Its record is built from their sources on first
// use, and again whenever one of them was replaced since.
type ptrEntry struct {
	owners []string
	cache  atomic.Pointer[ptrCache]
}

type ptrCache struct {
	stubs []*node // the owners' stubs the record was built from
	n     *node
}

// ptrNode is a's PTR name, nil when no Service gives a one.
func (h *Handler) ptrNode(ix *Index, a netip.Addr) *node {
	e := ix.ptr(a)
	if e == nil {
		return nil
	}
	if c := e.cache.Load(); c != nil {
		ok := true
		for i, k := range e.owners {
			if ix.getString(k) != c.stubs[i] {
				ok = false
				break
			}
		}
		if ok {
			return c.n
		}
	}
	c := &ptrCache{stubs: make([]*node, len(e.owners))}
	var all []ptrTarget
	for i, k := range e.owners {
		s := ix.getString(k)
		c.stubs[i] = s
		if s != nil && s.svc != nil {
			all = s.svc.src.ptrTargets(a, all)
		}
	}
	if len(all) == 0 {
		return nil
	}
	rev := reverseName(a)
	c.n = &node{name: rev, zone: zoneOf(h.zones, rev), flags: flagExists | flagHasRecords, ptr: ptrNames(all)}
	e.cache.Store(c)
	return c.n
}

// lookup is the node of the lower-case wire name key: one the index holds,
// or one a Service's stub or the PTR entries build.
func (h *Handler) lookup(ix *Index, key []byte) *node {
	if n := ix.get(key); n != nil {
		return n.resolve()
	}
	if len(key) < 2 {
		return nil
	}
	l0 := int(key[0])
	rest := key[1+l0:]
	if len(rest) > 1 {
		// <label>.<service>: an endpoint name.
		if p := ix.get(rest); p != nil && p.svc != nil {
			return p.svc.host(key[1 : 1+l0])
		}
		// _<port>._<proto>.<service>: a port name.
		if key[1] == '_' && rest[1] == '_' {
			l1 := int(rest[0])
			if up := rest[1+l1:]; len(up) > 1 {
				if p := ix.get(up); p != nil && p.svc != nil {
					return p.svc.port(key[1:1+l0], rest[1:1+l1])
				}
			}
		}
	}
	if a, ok := reverseAddr(key); ok {
		return h.ptrNode(ix, a)
	}
	return nil
}

// reverseAddr is the address a canonical reverse name (as reverseName
// writes it) stands for.
func reverseAddr(key []byte) (netip.Addr, bool) {
	const v4 = "\x07in-addr\x04arpa\x00"
	const v6 = "\x03ip6\x04arpa\x00"
	switch {
	case len(key) > len(v4) && string(key[len(key)-len(v4):]) == v4:
		var b [4]byte
		off := 0
		for i := 3; i >= 0; i-- {
			if off >= len(key) {
				return netip.Addr{}, false
			}
			l := int(key[off])
			if l < 1 || l > 3 || off+1+l > len(key) || (l > 1 && key[off+1] == '0') {
				return netip.Addr{}, false
			}
			v := 0
			for _, c := range key[off+1 : off+1+l] {
				if c < '0' || c > '9' {
					return netip.Addr{}, false
				}
				v = v*10 + int(c-'0')
			}
			if v > 255 {
				return netip.Addr{}, false
			}
			b[i] = byte(v)
			off += 1 + l
		}
		if off != len(key)-len(v4) {
			return netip.Addr{}, false
		}
		return netip.AddrFrom4(b), true
	case len(key) == 64+len(v6) && string(key[64:]) == v6:
		var b [16]byte
		for i := 0; i < 32; i++ {
			if key[2*i] != 1 {
				return netip.Addr{}, false
			}
			c := key[2*i+1]
			var v byte
			switch {
			case '0' <= c && c <= '9':
				v = c - '0'
			case 'a' <= c && c <= 'f':
				v = c - 'a' + 10
			default:
				return netip.Addr{}, false
			}
			// Nibbles come least significant first.
			if i%2 == 0 {
				b[15-i/2] |= v
			} else {
				b[15-i/2] |= v << 4
			}
		}
		a := netip.AddrFrom16(b)
		if a.Is4In6() {
			return netip.Addr{}, false // our addresses are unmapped
		}
		return a, true
	}
	return netip.Addr{}, false
}

// entriesNode turns entries into a node's records the way CoreDNS does:
// addresses deduplicated, one SRV per (target, port) with weight
// 100/len(entries), additional addresses per (target, address).
func entriesNode(z *zone, name string, es []entry) *node {
	n := &node{name: name, zone: z, flags: flagExists | flagHasRecords}
	weight := srvWeight(len(es))
	type tp struct {
		t string
		p int32
	}
	type ta struct {
		t string
		a netip.Addr
	}
	// Small sets (an endpoint's name) deduplicate by scanning; large
	// ones (a Service's name) through maps.
	big := len(es) > 16
	var seenSRV map[tp]bool
	var seenExtra map[ta]bool
	var seenAddr map[netip.Addr]bool
	if big {
		seenSRV, seenExtra, seenAddr = make(map[tp]bool, len(es)), make(map[ta]bool, len(es)), make(map[netip.Addr]bool, len(es))
		n.srv = make([]srvRecord, 0, len(es))
		n.extra = make([]addrRecord, 0, len(es))
	}
	for _, e := range es {
		if big {
			if !seenAddr[e.addr] {
				seenAddr[e.addr] = true
				if e.addr.Is4() {
					n.a = append(n.a, e.addr)
				} else {
					n.aaaa = append(n.aaaa, e.addr)
				}
			}
		} else if e.addr.Is4() {
			if !slices.Contains(n.a, e.addr) {
				n.a = append(n.a, e.addr)
			}
		} else if !slices.Contains(n.aaaa, e.addr) {
			n.aaaa = append(n.aaaa, e.addr)
		}
		if e.port < 0 || e.port > 65535 {
			continue
		}
		s := srvRecord{target: e.target, port: uint16(e.port), weight: weight}
		if big {
			if !seenSRV[tp{e.target, e.port}] {
				seenSRV[tp{e.target, e.port}] = true
				n.srv = append(n.srv, s)
			}
		} else if !slices.Contains(n.srv, s) {
			n.srv = append(n.srv, s)
		}
		x := addrRecord{name: e.target, addr: e.addr}
		if big {
			if !seenExtra[ta{e.target, e.addr}] {
				seenExtra[ta{e.target, e.addr}] = true
				n.extra = append(n.extra, x)
			}
		} else if !slices.Contains(n.extra, x) {
			n.extra = append(n.extra, x)
		}
	}
	return n
}
