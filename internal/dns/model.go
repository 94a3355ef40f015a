package dns

import (
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// eventKind says which object an event is about.
type eventKind uint8

const (
	evService eventKind = iota
	evSlice
	evNamespace
	evPod
	evSynced
)

// event is one informer notification. Obj is what the informer returned and
// is never modified; for deletions only Namespace and Name matter.
type event struct {
	kind      eventKind
	deleted   bool
	namespace string
	name      string
	svc       *corev1.Service
	slice     *discoveryv1.EndpointSlice
	pod       *corev1.Pod
	at        time.Time // when the change was made (trigger time) or received
}

type portInfo struct {
	name  string // lower case
	proto string // lower case
	port  int32  // -1: the slice declares no ports
}

type svcInfo struct {
	namespace, name string
	externalName    string // lower-case FQDN for ExternalName services
	external        bool
	headless        bool
	clusterIPs      []netip.Addr
	ports           []portInfo
	publishNotReady bool
}

type epInfo struct {
	addrs    []netip.Addr
	hostname string
	ready    bool
}

type sliceInfo struct {
	service   string // ns/name of the Service it belongs to
	fqdn      bool
	ports     []portInfo
	endpoints []epInfo
}

type ptrTarget struct {
	name string
	prio uint8 // 0 cluster IP, 1 endpoint with a hostname, 2 endpoint named by its address
}

// model is the builder's mutable view of the cluster. Only the goroutine
// that applies events touches it; readers only ever see the Index it
// publishes.
type model struct {
	cfg      *Config
	ttl      uint32
	zone     *zone   // the cluster zone
	zones    []*zone // every zone, cluster zone first, then reverse zones, then fallthrough zones
	cur      *Index
	synced   bool
	kubeDNS  []netip.Addr
	ns       map[string]bool
	svcs     map[string]*svcInfo
	svcsByNS map[string]map[string]bool
	slices   map[string]*sliceInfo                 // ns/slice
	bySvc    map[string]map[string]*sliceInfo      // ns/svc → ns/slice → slice
	owned    map[string][]string                   // ns/svc → wire keys of the names it defines
	ptrOwned map[string]map[netip.Addr][]ptrTarget // ns/svc → the PTR targets it gave each address
	ptrs     map[netip.Addr]map[string][]ptrTarget
	pods     map[string]podInfo        // ns/name → pod
	podNames map[string]map[string]int // wire key → ns/pod → index of the address
	// hostNodes: per Service, its endpoint names as last built, reused
	// when their endpoints did not change.
	hostNodes map[string]map[string]hostNode
}

type podInfo struct {
	namespace string
	addrs     []netip.Addr
}

func newModel(cfg *Config) *model {
	ttl := uint32(cfg.TTL / time.Second)
	m := &model{
		cfg: cfg, ttl: ttl,
		cur:      &Index{},
		ns:       map[string]bool{},
		svcs:     map[string]*svcInfo{},
		svcsByNS: map[string]map[string]bool{},
		slices:   map[string]*sliceInfo{},
		bySvc:    map[string]map[string]*sliceInfo{},
		owned:    map[string][]string{},
		ptrOwned: map[string]map[netip.Addr][]ptrTarget{},
		ptrs:     map[netip.Addr]map[string][]ptrTarget{},
		pods:     map[string]podInfo{},
		podNames: map[string]map[string]int{},

		hostNodes: map[string]map[string]hostNode{},
	}
	m.zone = newZone(cfg.Zone, ttl, false)
	m.zones = append(m.zones, m.zone)
	seen := map[string]bool{cfg.Zone: true}
	for _, p := range cfg.ReverseCIDRs {
		name := reverseZone(p)
		if !seen[name] {
			seen[name] = true
			m.zones = append(m.zones, newZone(name, ttl, false))
		}
	}
	for _, name := range []string{"in-addr.arpa.", "ip6.arpa."} {
		if !seen[name] {
			m.zones = append(m.zones, newZone(name, ttl, true))
		}
	}
	w := newWriter(m.cur)
	m.writeStatic(w)
	m.cur = w.finish(false)
	return m
}

// zoneOf is the most specific zone containing the FQDN name, or nil.
func (m *model) zoneOf(name string) *zone {
	var best *zone
	for _, z := range m.zones {
		if name == z.name || strings.HasSuffix(name, "."+z.name) {
			if best == nil || len(z.name) > len(best.name) {
				best = z
			}
		}
	}
	return best
}

// writer builds the next Index, copying a shard of the current one the
// first time the update touches it.
type writer struct {
	old, nw *Index
	copied  [nShards]bool
}

func newWriter(old *Index) *writer {
	nw := &Index{shards: old.shards, synced: old.synced, names: old.names}
	return &writer{old: old, nw: nw}
}

func (w *writer) shard(key string) *shard {
	i := shardOfString(key)
	if !w.copied[i] {
		w.copied[i] = true
		s := &shard{}
		if o := w.old.shards[i]; o != nil {
			s.m = make(map[string]*node, len(o.m)+1)
			for k, v := range o.m {
				s.m[k] = v
			}
		} else {
			s.m = map[string]*node{}
		}
		w.nw.shards[i] = s
	}
	return w.nw.shards[i]
}

func (w *writer) set(key string, n *node) {
	s := w.shard(key)
	if _, ok := s.m[key]; !ok {
		w.nw.names++
	}
	s.m[key] = n
}

func (w *writer) del(key string) {
	if s := w.nw.shards[shardOfString(key)]; s == nil || s.m[key] == nil {
		return
	}
	s := w.shard(key)
	if _, ok := s.m[key]; ok {
		w.nw.names--
		delete(s.m, key)
	}
}

func (w *writer) get(key string) *node {
	if s := w.nw.shards[shardOfString(key)]; s != nil {
		return s.m[key]
	}
	return nil
}

// sameRecords tells whether two nodes answer every question alike.
func sameRecords(a, b *node) bool {
	if a == b {
		return true
	}
	return a.name == b.name && a.zone == b.zone && a.flags == b.flags && a.cname == b.cname && a.txt == b.txt &&
		slices.Equal(a.a, b.a) && slices.Equal(a.aaaa, b.aaaa) && slices.Equal(a.srv, b.srv) &&
		slices.Equal(a.extra, b.extra) && slices.Equal(a.ptr, b.ptr) && slices.Equal(a.ns, b.ns)
}

func (w *writer) finish(synced bool) *Index {
	w.nw.synced = synced
	return w.nw
}

// writeStatic writes the names that do not depend on cluster objects, and
// the apexes (which depend on the kube-dns Service).
func (m *model) writeStatic(w *writer) {
	z := m.zone
	var ns []addrRecord
	nsName := "ns.dns." + z.name
	for _, ip := range m.kubeDNS {
		ns = append(ns, addrRecord{name: nsName, addr: ip})
	}
	w.set(wireKey(z.name), &node{name: z.name, zone: z, flags: flagExists | flagApex, ns: ns})
	for _, l := range []string{"svc.", "pod."} {
		w.set(wireKey(l+z.name), &node{name: l + z.name, zone: z, flags: flagExists})
	}
	w.set(wireKey("dns-version."+z.name), &node{name: "dns-version." + z.name, zone: z, txt: SchemaVersion})
	nsNode := &node{name: nsName, zone: z, flags: flagExists | flagPTRNX}
	for _, ip := range m.kubeDNS {
		if ip.Is4() {
			nsNode.a = append(nsNode.a, ip)
		} else {
			nsNode.aaaa = append(nsNode.aaaa, ip)
		}
	}
	w.set(wireKey(nsName), nsNode)
	for _, rz := range m.zones[1:] {
		if rz.fallthrough_ {
			continue
		}
		var rns []addrRecord
		for _, ip := range m.kubeDNS {
			rns = append(rns, addrRecord{name: "ns.dns." + rz.name, addr: ip})
		}
		w.set(wireKey(rz.name), &node{name: rz.name, zone: rz, flags: flagExists | flagApex, ns: rns})
	}
}

// apply folds a batch of events into the model and returns the next Index.
func (m *model) apply(evs []event) *Index {
	dirtySvc := map[string]time.Time{}
	dirtyNS := map[string]bool{}
	dirtyPod := map[string]time.Time{}
	dirtyPTR := map[netip.Addr]bool{}
	static := false
	touch := func(key string, at time.Time) {
		if t, ok := dirtySvc[key]; !ok || at.Before(t) {
			dirtySvc[key] = at
		}
	}
	for i := range evs {
		ev := &evs[i]
		key := ev.namespace + "/" + ev.name
		switch ev.kind {
		case evSynced:
			m.synced = true
		case evNamespace:
			if ev.deleted {
				delete(m.ns, ev.name)
			} else {
				m.ns[ev.name] = true
			}
			dirtyNS[ev.name] = true
			for s := range m.svcsByNS[ev.name] {
				touch(s, ev.at)
			}
		case evService:
			if ev.deleted {
				delete(m.svcs, key)
				delete(m.svcsByNS[ev.namespace], key)
			} else {
				m.svcs[key] = toSvcInfo(ev.svc)
				if m.svcsByNS[ev.namespace] == nil {
					m.svcsByNS[ev.namespace] = map[string]bool{}
				}
				m.svcsByNS[ev.namespace][key] = true
			}
			touch(key, ev.at)
			if key == "kube-system/kube-dns" {
				var ips []netip.Addr
				if s := m.svcs[key]; s != nil && !s.headless && !s.external {
					ips = s.clusterIPs
				}
				if !slices.Equal(ips, m.kubeDNS) {
					m.kubeDNS = ips
					static = true
				}
			}
		case evSlice:
			if old := m.slices[key]; old != nil {
				delete(m.bySvc[old.service], key)
				touch(old.service, ev.at)
			}
			if ev.deleted {
				delete(m.slices, key)
				break
			}
			si := toSliceInfo(ev.slice)
			m.slices[key] = si
			if si.service != "" {
				if m.bySvc[si.service] == nil {
					m.bySvc[si.service] = map[string]*sliceInfo{}
				}
				m.bySvc[si.service][key] = si
				touch(si.service, ev.at)
			}
		case evPod:
			if m.cfg.PodMode != PodsVerified {
				break
			}
			if old, ok := m.pods[key]; ok {
				for _, a := range old.addrs {
					name := podName(a, old.namespace, m.zone.name)
					delete(m.podNames[name], key)
					dirtyPod[name] = ev.at
				}
				delete(m.pods, key)
			}
			if ev.deleted || ev.pod == nil || ev.pod.DeletionTimestamp != nil {
				break
			}
			pi := podInfo{namespace: ev.namespace}
			for _, s := range podIPs(ev.pod) {
				if a, err := netip.ParseAddr(s); err == nil {
					pi.addrs = append(pi.addrs, a.Unmap())
				}
			}
			if len(pi.addrs) == 0 {
				break
			}
			m.pods[key] = pi
			for i, a := range pi.addrs {
				name := podName(a, ev.namespace, m.zone.name)
				if m.podNames[name] == nil {
					m.podNames[name] = map[string]int{}
				}
				m.podNames[name][key] = i
				dirtyPod[name] = ev.at
			}
		}
	}

	w := newWriter(m.cur)
	if static {
		m.writeStatic(w)
	}
	for ns := range dirtyNS {
		for _, l := range []string{".svc.", ".pod."} {
			name := ns + l + m.zone.name
			if m.ns[ns] && (l == ".svc." || m.cfg.PodMode != PodsDisabled) {
				w.set(wireKey(name), &node{name: name, zone: m.zone, flags: flagExists})
			} else {
				w.del(wireKey(name))
			}
		}
	}
	for key, at := range dirtySvc {
		// Rebuild the Service's names, then publish only those that
		// changed: a node whose records are the same stays (with its packed
		// answers), so one endpoint's change touches a handful of names.
		var nodes []*node
		var ptrs map[netip.Addr][]ptrTarget
		if s := m.svcs[key]; s != nil && m.ns[s.namespace] {
			var sl []*sliceInfo
			for _, k := range sortedKeys(m.bySvc[key]) {
				sl = append(sl, m.bySvc[key][k])
			}
			nodes, ptrs = m.serviceNodes(s, sl)
		}
		var mark *changeMark
		if !at.IsZero() {
			mark = &changeMark{at: at}
		}
		keys := make([]string, 0, len(nodes))
		fresh := make(map[string]bool, len(nodes))
		for _, n := range nodes {
			k := wireKey(n.name)
			if k == "" || fresh[k] {
				continue
			}
			fresh[k] = true
			keys = append(keys, k)
			if old := w.get(k); old != nil && sameRecords(old, n) {
				continue
			}
			n.change = mark
			w.set(k, n)
		}
		for _, k := range m.owned[key] {
			if !fresh[k] {
				w.del(k)
			}
		}
		if len(keys) > 0 {
			m.owned[key] = keys
		} else {
			delete(m.owned, key)
			delete(m.hostNodes, key)
		}
		old := m.ptrOwned[key]
		for ip, targets := range old {
			if nt, ok := ptrs[ip]; ok && slices.Equal(nt, targets) {
				continue
			}
			if owners := m.ptrs[ip]; owners != nil {
				delete(owners, key)
				if len(owners) == 0 {
					delete(m.ptrs, ip)
				}
			}
			dirtyPTR[ip] = true
		}
		for ip, targets := range ptrs {
			if ot, ok := old[ip]; ok && slices.Equal(ot, targets) {
				continue
			}
			if m.ptrs[ip] == nil {
				m.ptrs[ip] = map[string][]ptrTarget{}
			}
			m.ptrs[ip][key] = targets
			dirtyPTR[ip] = true
		}
		if len(ptrs) > 0 {
			m.ptrOwned[key] = ptrs
		} else {
			delete(m.ptrOwned, key)
		}
	}
	for ip := range dirtyPTR {
		m.writePTR(w, ip)
	}
	for name, at := range dirtyPod {
		m.writePod(w, name, at)
	}
	m.cur = w.finish(m.synced)
	return m.cur
}

func (m *model) writePTR(w *writer, ip netip.Addr) {
	rev := reverseName(ip)
	key := wireKey(rev)
	owners := m.ptrs[ip]
	if len(owners) == 0 {
		w.del(key)
		return
	}
	var all []ptrTarget
	for _, o := range sortedKeys(owners) {
		all = append(all, owners[o]...)
	}
	sort.SliceStable(all, func(i, j int) bool {
		if all[i].prio != all[j].prio {
			return all[i].prio < all[j].prio
		}
		return all[i].name < all[j].name
	})
	n := &node{name: rev, zone: m.zoneOf(rev), flags: flagExists | flagHasRecords}
	if all[0].prio == 0 {
		// A cluster IP names its Service only (as in CoreDNS).
		n.ptr = []string{all[0].name}
	} else {
		for _, t := range all {
			if !slices.Contains(n.ptr, t.name) {
				n.ptr = append(n.ptr, t.name)
			}
		}
	}
	if old := w.get(key); old != nil && sameRecords(old, n) {
		return
	}
	w.set(key, n)
}

func (m *model) writePod(w *writer, name string, at time.Time) {
	key := wireKey(name)
	owners := m.podNames[name]
	if len(owners) == 0 {
		delete(m.podNames, name)
		w.del(key)
		return
	}
	n := &node{name: name, zone: m.zone, flags: flagExists | flagHasRecords}
	if !at.IsZero() {
		n.change = &changeMark{at: at}
	}
	for _, p := range sortedKeys(owners) {
		a := m.pods[p].addrs[owners[p]]
		if a.Is4() && !slices.Contains(n.a, a) {
			n.a = append(n.a, a)
		} else if a.Is6() && !slices.Contains(n.aaaa, a) {
			n.aaaa = append(n.aaaa, a)
		}
	}
	w.set(key, n)
}

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
	base := s.name + "." + s.namespace + ".svc." + m.zone.name
	ptrs := map[netip.Addr][]ptrTarget{}
	var nodes []*node
	if s.external {
		if s.externalName == "" {
			return nil, nil
		}
		if _, err := netip.ParseAddr(strings.TrimSuffix(s.externalName, ".")); err == nil {
			return nil, nil // CoreDNS answers nothing for an address as external name
		}
		return []*node{{name: base, zone: m.zone, flags: flagExists | flagHasRecords, cname: s.externalName}}, nil
	}

	// Endpoints: those ready (ready unset counts as ready), or all of them
	// when the Service publishes not-ready addresses.
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
			if !e.ready && !s.publishNotReady {
				continue
			}
			for _, a := range e.addrs {
				h, explicit := e.hostname, true
				if h == "" {
					h, explicit = dashed(a), false
				}
				eps = append(eps, ep{addr: a, host: h, target: h + "." + base, explicit: explicit, ports: slice.ports})
			}
		}
	}

	// The Service name and its _port._proto names.
	var all []entry
	byPort := map[[2]string][]entry{}
	var portOrder [][2]string
	addPort := func(p portInfo, e entry) {
		if p.name == "" || p.port < 0 {
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
			ptrs[ip] = append(ptrs[ip], ptrTarget{name: base, prio: 0})
		}
	}
	for _, k := range portOrder {
		nodes = append(nodes, m.entriesNode("_"+k[0]+"._"+k[1]+"."+base, byPort[k]))
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
		prio := uint8(2)
		if e.explicit {
			prio = 1
		}
		if !slices.Contains(ptrs[e.addr], ptrTarget{name: target, prio: prio}) {
			ptrs[e.addr] = append(ptrs[e.addr], ptrTarget{name: target, prio: prio})
		}
	}
	for _, h := range hostOrder {
		if len(h) > 63 {
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
	weight := uint16(math.Floor(100.0 / float64(len(es))))
	if weight == 0 {
		weight = 1
	}
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

func toSvcInfo(svc *corev1.Service) *svcInfo {
	s := &svcInfo{namespace: svc.Namespace, name: strings.ToLower(svc.Name), publishNotReady: svc.Spec.PublishNotReadyAddresses}
	if svc.Annotations["service.alpha.kubernetes.io/tolerate-unready-endpoints"] == "true" {
		s.publishNotReady = true
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		s.external = true
		if svc.Spec.ExternalName != "" {
			s.externalName = strings.ToLower(strings.TrimSuffix(svc.Spec.ExternalName, ".") + ".")
		}
		return s
	}
	ips := svc.Spec.ClusterIPs
	if len(ips) == 0 && svc.Spec.ClusterIP != "" {
		ips = []string{svc.Spec.ClusterIP}
	}
	if len(ips) > 0 && ips[0] == corev1.ClusterIPNone {
		s.headless = true
	}
	for _, ip := range ips {
		if a, err := netip.ParseAddr(ip); err == nil {
			s.clusterIPs = append(s.clusterIPs, a.Unmap())
		}
	}
	for _, p := range svc.Spec.Ports {
		proto := string(p.Protocol)
		if proto == "" {
			proto = "TCP"
		}
		s.ports = append(s.ports, portInfo{name: strings.ToLower(p.Name), proto: strings.ToLower(proto), port: p.Port})
	}
	return s
}

func toSliceInfo(es *discoveryv1.EndpointSlice) *sliceInfo {
	si := &sliceInfo{fqdn: es.AddressType == discoveryv1.AddressTypeFQDN}
	if name := es.Labels[discoveryv1.LabelServiceName]; name != "" {
		si.service = es.Namespace + "/" + name
	}
	if len(es.Ports) == 0 {
		si.ports = []portInfo{{port: -1}}
	}
	for _, p := range es.Ports {
		pi := portInfo{port: -1, proto: "tcp"}
		if p.Name != nil {
			pi.name = strings.ToLower(*p.Name)
		}
		if p.Protocol != nil {
			pi.proto = strings.ToLower(string(*p.Protocol))
		}
		if p.Port != nil {
			pi.port = *p.Port
		}
		si.ports = append(si.ports, pi)
	}
	for _, e := range es.Endpoints {
		ei := epInfo{ready: e.Conditions.Ready == nil || *e.Conditions.Ready}
		if e.Hostname != nil {
			ei.hostname = strings.ToLower(*e.Hostname)
		}
		for _, a := range e.Addresses {
			if ip, err := netip.ParseAddr(a); err == nil {
				ei.addrs = append(ei.addrs, ip.Unmap())
			}
		}
		si.endpoints = append(si.endpoints, ei)
	}
	return si
}

func podIPs(p *corev1.Pod) []string {
	var out []string
	for _, ip := range p.Status.PodIPs {
		out = append(out, ip.IP)
	}
	if len(out) == 0 && p.Status.PodIP != "" {
		out = append(out, p.Status.PodIP)
	}
	return out
}

// dashed is the CoreDNS name of an address: 198-18-0-5, fd00--5.
func dashed(a netip.Addr) string {
	s := a.String()
	if a.Is4() {
		return strings.ReplaceAll(s, ".", "-")
	}
	s = strings.ReplaceAll(s, ":", "-")
	if strings.HasSuffix(s, "-") {
		s += "0"
	}
	return s
}

// podName is the pod record name of an address in a namespace.
func podName(a netip.Addr, ns, zone string) string {
	s := a.String()
	if a.Is4() {
		s = strings.ReplaceAll(s, ".", "-")
	} else {
		s = strings.ReplaceAll(s, ":", "-")
	}
	return s + "." + ns + ".pod." + zone
}

// podAddr parses the first label of a pod record name as CoreDNS does.
func podAddr(label string) (netip.Addr, bool) {
	var s string
	if strings.Count(label, "-") == 3 && !strings.Contains(label, "--") {
		s = strings.ReplaceAll(label, "-", ".")
	} else {
		s = strings.ReplaceAll(label, "-", ":")
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a, true
}

// reverseName is the in-addr.arpa./ip6.arpa. name of an address.
func reverseName(a netip.Addr) string {
	var b strings.Builder
	if a.Is4() {
		v := a.As4()
		for i := 3; i >= 0; i-- {
			b.WriteString(itoa(int(v[i])))
			b.WriteByte('.')
		}
		b.WriteString("in-addr.arpa.")
		return b.String()
	}
	v := a.As16()
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b.WriteByte(hex[v[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[v[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa.")
	return b.String()
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
