package storagetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/headway/headway/internal/storage"
)

// deadline bounds every wait in the suite. It is generous because the suite
// also runs under the race detector on small machines; a passing run never
// waits for it.
const deadline = 30 * time.Second

// recv returns the next event, failing if the channel closes or nothing
// arrives before the deadline.
func recv(t *testing.T, ch <-chan storage.Event) storage.Event {
	t.Helper()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed unexpectedly")
		}
		return ev
	case <-timer.C:
		t.Fatal("timed out waiting for a watch event")
	}
	panic("unreachable")
}

// recvN returns the next n events.
func recvN(t *testing.T, ch <-chan storage.Event, n int) []storage.Event {
	t.Helper()
	evs := make([]storage.Event, 0, n)
	for range n {
		evs = append(evs, recv(t, ch))
	}
	return evs
}

// drain reads the channel until it is closed and returns what it delivered.
func drain(t *testing.T, ch <-chan storage.Event) []storage.Event {
	t.Helper()
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	var evs []storage.Event
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return evs
			}
			evs = append(evs, ev)
		case <-timer.C:
			t.Fatalf("watch channel not closed before the deadline (%d events read)", len(evs))
		}
	}
}

func mustCreate(t *testing.T, s storage.Interface, key, value string) int64 {
	t.Helper()
	rev, err := s.Create(t.Context(), key, []byte(value))
	if err != nil {
		t.Fatalf("Create(%q): %v", key, err)
	}
	return rev
}

func mustUpdate(t *testing.T, s storage.Interface, key, value string, expected int64) int64 {
	t.Helper()
	rev, err := s.Update(t.Context(), key, []byte(value), expected)
	if err != nil {
		t.Fatalf("Update(%q, %d): %v", key, expected, err)
	}
	return rev
}

func mustDelete(t *testing.T, s storage.Interface, key string, expected int64) (storage.KV, int64) {
	t.Helper()
	kv, rev, err := s.Delete(t.Context(), key, expected)
	if err != nil {
		t.Fatalf("Delete(%q, %d): %v", key, expected, err)
	}
	return kv, rev
}

func mustGet(t *testing.T, s storage.Interface, key string) storage.KV {
	t.Helper()
	kv, err := s.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return kv
}

func mustList(t *testing.T, s storage.Interface, prefix string, opts storage.ListOptions) storage.ListResult {
	t.Helper()
	res, err := s.List(t.Context(), prefix, opts)
	if err != nil {
		t.Fatalf("List(%q, %+v): %v", prefix, opts, err)
	}
	return res
}

func mustWatch(t *testing.T, ctx context.Context, s storage.Interface, prefix string, from int64) <-chan storage.Event {
	t.Helper()
	ch, err := s.Watch(ctx, prefix, from)
	if err != nil {
		t.Fatalf("Watch(%q, %d): %v", prefix, from, err)
	}
	return ch
}

func wantErr(t *testing.T, what string, got, want error) {
	t.Helper()
	if !errors.Is(got, want) {
		t.Fatalf("%s: got error %v, want %v", what, got, want)
	}
}

func wantRevision(t *testing.T, s storage.Interface, want int64) {
	t.Helper()
	if got := s.Revision(); got != want {
		t.Fatalf("Revision() = %d, want %d", got, want)
	}
}

func kvString(kv storage.KV) string {
	return fmt.Sprintf("{%s %q create=%d mod=%d}", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision)
}

func kvEqual(a, b storage.KV) bool {
	return a.Key == b.Key && bytes.Equal(a.Value, b.Value) &&
		a.CreateRevision == b.CreateRevision && a.ModRevision == b.ModRevision
}

func wantKV(t *testing.T, what string, got, want storage.KV) {
	t.Helper()
	if !kvEqual(got, want) {
		t.Fatalf("%s: got %s, want %s", what, kvString(got), kvString(want))
	}
}

func wantItems(t *testing.T, what string, got, want []storage.KV) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d items %v, want %d %v", what, len(got), kvStrings(got), len(want), kvStrings(want))
	}
	for i := range got {
		if !kvEqual(got[i], want[i]) {
			t.Fatalf("%s: item %d: got %s, want %s", what, i, kvString(got[i]), kvString(want[i]))
		}
	}
}

func kvStrings(kvs []storage.KV) []string {
	out := make([]string, len(kvs))
	for i, kv := range kvs {
		out[i] = kvString(kv)
	}
	return out
}

func eventString(ev storage.Event) string {
	return fmt.Sprintf("{rev=%d %s created=%t kv=%s prev=%q}", ev.Revision, ev.Type, ev.Created, kvString(ev.KV), ev.PrevValue)
}

func eventEqual(a, b storage.Event) bool {
	return a.Type == b.Type && a.Revision == b.Revision && a.Created == b.Created &&
		kvEqual(a.KV, b.KV) && bytes.Equal(a.PrevValue, b.PrevValue)
}

func wantEvent(t *testing.T, what string, got, want storage.Event) {
	t.Helper()
	if !eventEqual(got, want) {
		t.Fatalf("%s: got event %s, want %s", what, eventString(got), eventString(want))
	}
}

func wantEvents(t *testing.T, what string, got, want []storage.Event) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d events, want %d", what, len(got), len(want))
	}
	for i := range got {
		wantEvent(t, fmt.Sprintf("%s: event %d", what, i), got[i], want[i])
	}
}

// wantConsecutive checks that events carry exactly the revisions first, first+1, ...
func wantConsecutive(t *testing.T, what string, evs []storage.Event, first int64) {
	t.Helper()
	for i, ev := range evs {
		if ev.Revision != first+int64(i) {
			t.Fatalf("%s: event %d has revision %d, want %d (gap or duplicate)", what, i, ev.Revision, first+int64(i))
		}
	}
}

// filter keeps the events whose key has the prefix.
func filter(evs []storage.Event, prefix string) []storage.Event {
	var out []storage.Event
	for _, ev := range evs {
		if strings.HasPrefix(ev.KV.Key, prefix) {
			out = append(out, ev)
		}
	}
	return out
}

// waitGoroutines waits until no more than n goroutines run, then returns;
// at the deadline it fails with a dump of every goroutine.
func waitGoroutines(t *testing.T, n int) {
	t.Helper()
	end := time.Now().Add(deadline)
	for runtime.NumGoroutine() > n {
		if time.Now().After(end) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutine leak: %d running, want <= %d\n%s", runtime.NumGoroutine(), n, buf)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}
