package apiserver_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/testing/cluster"
)

// TestWatchAtNewestRevisionWhileWriting is issue 19's second half: with the
// bolt store, a watch-list (sendInitialEvents=true) or a list-then-watch at
// the revision the list returned could be answered "storage: revision is in
// the future" while a write was being committed, and kubectl's informer fell
// back to a plain list. Readers run both sequences many times while writers
// commit; every watch must start (no ERROR event), a watch-list must end its
// initial events with the bookmark, and events after it are newer.
func TestWatchAtNewestRevisionWhileWriting(t *testing.T) {
	c := cluster.Start(t, cluster.WithBolt(t.TempDir()), cluster.WithoutDNS())
	ctx, stopReaders := context.WithCancel(ctxT(t))
	defer stopReaders()
	cms := c.Client.CoreV1().ConfigMaps("default")
	const writers, readers, rounds = 3, 3, 60
	wctx, stopWriters := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := 0; wctx.Err() == nil; i++ {
				name := fmt.Sprintf("w%d-%d", w, i%5)
				var err error
				if i < 5 {
					cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"i": "0"}}
					_, err = cms.Create(wctx, cm, metav1.CreateOptions{})
				} else {
					patch := fmt.Sprintf(`{"data":{"i":"%d"}}`, i)
					_, err = cms.Patch(wctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{})
				}
				if err != nil && wctx.Err() == nil {
					t.Errorf("writer %d: %v", w, err)
					stopReaders() // they wait for the writers' events
					return
				}
			}
		})
	}
	// next returns the watch's next event, failing on an ERROR event.
	next := func(w watch.Interface, what string) (watch.Event, bool) {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Errorf("%s: the watch closed", what)
				return ev, false
			}
			if ev.Type == watch.Error {
				t.Errorf("%s: ERROR event: %v", what, apierrors.FromObject(ev.Object))
				return ev, false
			}
			return ev, true
		case <-ctx.Done():
			t.Errorf("%s: no event before the deadline", what)
			return watch.Event{}, false
		}
	}
	rv := func(obj any) int64 {
		acc, _ := meta.Accessor(obj)
		n, _ := strconv.ParseInt(acc.GetResourceVersion(), 10, 64)
		return n
	}
	var rg sync.WaitGroup
	for r := range readers {
		rg.Go(func() {
			for i := range rounds {
				if t.Failed() {
					return
				}
				what := fmt.Sprintf("reader %d round %d", r, i)
				if (r+i)%2 == 0 {
					// A watch-list, as client-go's reflector starts one.
					w, err := cms.Watch(ctx, metav1.ListOptions{
						SendInitialEvents:    ptr.To(true),
						ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
						AllowWatchBookmarks:  true,
					})
					if err != nil {
						t.Errorf("%s: watch-list: %v", what, err)
						return
					}
					var bookmark int64
					for bookmark == 0 {
						ev, ok := next(w, what+" watch-list")
						if !ok {
							w.Stop()
							return
						}
						if ev.Type == watch.Bookmark {
							acc, _ := meta.Accessor(ev.Object)
							if acc.GetAnnotations()[metav1.InitialEventsAnnotationKey] == "true" {
								bookmark = rv(ev.Object)
							}
						}
					}
					// The writers go on: a live event follows, newer than the bookmark.
					if ev, ok := next(w, what+" watch-list after the initial events"); ok && ev.Type != watch.Bookmark && rv(ev.Object) <= bookmark {
						t.Errorf("%s: event at %d after the initial-events bookmark at %d", what, rv(ev.Object), bookmark)
					}
					w.Stop()
					continue
				}
				// A list, then a watch from the revision it returned.
				list, err := cms.List(ctx, metav1.ListOptions{})
				if err != nil {
					t.Errorf("%s: list: %v", what, err)
					return
				}
				w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: list.ResourceVersion})
				if err != nil {
					t.Errorf("%s: watch from the list's %s: %v", what, list.ResourceVersion, err)
					return
				}
				from, _ := strconv.ParseInt(list.ResourceVersion, 10, 64)
				if ev, ok := next(w, what+" list-then-watch"); ok && rv(ev.Object) <= from {
					t.Errorf("%s: watch from %d delivered %d", what, from, rv(ev.Object))
				}
				w.Stop()
			}
		})
	}
	rg.Wait()
	stopWriters()
	wg.Wait()
}
