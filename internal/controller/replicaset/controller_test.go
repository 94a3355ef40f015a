package replicaset

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
)

// recorder is a Writer that records writes and changes nothing, so the
// controller's cache stays stale until the test updates it.
type recorder struct {
	mu       sync.Mutex
	created  []*corev1.Pod
	deleted  []string
	adopted  []string
	released []string
	statuses []appsv1.ReplicaSetStatus
	fresh    *appsv1.ReplicaSet
	failWith error
}

func (r *recorder) GetReplicaSet(context.Context, string, string) (*appsv1.ReplicaSet, error) {
	return r.fresh, nil
}
func (r *recorder) CreatePod(_ context.Context, _ *appsv1.ReplicaSet, p *corev1.Pod) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failWith != nil {
		return r.failWith
	}
	r.created = append(r.created, p)
	return nil
}
func (r *recorder) DeletePod(_ context.Context, _ *appsv1.ReplicaSet, p *corev1.Pod) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.deleted = append(r.deleted, p.Name)
	return nil
}
func (r *recorder) AdoptPod(_ context.Context, _ *appsv1.ReplicaSet, p *corev1.Pod) error {
	r.adopted = append(r.adopted, p.Name)
	return nil
}
func (r *recorder) ReleasePod(_ context.Context, _ *appsv1.ReplicaSet, p *corev1.Pod) error {
	r.released = append(r.released, p.Name)
	return nil
}
func (r *recorder) UpdateStatus(_ context.Context, rs *appsv1.ReplicaSet) (*appsv1.ReplicaSet, error) {
	r.statuses = append(r.statuses, rs.Status)
	return rs, nil
}

type harness struct {
	c    *Controller
	w    *recorder
	rs   cache.Indexer
	pods cache.Indexer
}

