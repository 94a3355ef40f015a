// Package storagetest is the conformance suite every storage.Interface
// backend runs: Run for the semantics every backend shares, RunPersistent for
// durable backends (state and history survive a reopen).
//
// Semantics the suite pins down beyond the interface's comments:
//   - a new store is at revision 0 with nothing compacted;
//   - failed writes (ErrKeyExists, ErrNotFound, ErrConflict) do not advance
//     the revision;
//   - the compacted revision itself stays readable: a List at, or a Watch
//     from, the compacted revision works, anything older is ErrCompacted
//     (etcd's rule; history up to and including it is forgotten, and the
//     state at it is still known);
//   - Compact at or below the compacted revision does nothing and returns
//     nil; Compact beyond the current revision is ErrFutureRevision;
//   - Delete returns the KV as it was before the delete (its ModRevision is
//     the key's last modification, not the delete);
//   - Close may be called more than once; afterwards calls fail with ErrClosed.
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/headway/headway/internal/storage"
)

// Run runs the conformance suite. newStore returns a new, empty store for
// each subtest; the suite closes it when the subtest ends.
func Run(t *testing.T, newStore func(t *testing.T) storage.Interface) {
	open := func(t *testing.T) storage.Interface {
		s := newStore(t)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s storage.Interface)
	}{
		{"CreateGet", testCreateGet},
		{"Update", testUpdate},
		{"Delete", testDelete},
		{"Revisions", testRevisions},
		{"CancelledContext", testCancelledContext},
		{"ListPrefix", testListPrefix},
		{"ListPagination", testListPagination},
		{"ListAtRevision", testListAtRevision},
		{"CompactedAndFuture", testCompactedAndFuture},
		{"WatchFromNow", testWatchFromNow},
		{"WatchPrefix", testWatchPrefix},
		{"WatchFromPast", testWatchFromPast},
		{"WatchCompacted", testWatchCompacted},
		{"WatchOrderingConcurrent", testWatchOrderingConcurrent},
		{"WatchAtNewestRevision", testWatchAtNewestRevision},
		{"WatchCancel", testWatchCancel},
		{"SlowWatcher", testSlowWatcher},
		{"ConcurrentWriters", testConcurrentWriters},
		{"Close", testClose},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open(t)) })
	}
	t.Run("NoGoroutineLeak", func(t *testing.T) { testNoGoroutineLeak(t, newStore) })
}

func testCreateGet(t *testing.T, s storage.Interface) {
	ctx := t.Context()
	wantRevision(t, s, 0)
	if got := s.CompactedRevision(); got != 0 {
		t.Fatalf("CompactedRevision() of a new store = %d, want 0", got)
	}
	rev := mustCreate(t, s, "/a/x", "v1")
	if rev != 1 {
		t.Fatalf("first Create revision = %d, want 1", rev)
	}
	wantRevision(t, s, 1)
	wantKV(t, "Get", mustGet(t, s, "/a/x"), storage.KV{Key: "/a/x", Value: []byte("v1"), CreateRevision: 1, ModRevision: 1})

	_, err := s.Create(ctx, "/a/x", []byte("v2"))
	wantErr(t, "Create of an existing key", err, storage.ErrKeyExists)
	wantRevision(t, s, 1)
	wantKV(t, "Get after a failed Create", mustGet(t, s, "/a/x"), storage.KV{Key: "/a/x", Value: []byte("v1"), CreateRevision: 1, ModRevision: 1})

	_, err = s.Get(ctx, "/a/missing")
	wantErr(t, "Get of a missing key", err, storage.ErrNotFound)
	_, err = s.Get(ctx, "/a/")
	wantErr(t, "Get of a prefix", err, storage.ErrNotFound)

	// An empty value is a value.
	rev = mustCreate(t, s, "/a/empty", "")
	if kv := mustGet(t, s, "/a/empty"); len(kv.Value) != 0 || kv.ModRevision != rev {
		t.Fatalf("Get of an empty value: %s", kvString(kv))
	}

	// The store keeps its own copy of a value; what Get returns is the caller's.
	buf := []byte("abc")
	mustCreate(t, s, "/a/copy", string(buf))
	if _, err := s.Create(ctx, "/a/copy2", buf); err != nil {
		t.Fatal(err)
	}
	buf[0] = 'X'
	got := mustGet(t, s, "/a/copy2")
	if string(got.Value) != "abc" {
		t.Fatalf("value changed with the caller's buffer: %q", got.Value)
	}
	got.Value[0] = 'Y'
	if got := mustGet(t, s, "/a/copy2"); string(got.Value) != "abc" {
		t.Fatalf("value changed with a returned buffer: %q", got.Value)
	}
}

