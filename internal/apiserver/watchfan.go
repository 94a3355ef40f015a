package apiserver

import (
	"context"
	"fmt"
	"sort"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/headway/headway/internal/storage"
)

// history is the recent events of one cached resource, in revision order:
// the object cache's single store watch appends each event once, and every
// watch of the resource served from the cache reads the same events (and
// the encodings they share) from it, each at its own position. It is the
// watchers' buffer too: a watcher further behind than historySize events is
// ended (its client watches again from the last version it saw, which is
// then too old: it relists), so neither the writers nor the other watchers
// ever wait for it.
//
// A watch that resumes from a resourceVersion reads the events after it
// when the history still holds them all, as kube-apiserver's watch cache
// serves watches from its window of recent events.
type history struct {
	mu   sync.RWMutex
	size int         // events kept
	ring []histEvent // event n (counting from the load) at ring[n%size]
	next int64       // the number of events added
	// start: every event of the resource after revision start is held.
	// It is the load's revision until the first event is evicted, then the
	// revision of the last evicted event.
	start   int64
	evicted bool
	closed  bool
	wake    chan struct{} // closed (and replaced) by announce, or when the history closes
	// announced is h.next when wake was last closed: the events after it
	// are held but their watchers not woken yet (see announce).
	announced int64
}

type histEvent struct {
	ev storage.Event
	ce *cachedEvent // its decodings and encodings, shared by the watchers
}

// historySize is how many events of a resource the cache keeps for its
// watchers: the window a watch may resume from, and how far a watcher may
// fall behind (the store's per-watcher buffer before this was the same).
const historySize = 1024

// historyBatch is how many events a watcher takes at a time (one flush to
// its connection each).
const historyBatch = 256

// firstBatch is a new watcher's batch: its buffer grows to historyBatch
// only when it finds batches full (a busy resource); most watchers, idle
// ones, keep the small one (a full buffer is ~30 KB per watch).
const firstBatch = 8

func newHistory(start int64, size int) *history {
	return &history{size: size, start: start, wake: make(chan struct{})}
}

// add appends one event; never blocks on a watcher. The watchers waiting
// for it are woken by announce: the cache adds every event the store has
// ready (one commit's events, under many writers), then wakes each watcher
// once for all of them, so that each writes them to its connection in one
// go instead of one write per event.
func (h *history) add(ev storage.Event, ce *cachedEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	he := histEvent{ev: ev, ce: ce}
	if len(h.ring) < h.size {
		h.ring = append(h.ring, he)
	} else {
		i := h.next % int64(h.size)
		h.start, h.evicted = h.ring[i].ev.Revision, true
		h.ring[i] = he
	}
	h.next++
}

// announce wakes the watchers waiting for events added since the last
// announce.
func (h *history) announce() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed || h.announced == h.next {
		return
	}
	h.announced = h.next
	close(h.wake)
	h.wake = make(chan struct{})
}

// close ends every watcher of h (the resource is being reloaded).
func (h *history) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.closed {
		h.closed = true
		close(h.wake)
	}
}

// oldest is the index of the oldest event held (h.mu held).
func (h *history) oldest() int64 {
	return max(0, h.next-int64(h.size))
}

// after is the index of the first event with a revision after rev, which
// must be at least h.start.
func (h *history) after(rev int64) int64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	lo := h.oldest()
	n := int(h.next - lo)
	return lo + int64(sort.Search(n, func(i int) bool {
		return h.ring[(lo+int64(i))%int64(h.size)].ev.Revision > rev
	}))
}

// read copies into buf the events from index from on (up to len(buf)).
// With none, wake is closed when there are. gone is true when the watcher
// must end: the history closed, or the events from index from on are no
// longer all held (it fell too far behind).
func (h *history) read(from int64, buf []histEvent) (events []histEvent, wake <-chan struct{}, gone bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if h.closed || from < h.oldest() {
		return nil, nil, true
	}
	n := 0
	for i := from; i < h.next && n < len(buf); i++ {
		buf[n] = h.ring[i%int64(h.size)]
		n++
	}
	if n == 0 {
		return nil, h.wake, false
	}
	return buf[:n], nil, false
}

// cacheWatch is one watch's position in its resource's history.
type cacheWatch struct {
	hist *history
	next int64 // index of the next event to read
	buf  []histEvent
}

// read returns the next events (nil: none yet, wait on wake); gone when the
// watch must end.
func (w *cacheWatch) read() (events []histEvent, wake <-chan struct{}, gone bool) {
	if w.buf == nil {
		w.buf = make([]histEvent, firstBatch)
	}
	events, wake, gone = w.hist.read(w.next, w.buf)
	w.next += int64(len(events))
	if len(events) == len(w.buf) && len(w.buf) < historyBatch {
		// More may be waiting: take more at a time from now on.
		w.buf = make([]histEvent, min(2*len(w.buf), historyBatch))
	}
	return events, wake, gone
}

// watchCached starts a watch of rc from the cache. With initial, it
// returns the entries under prefix at the revision the watch starts from
// (at least minRev) and the events after them; else the events after
// revision minRev. ok is false when the cache cannot serve the watch (the
// caller watches the store): it has not reached minRev in time, or minRev
// is older than the cache's load. The error is a 410 Expired when minRev is
// older than the events the cache still holds (or the store compacted
// it), as kube-apiserver's watch cache answers, so the client relists.
func (c *objectCache) watchCached(ctx context.Context, rc *resCache, prefix string, minRev int64, initial bool) (entries []*cacheEntry, rev int64, w *cacheWatch, ok bool, err error) {
	cur, ok, err := c.waitLocked(ctx, rc, minRev)
	if !ok {
		return nil, 0, nil, false, err
	}
	defer c.mu.Unlock()
	h := rc.hist
	if initial {
		// Every event the history holds is at most cur: the watch reads
		// from the next one.
		h.mu.RLock()
		next := h.next
		h.mu.RUnlock()
		return rc.entriesLocked(prefix), cur, &cacheWatch{hist: h, next: next}, true, nil
	}
	h.mu.RLock()
	start, evicted := h.start, h.evicted
	h.mu.RUnlock()
	if compacted := c.s.store.CompactedRevision(); minRev < compacted {
		return nil, 0, nil, false, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", minRev, compacted))
	}
	if minRev < start {
		if !evicted {
			// Older than the cache itself: the store may still have it.
			return nil, 0, nil, false, nil
		}
		return nil, 0, nil, false, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", minRev, start))
	}
	return nil, minRev, &cacheWatch{hist: h, next: h.after(minRev)}, true, nil
}
