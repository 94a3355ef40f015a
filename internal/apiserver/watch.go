package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	goruntime "runtime"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/framer"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/headway/headway/internal/storage"
)

// watchEncoder writes watch events in the negotiated format. The frames
// of the events ready for the watcher are gathered in out and handed to
// the connection in one write and one flush (flush): over HTTP/2 one
// round trip to the connection's writer, DATA frames of up to the frame
// size and one TLS write for all of them, instead of one per event.
type watchEncoder struct {
	res     *resource
	r       *http.Request
	f       outputFormat
	w       io.Writer // into out, framing each write (protobuf: the length prefix)
	out     bytes.Buffer
	resp    http.ResponseWriter
	flusher http.Flusher
	buf     bytes.Buffer

	// A client that stops reading must not hold the watch (and the events
	// queued for it) open: each write has writeTimeout to go out, then
	// the connection's write fails and the watch ends. armed is the
	// write deadline set (zero: none, while the watch is idle); wrote
	// the time of the last write.
	rc           *http.ResponseController
	writeTimeout time.Duration
	armed        time.Time
	wrote        time.Time
	dirty        bool // frames written since the last flush
}

// watchSpill is how much a batch gathers before it goes to the
// connection without waiting for the batch's end (the batch's memory is
// bounded; each write is still many events under a burst).
const watchSpill = 64 << 10

// watchKeep is the largest batch buffer an idle watch keeps; a busy one
// keeps the buffer its batches grew (at most about watchSpill) until it is
// idle, so that paced batches (watchpace.go) do not grow a new one each.
const watchKeep = 16 << 10

// arm makes sure the write about to be made has a deadline at least half
// of writeTimeout away (one deadline serves many writes).
func (e *watchEncoder) arm() {
	now := time.Now()
	e.wrote = now
	if e.armed.IsZero() || e.armed.Sub(now) < e.writeTimeout/2 {
		e.armed = now.Add(e.writeTimeout)
		_ = e.rc.SetWriteDeadline(e.armed)
	}
}

// disarm clears the deadline while the watch is idle (over HTTP/2 an
// expired deadline resets the stream even when nothing is being written).
func (e *watchEncoder) disarm() {
	if !e.armed.IsZero() {
		e.armed = time.Time{}
		_ = e.rc.SetWriteDeadline(time.Time{})
	}
}

// gathered ends a frame written into out: a batch that has grown to
// watchSpill goes to the connection now (unflushed).
func (e *watchEncoder) gathered() error {
	e.dirty = true
	if e.out.Len() < watchSpill {
		return nil
	}
	e.arm()
	return e.write()
}

// write hands what out holds to the response (armed).
func (e *watchEncoder) write() error {
	if e.out.Len() == 0 {
		return nil
	}
	_, err := e.resp.Write(e.out.Bytes())
	if e.out.Cap() > 2*watchSpill {
		e.out = bytes.Buffer{}
	} else {
		e.out.Reset()
	}
	return err
}

// shrink lets an idle watch's batch buffer go when it grew past watchKeep.
func (e *watchEncoder) shrink() {
	if e.out.Len() == 0 && e.out.Cap() > watchKeep {
		e.out = bytes.Buffer{}
	}
}

// flush sends what was written to the client: the batch in one write,
// then one flush (nothing when no frame was written).
func (e *watchEncoder) flush() error {
	if !e.dirty {
		return nil
	}
	e.dirty = false
	e.arm()
	if err := e.write(); err != nil {
		return err
	}
	if e.flusher != nil {
		return e.rc.Flush()
	}
	return nil
}

// idleFor is how long to wait before the watch counts as idle (its write
// deadline cleared): 0 when it is idle now.
func (e *watchEncoder) idleFor(now time.Time) time.Duration {
	return max(0, e.wrote.Add(e.writeTimeout/4).Sub(now))
}