func testUpdate(t *testing.T, s storage.Interface) {
	ctx := t.Context()
	r1 := mustCreate(t, s, "/u/k", "v1")

	_, err := s.Update(ctx, "/u/k", []byte("bad"), r1+1)
	wantErr(t, "Update with a wrong revision", err, storage.ErrConflict)
	wantRevision(t, s, r1)

	r2 := mustUpdate(t, s, "/u/k", "v2", r1)
	if r2 != r1+1 {
		t.Fatalf("Update revision = %d, want %d", r2, r1+1)
	}
	wantKV(t, "Get after Update", mustGet(t, s, "/u/k"), storage.KV{Key: "/u/k", Value: []byte("v2"), CreateRevision: r1, ModRevision: r2})

	_, err = s.Update(ctx, "/u/k", []byte("stale"), r1)
	wantErr(t, "Update with a stale revision", err, storage.ErrConflict)
	wantKV(t, "Get after a conflict", mustGet(t, s, "/u/k"), storage.KV{Key: "/u/k", Value: []byte("v2"), CreateRevision: r1, ModRevision: r2})

	r3 := mustUpdate(t, s, "/u/k", "v3", 0)
	if r3 != r2+1 {
		t.Fatalf("unconditional Update revision = %d, want %d", r3, r2+1)
	}
	wantKV(t, "Get after an unconditional Update", mustGet(t, s, "/u/k"), storage.KV{Key: "/u/k", Value: []byte("v3"), CreateRevision: r1, ModRevision: r3})

	// Same value again is still a change with its own revision.
	r4 := mustUpdate(t, s, "/u/k", "v3", r3)
	if r4 != r3+1 {
		t.Fatalf("Update to the same value: revision %d, want %d", r4, r3+1)
	}

	_, err = s.Update(ctx, "/u/missing", []byte("x"), 0)
	wantErr(t, "unconditional Update of a missing key", err, storage.ErrNotFound)
	_, err = s.Update(ctx, "/u/missing", []byte("x"), r1)
	wantErr(t, "guarded Update of a missing key", err, storage.ErrNotFound)
	wantRevision(t, s, r4)
}

func testDelete(t *testing.T, s storage.Interface) {
	ctx := t.Context()
	r1 := mustCreate(t, s, "/d/k", "v1")
	r2 := mustUpdate(t, s, "/d/k", "v2", r1)

	_, _, err := s.Delete(ctx, "/d/k", r1)
	wantErr(t, "Delete with a stale revision", err, storage.ErrConflict)
	wantRevision(t, s, r2)
	mustGet(t, s, "/d/k")

	kv, dr := mustDelete(t, s, "/d/k", r2)
	if dr != r2+1 {
		t.Fatalf("Delete revision = %d, want %d", dr, r2+1)
	}
	wantKV(t, "KV returned by Delete", kv, storage.KV{Key: "/d/k", Value: []byte("v2"), CreateRevision: r1, ModRevision: r2})
	wantRevision(t, s, dr)

	_, err = s.Get(ctx, "/d/k")
	wantErr(t, "Get after Delete", err, storage.ErrNotFound)
	_, _, err = s.Delete(ctx, "/d/k", 0)
	wantErr(t, "Delete of a deleted key", err, storage.ErrNotFound)
	_, _, err = s.Delete(ctx, "/d/k", r2)
	wantErr(t, "guarded Delete of a deleted key", err, storage.ErrNotFound)
	wantRevision(t, s, dr)

	// Re-created, the key starts a new life.
	r4 := mustCreate(t, s, "/d/k", "again")
	if r4 != dr+1 {
		t.Fatalf("re-Create revision = %d, want %d", r4, dr+1)
	}
	wantKV(t, "Get after re-Create", mustGet(t, s, "/d/k"), storage.KV{Key: "/d/k", Value: []byte("again"), CreateRevision: r4, ModRevision: r4})

	kv, r5 := mustDelete(t, s, "/d/k", 0)
	if r5 != r4+1 || kv.ModRevision != r4 || string(kv.Value) != "again" {
		t.Fatalf("unconditional Delete: rev %d, kv %s", r5, kvString(kv))
	}
}

