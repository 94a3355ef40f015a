package apiserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/headway/headway/internal/storage"
)

// objectCache keeps the objects of built-in resources in memory, as
// kube-apiserver's watch cache does, to answer LISTs with
// resourceVersion=0 or resourceVersionMatch=NotOlderThan and the initial
// events of watches without reading and decoding the store.
//
// One store watch over every key feeds it. Each resource's objects are
// loaded on first use (a list of the store, then the events that arrived
// meanwhile) and then kept current from that watch. Because every store
// revision is one event, the revision of the last event applied says how
// fresh every resource's objects are: a request for "not older than N"
// waits until that revision reaches N.
//
// Cached objects are shared between requests and never modified; each
// keeps its JSON encoding once a list has needed it.
type objectCache struct {
	s *Server

	mu       sync.Mutex
	ctx      context.Context // the server's; nil until Serve starts
	running  bool            // the store watch has been started
	rev      int64           // every event up to rev has been applied
	progress chan struct{}   // closed (and replaced) when rev advances and waiting > 0
	waiting  int             // requests waiting on progress
	byPrefix map[string][]*resCache
	byRes    map[*resource]*resCache
	histSize int // events each resource keeps for its watchers (historySize)
	// unannounced: the histories events were added to since the watchers
	// were last woken (announce).
	unannounced []*history
}

// resCache is one resource's objects.
type resCache struct {
	res *resource
	gen int // load generation: a reset starts a new one

	loaded  bool
	ready   chan struct{} // closed when loaded
	pending []storage.Event
	listRev int64         // the revision the load listed at
	entries []*cacheEntry // sorted by key
	hist    *history      // the events since the load; nil until loaded
}

// cacheEntry is one stored object. Immutable but for its cached encoding.
type cacheEntry struct {
	key     string
	rev     int64
	obj     runtime.Object // nil when the stored value does not decode
	corrupt string         // the decode error's message, for the list's warning
	json    atomic.Pointer[[]byte]
	proto   atomic.Pointer[[]byte] // with the protobuf envelope
}

// cacheWaitLimit is how long a request waits for the cache to reach the
// resourceVersion it asked for, as kube-apiserver's watch cache waits
// (then 504 "Too large resource version").
const cacheWaitLimit = 3 * time.Second

// cacheFallbackAfter: when the store has reached the asked-for revision but
// the cache has not this long after, the request reads the store instead
// (a store whose revisions are not all events, such as a shared etcd).
const cacheFallbackAfter = 250 * time.Millisecond

func newObjectCache(s *Server) *objectCache {
	return &objectCache{
		s:        s,
		progress: make(chan struct{}),
		byPrefix: map[string][]*resCache{},
		byRes:    map[*resource]*resCache{},
		histSize: historySize,
	}
}

// serve enables the cache for the server's lifetime (ctx). The store
// watch starts with the first resource that needs it.
func (c *objectCache) serve(ctx context.Context) {
	c.mu.Lock()
	c.ctx = ctx
	c.mu.Unlock()
}

// cacheable says whether a resource's objects may be cached: built-in
// resources that store objects (custom resources change decoding with
// their definition).
func (res *resource) cacheable() bool {
	return res.custom == nil && res.reg.CreateOnly == nil
}

// forResource returns the resource's cache, registering it (and starting
// its load) on first use; nil when the server is not serving.
func (c *objectCache) forResource(res *resource) *resCache {
	if !res.cacheable() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ctx == nil || c.ctx.Err() != nil {
		return nil
	}
	if rc := c.byRes[res]; rc != nil {
		return rc
	}
	if !c.running {
		c.running = true
		c.rev = c.s.store.Revision()
		c.s.watchers.Add(1)
		go func() {
			defer c.s.watchers.Done()
			c.run(c.ctx, c.rev)
		}()
	}
	rc := &resCache{res: res, ready: make(chan struct{})}
	c.byRes[res] = rc
	c.byPrefix[res.prefix] = append(c.byPrefix[res.prefix], rc)
	c.loadLocked(rc)
	return rc
}