func (e *watchEncoder) send(typ watch.EventType, obj runtime.Object) error {
	out := obj
	switch e.f.target {
	case targetTable:
		if typ != watch.Bookmark && typ != watch.Error {
			t, err := e.res.table(e.r, obj, false, true)
			if err != nil {
				return err
			}
			out = t
		}
	case targetPartialMetadata:
		if typ != watch.Error {
			pm, err := e.res.partialMetadata(obj, false)
			if err != nil {
				return err
			}
			out = pm
		}
	}
	if out.GetObjectKind().GroupVersionKind().Empty() {
		e.res.s.setKind(out, e.res.gvk.GroupVersion())
	}
	if err := e.res.s.encodeWatchFrame(&e.buf, e.f.mediaType, typ, out); err != nil {
		return err
	}
	if _, err := e.w.Write(e.buf.Bytes()); err != nil {
		return err
	}
	return e.gathered()
}

// sendEntryJSON writes a JSON watch event of a cached object, reusing its
// encoding.
func (e *watchEncoder) sendEntryJSON(typ watch.EventType, entry *cacheEntry) error {
	obj, err := e.res.entryJSON(entry, &e.buf)
	if err != nil {
		return err
	}
	e.buf.Reset()
	e.buf.WriteString(`{"type":"`)
	e.buf.WriteString(string(typ))
	e.buf.WriteString(`","object":`)
	e.buf.Write(obj)
	e.buf.WriteString("}\n")
	if _, err := e.w.Write(e.buf.Bytes()); err != nil {
		return err
	}
	return e.gathered()
}

// encodeWatchFrame puts into buf (emptied first) the watch event of typ
// and obj as mediaType frames it: a metav1.WatchEvent for protobuf (the
// writer adds the length prefix), {"type":…,"object":…} and a newline
// for JSON.
func (s *Server) encodeWatchFrame(buf *bytes.Buffer, mediaType string, typ watch.EventType, obj runtime.Object) error {
	buf.Reset()
	if mediaType == mediaProtobuf {
		if err := s.codecs.proto.Encode(obj, buf); err != nil {
			return err
		}
		ev := &metav1.WatchEvent{Type: string(typ), Object: runtime.RawExtension{Raw: bytes.Clone(buf.Bytes())}}
		buf.Reset()
		return s.codecs.protoRaw.Encode(ev, buf)
	}
	buf.WriteString(`{"type":"`)
	buf.WriteString(string(typ))
	buf.WriteString(`","object":`)
	if err := s.codecs.json.Encode(obj, buf); err != nil {
		return err
	}
	// The JSON encoder ends with a newline; close the envelope after it.
	buf.Truncate(len(bytes.TrimRight(buf.Bytes(), "\n")))
	buf.WriteString("}\n")
	return nil
}

// sendFrame writes a frame another watcher may have encoded already
// (protobuf frames carry their length prefix).
func (e *watchEncoder) sendFrame(frame []byte) error {
	e.out.Write(frame)
	return e.gathered()
}

// sendEntryProto writes a protobuf watch event of a cached object, reusing
// its encoding.
func (e *watchEncoder) sendEntryProto(typ watch.EventType, entry *cacheEntry) error {
	obj, err := e.res.entryProto(entry)
	if err != nil {
		return err
	}
	return e.sendFrame(protoWatchFrame(typ, obj))
}

// bookmark builds an empty object of the kind carrying only a resourceVersion.
func (res *resource) bookmark(rev int64, initialEventsEnd bool) runtime.Object {
	obj := res.reg.New()
	acc, _ := meta.Accessor(obj)
	acc.SetResourceVersion(formatRV(rev))
	if initialEventsEnd {
		acc.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
	}
	obj.GetObjectKind().SetGroupVersionKind(res.gvk)
	return obj
}

