package storagetest

import (
	"fmt"
	"testing"

	"github.com/headway/headway/internal/storage"
)

// RunPersistent runs the checks for durable backends: what was written
// before Close (keys, revisions, the compacted revision and the history that
// watches and lists at old revisions read) is there after reopening. open
// opens the store kept in dir; it is called several times with the same dir.
func RunPersistent(t *testing.T, open func(t *testing.T, dir string) storage.Interface) {
	reopen := func(t *testing.T, dir string) storage.Interface {
		s := open(t, dir)
		t.Cleanup(func() { _ = s.Close() })
		return s
	}
	t.Run("Empty", func(t *testing.T) {
		dir := t.TempDir()
		s := reopen(t, dir)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s = reopen(t, dir)
		wantRevision(t, s, 0)
		if res := mustList(t, s, "", storage.ListOptions{}); len(res.Items) != 0 || res.Revision != 0 {
			t.Fatalf("reopened empty store lists %v at %d", kvStrings(res.Items), res.Revision)
		}
		if rev := mustCreate(t, s, "/k", "v"); rev != 1 {
			t.Fatalf("first write after reopening an empty store: revision %d, want 1", rev)
		}
	})
	t.Run("Reopen", func(t *testing.T) { testReopen(t, reopen) })
}

func testReopen(t *testing.T, open func(t *testing.T, dir string) storage.Interface) {
	ctx := t.Context()
	dir := t.TempDir()
	s := open(t, dir)
	ref := mustWatch(t, ctx, s, "", 0)
	for _, k := range []string{"/p/a", "/p/b", "/p/c", "/p/d", "/p/e"} {
		mustCreate(t, s, k, "v1"+k)
	}
	mustUpdate(t, s, "/p/a", "v2", 0)
	mustUpdate(t, s, "/p/b", "v2", 0)
	mustUpdate(t, s, "/p/b", "v3", 0)
	mustDelete(t, s, "/p/c", 0)
	mustCreate(t, s, "/q/x", "x1")
	mustUpdate(t, s, "/q/x", "", 0)
	mustDelete(t, s, "/p/e", 0)
	mustCreate(t, s, "/p/c", "again")
	mustUpdate(t, s, "/p/d", "v2", 0)
	total := s.Revision()
	if total != 14 {
		t.Fatalf("revision %d after 14 writes", total)
	}
	evs := recvN(t, ref, int(total))
	now := mustList(t, s, "", storage.ListOptions{})
	at := map[int64]storage.ListResult{}
	for rev := int64(5); rev <= total; rev++ {
		at[rev] = mustList(t, s, "", storage.ListOptions{Revision: rev})
	}
	if err := s.Compact(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, dir)
	wantRevision(t, s, total)
	if got := s.CompactedRevision(); got != 5 {
		t.Fatalf("CompactedRevision() after reopening = %d, want 5", got)
	}
	res := mustList(t, s, "", storage.ListOptions{})
	if res.Revision != total {
		t.Fatalf("List after reopening read at %d, want %d", res.Revision, total)
	}
	wantItems(t, "List after reopening", res.Items, now.Items)
	for _, kv := range now.Items {
		wantKV(t, "Get after reopening", mustGet(t, s, kv.Key), kv)
	}
	for rev := int64(5); rev <= total; rev++ {
		wantItems(t, fmt.Sprintf("List at %d after reopening", rev), mustList(t, s, "", storage.ListOptions{Revision: rev}).Items, at[rev].Items)
	}
	_, err := s.List(ctx, "", storage.ListOptions{Revision: 4})
	wantErr(t, "List below the compacted revision after reopening", err, storage.ErrCompacted)
	_, err = s.Watch(ctx, "", 4)
	wantErr(t, "Watch below the compacted revision after reopening", err, storage.ErrCompacted)

	ch := mustWatch(t, ctx, s, "", 5)
	wantEvents(t, "watch from the compacted revision after reopening", recvN(t, ch, int(total-5)), evs[5:])
	chP := mustWatch(t, ctx, s, "/p/", 8)
	wantP := filter(evs[8:], "/p/")
	wantEvents(t, "prefixed watch from the past after reopening", recvN(t, chP, len(wantP)), wantP)

	// Writes carry on from the stored revision, and the watches go live.
	rev := mustCreate(t, s, "/p/z", "new")
	if rev != total+1 {
		t.Fatalf("first write after reopening: revision %d, want %d", rev, total+1)
	}
	for _, c := range []<-chan storage.Event{ch, chP} {
		if ev := recv(t, c); ev.Revision != rev || !ev.Created || ev.KV.Key != "/p/z" {
			t.Fatalf("live event after reopening: %s", eventString(ev))
		}
	}
	mustDelete(t, s, "/q/x", 0)
	if err := s.Compact(ctx, 8); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// The writes of the second session are there in a third.
	s = open(t, dir)
	wantRevision(t, s, total+2)
	if got := s.CompactedRevision(); got != 8 {
		t.Fatalf("CompactedRevision() after the second reopening = %d, want 8", got)
	}
	wantKV(t, "Get of a key written in the second session", mustGet(t, s, "/p/z"),
		storage.KV{Key: "/p/z", Value: []byte("new"), CreateRevision: total + 1, ModRevision: total + 1})
	_, err = s.Get(ctx, "/q/x")
	wantErr(t, "Get of a key deleted in the second session", err, storage.ErrNotFound)
	ch = mustWatch(t, ctx, s, "", 8)
	got := recvN(t, ch, int(total+2-8))
	wantEvents(t, "watch across two reopenings", got[:total-8], evs[8:])
	if got[len(got)-1].Type != storage.EventDelete || got[len(got)-1].KV.Key != "/q/x" || string(got[len(got)-1].PrevValue) != "" {
		t.Fatalf("last event %s, want the delete of /q/x", eventString(got[len(got)-1]))
	}
	wantItems(t, "List at 8 after the second reopening", mustList(t, s, "", storage.ListOptions{Revision: 8}).Items, at[8].Items)
}
