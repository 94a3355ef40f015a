package storagetest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/headway/headway/internal/storage"
)

// testWatchAtNewestRevision: while writers commit, readers read the newest
// revision every way a client can learn it (a List, a paginated List's first
// page, a Get's ModRevision, Revision()) and at once watch from it, as a
// watch-list or a list-then-watch does. A revision a read has returned is
// committed: the watch must never be refused as ErrFutureRevision. A watch
// kept open replays onto its list to the store's final state, so starting
// from a revision not yet published to watchers loses and repeats nothing.
func testWatchAtNewestRevision(t *testing.T, s storage.Interface) {
	ctx := t.Context()
	const writers, perWriter, readers, kept = 4, 150, 4, 8
	for g := range writers {
		mustCreate(t, s, fmt.Sprintf("/nw/%d/seed", g), "0")
	}
	var done atomic.Bool
	var attempts atomic.Int64
	var wg sync.WaitGroup
	for g := range writers {
		wg.Go(func() {
			exists := map[string]bool{}
			for i := range perWriter {
				key := fmt.Sprintf("/nw/%d/%d", g, i%6)
				var err error
				switch {
				case !exists[key]:
					_, err = s.Create(ctx, key, []byte(strconv.Itoa(i)))
					exists[key] = true
				case i%5 == 0:
					_, _, err = s.Delete(ctx, key, 0)
					exists[key] = false
				default:
					_, err = s.Update(ctx, key, []byte(strconv.Itoa(i)), 0)
				}
				if err != nil {
					t.Errorf("writer %d: %v", g, err)
					return
				}
			}
		})
	}
	type openWatch struct {
		list storage.ListResult
		ch   <-chan storage.Event
	}
	results := make([][]openWatch, readers)
	var rg sync.WaitGroup
	for r := range readers {
		rg.Go(func() {
			for i := 0; !done.Load() || i < 4; i++ {
				var from int64
				var list storage.ListResult
				var err error
				switch i % 4 {
				case 0: // the list of a watch-list (or of list-then-watch)
					list, err = s.List(ctx, "/nw/", storage.ListOptions{})
					from = list.Revision
				case 1: // the first page of a paginated list
					var page storage.ListResult
					page, err = s.List(ctx, "/nw/", storage.ListOptions{Limit: 1})
					from = page.Revision
				case 2: // an object's resourceVersion
					var kv storage.KV
					kv, err = s.Get(ctx, fmt.Sprintf("/nw/%d/seed", (r+i)%writers))
					from = kv.ModRevision
				default:
					from = s.Revision()
				}
				if err != nil {
					t.Errorf("reader %d: read %d: %v", r, i, err)
					return
				}
				wctx, cancel := context.WithCancel(ctx)
				ch, err := s.Watch(wctx, "/nw/", from)
				attempts.Add(1)
				if err != nil {
					cancel()
					if errors.Is(err, storage.ErrFutureRevision) {
						t.Errorf("reader %d: Watch from revision %d just read (way %d): %v", r, from, i%4, err)
					} else {
						t.Errorf("reader %d: Watch(%d): %v", r, from, err)
					}
					return
				}
				if i%4 == 0 && len(results[r]) < kept {
					results[r] = append(results[r], openWatch{list: list, ch: ch})
					t.Cleanup(cancel)
					continue
				}
				cancel()
				for ev := range ch {
					if ev.Revision <= from {
						t.Errorf("reader %d: watch from %d delivered revision %d", r, from, ev.Revision)
					}
				}
			}
		})
	}
	wg.Wait()
	done.Store(true)
	rg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	final := mustList(t, s, "/nw/", storage.ListOptions{})
	t.Logf("%d watches at the newest revision while writers committed; final revision %d", attempts.Load(), final.Revision)
	for r := range results {
		for j, k := range results[r] {
			state := map[string]storage.KV{}
			for _, kv := range k.list.Items {
				state[kv.Key] = kv
			}
			last := k.list.Revision
			for last < final.Revision {
				ev := recv(t, k.ch)
				if ev.Revision <= last {
					t.Fatalf("reader %d watch %d (from %d): revision %d after %d", r, j, k.list.Revision, ev.Revision, last)
				}
				last = ev.Revision
				if ev.Type == storage.EventDelete {
					delete(state, ev.KV.Key)
				} else {
					state[ev.KV.Key] = ev.KV
				}
			}
			wantItems(t, fmt.Sprintf("reader %d watch %d: list at %d plus its events", r, j, k.list.Revision),
				storage.PageOf(state, 0, last).Items, final.Items)
		}
	}
}