func newHarness(rs *appsv1.ReplicaSet) *harness {
	factory := informers.NewSharedInformerFactory(fake.NewClientset(), 0)
	w := &recorder{fresh: rs}
	c := NewWithWriter(w, factory, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.now = func() time.Time { return t0 }
	h := &harness{c: c, w: w, rs: factory.Apps().V1().ReplicaSets().Informer().GetIndexer(),
		pods: factory.Core().V1().Pods().Informer().GetIndexer()}
	_ = h.rs.Add(rs)
	return h
}

// show makes a created pod appear in the cache, as the informer would.
func (h *harness) show(p *corev1.Pod, name string) *corev1.Pod {
	q := p.DeepCopy()
	q.Name, q.UID = name, types.UID("uid-"+name)
	q.ResourceVersion = "1"
	_ = h.pods.Add(q)
	h.c.addPod(q)
	return q
}

// TestExpectationsPreventDoubleCreate: while the cache has not shown the
// pods a sync created, later syncs create none.
func TestExpectationsPreventDoubleCreate(t *testing.T) {
	rs := newRS(3)
	h := newHarness(rs)
	ctx := context.Background()
	if _, err := h.c.Sync(ctx, "default/web-5d8f9c"); err != nil {
		t.Fatal(err)
	}
	if len(h.w.created) != 3 {
		t.Fatalf("first sync created %d pods, want 3", len(h.w.created))
	}
	for i := 0; i < 3; i++ {
		if _, err := h.c.Sync(ctx, "default/web-5d8f9c"); err != nil {
			t.Fatal(err)
		}
	}
	if len(h.w.created) != 3 {
		t.Fatalf("stale cache: %d pods created, want still 3", len(h.w.created))
	}
	// Two of three show up: still waiting.
	p0 := h.show(h.w.created[0], "web-5d8f9c-aaaaa")
	h.show(h.w.created[1], "web-5d8f9c-bbbbb")
	_, _ = h.c.Sync(ctx, "default/web-5d8f9c")
	if len(h.w.created) != 3 {
		t.Fatalf("%d pods created with one creation unseen, want 3", len(h.w.created))
	}
	h.show(h.w.created[2], "web-5d8f9c-ccccc")
	_, _ = h.c.Sync(ctx, "default/web-5d8f9c")
	if len(h.w.created) != 3 {
		t.Fatalf("%d pods created with all seen, want 3", len(h.w.created))
	}
	// A pod goes away: one replacement, once.
	_ = h.pods.Delete(p0)
	h.c.deletePod(p0)
	_, _ = h.c.Sync(ctx, "default/web-5d8f9c")
	_, _ = h.c.Sync(ctx, "default/web-5d8f9c")
	if len(h.w.created) != 4 {
		t.Fatalf("%d pods created after a deletion, want 4", len(h.w.created))
	}
	last := h.w.statuses[len(h.w.statuses)-1]
	if last.Replicas != 2 || last.ObservedGeneration != 2 {
		t.Errorf("status %+v", last)
	}
}

// TestExpectationsPreventDoubleDelete: a scale-down deletes each pod once
// even when the cache still shows them.
func TestExpectationsPreventDoubleDelete(t *testing.T) {
	rs := newRS(1)
	h := newHarness(rs)
	var pods []*corev1.Pod
	for i := 0; i < 3; i++ {
		p := mkPod(fmt.Sprintf("p%d", i))
		pods = append(pods, p)
		_ = h.pods.Add(p)
	}
	ctx := context.Background()
	_, _ = h.c.Sync(ctx, "default/web-5d8f9c")
	_, _ = h.c.Sync(ctx, "default/web-5d8f9c")
	if len(h.w.deleted) != 2 {
		t.Fatalf("deleted %v, want two pods once", h.w.deleted)
	}
	// The deletions show up as pods being deleted: the set is satisfied, and
	// the terminating pods no longer count.
	for _, name := range h.w.deleted {
		for _, p := range pods {
			if p.Name == name {
				q := p.DeepCopy()
				ts := metav1.NewTime(t0)
				q.DeletionTimestamp = &ts
				q.ResourceVersion = "2"
				_ = h.pods.Update(q)
				h.c.updatePod(p, q)
			}
		}
	}
	_, _ = h.c.Sync(ctx, "default/web-5d8f9c")
	if len(h.w.deleted) != 2 || len(h.w.created) != 0 {
		t.Fatalf("deleted %v created %d after the deletions showed", h.w.deleted, len(h.w.created))
	}
	if last := h.w.statuses[len(h.w.statuses)-1]; last.Replicas != 1 {
		t.Errorf("status replicas %d, want 1", last.Replicas)
	}
}

// TestFailedCreateCondition: a failing creation is reported in the
// ReplicaFailure condition and does not leave expectations waiting.
func TestFailedCreateCondition(t *testing.T) {
	rs := newRS(4)
	h := newHarness(rs)
	h.w.failWith = fmt.Errorf("pods \"web\" is forbidden: exceeded quota")
	ctx := context.Background()
	if _, err := h.c.Sync(ctx, "default/web-5d8f9c"); err == nil {
		t.Fatal("no error from a failing sync")
	}
	st := h.w.statuses[len(h.w.statuses)-1]
	c := condition(st.Conditions, appsv1.ReplicaSetReplicaFailure)
	if c == nil || c.Reason != FailedCreate {
		t.Fatalf("conditions %+v", st.Conditions)
	}
	h.w.failWith = nil
	if _, err := h.c.Sync(ctx, "default/web-5d8f9c"); err != nil {
		t.Fatal(err)
	}
	if len(h.w.created) != 4 {
		t.Fatalf("created %d after the failure cleared, want 4", len(h.w.created))
	}
}

// TestAdoptAndRelease: an orphan matching the selector is adopted (and
// counted); an owned pod that stopped matching is released.
func TestAdoptAndRelease(t *testing.T) {
	rs := newRS(2)
	h := newHarness(rs)
	_ = h.pods.Add(mkPod("orphan", orphan()))
	_ = h.pods.Add(mkPod("relabelled", withLabels(map[string]string{"app": "gone"})))
	_ = h.pods.Add(mkPod("mine"))
	if _, err := h.c.Sync(context.Background(), "default/web-5d8f9c"); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(h.w.adopted) != "[orphan]" || fmt.Sprint(h.w.released) != "[relabelled]" || len(h.w.created) != 0 {
		t.Errorf("adopted %v released %v created %d", h.w.adopted, h.w.released, len(h.w.created))
	}
	// A set the API shows as being deleted adopts nothing.
	gone := rs.DeepCopy()
	ts := metav1.NewTime(t0)
	gone.DeletionTimestamp = &ts
	h2 := newHarness(rs)
	h2.w.fresh = gone
	_ = h2.pods.Add(mkPod("orphan", orphan()))
	_, _ = h2.c.Sync(context.Background(), "default/web-5d8f9c")
	if len(h2.w.adopted) != 0 {
		t.Errorf("adopted %v for a set being deleted", h2.w.adopted)
	}
}
