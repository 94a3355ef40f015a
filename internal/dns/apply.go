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
	static bool                   // the apexes: the kube-dns Service changed
	ns     map[string]bool        // namespace names
	svc    map[string]time.Time   // ns/svc → when its earliest change was made
	full   map[string]bool        // ns/svc → the Service or its namespace changed
	slices map[string][]slicePair // ns/svc → how its slices changed
	pod    map[string]time.Time   // pod record names → when the change was made
}

// slicePair is one change of a Service's slice: old nil when it came,
// new nil when it went.
type slicePair struct{ old, new *sliceInfo }

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
		ns:     map[string]bool{},
		svc:    map[string]time.Time{},
		full:   map[string]bool{},
		slices: map[string][]slicePair{},
		pod:    map[string]time.Time{},
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
		st.full[s] = true
	}
}

// foldService: the Service's names change; kube-system/kube-dns's cluster
// IPs are also the name servers of the apexes.
func (m *model) foldService(key string, ev *event, st *stale) {
	if ev.deleted {
		delete(m.svcs, key)
		delete(m.svcsByNS[ev.namespace], key)
	} else {
		m.svcs[key] = ev.svc
		if m.svcsByNS[ev.namespace] == nil {
			m.svcsByNS[ev.namespace] = map[string]bool{}
		}
		m.svcsByNS[ev.namespace][key] = true
	}
	st.service(key, ev.at)
	st.full[key] = true
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
	old := m.slices[key]
	var si *sliceInfo
	if !ev.deleted {
		si = ev.slice
	}
	if old != nil {
		delete(m.bySvc[old.service], key)
		if si == nil || si.service != old.service {
			st.service(old.service, ev.at)
			st.slices[old.service] = append(st.slices[old.service], slicePair{old: old})
		}
	}
	if si == nil {
		delete(m.slices, key)
		return
	}
	m.slices[key] = si
	if si.service != "" {
		if m.bySvc[si.service] == nil {
			m.bySvc[si.service] = map[string]*sliceInfo{}
		}
		m.bySvc[si.service][key] = si
		st.service(si.service, ev.at)
		p := slicePair{new: si}
		if old != nil && old.service == si.service {
			p.old = old
		}
		st.slices[si.service] = append(st.slices[si.service], p)
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
	if ev.deleted || ev.pod == nil {
		return
	}
	pi := *ev.pod
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

// writeService writes a Service's name: one stub node holding the
// Service and its slices (service.go), replaced whatever changed, so that
// one endpoint's change costs the Service's slice list, not its endpoints.
// The addresses whose owners changed get their PTR entries rewritten.
func (m *model) writeService(w *writer, key string, at time.Time, st *stale) {
	var mark *changeMark
	if !at.IsZero() {
		mark = &changeMark{at: at}
	}
	oldKey := m.owned[key]
	var old *node
	if oldKey != "" {
		old = w.get(oldKey)
	}
	var nw *node
	newKey := ""
	if s := m.svcs[key]; s != nil && m.ns[s.namespace] {
		base := serviceName(s.name, s.namespace, m.zone.name)
		if s.external {
			if target, ok := externalTarget(s.externalName); ok {
				nw = &node{name: base, zone: m.zone, flags: flagExists | flagHasRecords, cname: target, change: mark}
			}
		} else {
			src := svcSource{svc: s, base: base}
			for _, k := range sortedKeys(m.bySvc[key]) {
				src.slices = append(src.slices, m.bySvc[key][k])
			}
			if src.definesNames() {
				nw = newServiceStub(src, m.zone, mark)
			}
		}
		if nw != nil {
			if newKey = wireKey(base); newKey == "" {
				nw = nil
			}
		}
	}
	if oldKey != "" && oldKey != newKey {
		w.del(oldKey)
	}
	if nw != nil {
		// An ExternalName whose CNAME did not change keeps its node.
		if nw.svc != nil || old == nil || !sameRecords(old, nw) {
			w.set(newKey, nw)
		}
		m.owned[key] = newKey
	} else {
		delete(m.owned, key)
	}
	var oldSrc, newSrc *svcSource
	if old != nil && old.svc != nil {
		oldSrc = &old.svc.src
	}
	if nw != nil && nw.svc != nil {
		newSrc = &nw.svc.src
	}
	owner := newKey
	if owner == "" {
		owner = oldKey
	}
	m.writePTRs(w, owner, oldSrc, newSrc, st.slices[key], st.full[key])
}

// writePTRs adds the Service (owner, the wire key of its name) to the PTR
// entries of the addresses it now gives PTR records and removes it from
// those it no longer does. After a change of slices only, the addresses
// looked at are those served differently in a changed slice; otherwise
// every address of the Service, before and after.
func (m *model) writePTRs(w *writer, owner string, oldSrc, newSrc *svcSource, pairs []slicePair, full bool) {
	if oldSrc == nil && newSrc == nil {
		return
	}
	if !full && oldSrc != nil && newSrc != nil && oldSrc.svc == newSrc.svc {
		var cand []netip.Addr
		for _, p := range pairs {
			cand = appendServedDiff(cand, p, newSrc.svc.publishNotReady)
			if len(cand) > 16 {
				break
			}
		}
		if len(cand) <= 16 {
			for _, a := range cand {
				if was, is := oldSrc.owns(a), newSrc.owns(a); was != is {
					m.setPTROwner(w, a, owner, is)
				}
			}
			return
		}
	}
	var was, is []netip.Addr
	if oldSrc != nil {
		was = oldSrc.owned()
	}
	if newSrc != nil {
		is = newSrc.owned()
	}
	i, j := 0, 0
	for i < len(was) || j < len(is) {
		switch {
		case j == len(is) || (i < len(was) && was[i].Less(is[j])):
			m.setPTROwner(w, was[i], owner, false)
			i++
		case i == len(was) || is[j].Less(was[i]):
			m.setPTROwner(w, is[j], owner, true)
			j++
		default:
			i++
			j++
		}
	}
}

// appendServedDiff appends the addresses served in one of p's slices and
// not the other, and (when both have as many endpoints) those of the
// endpoints that changed: a superset, each looked at again by the caller.
func appendServedDiff(out []netip.Addr, p slicePair, publishNotReady bool) []netip.Addr {
	if p.old != nil && p.new != nil && p.old.fqdn == p.new.fqdn && len(p.old.endpoints) == len(p.new.endpoints) {
		if p.old.fqdn {
			return out
		}
		for i := range p.old.endpoints {
			a, b := &p.old.endpoints[i], &p.new.endpoints[i]
			sa, sb := served(a.ready, publishNotReady), served(b.ready, publishNotReady)
			if sa == sb && (!sa || slices.Equal(a.addrs, b.addrs)) {
				continue
			}
			if sa {
				out = append(out, a.addrs...)
			}
			if sb {
				out = append(out, b.addrs...)
			}
		}
		return out
	}
	a, b := servedAddrs(p.old, publishNotReady), servedAddrs(p.new, publishNotReady)
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Less(b[j])):
			out = append(out, a[i])
			i++
		case i == len(a) || b[j].Less(a[i]):
			out = append(out, b[j])
			j++
		default:
			i++
			j++
		}
	}
	return out
}

// servedAddrs are the addresses a slice has served, sorted, each once.
func servedAddrs(sl *sliceInfo, publishNotReady bool) []netip.Addr {
	if sl == nil || sl.fqdn {
		return nil
	}
	out := make([]netip.Addr, 0, len(sl.endpoints))
	for i := range sl.endpoints {
		if e := &sl.endpoints[i]; served(e.ready, publishNotReady) {
			out = append(out, e.addrs...)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return slices.Compact(out)
}

// setPTROwner adds owner to a's PTR entry, or removes it.
func (m *model) setPTROwner(w *writer, a netip.Addr, owner string, add bool) {
	var owners []string
	if e := w.getPTR(a); e != nil {
		owners = e.owners
	}
	i, found := slices.BinarySearch(owners, owner)
	if found == add {
		return
	}
	if add {
		owners = slices.Insert(slices.Clip(owners), i, owner)
	} else {
		owners = slices.Delete(slices.Clone(owners), i, i+1)
	}
	if len(owners) == 0 {
		w.delPTR(a)
		return
	}
	w.setPTR(a, &ptrEntry{owners: owners})
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
