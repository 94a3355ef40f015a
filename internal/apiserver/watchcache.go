package apiserver

import (
	"bytes"
	"encoding/binary"
	"sync"
	"sync/atomic"

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

	// entry is the object cache's entry for cur, when the cache applied
	// the event: the two share cur's encodings.
	entry atomic.Pointer[cacheEntry]

	mu     sync.Mutex // guards objs and frames, and serialises encoding
	objs   [4][]byte  // cur, prev; JSON then protobuf: see eventObjectEncoding
	frames map[frameKey][]byte
}

type frameKey struct {
	typ       watch.EventType
	prev      bool
	mediaType string
}

func newEventCache() *eventCache {
	return &eventCache{entries: make(map[eventKey]*cachedEvent)}
}

func (c *eventCache) get(ev storage.Event) *cachedEvent {
	k := eventKey{ev.KV.Key, ev.Revision}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		return e
	}
	// The ring grows to eventCacheSize as events come (a resource nobody
	// writes keeps none), then replaces its oldest.
	if len(c.ring) < eventCacheSize {
		c.ring = append(c.ring, k)
	} else {
		delete(c.entries, c.ring[c.next])
		c.ring[c.next] = k
		c.next = (c.next + 1) % len(c.ring)
	}
	e := &cachedEvent{}
	c.entries[k] = e
	return e
}

// sharedWatchFrame is what handleWatch writes for ev to a watcher of
// plain objects (not Tables or metadata) with selection sel: the whole
// frame, shared with other watchers; nil when the selection sees no change.
// Protobuf frames carry their length prefix.
func (res *resource) sharedWatchFrame(ev storage.Event, sel selection, mediaType string) ([]byte, error) {
	return res.eventFrame(res.events.get(ev), ev, sel, mediaType)
}

// eventFrame is sharedWatchFrame for the event's shared work e.
func (res *resource) eventFrame(e *cachedEvent, ev storage.Event, sel selection, mediaType string) ([]byte, error) {
	typ, usePrev, err := res.classifyShared(e, ev, sel)
	if err != nil || typ == "" {
		return nil, err
	}
	fk := frameKey{typ, usePrev, mediaType}
	e.mu.Lock()
	defer e.mu.Unlock()
	if b, ok := e.frames[fk]; ok {
		return b, nil
	}
	obj, err := res.eventObjectEncoding(e, usePrev, mediaType)
	if err != nil || obj == nil {
		return nil, err
	}
	var b []byte
	if mediaType == mediaProtobuf {
		b = protoWatchFrame(typ, obj)
	} else {
		b = make([]byte, 0, len(obj)+len(typ)+23)
		b = append(b, `{"type":"`...)
		b = append(b, typ...)
		b = append(b, `","object":`...)
		b = append(b, obj...)
		b = append(b, "}\n"...)
	}
	if e.frames == nil {
		e.frames = make(map[frameKey][]byte, 2)
	}
	e.frames[fk] = b
	return b, nil
}

// classifyShared is what a watch with selection sel sees of ev, from the
// event's shared decodings (see classifyEvent).
func (res *resource) classifyShared(e *cachedEvent, ev storage.Event, sel selection) (watch.EventType, bool, error) {
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
		obj, perr := e.previous(res, ev)
		if perr != nil && err == nil {
			err = perr
		}
		return obj
	}
	typ, usePrev := classifyEvent(ev, sel, cur, prev, res.matches)
	if err != nil {
		return "", false, err
	}
	return typ, usePrev, nil
}

// previous is the object before a change (the deleted one for a delete),
// decoded once; nil for a create.
func (e *cachedEvent) previous(res *resource, ev storage.Event) (runtime.Object, error) {
	e.prevOnce.Do(func() {
		switch {
		case ev.Type == storage.EventDelete:
			e.prev, e.prevErr = res.decodeShared(storage.KV{Key: ev.KV.Key, Value: ev.KV.Value, ModRevision: ev.Revision})
		case ev.PrevValue != nil:
			e.prev, e.prevErr = res.decodeShared(storage.KV{Key: ev.KV.Key, Value: ev.PrevValue, ModRevision: ev.Revision})
		}
	})
	return e.prev, e.prevErr
}

// eventObjectEncoding is the encoding of the event's object (prev: the
// one before) in mediaType, made once per event whatever the event type
// the watchers see; e.mu is held. The object the event stored shares its
// encoding with the object cache's entry (a later list reuses it).
func (res *resource) eventObjectEncoding(e *cachedEvent, prev bool, mediaType string) ([]byte, error) {
	i := 0
	if prev {
		i = 1
	}
	if mediaType == mediaProtobuf {
		i += 2
	}
	if b := e.objs[i]; b != nil {
		return b, nil
	}
	obj := e.cur
	if prev {
		obj = e.prev
	}
	if obj == nil {
		return nil, nil // a decode failed
	}
	var b []byte
	var err error
	entry := e.entry.Load()
	switch {
	case !prev && entry != nil && entry.obj == obj && mediaType == mediaProtobuf:
		b, err = res.entryProto(entry)
	case !prev && entry != nil && entry.obj == obj:
		b, err = res.entryJSON(entry, nil)
	default:
		b, err = res.encodeObject(obj, mediaType)
	}
	if err != nil {
		return nil, err
	}
	e.objs[i] = b
	return b, nil
}

// encodeObject is obj's encoding in mediaType: JSON without the final
// newline, protobuf with its envelope.
func (res *resource) encodeObject(obj runtime.Object, mediaType string) ([]byte, error) {
	var buf bytes.Buffer
	if mediaType == mediaProtobuf {
		if err := res.s.codecs.proto.Encode(obj, &buf); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	if err := res.s.codecs.json.Encode(obj, &buf); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// protoWatchFrame is a protobuf watch frame: the length prefix, then the
// metav1.WatchEvent{Type: typ, Object: {Raw: obj}} as the raw protobuf
// serializer writes it (field 1 the type, field 2 the RawExtension with
// its raw bytes as field 1).
func protoWatchFrame(typ watch.EventType, obj []byte) []byte {
	raw := 1 + uvarintLen(len(obj)) + len(obj)
	n := 1 + uvarintLen(len(typ)) + len(typ) + 1 + uvarintLen(raw) + raw
	b := make([]byte, 4, 4+n)
	binary.BigEndian.PutUint32(b, uint32(n))
	b = append(b, protoField1Bytes)
	b = binary.AppendUvarint(b, uint64(len(typ)))
	b = append(b, typ...)
	b = append(b, protoField2Bytes)
	b = binary.AppendUvarint(b, uint64(raw))
	b = append(b, protoField1Bytes)
	b = binary.AppendUvarint(b, uint64(len(obj)))
	return append(b, obj...)
}

// Protobuf tags of length-delimited fields 1 and 2 (field<<3 | 2).
const (
	protoField1Bytes = 1<<3 | 2
	protoField2Bytes = 2<<3 | 2
)

// uvarintLen is the length of n as a protobuf varint.
func uvarintLen(n int) int {
	l := 1
	for u := uint64(n); u >= 0x80; u >>= 7 {
		l++
	}
	return l
}

// current is the object a put event stored, decoded once for everyone
// who asks (the watches of the resource and its object cache).
func (e *cachedEvent) current(res *resource, ev storage.Event) (runtime.Object, error) {
	e.curOnce.Do(func() {
		e.cur, e.curErr = res.decodeShared(storage.KV{Key: ev.KV.Key, Value: ev.KV.Value, ModRevision: ev.Revision})
	})
	return e.cur, e.curErr
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
