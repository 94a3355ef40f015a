package storage

import (
	"context"
	"errors"
	"strings"
	"sync"
)

// DefaultWatchBuffer is the number of events a watcher may fall behind the
// writers before it is closed.
const DefaultWatchBuffer = 1024

// historyChunk is how many log entries a watcher reads from the backend at a
// time while it replays history.
const historyChunk = 256

// HistoryFunc reads a backend's event log: it returns, in revision order, the
// logged events with after < Revision <= upTo whose key has the prefix,
// examining at most limit log entries. next is the last revision examined
// (next > after whenever after < upTo). ErrCompacted when after is older than
// the compacted revision.
type HistoryFunc func(prefix string, after, upTo int64, limit int) (events []Event, next int64, err error)

// Broadcaster fans events out to watchers. A backend publishes every event,
// in revision order, once the change is visible to its readers; the
// broadcaster replays history for watches that start in the past (through the
// backend's HistoryFunc) and hands each watcher live events through a bounded
// buffer, closing a watcher that falls further behind rather than blocking
// the publisher.
//
// Events are shared between watchers: their byte slices must not be modified.
type Broadcaster struct {
	history HistoryFunc
	buffer  int
	stop    chan struct{}
	wg      sync.WaitGroup

	mu       sync.Mutex
	rev      int64 // revision of the last published event
	closed   bool
	watchers map[*watcher]struct{}
}

type watcher struct {
	prefix string
	in     chan *Event
}

// NewBroadcaster returns a broadcaster whose last published revision is rev.
// buffer is the per-watcher buffer (DefaultWatchBuffer when <= 0).
func NewBroadcaster(rev int64, buffer int, history HistoryFunc) *Broadcaster {
	if buffer <= 0 {
		buffer = DefaultWatchBuffer
	}
	return &Broadcaster{
		history:  history,
		buffer:   buffer,
		stop:     make(chan struct{}),
		rev:      rev,
		watchers: make(map[*watcher]struct{}),
	}
}

// Revision returns the revision of the last published event.
func (b *Broadcaster) Revision() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rev
}

// Publish delivers events, which must be in increasing revision order and
// follow every event published before. It never blocks on a watcher.
func (b *Broadcaster) Publish(events ...Event) {
	if len(events) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	for i := range events {
		if events[i].Revision <= b.rev {
			continue // never deliver a revision twice
		}
		b.rev = events[i].Revision
		var ev *Event // one copy, shared by the watchers that want it
		for w := range b.watchers {
			if !strings.HasPrefix(events[i].KV.Key, w.prefix) {
				continue
			}
			if ev == nil {
				ev = new(Event)
				*ev = events[i]
			}
			select {
			case w.in <- ev:
			default:
				// Too far behind: drop the watcher. It delivers what it
				// has buffered, then its channel closes.
				delete(b.watchers, w)
				close(w.in)
			}
		}
	}
}

// Watch streams events for keys with the prefix after revision from
// (exclusive); 0 means from the last published revision. The backend
// validates from first (ErrFutureRevision, ErrCompacted); a from newer than
// the last published revision is accepted (the backend has committed it but
// not yet published it) and events up to it are skipped. ErrCompacted is
// returned when history starting at from is gone; ErrClosed after Close.
func (b *Broadcaster) Watch(ctx context.Context, prefix string, from int64) (<-chan Event, error) {
	if from < 0 {
		return nil, errors.New("storage: negative watch revision")
	}
	w := &watcher{prefix: prefix, in: make(chan *Event, b.buffer)}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, ErrClosed
	}
	cur := b.rev
	start := from
	if from == 0 || from < cur {
		start = cur
	}
	b.watchers[w] = struct{}{}
	b.wg.Add(1)
	b.mu.Unlock()

	// Events in (from, cur] come from the log; live events, all > cur, queue
	// in w.in meanwhile. The first chunk is read here so that ErrCompacted
	// reaches the caller.
	var first []Event
	after := start
	if from != 0 && from < cur {
		var err error
		first, after, err = b.history(prefix, from, cur, historyChunk)
		if err != nil {
			b.remove(w)
			b.wg.Done()
			return nil, err
		}
	}
	out := make(chan Event)
	go b.run(ctx, w, out, first, after, start)
	return out, nil
}

func (b *Broadcaster) run(ctx context.Context, w *watcher, out chan<- Event, pending []Event, after, start int64) {
	defer b.wg.Done()
	defer close(out)
	defer b.remove(w)
	send := func(ev Event) bool {
		select {
		case out <- ev:
			return true
		case <-ctx.Done():
		case <-b.stop:
		}
		return false
	}
	for {
		for _, ev := range pending {
			if !send(ev) {
				return
			}
		}
		if after >= start {
			break
		}
		var next int64
		var err error
		pending, next, err = b.history(w.prefix, after, start, historyChunk)
		if err != nil || next <= after {
			return // compacted while replaying (or a broken log): the caller re-lists
		}
		after = next
	}
	for {
		select {
		case ev, ok := <-w.in:
			if !ok {
				return
			}
			if ev.Revision <= start {
				continue
			}
			if !send(*ev) {
				return
			}
		case <-ctx.Done():
			return
		case <-b.stop:
			return
		}
	}
}

func (b *Broadcaster) remove(w *watcher) {
	b.mu.Lock()
	delete(b.watchers, w)
	b.mu.Unlock()
}

// Close closes every watch and waits for their goroutines to end. Later
// watches fail with ErrClosed and publishing does nothing.
func (b *Broadcaster) Close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.stop)
		clear(b.watchers)
	}
	b.mu.Unlock()
	b.wg.Wait()
}