func testRevisions(t *testing.T, s storage.Interface) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(1, 2))
	revs := map[string]int64{}
	for i := range 100 {
		key := fmt.Sprintf("/r/%d", rng.IntN(8))
		before := s.Revision()
		var rev int64
		var err error
		switch rng.IntN(3) {
		case 0:
			rev, err = s.Create(ctx, key, []byte(strconv.Itoa(i)))
			if _, exists := revs[key]; exists {
				wantErr(t, "Create", err, storage.ErrKeyExists)
			}
		case 1:
			rev, err = s.Update(ctx, key, []byte(strconv.Itoa(i)), revs[key])
			if _, exists := revs[key]; !exists {
				wantErr(t, "Update", err, storage.ErrNotFound)
			}
		case 2:
			_, rev, err = s.Delete(ctx, key, 0)
			if _, exists := revs[key]; !exists {
				wantErr(t, "Delete", err, storage.ErrNotFound)
			}
		}
		if err != nil {
			wantRevision(t, s, before)
			continue
		}
		if rev != before+1 {
			t.Fatalf("write %d: revision %d, want %d", i, rev, before+1)
		}
		wantRevision(t, s, rev)
		if kv, err := s.Get(ctx, key); err == nil {
			if kv.ModRevision != rev {
				t.Fatalf("ModRevision %d, want %d", kv.ModRevision, rev)
			}
			revs[key] = rev
		} else {
			wantErr(t, "Get after Delete", err, storage.ErrNotFound)
			delete(revs, key)
		}
	}
}

func testCancelledContext(t *testing.T, s storage.Interface) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Create(ctx, "/x/k", []byte("v")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Create with a cancelled context: %v, want context.Canceled", err)
	}
	wantRevision(t, s, 0)
	_, err := s.Get(t.Context(), "/x/k")
	wantErr(t, "Get of a key whose Create was cancelled", err, storage.ErrNotFound)
}

func testListPrefix(t *testing.T, s storage.Interface) {
	keys := []string{"/a/2", "/ab/1", "/a/10", "/b/1", "/a", "/a/1", "/a/b/c", "/"}
	for _, k := range keys {
		mustCreate(t, s, k, "v"+k)
	}
	cur := s.Revision()
	want := func(keys ...string) []storage.KV {
		var kvs []storage.KV
		for _, k := range keys {
			kvs = append(kvs, mustGet(t, s, k))
		}
		return kvs
	}
	for _, tc := range []struct {
		prefix string
		want   []string
	}{
		{"/a/", []string{"/a/1", "/a/10", "/a/2", "/a/b/c"}},
		{"/ab/", []string{"/ab/1"}},
		{"/a", []string{"/a", "/a/1", "/a/10", "/a/2", "/a/b/c", "/ab/1"}},
		{"/b/", []string{"/b/1"}},
		{"", []string{"/", "/a", "/a/1", "/a/10", "/a/2", "/a/b/c", "/ab/1", "/b/1"}},
		{"/zz/", nil},
		{"/a/1", []string{"/a/1", "/a/10"}},
	} {
		res := mustList(t, s, tc.prefix, storage.ListOptions{})
		wantItems(t, fmt.Sprintf("List(%q)", tc.prefix), res.Items, want(tc.want...))
		if res.Revision != cur || res.More || res.Remaining != 0 {
			t.Fatalf("List(%q): Revision %d More %t Remaining %d, want %d false 0", tc.prefix, res.Revision, res.More, res.Remaining, cur)
		}
	}
	// Listing at the current revision explicitly is the same as listing now.
	res := mustList(t, s, "/a/", storage.ListOptions{Revision: cur})
	wantItems(t, "List at the current revision", res.Items, want("/a/1", "/a/10", "/a/2", "/a/b/c"))
}