func (res *resource) handleWatch(w http.ResponseWriter, r *http.Request, info requestInfo) error {
	f, ok := negotiate(r, true)
	if !ok {
		return notAcceptable(r.Header.Get("Accept"))
	}
	if f.mediaType == mediaYAML {
		f.mediaType = mediaJSON
	}
	q := r.URL.Query()
	if info.Name != "" {
		// GET .../name?watch=1 watches one object.
		fs := "metadata.name=" + info.Name
		if cur := q.Get("fieldSelector"); cur != "" {
			fs += "," + cur
		}
		q.Set("fieldSelector", fs)
	}
	sel, err := res.parseSelection(q)
	if err != nil {
		return err
	}
	rvParam := q.Get("resourceVersion")
	match := q.Get("resourceVersionMatch")
	sendInitial, hasSendInitial := false, false
	if v := q.Get("sendInitialEvents"); v != "" {
		hasSendInitial = true
		sendInitial = v == "true" || v == "1"
	}
	bookmarks := q.Get("allowWatchBookmarks") == "true" || q.Get("allowWatchBookmarks") == "1"
	var errs field.ErrorList
	if hasSendInitial {
		if match != string(metav1.ResourceVersionMatchNotOlderThan) {
			errs = append(errs, field.Forbidden(field.NewPath("resourceVersionMatch"), "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan"))
		}
		if sendInitial && !bookmarks {
			errs = append(errs, field.Forbidden(field.NewPath("allowWatchBookmarks"), "sendInitialEvents requires setting allowWatchBookmarks to true"))
		}
	} else if match != "" {
		errs = append(errs, field.Forbidden(field.NewPath("resourceVersionMatch"), "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"))
	}
	if len(errs) > 0 {
		return invalidList(errs)
	}
	timeout := res.s.cfg.MinWatchTimeout + time.Duration(rand.Int64N(int64(res.s.cfg.MinWatchTimeout)))
	if t := q.Get("timeoutSeconds"); t != "" {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n < 0 {
			return badRequest("invalid timeoutSeconds %q", t)
		}
		if n > 0 {
			timeout = time.Duration(n) * time.Second
		}
	}

	var rv int64
	if rvParam != "" {
		if rv, err = parseRV(rvParam); err != nil {
			return err
		}
	}
	// Synthetic ADDED events for the current state: when asked for
	// (sendInitialEvents=true), and, as kube-apiserver does, for a plain
	// watch with resourceVersion unset or "0".
	initial := sendInitial || (!hasSendInitial && rv == 0)
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	if res.custom != nil {
		// The watch ends when its definition stops being served.
		defer context.AfterFunc(res.custom.ctx, cancel)()
	}
	res.s.watchers.Add(1)
	defer res.s.watchers.Done()
	res.s.openWatches.Add(1)
	defer res.s.openWatches.Add(-1)

	prefix := res.listPrefix(info.Namespace)
	var initialState listResult
	var cw *cacheWatch // the watch is fed from the object cache's events
	var werr error     // the watch cannot start: sent as an ERROR event
	var events <-chan storage.Event
	from := rv
	if initial {
		var err error
		if initialState, cw, err = res.initialState(ctx, info.Namespace, rvParam, rv, sel); err != nil {
			return err
		}
		from = initialState.rev
	} else if rc := res.s.cache.forResource(res); rc != nil {
		minRev := rv
		if minRev == 0 {
			minRev = res.s.store.Revision()
		}
		_, _, w, ok, err := res.s.cache.watchCached(ctx, rc, prefix, minRev, false)
		switch {
		case apierrors.IsResourceExpired(err):
			werr = err
		case err != nil:
			return err
		case ok:
			cw, from = w, minRev
		}
	}
	if cw == nil && werr == nil {
		if !initial && rv > 0 {
			if err := res.s.waitForRevision(ctx, rv); err != nil {
				return err
			}
		}
		if from == 0 {
			from = res.s.store.Revision()
		}
		events, werr = res.s.store.Watch(ctx, prefix, from)
	}

	ct := f.contentType()
	if f.mediaType == mediaProtobuf {
		ct = mediaProtobuf + ";stream=watch"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Transfer-Encoding", "chunked")
	w.Header().Set("Cache-Control", "no-cache, private")
	w.WriteHeader(http.StatusOK)
	enc := &watchEncoder{res: res, r: r, f: f, resp: w, rc: http.NewResponseController(w), writeTimeout: res.s.cfg.WatchWriteTimeout}
	enc.w = &enc.out
	// Whatever the server writes after the handler (the end of the body)
	// gets a fresh deadline, and a reused HTTP/1 connection none.
	defer enc.disarm()
	if fl, ok := w.(http.Flusher); ok {
		enc.flusher = fl
		fl.Flush()
	}
	if f.mediaType == mediaProtobuf {
		enc.w = framer.NewLengthDelimitedFrameWriter(&enc.out)
	}
	if werr != nil {
		var st *metav1.Status
		if errors.Is(werr, storage.ErrCompacted) {
			st = &apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", from, res.s.store.CompactedRevision())).ErrStatus
		} else {
			st = statusFor(werr)
		}
		st.SetGroupVersionKind(coreV1.WithKind("Status"))
		_ = enc.send(watch.Error, st)
		_ = enc.flush()
		return nil
	}
	// Plain objects (not Tables or metadata) are encoded once per event
	// and media type, and the frame shared by every such watcher.
	shared := f.target == targetObject && !f.pretty
	for i, obj := range initialState.items {
		var err error
		var entry *cacheEntry
		if initialState.entries != nil {
			entry = initialState.entries[i]
		}
		switch {
		case shared && f.mediaType == mediaJSON && entry != nil:
			err = enc.sendEntryJSON(watch.Added, entry)
		case shared && f.mediaType == mediaProtobuf && entry != nil:
			err = enc.sendEntryProto(watch.Added, entry)
		case initialState.entries != nil && f.target != targetObject:
			// A Table or metadata conversion may set fields of the object
			// it converts; the cache's objects are shared.
			err = enc.send(watch.Added, obj.DeepCopyObject())
		default:
			err = enc.send(watch.Added, obj)
		}
		if err != nil {
			return nil
		}
	}
	last := from
	if sendInitial {
		if err := enc.send(watch.Bookmark, res.bookmark(from, true)); err != nil {
			return nil
		}
	}
	if enc.flush() != nil {
		return nil
	}
	// Once the watch is idle, its write deadline is cleared. The timer is
	// not reset by each batch: when it fires it waits out what is left
	// since the last write, and once the watch is idle it stops until
	// the next write (idleOn).
	idle := time.NewTimer(enc.writeTimeout / 4)
	defer idle.Stop()
	idleOn := true
	written := func() {
		if !idleOn {
			idle.Reset(enc.writeTimeout / 4)
			idleOn = true
		}
	}
	var tick <-chan time.Time
	if bookmarks {
		t := time.NewTicker(res.s.cfg.BookmarkInterval)
		defer t.Stop()
		tick = t.C
	}
	// paced: the frames gathered have waited their turn to be flushed
	// (watchpace.go).
	paced := false
	var paceTimer *time.Timer
	defer func() {
		if paceTimer != nil {
			paceTimer.Stop()
		}
	}()
	for {
		var wake <-chan struct{}
		if cw != nil {
			batch, ready, gone := cw.read()
			if gone {
				// Fell too far behind, or the cache reloads: the client
				// watches again (and relists if its version is gone).
				res.s.log.Info("watch: closing a watch the cache can no longer feed (fell behind, or the resource reloads); the client watches again", "resource", res.reg.Plural, "namespace", info.Namespace, "lastResourceVersion", last)
				return nil
			}
			// Each batch goes out in one write and one flush: under a
			// burst of writes, one write to the connection per batch
			// instead of per event.
			for _, he := range batch {
				last = he.ev.Revision
				if !strings.HasPrefix(he.ev.KV.Key, prefix) {
					continue
				}
				if !res.sendCached(enc, he, sel, shared) {
					return nil
				}
			}
			if enc.dirty && !paced {
				// Under a load of flushes, wait for this watch's turn and
				// send what comes meanwhile in the same flush.
				paced = true
				if d := res.s.pace.reserve(time.Now()); d > 0 {
					if paceTimer == nil {
						paceTimer = time.NewTimer(d)
					} else {
						paceTimer.Reset(d)
					}
					select {
					case <-ctx.Done():
						return nil
					case <-paceTimer.C:
					}
					continue
				}
			}
			if len(batch) > 0 || enc.dirty {
				if enc.flush() != nil || ctx.Err() != nil {
					return nil
				}
				paced = false
				written()
				continue
			}
			wake = ready
		}
		select {
		case <-ctx.Done():
			return nil
		case now := <-idle.C:
			if d := enc.idleFor(now); d > 0 {
				idle.Reset(d)
				break
			}
			enc.disarm()
			enc.shrink()
			idleOn = false
		case <-tick:
			if err := enc.send(watch.Bookmark, res.bookmark(last, false)); err != nil {
				return nil
			}
			if enc.flush() != nil {
				return nil
			}
			written()
		case <-wake:
		case ev, ok := <-events:
			if !ok {
				return nil
			}
			for {
				last = ev.Revision
				if !res.sendEvent(enc, ev, sel, shared) {
					return nil
				}
				// Events already waiting go out in the same flush: under a
				// burst of writes, one write to the connection per batch
				// instead of per event.
				var ready, open bool
				if ev, ready, open = nextReady(events); !open {
					_ = enc.flush()
					return nil
				}
				if !ready {
					break
				}
			}
			if enc.flush() != nil {
				return nil
			}
			written()
		}
	}
}

// sendCached writes what a watch with selection sel sees of a cached event
// (shared: the frame shared between watchers of plain objects, else the
// event's shared objects, copied); false when the client is gone.
func (res *resource) sendCached(enc *watchEncoder, he histEvent, sel selection, shared bool) bool {
	if shared {
		frame, err := res.eventFrame(he.ce, he.ev, sel, enc.f.mediaType)
		if err != nil {
			res.s.log.Error("watch: decoding event failed", "resource", res.reg.Plural, "key", he.ev.KV.Key, "err", err)
			return true
		}
		return frame == nil || enc.sendFrame(frame) == nil
	}
	typ, usePrev, err := res.classifyShared(he.ce, he.ev, sel)
	if err != nil {
		res.s.log.Error("watch: decoding event failed", "resource", res.reg.Plural, "key", he.ev.KV.Key, "err", err)
		return true
	}
	if typ == "" {
		return true
	}
	obj := he.ce.cur
	if usePrev {
		obj = he.ce.prev
	}
	if obj == nil {
		return true
	}
	// A Table or metadata conversion may set fields of the object it
	// converts; the event's objects are shared.
	return enc.send(typ, obj.DeepCopyObject()) == nil
}

// nextReady returns the next event if one is ready. The store hands events
// over an unbuffered channel, so it yields once to let the store's
// goroutine offer a queued event before deciding none is ready. open is
// false when the channel is closed.
func nextReady(events <-chan storage.Event) (ev storage.Event, ready, open bool) {
	select {
	case ev, open = <-events:
		return ev, open, open
	default:
	}
	goruntime.Gosched()
	select {
	case ev, open = <-events:
		return ev, open, open
	default:
		return storage.Event{}, false, true
	}
}

// sendEvent writes what a watch with selection sel sees of ev (shared:
// the frame shared between watchers of plain objects); false when the
// client is gone.
func (res *resource) sendEvent(enc *watchEncoder, ev storage.Event, sel selection, shared bool) bool {
	var err error
	if shared {
		var frame []byte
		if frame, err = res.sharedWatchFrame(ev, sel, enc.f.mediaType); err == nil && frame != nil {
			if enc.sendFrame(frame) != nil {
				return false
			}
		}
	} else {
		var typ watch.EventType
		var obj runtime.Object
		if typ, obj, err = res.watchEvent(ev, sel); err == nil && obj != nil {
			if enc.send(typ, obj) != nil {
				return false
			}
		}
	}
	if err != nil {
		res.s.log.Error("watch: decoding event failed", "resource", res.reg.Plural, "key", ev.KV.Key, "err", err)
	}
	return true
}

// watchEvent turns a storage event into a watch event for a selection; obj
// is nil when the selection sees no change. (sharedWatchFrame is the same
// with the decoded objects and frames shared between watchers.)
func (res *resource) watchEvent(ev storage.Event, sel selection) (watch.EventType, runtime.Object, error) {
	var err error
	decode := func(value []byte) runtime.Object {
		obj, derr := res.decode(storage.KV{Key: ev.KV.Key, Value: value, ModRevision: ev.Revision})
		if derr != nil && err == nil {
			err = derr
		}
		return obj
	}
	var cur, prev runtime.Object
	typ, usePrev := classifyEvent(ev, sel,
		func() runtime.Object { cur = decode(ev.KV.Value); return cur },
		func() runtime.Object {
			if ev.Type == storage.EventDelete {
				prev = decode(ev.KV.Value)
			} else if ev.PrevValue != nil {
				prev = decode(ev.PrevValue)
			}
			return prev
		}, res.matches)
	if err != nil || typ == "" {
		return "", nil, err
	}
	if usePrev {
		return typ, prev, nil
	}
	return typ, cur, nil
}
