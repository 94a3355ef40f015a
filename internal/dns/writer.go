package dns

import (
	"maps"
	"net/netip"
	"slices"
)

// writer builds the next Index, copying a shard of the current one the
// first time the update touches it.
type writer struct {
	old, nw   *Index
	copied    [nShards]bool
	ptrCopied [nShards]bool
}

func newWriter(old *Index) *writer {
	nw := &Index{shards: old.shards, ptrs: old.ptrs, synced: old.synced, names: old.names}
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

func (w *writer) ptrShard(a netip.Addr) *ptrShard {
	i := shardOfAddr(a)
	if !w.ptrCopied[i] {
		w.ptrCopied[i] = true
		s := &ptrShard{}
		if o := w.old.ptrs[i]; o != nil {
			s.m = maps.Clone(o.m)
		} else {
			s.m = map[netip.Addr]*ptrEntry{}
		}
		w.nw.ptrs[i] = s
	}
	return w.nw.ptrs[i]
}

func (w *writer) getPTR(a netip.Addr) *ptrEntry { return w.nw.ptr(a) }

func (w *writer) setPTR(a netip.Addr, e *ptrEntry) {
	s := w.ptrShard(a)
	if _, ok := s.m[a]; !ok {
		w.nw.names++
	}
	s.m[a] = e
}

func (w *writer) delPTR(a netip.Addr) {
	if w.nw.ptr(a) == nil {
		return
	}
	delete(w.ptrShard(a).m, a)
	w.nw.names--
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