func testListPagination(t *testing.T, s storage.Interface) {
	mustCreate(t, s, "/o", "before")
	var keys []string
	for i := range 10 {
		keys = append(keys, fmt.Sprintf("/p/%02d", i))
	}
	for _, k := range slices.Backward(keys) {
		mustCreate(t, s, k, "v"+k)
	}
	mustCreate(t, s, "/p0", "after") // "/p0" is the first key past the prefix "/p/"
	all := mustList(t, s, "/p/", storage.ListOptions{})
	if len(all.Items) != 10 {
		t.Fatalf("List: %d items, want 10", len(all.Items))
	}
	pageRev := all.Revision

	page := func(start string, limit, rev int64) storage.ListResult {
		return mustList(t, s, "/p/", storage.ListOptions{StartKey: start, Limit: limit, Revision: rev})
	}
	walk := func(limit, rev int64) {
		t.Helper()
		var got []storage.KV
		start := ""
		for i := 0; ; i++ {
			res := page(start, limit, rev)
			if rev != 0 && res.Revision != rev {
				t.Fatalf("page %d read at %d, want %d", i, res.Revision, rev)
			}
			got = append(got, res.Items...)
			left := int64(10 - len(got))
			if res.More != (left > 0) || res.Remaining != left {
				t.Fatalf("limit %d page %d: More %t Remaining %d, want %t %d", limit, i, res.More, res.Remaining, left > 0, left)
			}
			if int64(len(res.Items)) != min(limit, int64(10-len(got)+len(res.Items))) {
				t.Fatalf("limit %d page %d: %d items", limit, i, len(res.Items))
			}
			if !res.More {
				break
			}
			start = res.Items[len(res.Items)-1].Key + "\x00"
		}
		wantItems(t, fmt.Sprintf("pages of %d", limit), got, all.Items)
	}
	for _, limit := range []int64{1, 3, 5, 9, 10, 11} {
		walk(limit, 0)
	}
	// No limit returns everything.
	wantItems(t, "Limit 0", page("", 0, 0).Items, all.Items)

	// StartKey is inclusive.
	res := page("/p/04", 2, 0)
	wantItems(t, "StartKey inclusive", res.Items, all.Items[4:6])
	if !res.More || res.Remaining != 4 {
		t.Fatalf("StartKey page: More %t Remaining %d, want true 4", res.More, res.Remaining)
	}
	// StartKey between keys, and past the last key.
	wantItems(t, "StartKey between keys", page("/p/04x", 1, 0).Items, all.Items[5:6])
	if res := page("/p/99", 5, 0); len(res.Items) != 0 || res.More {
		t.Fatalf("StartKey past the end: %v More %t", kvStrings(res.Items), res.More)
	}

	// Pages read at the first page's revision stay consistent while keys
	// change underneath, as a paginated Kubernetes list does.
	mustCreate(t, s, "/p/03a", "new")
	mustDelete(t, s, "/p/07", 0)
	mustUpdate(t, s, "/p/00", "changed", 0)
	for _, limit := range []int64{1, 3, 4, 10} {
		walk(limit, pageRev)
	}
}

// testListAtRevision applies random writes, keeps the expected state after
// every revision, and lists at each of them.
func testListAtRevision(t *testing.T, s storage.Interface) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(7, 11))
	state := map[string]storage.KV{}
	history := []map[string]storage.KV{{}} // history[r] is the state at revision r
	for i := 0; len(history) <= 120; i++ {
		key := fmt.Sprintf("/h/%d", rng.IntN(6))
		if rng.IntN(4) == 0 {
			key = fmt.Sprintf("/hx/%d", rng.IntN(2)) // outside the listed prefix
		}
		val := []byte(fmt.Sprintf("v%d", i))
		old, exists := state[key]
		var rev int64
		var err error
		deleted := false
		switch {
		case !exists:
			rev, err = s.Create(ctx, key, val)
			old.CreateRevision = rev
		case rng.IntN(3) == 0:
			_, rev, err = s.Delete(ctx, key, old.ModRevision)
			deleted = true
		default:
			rev, err = s.Update(ctx, key, val, old.ModRevision)
		}
		if err != nil {
			t.Fatal(err)
		}
		if rev != int64(len(history)) {
			t.Fatalf("revision %d, want %d", rev, len(history))
		}
		next := maps.Clone(state)
		if deleted {
			delete(next, key)
		} else {
			next[key] = storage.KV{Key: key, Value: val, CreateRevision: old.CreateRevision, ModRevision: rev}
		}
		state = next
		history = append(history, next)
	}
	cur := s.Revision()
	expect := func(rev int64) []storage.KV {
		var kvs []storage.KV
		for k, v := range history[rev] {
			if strings.HasPrefix(k, "/h/") {
				kvs = append(kvs, v)
			}
		}
		slices.SortFunc(kvs, func(a, b storage.KV) int { return strings.Compare(a.Key, b.Key) })
		return kvs
	}
	for rev := int64(1); rev <= cur; rev++ {
		res := mustList(t, s, "/h/", storage.ListOptions{Revision: rev})
		if res.Revision != rev {
			t.Fatalf("List at %d read at %d", rev, res.Revision)
		}
		want := expect(rev)
		wantItems(t, fmt.Sprintf("List at revision %d", rev), res.Items, want)
		// The same, two at a time.
		var got []storage.KV
		start := ""
		for {
			res := mustList(t, s, "/h/", storage.ListOptions{Revision: rev, Limit: 2, StartKey: start})
			got = append(got, res.Items...)
			if res.Remaining != int64(len(want)-len(got)) {
				t.Fatalf("List at %d, page after %d items: Remaining %d, want %d", rev, len(got), res.Remaining, len(want)-len(got))
			}
			if !res.More {
				break
			}
			start = res.Items[len(res.Items)-1].Key + "\x00"
		}
		wantItems(t, fmt.Sprintf("paginated List at revision %d", rev), got, want)
	}
}

