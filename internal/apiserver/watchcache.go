package apiserver

import (
	"bytes"
	"sync"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/headway/headway/internal/storage"
)

// eventCache shares the work of a store event between the watches of one
// resource: the event's objects are decoded once, and each watch frame
// (event type, object, media type) is encoded once, then written as the
// same bytes to every watcher that wants it. Without it, 100 watchers
// decoded and encoded each event 100 times.
//
// It keeps the most recent events only (a watcher far behind the others
// decodes its own); the shared objects are never modified.
type eventCache struct {
	mu      sync.Mutex
	entries map[eventKey]*cachedEvent
	ring    []eventKey // insertion order, for eviction
	next    int
}

// eventCacheSize is how many recent events a resource keeps. Watchers
// that keep up read an event within a few events of each other; one
// further behind decodes and encodes for itself. Small, because the
// entries hold decoded objects (a pod's is ~10 KB) for every resource
// that is watched.
const eventCacheSize = 128

type eventKey struct {
	key string
	rev int64
}

type cachedEvent struct {
	curOnce, prevOnce sync.Once
	cur, prev         runtime.Object // decoded (prev: the value before, or the deleted one)
	curErr, prevErr   error

	mu     sync.Mutex // guards frames, and serialises encoding of cur and prev
	frames map[frameKey][]byte
}

type frameKey struct {
	typ       watch.EventType
	prev      bool
	mediaType string
}

func newEventCache() *eventCache {
	return &eventCache{entries: make(map[eventKey]*cachedEvent, eventCacheSize), ring: make([]eventKey, eventCacheSize)}
}

func (c *eventCache) get(ev storage.Event) *cachedEvent {
	k := eventKey{ev.KV.Key, ev.Revision}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		return e
	}
	if old := c.ring[c.next]; old.key != "" {
		delete(c.entries, old)
	}
	c.ring[c.next] = k
	c.next = (c.next + 1) % len(c.ring)
	e := &cachedEvent{}
	c.entries[k] = e
	return e
}

// sharedWatchFrame is what handleWatch writes for ev to a watcher of
// plain objects (not Tables or metadata) with selection sel: the whole
// frame, shared with other watchers; nil when the selection sees no change.
func (res *resource) sharedWatchFrame(ev storage.Event, sel selection, mediaType string) ([]byte, error) {
	e := res.events.get(ev)
	decode := func(value []byte) (runtime.Object, error) {
		return res.decodeShared(storage.KV{Key: ev.KV.Key, Value: value, ModRevision: ev.Revision})
	}
	// prev is decoded only when a watcher needs it: a delete, or an update
	// seen through a selection.
	var err error
	cur := func() runtime.Object {
		obj, cerr := e.current(res, ev)
		if cerr != nil && err == nil {
			err = cerr
		}
		return obj
	}
	prev := func() runtime.Object {
		e.prevOnce.Do(func() {
			switch {
			case ev.Type == storage.EventDelete:
				e.prev, e.prevErr = decode(ev.KV.Value)
			case ev.PrevValue != nil:
				e.prev, e.prevErr = decode(ev.PrevValue)
			}
		})
		if e.prevErr != nil && err == nil {
			err = e.prevErr
		}
		return e.prev
	}
	typ, usePrev := classifyEvent(ev, sel, cur, prev, res.matches)
	if err != nil {
		return nil, err
	}
	if typ == "" {
		return nil, nil
	}
	fk := frameKey{typ, usePrev, mediaType}
	e.mu.Lock()
	defer e.mu.Unlock()
	if b, ok := e.frames[fk]; ok {
		return b, nil
	}
	obj := e.cur
	if usePrev {
		obj = e.prev
	}
	if obj == nil {
		return nil, nil // a decode failed above
	}
	var buf bytes.Buffer
	if err := res.s.encodeWatchFrame(&buf, mediaType, typ, obj); err != nil {
		return nil, err
	}
	if e.frames == nil {
		e.frames = make(map[frameKey][]byte, 2)
	}
	e.frames[fk] = buf.Bytes()
	return buf.Bytes(), nil
}

// current is the object a put event stored, decoded once for everyone
// who asks (the watches of the resource and its object cache).
func (e *cachedEvent) current(res *resource, ev storage.Event) (runtime.Object, error) {
	e.curOnce.Do(func() {
		e.cur, e.curErr = res.decodeShared(storage.KV{Key: ev.KV.Key, Value: ev.KV.Value, ModRevision: ev.Revision})
	})
	return e.cur, e.curErr
}

// eventObject is the object a put event stored, decoded once (shared; never
// modify it).
func (res *resource) eventObject(ev storage.Event) (runtime.Object, error) {
	return res.events.get(ev).current(res, ev)
}

// classifyEvent is what a watch with selection sel sees of a change whose
// objects cur (after; unused for a delete) and prev (before, or the
// deleted object) return: the event type and whether the object to send
// is prev's; "" when the selection sees no change.
func classifyEvent(ev storage.Event, sel selection, cur, prev func() runtime.Object, matches func(selection, runtime.Object) bool) (watch.EventType, bool) {
	if ev.Type == storage.EventDelete {
		if p := prev(); p != nil && matches(sel, p) {
			return watch.Deleted, true
		}
		return "", false
	}
	c := cur()
	if c == nil {
		return "", false
	}
	curOK := matches(sel, c)
	prevOK := ev.PrevValue != nil
	if prevOK && !sel.empty() {
		p := prev()
		prevOK = p != nil && matches(sel, p)
	}
	switch {
	case curOK && (ev.Created || !prevOK):
		return watch.Added, false
	case curOK:
		return watch.Modified, false
	case prevOK:
		return watch.Deleted, true
	}
	return "", false
}
