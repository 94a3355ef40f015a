package storage

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeLog is a HistoryFunc over a slice: log[i].Revision == i+1.
type fakeLog struct {
	mu        sync.Mutex
	log       []Event
	compacted int64
}

func (f *fakeLog) add(n int) []Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	var evs []Event
	for range n {
		rev := int64(len(f.log) + 1)
		key := "/a/x"
		if rev%3 == 0 {
			key = "/b/x"
		}
		ev := Event{Type: EventPut, Revision: rev, KV: KV{Key: key, ModRevision: rev, CreateRevision: 1}}
		f.log = append(f.log, ev)
		evs = append(evs, ev)
	}
	return evs
}

func (f *fakeLog) history(prefix string, after, upTo int64, limit int) ([]Event, int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if after < f.compacted {
		return nil, after, ErrCompacted
	}
	var out []Event
	for n := 0; n < limit && after < upTo; n++ {
		ev := f.log[after]
		after++
		if strings.HasPrefix(ev.KV.Key, prefix) {
			out = append(out, ev)
		}
	}
	return out, after, nil
}

func next(t *testing.T, ch <-chan Event) (Event, bool) {
	t.Helper()
	select {
	case ev, ok := <-ch:
		return ev, ok
	case <-time.After(30 * time.Second):
		t.Fatal("timed out waiting for an event")
	}
	return Event{}, false
}

func wantRevs(t *testing.T, ch <-chan Event, from, to int64, prefix string) {
	t.Helper()
	for rev := from; rev <= to; rev++ {
		if rev%3 == 0 && prefix == "/a/" {
			continue
		}
		ev, ok := next(t, ch)
		if !ok || ev.Revision != rev {
			t.Fatalf("got revision %d (open %t), want %d", ev.Revision, ok, rev)
		}
	}
}

// Replays longer than one history chunk continue up to the registration
// point, then live events follow without gap or duplicate.
func TestBroadcasterLongReplay(t *testing.T) {
	f := &fakeLog{}
	b := NewBroadcaster(0, 0, f.history)
	defer b.Close()
	b.Publish(f.add(3*historyChunk + 7)...)
	for _, prefix := range []string{"", "/a/"} {
		ch, err := b.Watch(t.Context(), prefix, 10)
		if err != nil {
			t.Fatal(err)
		}
		b.Publish(f.add(5)...)
		wantRevs(t, ch, 11, int64(len(f.log)), prefix)
	}
}

// A backend may have committed a revision it has not published yet; a watch
// from it skips the published events up to it.
func TestBroadcasterWatchAheadOfPublished(t *testing.T) {
	f := &fakeLog{}
	b := NewBroadcaster(0, 0, f.history)
	defer b.Close()
	evs := f.add(10)
	b.Publish(evs[:3]...)
	ch, err := b.Watch(t.Context(), "", 6)
	if err != nil {
		t.Fatal(err)
	}
	b.Publish(evs[3:]...)
	wantRevs(t, ch, 7, 10, "")
	// Publishing a revision again never delivers it twice.
	b.Publish(evs[9])
	b.Publish(f.add(1)...)
	wantRevs(t, ch, 11, 11, "")
}

func TestBroadcasterOverflowCloses(t *testing.T) {
	f := &fakeLog{}
	b := NewBroadcaster(0, 4, f.history)
	defer b.Close()
	ch, err := b.Watch(t.Context(), "", 0)
	if err != nil {
		t.Fatal(err)
	}
	b.Publish(f.add(20)...) // never blocks
	var got []int64
	for {
		ev, ok := next(t, ch)
		if !ok {
			break
		}
		got = append(got, ev.Revision)
	}
	if len(got) == 0 || len(got) > 5 {
		t.Fatalf("overflowed watcher delivered %v", got)
	}
	for i, r := range got {
		if r != int64(i+1) {
			t.Fatalf("overflowed watcher delivered %v, want a gap-free prefix", got)
		}
	}
}

func TestBroadcasterCompacted(t *testing.T) {
	f := &fakeLog{}
	b := NewBroadcaster(0, 0, f.history)
	defer b.Close()
	b.Publish(f.add(2*historyChunk + 1)...)
	f.compacted = 5
	if _, err := b.Watch(t.Context(), "", 4); err != ErrCompacted {
		t.Fatalf("Watch below the compacted revision: %v", err)
	}
	// Compacted past the replay position while replaying: the channel
	// closes rather than skip events.
	ch, err := b.Watch(t.Context(), "", 5)
	if err != nil {
		t.Fatal(err)
	}
	ev, _ := next(t, ch)
	f.mu.Lock()
	f.compacted = 2 * historyChunk
	f.mu.Unlock()
	last := ev.Revision
	for {
		ev, ok := next(t, ch)
		if !ok {
			break
		}
		if ev.Revision != last+1 {
			t.Fatalf("gap after compaction: %d then %d", last, ev.Revision)
		}
		last = ev.Revision
	}
	if last >= int64(len(f.log)) {
		t.Fatalf("replay went on to %d across a compaction", last)
	}
}

func TestBroadcasterClose(t *testing.T) {
	f := &fakeLog{}
	b := NewBroadcaster(0, 0, f.history)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	ch, err := b.Watch(ctx, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	b.Close() // waits for the watcher goroutine
	if _, ok := next(t, ch); ok {
		t.Fatal("event after Close")
	}
	if _, err := b.Watch(ctx, "", 0); err != ErrClosed {
		t.Fatalf("Watch after Close: %v", err)
	}
	b.Publish(f.add(1)...) // no effect, no panic
	b.Close()
}