func testCompactedAndFuture(t *testing.T, s storage.Interface) {
	ctx := t.Context()
	for i := range 10 {
		key := fmt.Sprintf("/c/%d", i%4)
		if i < 4 {
			mustCreate(t, s, key, strconv.Itoa(i))
		} else {
			mustUpdate(t, s, key, strconv.Itoa(i), 0)
		}
	}
	at5 := mustList(t, s, "/c/", storage.ListOptions{Revision: 5})
	now := mustList(t, s, "/c/", storage.ListOptions{})

	if err := s.Compact(ctx, 5); err != nil {
		t.Fatalf("Compact(5): %v", err)
	}
	if got := s.CompactedRevision(); got != 5 {
		t.Fatalf("CompactedRevision() = %d, want 5", got)
	}
	_, err := s.List(ctx, "/c/", storage.ListOptions{Revision: 4})
	wantErr(t, "List below the compacted revision", err, storage.ErrCompacted)
	_, err = s.List(ctx, "/c/", storage.ListOptions{Revision: 1})
	wantErr(t, "List at revision 1 after compaction", err, storage.ErrCompacted)
	wantItems(t, "List at the compacted revision", mustList(t, s, "/c/", storage.ListOptions{Revision: 5}).Items, at5.Items)
	wantItems(t, "List now after compaction", mustList(t, s, "/c/", storage.ListOptions{}).Items, now.Items)
	_, err = s.List(ctx, "/c/", storage.ListOptions{Revision: 11})
	wantErr(t, "List above the current revision", err, storage.ErrFutureRevision)
	wantKV(t, "Get after compaction", mustGet(t, s, "/c/0"), now.Items[0])

	// Compacting again to an older revision changes nothing; beyond now is an error.
	if err := s.Compact(ctx, 3); err != nil {
		t.Fatalf("Compact(3) after Compact(5): %v", err)
	}
	if got := s.CompactedRevision(); got != 5 {
		t.Fatalf("CompactedRevision() = %d after compacting to an older revision, want 5", got)
	}
	wantErr(t, "Compact beyond the current revision", s.Compact(ctx, 11), storage.ErrFutureRevision)
	if err := s.Compact(ctx, 10); err != nil {
		t.Fatalf("Compact to the current revision: %v", err)
	}
	wantItems(t, "List at the current, compacted revision", mustList(t, s, "/c/", storage.ListOptions{Revision: 10}).Items, now.Items)
	// Writes carry on after compaction.
	if rev := mustUpdate(t, s, "/c/0", "after", 0); rev != 11 {
		t.Fatalf("revision after compaction %d, want 11", rev)
	}
}

func testWatchFromNow(t *testing.T, s storage.Interface) {
	mustCreate(t, s, "/w/a", "before")
	ch := mustWatch(t, t.Context(), s, "/w/", 0)
	r1 := mustCreate(t, s, "/w/b", "v1")
	r2 := mustUpdate(t, s, "/w/b", "v2", r1)
	_, r3 := mustDelete(t, s, "/w/b", r2)
	r4 := mustUpdate(t, s, "/w/a", "after", 0)

	wantEvent(t, "create", recv(t, ch), storage.Event{
		Type: storage.EventPut, Created: true, Revision: r1,
		KV: storage.KV{Key: "/w/b", Value: []byte("v1"), CreateRevision: r1, ModRevision: r1},
	})
	wantEvent(t, "update", recv(t, ch), storage.Event{
		Type: storage.EventPut, Revision: r2, PrevValue: []byte("v1"),
		KV: storage.KV{Key: "/w/b", Value: []byte("v2"), CreateRevision: r1, ModRevision: r2},
	})
	wantEvent(t, "delete", recv(t, ch), storage.Event{
		Type: storage.EventDelete, Revision: r3, PrevValue: []byte("v2"),
		KV: storage.KV{Key: "/w/b", Value: []byte("v2"), CreateRevision: r1, ModRevision: r3},
	})
	wantEvent(t, "update of a key created before the watch", recv(t, ch), storage.Event{
		Type: storage.EventPut, Revision: r4, PrevValue: []byte("before"),
		KV: storage.KV{Key: "/w/a", Value: []byte("after"), CreateRevision: 1, ModRevision: r4},
	})

	// A watch from the current revision is a watch from now.
	ch2 := mustWatch(t, t.Context(), s, "/w/", s.Revision())
	r5 := mustCreate(t, s, "/w/c", "c")
	if ev := recv(t, ch2); ev.Revision != r5 {
		t.Fatalf("watch from the current revision: first event %s, want revision %d", eventString(ev), r5)
	}
	if ev := recv(t, ch); ev.Revision != r5 {
		t.Fatalf("first watch: event %s, want revision %d", eventString(ev), r5)
	}
}

