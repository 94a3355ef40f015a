package dns

import (
	"net/netip"
	"slices"
	"time"
)

// writeStatic writes the names that do not depend on cluster objects, and
// the apexes (which depend on the kube-dns Service).
func (m *model) writeStatic(w *writer) {
	z := m.zone
	var ns []addrRecord
	nsName := nameServerName(z.name)
	for _, ip := range m.kubeDNS {
		ns = append(ns, addrRecord{name: nsName, addr: ip})
	}
	w.set(wireKey(z.name), &node{name: z.name, zone: z, flags: flagExists | flagApex, ns: ns})
	for _, l := range []string{"svc.", "pod."} {
		w.set(wireKey(l+z.name), &node{name: l + z.name, zone: z, flags: flagExists})
	}
	w.set(wireKey(versionName(z.name)), &node{name: versionName(z.name), zone: z, txt: SchemaVersion})
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
			rns = append(rns, addrRecord{name: nameServerName(rz.name), addr: ip})
		}
		w.set(wireKey(rz.name), &node{name: rz.name, zone: rz, flags: flagExists | flagApex, ns: rns})
	}
}

// stale is what a batch of events made stale in the index.
type stale struct {
	static bool                 // the apexes: the kube-dns Service changed
	ns     map[string]bool      // namespace names
	svc    map[string]time.Time // ns/svc → when its earliest change was made
	pod    map[string]time.Time // pod record names → when the change was made
	ptr    map[netip.Addr]bool  // addresses whose PTR record changes
}

// service marks a Service's names stale, keeping the earliest change time.
func (st *stale) service(key string, at time.Time) {
	if t, ok := st.svc[key]; !ok || at.Before(t) {
		st.svc[key] = at
	}
}

// apply folds a batch of events into the model and returns the next Index:
// first every event changes the model's state and marks what it made
// stale, then the stale names are written.
func (m *model) apply(evs []event) *Index {
	st := &stale{
		ns:  map[string]bool{},
		svc: map[string]time.Time{},
		pod: map[string]time.Time{},
		ptr: map[netip.Addr]bool{},
	}
	for i := range evs {
		m.fold(&evs[i], st)
	}
	w := newWriter(m.cur)
	if st.static {
		m.writeStatic(w)
	}
	for ns := range st.ns {
		m.writeNamespace(w, ns)
	}
	for key, at := range st.svc {
		m.writeService(w, key, at, st)
	}
	for ip := range st.ptr {
		m.writePTR(w, ip)
	}
	for name, at := range st.pod {
		m.writePod(w, name, at)
	}
	m.cur = w.finish(m.synced)
	return m.cur
}

// fold applies one event to the model's state.
func (m *model) fold(ev *event, st *stale) {
	key := ev.namespace + "/" + ev.name
	switch ev.kind {
	case evSynced:
		m.synced = true
	case evNamespace:
		m.foldNamespace(ev, st)
	case evService:
		m.foldService(key, ev, st)
	case evSlice:
		m.foldSlice(key, ev, st)
	case evPod:
		if m.cfg.PodMode == PodsVerified {
			m.foldPod(key, ev, st)
		}
	}
}

// foldNamespace: a namespace's names, and every Service in it, depend on
// whether it exists.
func (m *model) foldNamespace(ev *event, st *stale) {
	if ev.deleted {
		delete(m.ns, ev.name)
	} else {
		m.ns[ev.name] = true
	}
	st.ns[ev.name] = true
	for s := range m.svcsByNS[ev.name] {
		st.service(s, ev.at)
	}
}

// foldService: the Service's names change; kube-system/kube-dns's cluster
// IPs are also the name servers of the apexes.
func (m *model) foldService(key string, ev *event, st *stale) {
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
	st.service(key, ev.at)
	if key == "kube-system/kube-dns" {
		var ips []netip.Addr
		if s := m.svcs[key]; s != nil && !s.headless && !s.external {
			ips = s.clusterIPs
		}
		if !slices.Equal(ips, m.kubeDNS) {
			m.kubeDNS = ips
			st.static = true
		}
	}
}

// foldSlice: the names of the Service the slice belonged to, and of the
// one it belongs to now, change.
func (m *model) foldSlice(key string, ev *event, st *stale) {
	if old := m.slices[key]; old != nil {
		delete(m.bySvc[old.service], key)
		st.service(old.service, ev.at)
	}
	if ev.deleted {
		delete(m.slices, key)
		return
	}
	si := toSliceInfo(ev.slice)
	m.slices[key] = si
	if si.service != "" {
		if m.bySvc[si.service] == nil {
			m.bySvc[si.service] = map[string]*sliceInfo{}
		}
		m.bySvc[si.service][key] = si
		st.service(si.service, ev.at)
	}
}

// foldPod (pod records mode verified): the pod record names of its old and
// new addresses change; a pod being deleted has none.
func (m *model) foldPod(key string, ev *event, st *stale) {
	if old, ok := m.pods[key]; ok {
		for _, a := range old.addrs {
			name := podName(a, old.namespace, m.zone.name)
			delete(m.podNames[name], key)
			st.pod[name] = ev.at
		}
		delete(m.pods, key)
	}
	if ev.deleted || ev.pod == nil || ev.pod.DeletionTimestamp != nil {
		return
	}
	pi := toPodInfo(ev.pod)
	if len(pi.addrs) == 0 {
		return
	}
	m.pods[key] = pi
	for i, a := range pi.addrs {
		name := podName(a, pi.namespace, m.zone.name)
		if m.podNames[name] == nil {
			m.podNames[name] = map[string]int{}
		}
		m.podNames[name][key] = i
		st.pod[name] = ev.at
	}
}

// writeNamespace writes or removes a namespace's names.
func (m *model) writeNamespace(w *writer, ns string) {
	for _, sub := range []string{"svc", "pod"} {
		name := namespaceName(ns, sub, m.zone.name)
		if m.ns[ns] && namespaceDefines(sub, m.cfg.PodMode) {
			w.set(wireKey(name), &node{name: name, zone: m.zone, flags: flagExists})
		} else {
			w.del(wireKey(name))
		}
	}
}

// writeService rebuilds a Service's names, then publishes only those that
// changed: a node whose records are the same stays (with its packed
// answers), so one endpoint's change touches a handful of names. Names it
// no longer defines go; the addresses whose PTR targets changed are marked
// stale.
func (m *model) writeService(w *writer, key string, at time.Time, st *stale) {
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
	m.ownPTRs(key, ptrs, st)
}

// ownPTRs records the PTR targets a Service gives each address, marking
// stale the addresses whose targets changed.
func (m *model) ownPTRs(key string, ptrs map[netip.Addr][]ptrTarget, st *stale) {
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
		st.ptr[ip] = true
	}
	for ip, targets := range ptrs {
		if ot, ok := old[ip]; ok && slices.Equal(ot, targets) {
			continue
		}
		if m.ptrs[ip] == nil {
			m.ptrs[ip] = map[string][]ptrTarget{}
		}
		m.ptrs[ip][key] = targets
		st.ptr[ip] = true
	}
	if len(ptrs) > 0 {
		m.ptrOwned[key] = ptrs
	} else {
		delete(m.ptrOwned, key)
	}
}

// writePTR writes the PTR record of ip from every Service's targets for it.
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
	n := &node{name: rev, zone: zoneOf(m.zones, rev), flags: flagExists | flagHasRecords, ptr: ptrNames(all)}
	if old := w.get(key); old != nil && sameRecords(old, n) {
		return
	}
	w.set(key, n)
}

// writePod writes the pod A/AAAA record name from the pods having its address.
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
