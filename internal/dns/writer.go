package dns

import "slices"

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