func testWatchPrefix(t *testing.T, s storage.Interface) {
	ch := mustWatch(t, t.Context(), s, "/a/", 0)
	all := mustWatch(t, t.Context(), s, "", 0)
	mustCreate(t, s, "/ab/1", "x")
	mustCreate(t, s, "/a", "x")
	mustCreate(t, s, "/b/1", "x")
	r := mustCreate(t, s, "/a/1", "x")
	mustUpdate(t, s, "/ab/1", "y", 0)
	mustDelete(t, s, "/a", 0)
	r2 := mustCreate(t, s, "/a/b/2", "x")
	if ev := recv(t, ch); ev.KV.Key != "/a/1" || ev.Revision != r {
		t.Fatalf("watch /a/: got %s, want /a/1 at %d", eventString(ev), r)
	}
	if ev := recv(t, ch); ev.KV.Key != "/a/b/2" || ev.Revision != r2 {
		t.Fatalf("watch /a/: got %s, want /a/b/2 at %d", eventString(ev), r2)
	}
	wantConsecutive(t, "watch of every key", recvN(t, all, int(r2)), 1)
}

// testWatchFromPast starts a watch in the past while writers are busy: it
// must replay exactly the events after its revision, then carry on live,
// with no gap and no duplicate.
func testWatchFromPast(t *testing.T, s storage.Interface) {
	ctx := t.Context()
	ref := mustWatch(t, ctx, s, "", 0)
	write := func(g, i int) error {
		key := fmt.Sprintf("/w/%d/%d", g, i%5)
		if i < 5 {
			_, err := s.Create(ctx, key, []byte(strconv.Itoa(i)))
			return err
		}
		if i%7 == 0 {
			_, _, err := s.Delete(ctx, key, 0)
			if errors.Is(err, storage.ErrNotFound) {
				_, err = s.Create(ctx, key, []byte(strconv.Itoa(i)))
			}
			return err
		}
		_, err := s.Update(ctx, key, []byte(strconv.Itoa(i)), 0)
		if errors.Is(err, storage.ErrNotFound) {
			_, err = s.Create(ctx, key, []byte(strconv.Itoa(i)))
		}
		return err
	}
	// Enough history that replaying it takes a backend several reads.
	const early, earlyWriters = 40, 8
	var wg sync.WaitGroup
	for g := range earlyWriters {
		wg.Go(func() {
			for i := range early {
				if err := write(10*g, i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	const from = 15
	const writers, perWriter = 4, 30
	started := make(chan struct{})
	for g := 1; g <= writers; g++ {
		wg.Go(func() {
			for i := range perWriter {
				if err := write(g, i); err != nil {
					t.Error(err)
					return
				}
				if g == 1 && i == 3 {
					close(started)
				}
			}
		})
	}
	<-started
	past := mustWatch(t, ctx, s, "", from)
	pastPrefix := mustWatch(t, ctx, s, "/w/0/", from)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	total := int(s.Revision())
	if total != early*earlyWriters+writers*perWriter {
		t.Fatalf("revision %d after %d writes", total, early*earlyWriters+writers*perWriter)
	}
	all := recvN(t, ref, total)
	wantConsecutive(t, "watch from 0", all, 1)
	got := recvN(t, past, total-from)
	wantEvents(t, "watch from the past", got, all[from:])
	wantPrefix := filter(all[from:], "/w/0/")
	wantEvents(t, "prefixed watch from the past", recvN(t, pastPrefix, len(wantPrefix)), wantPrefix)

	// Both carry on live.
	rev := mustCreate(t, s, "/w/0/live", "x")
	for _, ch := range []<-chan storage.Event{ref, past, pastPrefix} {
		if ev := recv(t, ch); ev.Revision != rev {
			t.Fatalf("live event after replay: %s, want revision %d", eventString(ev), rev)
		}
	}

	// Watches from every past revision agree with the reference.
	for from := int64(17); from <= int64(total); from += 17 {
		ctx, cancel := context.WithCancel(ctx)
		ch := mustWatch(t, ctx, s, "", from)
		wantEvents(t, fmt.Sprintf("watch from %d", from), recvN(t, ch, total-int(from)), all[from:])
		cancel()
	}
}

func testWatchCompacted(t *testing.T, s storage.Interface) {
	ctx := t.Context()
	ref := mustWatch(t, ctx, s, "", 0)
	for i := range 10 {
		mustCreate(t, s, fmt.Sprintf("/k/%d", i), "v")
	}
	all := recvN(t, ref, 10)
	if err := s.Compact(ctx, 6); err != nil {
		t.Fatal(err)
	}
	_, err := s.Watch(ctx, "", 5)
	wantErr(t, "Watch below the compacted revision", err, storage.ErrCompacted)
	_, err = s.Watch(ctx, "/k/", 1)
	wantErr(t, "Watch from revision 1 after compaction", err, storage.ErrCompacted)
	ch := mustWatch(t, ctx, s, "", 6)
	wantEvents(t, "watch from the compacted revision", recvN(t, ch, 4), all[6:])
	_, err = s.Watch(ctx, "", 11)
	wantErr(t, "Watch above the current revision", err, storage.ErrFutureRevision)
}

// testWatchOrderingConcurrent: many writers, several watchers; each watcher
// sees strictly increasing revisions, the unfiltered one sees every revision,
// and replaying its events gives the store's final state.
func testWatchOrderingConcurrent(t *testing.T, s storage.Interface) {
	ctx := t.Context()
	mustCreate(t, s, "/seed", "x")
	all := mustWatch(t, ctx, s, "", 0)
	cOnly := mustWatch(t, ctx, s, "/c/", 0)
	fromSeed := mustWatch(t, ctx, s, "", 1)
	const writers, perWriter = 16, 40
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			prefix := "/c/"
			if g%2 == 1 {
				prefix = "/d/"
			}
			for i := range perWriter {
				key := fmt.Sprintf("%s%d/%d", prefix, g, i%4)
				var err error
				switch {
				case i < 4:
					_, err = s.Create(ctx, key, []byte(strconv.Itoa(i)))
				case i%5 == 0:
					_, _, err = s.Delete(ctx, key, 0)
					if err == nil {
						_, err = s.Create(ctx, key, []byte(strconv.Itoa(i)))
					}
				default:
					_, err = s.Update(ctx, key, []byte(strconv.Itoa(i)), 0)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	total := s.Revision()
	evs := recvN(t, all, int(total-1))
	wantConsecutive(t, "watch of every key", evs, 2)
	wantEvents(t, "watch from revision 1", recvN(t, fromSeed, int(total-1)), evs)
	wantC := filter(evs, "/c/")
	gotC := recvN(t, cOnly, len(wantC))
	wantEvents(t, "prefixed watch", gotC, wantC)

	state := map[string]storage.KV{"/seed": mustGet(t, s, "/seed")}
	for _, ev := range evs {
		if ev.Type == storage.EventDelete {
			delete(state, ev.KV.Key)
		} else {
			state[ev.KV.Key] = ev.KV
		}
	}
	final := mustList(t, s, "", storage.ListOptions{})
	wantItems(t, "state rebuilt from events", storage.PageOf(state, 0, total).Items, final.Items)
}

func testWatchCancel(t *testing.T, s storage.Interface) {
	ctx, cancel := context.WithCancel(t.Context())
	ch := mustWatch(t, ctx, s, "", 0)
	mustCreate(t, s, "/k", "v")
	recv(t, ch)
	cancel()
	drain(t, ch)
	// A watch whose context is already done closes too.
	ch = mustWatch(t, ctx, s, "", 0)
	drain(t, ch)
	// And one replaying history.
	ctx2, cancel2 := context.WithCancel(t.Context())
	ch = mustWatch(t, ctx2, s, "", 0)
	for i := range 5 {
		mustCreate(t, s, fmt.Sprintf("/m/%d", i), "v")
	}
	recv(t, ch)
	cancel2()
	drain(t, ch)
}

// testSlowWatcher: a watcher that never reads must not hold up writers; it
// is closed once it falls too far behind, having delivered a gap-free prefix
// of the events.
func testSlowWatcher(t *testing.T, s storage.Interface) {
	ctx := t.Context()
	slow := mustWatch(t, ctx, s, "", 0)
	const writers, perWriter = 16, 150
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			for i := range perWriter {
				if _, err := s.Create(ctx, fmt.Sprintf("/s/%d/%d", g, i), []byte("v")); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait() // the test's deadline catches writers blocked by the watcher
	if t.Failed() {
		t.FailNow()
	}
	evs := drain(t, slow)
	if len(evs) >= writers*perWriter {
		t.Fatalf("the slow watcher received all %d events; it should have been closed", len(evs))
	}
	wantConsecutive(t, "events before the slow watcher closed", evs, 1)
	// The store carries on serving other watchers.
	ch := mustWatch(t, ctx, s, "", s.Revision()-10)
	wantConsecutive(t, "a new watcher", recvN(t, ch, 10), s.Revision()-9)
}

// testConcurrentWriters: 16 writers, 200 writes each, half of them guarded
// increments of one shared counter.
func testConcurrentWriters(t *testing.T, s storage.Interface) {
	ctx := t.Context()
	start := mustCreate(t, s, "/cw/counter", "0")
	const writers, perWriter = 16, 200
	var mu sync.Mutex
	seen := map[int64]bool{}
	successes, conflicts := 0, 0
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			var revs []int64
			ok, lost := 0, 0
			for i := range perWriter {
				if i%2 == 0 {
					rev, err := s.Create(ctx, fmt.Sprintf("/cw/keys/%02d/%03d", g, i), []byte("v"))
					if err != nil {
						t.Error(err)
						return
					}
					revs = append(revs, rev)
					continue
				}
				kv, err := s.Get(ctx, "/cw/counter")
				if err != nil {
					t.Error(err)
					return
				}
				n, err := strconv.Atoi(string(kv.Value))
				if err != nil {
					t.Error(err)
					return
				}
				rev, err := s.Update(ctx, "/cw/counter", []byte(strconv.Itoa(n+1)), kv.ModRevision)
				switch {
				case err == nil:
					ok++
					revs = append(revs, rev)
				case errors.Is(err, storage.ErrConflict):
					lost++
				default:
					t.Error(err)
					return
				}
			}
			mu.Lock()
			defer mu.Unlock()
			successes += ok
			conflicts += lost
			for _, r := range revs {
				if seen[r] {
					t.Errorf("revision %d returned twice", r)
				}
				seen[r] = true
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	creates := writers * perWriter / 2
	t.Logf("%d guarded increments succeeded, %d conflicted", successes, conflicts)
	kv := mustGet(t, s, "/cw/counter")
	if string(kv.Value) != strconv.Itoa(successes) {
		t.Fatalf("counter = %s, want %d (the successful increments)", kv.Value, successes)
	}
	end := s.Revision()
	if end != start+int64(creates+successes) {
		t.Fatalf("revision %d, want %d", end, start+int64(creates+successes))
	}
	for r := start + 1; r <= end; r++ {
		if !seen[r] {
			t.Fatalf("revision %d was not returned to any writer", r)
		}
	}
	if res := mustList(t, s, "/cw/keys/", storage.ListOptions{Limit: 1}); res.Remaining != int64(creates-1) {
		t.Fatalf("List: Remaining %d, want %d", res.Remaining, creates-1)
	}
}

func testClose(t *testing.T, s storage.Interface) {
	ctx := t.Context()
	r := mustCreate(t, s, "/k", "v")
	live := mustWatch(t, ctx, s, "", 0)
	replaying := mustWatch(t, ctx, s, "", r-1)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	drain(t, live)
	drain(t, replaying)
	_ = s.Close() // a second Close must not panic or hang

	_, err := s.Create(ctx, "/x", nil)
	wantErr(t, "Create after Close", err, storage.ErrClosed)
	_, err = s.Get(ctx, "/k")
	wantErr(t, "Get after Close", err, storage.ErrClosed)
	_, err = s.List(ctx, "", storage.ListOptions{})
	wantErr(t, "List after Close", err, storage.ErrClosed)
	_, err = s.Update(ctx, "/k", nil, 0)
	wantErr(t, "Update after Close", err, storage.ErrClosed)
	_, _, err = s.Delete(ctx, "/k", 0)
	wantErr(t, "Delete after Close", err, storage.ErrClosed)
	_, err = s.Watch(ctx, "", 0)
	wantErr(t, "Watch after Close", err, storage.ErrClosed)
	wantErr(t, "Compact after Close", s.Compact(ctx, 1), storage.ErrClosed)
}

func testNoGoroutineLeak(t *testing.T, newStore func(t *testing.T) storage.Interface) {
	before := runtime.NumGoroutine()
	s := newStore(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	for i := range 20 {
		mustCreate(t, s, fmt.Sprintf("/g/%d", i), "v")
	}
	var chans []<-chan storage.Event
	for i := range 8 {
		wctx := ctx
		if i%2 == 0 {
			var c context.CancelFunc
			wctx, c = context.WithCancel(ctx)
			defer c()
			if i%4 == 0 {
				c() // cancelled before it was even read
			}
		}
		chans = append(chans, mustWatch(t, wctx, s, "/g/", int64(i)))
	}
	// A watch that is closed after a slow start.
	ch := mustWatch(t, ctx, s, "", 1)
	recv(t, ch)
	for i := 20; i < 40; i++ {
		mustCreate(t, s, fmt.Sprintf("/g/%d", i), "v")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, ch := range chans {
		drain(t, ch)
	}
	drain(t, ch)
	waitGoroutines(t, before)
}
