package dns

import (
	"net/netip"
	"slices"
)

// hostNode is an endpoint name as last built, with what it was built from.
type hostNode struct {
	es []entry
	n  *node
}

// entry is one (address, port) pair a name stands for, as CoreDNS'
// msg.Service: address records come from the addresses, SRV records from
// the ports, pointing at target.
type entry struct {
	addr   netip.Addr
	port   int32
	target string
}

// serviceNodes builds every name one Service defines, and the PTR records
// it contributes.
func (m *model) serviceNodes(s *svcInfo, sl []*sliceInfo) ([]*node, map[netip.Addr][]ptrTarget) {
	base := serviceName(s.name, s.namespace, m.zone.name)
	ptrs := map[netip.Addr][]ptrTarget{}
	var nodes []*node
	if s.external {
		target, ok := externalTarget(s.externalName)
		if !ok {
			return nil, nil
		}
		return []*node{{name: base, zone: m.zone, flags: flagExists | flagHasRecords, cname: target}}, nil
	}

	// Endpoints: those served in DNS, each address under its label.
	type ep struct {
		addr     netip.Addr
		host     string
		target   string
		explicit bool
		ports    []portInfo
	}
	var eps []ep
	for _, slice := range sl {
		if slice.fqdn {
			continue
		}
		for _, e := range slice.endpoints {
			if !served(e.ready, s.publishNotReady) {
				continue
			}
			for _, a := range e.addrs {
				h, explicit := endpointLabel(e.hostname, a)
				eps = append(eps, ep{addr: a, host: h, target: endpointName(h, base), explicit: explicit, ports: slice.ports})
			}
		}
	}

	// The Service name and its _port._proto names.
	var all []entry
	byPort := map[[2]string][]entry{}
	var portOrder [][2]string
	addPort := func(p portInfo, e entry) {
		if !portNamed(p) {
			return
		}
		k := [2]string{p.name, p.proto}
		if _, ok := byPort[k]; !ok {
			portOrder = append(portOrder, k)
		}
		byPort[k] = append(byPort[k], e)
	}
	if s.headless {
		for _, e := range eps {
			for _, p := range e.ports {
				en := entry{addr: e.addr, port: p.port, target: e.target}
				all = append(all, en)
				addPort(p, en)
			}
		}
		if len(all) == 0 {
			// A headless Service without ready endpoints does not exist
			// in DNS (NXDOMAIN), as in CoreDNS.
			return nil, nil
		}
		nodes = append(nodes, m.entriesNode(base, all))
	} else {
		if len(s.ports) == 0 {
			return nil, nil
		}
		for _, p := range s.ports {
			for _, ip := range s.clusterIPs {
				en := entry{addr: ip, port: p.port, target: base}
				all = append(all, en)
				addPort(p, en)
			}
		}
		if len(all) == 0 {
			// No cluster IP allocated yet: the name exists, without
			// addresses.
			nodes = append(nodes, &node{name: base, zone: m.zone, flags: flagExists | flagHasRecords})
		} else {
			nodes = append(nodes, m.entriesNode(base, all))
		}
		for _, ip := range s.clusterIPs {
			ptrs[ip] = append(ptrs[ip], ptrTarget{name: base, prio: prioClusterIP})
		}
	}
	for _, k := range portOrder {
		nodes = append(nodes, m.entriesNode(portName(k[0], k[1], base), byPort[k]))
	}

	// Endpoint names, for headless and ClusterIP Services alike (CoreDNS
	// answers both), and their PTR records.
	byHost := make(map[string][]entry, len(eps))
	prev := m.hostNodes[s.namespace+"/"+s.name]
	hosts := make(map[string]hostNode, len(eps))
	var hostOrder []string
	for _, e := range eps {
		target := e.target
		if _, ok := byHost[e.host]; !ok {
			hostOrder = append(hostOrder, e.host)
		}
		for _, p := range e.ports {
			byHost[e.host] = append(byHost[e.host], entry{addr: e.addr, port: p.port, target: target})
		}
		prio := endpointPrio(e.explicit)
		if !slices.Contains(ptrs[e.addr], ptrTarget{name: target, prio: prio}) {
			ptrs[e.addr] = append(ptrs[e.addr], ptrTarget{name: target, prio: prio})
		}
	}
	for _, h := range hostOrder {
		if !labelOK(h) {
			continue
		}
		// An endpoint's name whose entries did not change keeps its node.
		if old, ok := prev[h]; ok && slices.Equal(old.es, byHost[h]) {
			nodes = append(nodes, old.n)
			hosts[h] = old
			continue
		}
		n := m.entriesNode(byHost[h][0].target, byHost[h])
		nodes = append(nodes, n)
		hosts[h] = hostNode{es: byHost[h], n: n}
	}
	m.hostNodes[s.namespace+"/"+s.name] = hosts
	return nodes, ptrs
}

// entriesNode turns entries into a node's records the way CoreDNS does:
// addresses deduplicated, one SRV per (target, port) with weight
// 100/len(entries), additional addresses per (target, address).
func (m *model) entriesNode(name string, es []entry) *node {
	n := &node{name: name, zone: m.zone, flags: flagExists | flagHasRecords}
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