// loadLocked starts loading rc: events from now on queue in rc.pending,
// the store is listed, and the queued events newer than the list applied.
func (c *objectCache) loadLocked(rc *resCache) {
	rc.gen++
	gen := rc.gen
	if rc.loaded {
		rc.ready = make(chan struct{})
	}
	if rc.hist != nil {
		// Its watchers end (their clients watch again, from the reload).
		rc.hist.close()
	}
	rc.loaded, rc.pending, rc.entries, rc.hist = false, nil, nil, nil
	ctx := c.ctx
	c.s.watchers.Add(1)
	go func() {
		defer c.s.watchers.Done()
		backoff := 50 * time.Millisecond
		for ctx.Err() == nil {
			err := c.load(ctx, rc, gen)
			if err == nil {
				return
			}
			c.s.log.Error("object cache: listing the store failed; retrying", "resource", rc.res.reg.Plural, "err", err, "retryIn", backoff)
			select {
			case <-ctx.Done():
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}()
}

func (c *objectCache) load(ctx context.Context, rc *resCache, gen int) error {
	page, err := c.s.store.List(ctx, rc.res.prefix, storage.ListOptions{})
	if err != nil {
		return err
	}
	entries := make([]*cacheEntry, 0, len(page.Items))
	for _, kv := range page.Items {
		entries = append(entries, rc.res.newEntry(kv.Key, kv.ModRevision, kv.Value, nil))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rc.gen != gen {
		return nil // reset meanwhile; a newer load runs
	}
	rc.entries, rc.listRev = entries, page.Revision
	rc.hist = newHistory(page.Revision, c.histSize)
	for _, ev := range rc.pending {
		if ev.Revision > page.Revision {
			rc.applyLocked(ev, rc.res.events.get(ev))
		}
	}
	rc.pending = nil
	rc.loaded = true
	close(rc.ready)
	return nil
}

// newEntry decodes a stored value (obj, when given, is its decoding).
func (res *resource) newEntry(key string, rev int64, value []byte, obj runtime.Object) *cacheEntry {
	e := &cacheEntry{key: key, rev: rev, obj: obj}
	if obj == nil {
		o, err := res.decodeShared(storage.KV{Key: key, Value: value, ModRevision: rev})
		if err != nil {
			var corrupt *corruptObjectError
			if errors.As(err, &corrupt) {
				e.corrupt = corrupt.ErrStatus.Message
			} else {
				e.corrupt = err.Error()
			}
			return e
		}
		e.obj = o
	}
	return e
}

// decodeShared decodes a stored value into an object that may be shared
// (its kind is set).
func (res *resource) decodeShared(kv storage.KV) (runtime.Object, error) {
	obj, err := res.decode(kv)
	if err != nil {
		return nil, err
	}
	if obj.GetObjectKind().GroupVersionKind().Empty() {
		res.s.setKind(obj, res.gvk.GroupVersion())
	}
	return obj, nil
}

// run follows the store from revision from until ctx ends, resuming after
// the store drops the watch and reloading every resource when the
// revision to resume from has been compacted.
func (c *objectCache) run(ctx context.Context, from int64) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		events, err := c.s.store.Watch(ctx, "", from)
		if errors.Is(err, storage.ErrCompacted) {
			from = c.reset()
			continue
		}
		if err != nil {
			c.s.log.Error("object cache: watching the store failed; retrying", "from", from, "err", err, "retryIn", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		for ev := range events {
			c.apply(ev)
			// The watchers are woken at once for the first event (an
			// event alone waits for nothing). The events the store has
			// ready too (the rest of one commit's, under many writers)
			// are added before they are woken again, so that a watcher
			// writes them in one go. Only what is already waiting.
			c.announce()
			for n := 1; n < historyBatch; n++ {
				next, ready, _ := nextReady(events)
				if !ready {
					break
				}
				c.apply(next)
			}
			c.announce()
		}
		c.mu.Lock()
		from = c.rev
		c.mu.Unlock()
	}
}

// reset reloads every resource from the store's current revision, which
// it returns (to resume watching from).
func (c *objectCache) reset() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rev = c.s.store.Revision()
	for _, rc := range c.byRes {
		c.loadLocked(rc)
	}
	c.s.log.Info("object cache: the store's history was compacted past the cache; reloading", "revision", c.rev)
	return c.rev
}

// resourcePrefix is the resource part of a storage key:
// "/registry/<group>/<plural>/".
func resourcePrefix(key string) string {
	n := 0
	for i := 0; i < len(key); i++ {
		if key[i] == '/' {
			n++
			if n == 4 {
				return key[:i+1]
			}
		}
	}
	return ""
}

// apply records one store event.
func (c *objectCache) apply(ev storage.Event) {
	pfx := resourcePrefix(ev.KV.Key)
	c.mu.Lock()
	caches := slices.Clone(c.byPrefix[pfx])
	c.mu.Unlock()
	// Decode outside the lock, through the resource's event cache: the
	// watches of the resource share this decoding.
	var shared map[*resCache]*cachedEvent
	if len(caches) > 0 {
		shared = make(map[*resCache]*cachedEvent, len(caches))
		for _, rc := range caches {
			ce := rc.res.events.get(ev)
			if ev.Type == storage.EventPut {
				_, _ = ce.current(rc.res, ev)
			}
			shared[rc] = ce
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, rc := range c.byPrefix[pfx] {
		switch {
		case !rc.loaded:
			rc.pending = append(rc.pending, ev)
		case ev.Revision > rc.listRev:
			ce := shared[rc]
			if ce == nil { // registered meanwhile
				ce = rc.res.events.get(ev)
			}
			rc.applyLocked(ev, ce)
			if k := len(c.unannounced); k == 0 || c.unannounced[k-1] != rc.hist {
				c.unannounced = append(c.unannounced, rc.hist)
			}
		}
	}
	if ev.Revision > c.rev {
		c.rev = ev.Revision
		if c.waiting > 0 {
			close(c.progress)
			c.progress = make(chan struct{})
		}
	}
}

// announce wakes the watchers of the events applied since the last
// announce.
func (c *objectCache) announce() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.unannounced {
		h.announce()
	}
	clear(c.unannounced)
	c.unannounced = c.unannounced[:0]
}

// applyLocked puts or removes the event's object (ce: the event's shared
// decodings and encodings) and adds the event to the history its watchers
// read.
func (rc *resCache) applyLocked(ev storage.Event, ce *cachedEvent) {
	defer rc.hist.add(ev, ce)
	i, found := slices.BinarySearchFunc(rc.entries, ev.KV.Key, func(e *cacheEntry, k string) int { return strings.Compare(e.key, k) })
	if ev.Type == storage.EventDelete {
		if found {
			rc.entries = slices.Delete(rc.entries, i, i+1)
		}
		return
	}
	obj, _ := ce.current(rc.res, ev)
	e := rc.res.newEntry(ev.KV.Key, ev.Revision, ev.KV.Value, obj)
	if e.obj != nil {
		ce.entry.Store(e)
	}
	if found {
		rc.entries[i] = e
	} else {
		rc.entries = slices.Insert(rc.entries, i, e)
	}
}

// snapshot waits until rc is loaded and holds every change up to at least
// minRev, then returns its entries under prefix and the revision they are
// the state at. ok is false when the cache cannot answer in time (the
// caller reads the store); the error is the 504 kube-apiserver answers
// for a revision the store has not reached.
func (c *objectCache) snapshot(ctx context.Context, rc *resCache, prefix string, minRev int64) (entries []*cacheEntry, rev int64, ok bool, err error) {
	cur, ok, err := c.waitLocked(ctx, rc, minRev)
	if !ok {
		return nil, 0, false, err
	}
	defer c.mu.Unlock()
	return rc.entriesLocked(prefix), cur, true, nil
}

// entriesLocked is rc's entries under prefix (c.mu held).
func (rc *resCache) entriesLocked(prefix string) []*cacheEntry {
	lo, _ := slices.BinarySearchFunc(rc.entries, prefix, func(e *cacheEntry, k string) int { return strings.Compare(e.key, k) })
	hi := lo
	for hi < len(rc.entries) && strings.HasPrefix(rc.entries[hi].key, prefix) {
		hi++
	}
	return slices.Clone(rc.entries[lo:hi])
}

// waitLocked waits until rc is loaded and holds every change up to at
// least minRev; when ok, c.mu is held and cur is the revision rc is at.
// ok is false when the cache cannot answer in time (the caller reads the
// store); the error is the 504 kube-apiserver answers for a revision the
// store has not reached.
func (c *objectCache) waitLocked(ctx context.Context, rc *resCache, minRev int64) (cur int64, ok bool, err error) {
	deadline := time.Now().Add(cacheWaitLimit)
	var storeReached time.Time
	for {
		c.mu.Lock()
		cur = max(c.rev, rc.listRev)
		if rc.loaded && cur >= minRev {
			return cur, true, nil
		}
		progress, ready := c.progress, rc.ready
		c.waiting++
		c.mu.Unlock()
		now := time.Now()
		if c.s.store.Revision() >= minRev {
			if storeReached.IsZero() {
				storeReached = now
			} else if now.Sub(storeReached) > cacheFallbackAfter {
				c.unwait()
				return 0, false, nil
			}
		}
		if now.After(deadline) {
			c.unwait()
			if c.s.store.Revision() >= minRev {
				return 0, false, nil
			}
			return 0, false, tooLargeRV(minRev, cur)
		}
		t := time.NewTimer(min(deadline.Sub(now), cacheFallbackAfter/5))
		select {
		case <-ctx.Done():
		case <-progress:
		case <-ready:
		case <-t.C:
		}
		t.Stop()
		c.unwait()
		if ctx.Err() != nil {
			return 0, false, ctx.Err()
		}
	}
}

func (c *objectCache) unwait() {
	c.mu.Lock()
	c.waiting--
	c.mu.Unlock()
}

// lookup returns, for each stored kv, the cached entry for the same key
// and revision (nil where the cache has none), so that a list read from
// the store reuses the cached decoding and encoding.
func (c *objectCache) lookup(rc *resCache, kvs []storage.KV) []*cacheEntry {
	out := make([]*cacheEntry, len(kvs))
	c.mu.Lock()
	defer c.mu.Unlock()
	if !rc.loaded {
		return out
	}
	j := 0
	for i, kv := range kvs {
		// Both are sorted by key: walk them together.
		for j < len(rc.entries) && rc.entries[j].key < kv.Key {
			j++
		}
		if j < len(rc.entries) && rc.entries[j].key == kv.Key && rc.entries[j].rev == kv.ModRevision && rc.entries[j].obj != nil {
			out[i] = rc.entries[j]
		}
	}
	return out
}

// serveList answers a list request from the object cache when
// kube-apiserver's watch cache would (resourceVersion set and not Exact, no
// continue token, and no limit unless resourceVersion is "0", which
// ignores the limit), else from the store. The items may be shared with
// the cache: read only.
func (res *resource) serveList(ctx context.Context, ns string, q map[string][]string, sel selection) (listResult, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	rc := res.s.cache.forResource(res)
	rvParam, match, limit := get("resourceVersion"), get("resourceVersionMatch"), get("limit")
	if rc != nil && rvParam != "" && get("continue") == "" &&
		(match == "" || match == string(metav1.ResourceVersionMatchNotOlderThan)) &&
		(limit == "" || limit == "0" || rvParam == "0") {
		if rv, err := parseRV(rvParam); err == nil {
			if limit != "" {
				if n, err := strconv.ParseInt(limit, 10, 64); err != nil || n < 0 {
					return listResult{}, badRequest("invalid limit %q", limit)
				}
			}
			out, ok, err := res.listCached(ctx, rc, ns, sel, rv)
			if err != nil || ok {
				return out, err
			}
		}
	}
	return res.listStore(ctx, ns, q, sel, rc)
}

// listCached lists ns from the cache once it holds every change up to
// minRev; ok is false when the cache cannot answer (read the store).
func (res *resource) listCached(ctx context.Context, rc *resCache, ns string, sel selection, minRev int64) (listResult, bool, error) {
	entries, rev, ok, err := res.s.cache.snapshot(ctx, rc, res.listPrefix(ns), minRev)
	if err != nil || !ok {
		return listResult{}, false, err
	}
	return res.selectEntries(entries, rev, sel), true, nil
}

// selectEntries is the list of the cached entries sel selects, at rev.
func (res *resource) selectEntries(entries []*cacheEntry, rev int64, sel selection) listResult {
	out := listResult{rev: rev, items: make([]runtime.Object, 0, len(entries)), entries: make([]*cacheEntry, 0, len(entries))}
	for _, e := range entries {
		if e.obj == nil {
			out.warnings = append(out.warnings, e.corrupt)
			continue
		}
		if res.matches(sel, e.obj) {
			out.items = append(out.items, e.obj)
			out.entries = append(out.entries, e)
		}
	}
	return out
}

// initialState is the state a watch starts with (its synthetic ADDED
// events) and the revision it is at: from the cache when it can answer
// (rvParam "" needs the store's current revision, "0" any, N at least N),
// with the watch's position in the cache's events after it; else from the
// store (cw nil: the caller watches the store).
func (res *resource) initialState(ctx context.Context, ns, rvParam string, rv int64, sel selection) (out listResult, cw *cacheWatch, err error) {
	if rc := res.s.cache.forResource(res); rc != nil {
		minRev := rv
		if rvParam == "" {
			minRev = res.s.store.Revision()
		}
		entries, rev, cw, ok, err := res.s.cache.watchCached(ctx, rc, res.listPrefix(ns), minRev, true)
		if err != nil {
			return listResult{}, nil, err
		}
		if ok {
			return res.selectEntries(entries, rev, sel), cw, nil
		}
	}
	if rv > 0 {
		if err := res.s.waitForRevision(ctx, rv); err != nil {
			return listResult{}, nil, err
		}
	}
	out, err = res.list(ctx, ns, map[string][]string{}, sel)
	return out, nil, err
}

// entryJSON is the object's JSON encoding (as the JSON serializer writes
// it, without the final newline), encoded once and kept with the entry.
func (res *resource) entryJSON(e *cacheEntry, buf *bytes.Buffer) ([]byte, error) {
	if p := e.json.Load(); p != nil {
		return *p, nil
	}
	if buf == nil {
		buf = new(bytes.Buffer)
	}
	buf.Reset()
	if err := res.s.codecs.json.Encode(e.obj, buf); err != nil {
		return nil, err
	}
	b := bytes.Clone(bytes.TrimSuffix(buf.Bytes(), []byte("\n")))
	e.json.Store(&b)
	return b, nil
}

// encodeEmptyList encodes list (its metadata set) with no items, for
// writeListJSON and writeListProto to add the cached items to.
func (res *resource) encodeEmptyList(list runtime.Object, enc runtime.Encoder) (*bytes.Buffer, error) {
	if err := meta.SetList(list, []runtime.Object{}); err != nil {
		return nil, err
	}
	if list.GetObjectKind().GroupVersionKind().Empty() {
		res.s.setKind(list, coreV1)
	}
	var buf bytes.Buffer
	if err := enc.Encode(list, &buf); err != nil {
		return nil, err
	}
	return &buf, nil
}

// writeListJSON writes list (its metadata set, no items yet) with the
// result's items as JSON, byte for byte what the JSON serializer writes,
// reusing each cached object's encoding: the list's own fields are
// encoded, and the items spliced into its empty "items" array.
func (res *resource) writeListJSON(w http.ResponseWriter, list runtime.Object, result listResult) error {
	buf, err := res.encodeEmptyList(list, res.s.codecs.json)
	if err != nil {
		return err
	}
	head, ok := bytes.CutSuffix(buf.Bytes(), []byte("[]}\n"))
	if !ok {
		return fmt.Errorf("encoding %s list: unexpected JSON ending", res.reg.Plural)
	}
	writeWarnings(w, result.warnings)
	w.Header().Set("Content-Type", mediaJSON)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(head)
	bw.WriteByte('[')
	var scratch bytes.Buffer
	for i, obj := range result.items {
		if i > 0 {
			bw.WriteByte(',')
		}
		var b []byte
		var err error
		if e := result.entries[i]; e != nil {
			b, err = res.entryJSON(e, &scratch)
		} else {
			scratch.Reset()
			if err = res.s.codecs.json.Encode(obj, &scratch); err == nil {
				b = bytes.TrimSuffix(scratch.Bytes(), []byte("\n"))
			}
		}
		if err != nil {
			// The status line is out: end the body short, as a failed
			// encoder does, so that the client sees invalid JSON.
			res.s.log.Error("list: encoding an object failed", "resource", res.reg.Plural, "err", err)
			bw.Flush()
			return nil
		}
		bw.Write(b)
	}
	bw.WriteString("]}\n")
	if err := bw.Flush(); err != nil {
		res.s.log.Debug("writing response failed", "err", err)
	}
	return nil
}

// entryProto is the object's protobuf encoding (with its envelope, as the
// protobuf serializer writes it), encoded once and kept with the entry.
func (res *resource) entryProto(e *cacheEntry) ([]byte, error) {
	if p := e.proto.Load(); p != nil {
		return *p, nil
	}
	b, err := res.encodeObject(e.obj, mediaProtobuf)
	if err != nil {
		return nil, err
	}
	e.proto.Store(&b)
	return b, nil
}

// splitProtoEnvelope splits an object's protobuf encoding (the magic
// number, then a runtime.Unknown) around the object's own bytes (the
// Unknown's field 2): head ends with field 2's tag, tail is what follows
// the object's bytes.
func splitProtoEnvelope(b []byte) (head, raw, tail []byte, ok bool) {
	const magicLen = 4
	if len(b) < magicLen {
		return nil, nil, nil, false
	}
	for i := magicLen; i < len(b); {
		tag, n := binary.Uvarint(b[i:])
		if n <= 0 || tag&7 != 2 {
			return nil, nil, nil, false
		}
		l, m := binary.Uvarint(b[i+n:])
		if m <= 0 || uint64(len(b)-i-n-m) < l {
			return nil, nil, nil, false
		}
		start := i + n + m
		end := start + int(l)
		if tag>>3 == 2 {
			return b[:i+n], b[start:end], b[end:], true
		}
		i = end
	}
	return nil, nil, nil, false
}

// writeListProto is writeListJSON for protobuf: the list's own fields are
// encoded, and the items' cached encodings appended to its message (items
// are field 2 of every list, after its metadata), byte for byte what the
// protobuf serializer writes.
func (res *resource) writeListProto(w http.ResponseWriter, list runtime.Object, result listResult) error {
	buf, err := res.encodeEmptyList(list, res.s.codecs.proto)
	if err != nil {
		return err
	}
	head, listRaw, tail, ok := splitProtoEnvelope(buf.Bytes())
	if !ok {
		return fmt.Errorf("encoding %s list: unexpected protobuf envelope", res.reg.Plural)
	}
	items := make([][]byte, len(result.items))
	size := len(listRaw)
	for i, obj := range result.items {
		var b []byte
		var err error
		if e := result.entries[i]; e != nil {
			b, err = res.entryProto(e)
		} else {
			b, err = res.encodeObject(obj, mediaProtobuf)
		}
		if err != nil {
			return err
		}
		_, raw, _, ok := splitProtoEnvelope(b)
		if !ok {
			return fmt.Errorf("encoding %s list: unexpected protobuf envelope of an item", res.reg.Plural)
		}
		items[i] = raw
		size += 1 + uvarintLen(len(raw)) + len(raw)
	}
	writeWarnings(w, result.warnings)
	w.Header().Set("Content-Type", mediaProtobuf)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	bw.Write(head)
	var n [binary.MaxVarintLen64]byte
	bw.Write(binary.AppendUvarint(n[:0], uint64(size)))
	bw.Write(listRaw)
	for _, raw := range items {
		bw.WriteByte(protoField2Bytes)
		bw.Write(binary.AppendUvarint(n[:0], uint64(len(raw))))
		bw.Write(raw)
	}
	bw.Write(tail)
	if err := bw.Flush(); err != nil {
		res.s.log.Debug("writing response failed", "err", err)
	}
	return nil
}
