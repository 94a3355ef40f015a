package apiserver_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/testing/cluster"
)

// racePod is a pod no scheduler and no agent acts on: the test alone binds
// it, writes its status and deletes it.
func racePod(name string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{
			SchedulerName: "issue-19-nobody",
			Containers:    []corev1.Container{{Name: "c", Image: "busybox:1.28", Command: []string{"sh"}}},
		},
	}
}

// statusWriters patches the pod's status, without a resourceVersion, as fast
// as they can until stop is called or the pod is gone, like an agent
// reporting a restarted container. A patch without preconditions must never
// be refused with 409 Conflict either.
func statusWriters(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, name string, n int) (writes *atomic.Int64, stop func()) {
	writes = new(atomic.Int64)
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for w := range n {
		wg.Go(func() {
			for i := 0; ctx.Err() == nil; i++ {
				patch := fmt.Sprintf(`{"status":{"message":"writer %d write %d"}}`, w, i)
				_, err := cs.CoreV1().Pods(ns).Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "status")
				switch {
				case err == nil:
					writes.Add(1)
				case apierrors.IsNotFound(err) || ctx.Err() != nil:
					return
				default:
					t.Errorf("status patch of %s (no preconditions): %v", name, err)
					return
				}
			}
		})
	}
	return writes, func() { cancel(); wg.Wait() }
}

// TestWritesWithoutPreconditionsWinRaces is issue 19: a DELETE without
// preconditions, racing the agent's status writes to the same pod, was
// answered 409 Conflict when its guarded store update lost the race, and
// `kubectl run --rm` left the pod behind. Each round binds a pod, marks it
// deleted (a DELETE, or an eviction) and removes it (a DELETE with grace
// period 0) while status writers hammer it: every request must succeed.
func TestWritesWithoutPreconditionsWinRaces(t *testing.T) {
	c := cluster.Start(t, cluster.WithBolt(t.TempDir()), cluster.WithoutDNS())
	// 40 rounds of durable writes: about 40 s alone under -race, more on a
	// busy machine, so more than ctxT's minute.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	t.Cleanup(cancel)
	cs := c.Client
	const ns, rounds, writers = "default", 40, 3
	var total int64
	for i := range rounds {
		name := fmt.Sprintf("race-%d", i)
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, racePod(name), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		writes, stop := statusWriters(t, ctx, cs, ns, name, writers)
		// Each request below starts once the writers are writing.
		busy := func(what string) {
			t.Helper()
			n := writes.Load()
			eventually(t, what, func() bool { return writes.Load() >= n+int64(writers) || t.Failed() })
		}
		busy("status writes before the binding")
		err := cs.CoreV1().Pods(ns).Bind(ctx, &corev1.Binding{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Target:     corev1.ObjectReference{Kind: "Node", Name: "race-node"},
		}, metav1.CreateOptions{})
		if err != nil {
			stop()
			t.Fatalf("round %d: binding while the status is written: %v", i, err)
		}
		busy("status writes before the delete")
		if i%4 == 3 {
			err = cs.CoreV1().Pods(ns).EvictV1(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})
		} else {
			err = cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{})
		}
		if err != nil {
			stop()
			t.Fatalf("round %d: graceful delete (no preconditions) while the status is written: %v", i, err)
		}
		p, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil || p.DeletionTimestamp == nil || p.Spec.NodeName != "race-node" {
			stop()
			t.Fatalf("round %d: after the graceful delete: %v, %+v", i, err, p)
		}
		busy("status writes before the removal")
		if _, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			stop()
			t.Fatalf("round %d: status writes during the grace period removed the pod: %v", i, err)
		}
		err = cs.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)})
		stop()
		if err != nil {
			t.Fatalf("round %d: delete with grace period 0 while the status is written: %v", i, err)
		}
		if _, err := cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("round %d: pod still readable after its removal: %v", i, err)
		}
		total += writes.Load()
	}
	t.Logf("%d rounds, %d status writes raced the binding and the deletes", rounds, total)
}

// A DELETE's preconditions still answer 409 Conflict when they fail, and
// change nothing.
func TestDeletePreconditionsConflict(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := ctxT(t)
	pods := c.Client.CoreV1().Pods("default")
	p, err := pods.Create(ctx, racePod("precondition"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	stale := p.ResourceVersion
	if _, err := pods.Patch(ctx, p.Name, types.MergePatchType, []byte(`{"status":{"message":"moved on"}}`), metav1.PatchOptions{}, "status"); err != nil {
		t.Fatal(err)
	}
	err = pods.Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &stale}})
	if !apierrors.IsConflict(err) {
		t.Fatalf("DELETE with a stale resourceVersion precondition: got %v, want 409 Conflict", err)
	}
	err = pods.Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: ptr.To(types.UID("not-" + string(p.UID)))}})
	if !apierrors.IsConflict(err) {
		t.Fatalf("DELETE with another UID as precondition: got %v, want 409 Conflict", err)
	}
	if _, err := pods.Get(ctx, p.Name, metav1.GetOptions{}); err != nil {
		t.Fatalf("a refused DELETE removed the pod: %v", err)
	}
	cur, err := pods.Get(ctx, p.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := pods.Delete(ctx, p.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &cur.UID, ResourceVersion: &cur.ResourceVersion}}); err != nil {
		t.Fatalf("DELETE with current preconditions: %v", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		_, err := pods.Get(ctx, p.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod not removed after a DELETE with current preconditions: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
