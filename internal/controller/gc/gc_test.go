package gc_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/controller/gc"
	"github.com/headway/headway/internal/testing/cluster"
)

// ownerWithPods creates an owner and n pods it controls. The owner is a
// ConfigMap: no controller manages ConfigMaps or their pods, so only the
// garbage collector acts here (a StatefulSet's controller would).
func ownerWithPods(t *testing.T, ctx context.Context, cs kubernetes.Interface, name string, n int) *corev1.ConfigMap {
	t.Helper()
	owner, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ref := metav1.NewControllerRef(owner, corev1.SchemeGroupVersion.WithKind("ConfigMap"))
	for i := 0; i < n; i++ {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", name, i), Labels: map[string]string{"app": name}, OwnerReferences: []metav1.OwnerReference{*ref}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox:1.28", Command: []string{"sleep", "3600"}}}},
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	return owner
}

func countPods(t *testing.T, ctx context.Context, cs kubernetes.Interface, app string) int {
	t.Helper()
	l, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=" + app})
	if err != nil {
		t.Fatal(err)
	}
	return len(l.Items)
}

func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > timeout {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return time.Since(start)
}

func TestGarbageCollection(t *testing.T) {
	c := cluster.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := c.Client

	t.Run("background", func(t *testing.T) {
		ownerWithPods(t, ctx, cs, "bg", 50)
		start := time.Now()
		if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, "bg", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the 50 pods of a deleted StatefulSet to be collected", 30*time.Second, func() bool { return countPods(t, ctx, cs, "bg") == 0 })
		t.Logf("50 dependents collected %v after the owner's delete", time.Since(start).Round(time.Millisecond))
	})

	t.Run("orphan", func(t *testing.T) {
		ownerWithPods(t, ctx, cs, "or", 50)
		if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, "or", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationOrphan)}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the orphaning owner to go", 30*time.Second, func() bool {
			_, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "or", metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		})
		l, _ := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=or"})
		if len(l.Items) != 50 {
			t.Fatalf("orphan delete left %d of 50 pods", len(l.Items))
		}
		for _, p := range l.Items {
			if len(p.OwnerReferences) != 0 {
				t.Fatalf("orphaned pod %s still names its owner: %v", p.Name, p.OwnerReferences)
			}
		}
	})

	t.Run("foreground", func(t *testing.T) {
		ownerWithPods(t, ctx, cs, "fg", 5)
		if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, "fg", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationForeground)}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the foreground-deleted owner to go", 30*time.Second, func() bool {
			_, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "fg", metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		})
		if n := countPods(t, ctx, cs, "fg"); n != 0 {
			t.Fatalf("the owner went before its %d dependents", n)
		}
	})

	t.Run("dangling owner", func(t *testing.T) {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "dangling", Labels: map[string]string{"app": "dangling"}, OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "apps/v1", Kind: "StatefulSet", Name: "never-existed", UID: "0000-1111", Controller: ptr.To(true)}}},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x:1"}}},
		}
		if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "a pod whose owner never existed to be collected", 30*time.Second, func() bool { return countPods(t, ctx, cs, "dangling") == 0 })
	})
}

// TestStatefulSetDeletion: the check with the real StatefulSet
// controller: deleting a StatefulSet of 50 pods leaves none (Background).
func TestStatefulSetDeletion(t *testing.T) {
	c := cluster.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := c.Client
	for _, tc := range []struct {
		name   string
		policy metav1.DeletionPropagation
		left   int
	}{
		{"bg", metav1.DeletePropagationBackground, 0},
		// Under load, pods created just before an Orphan deletion may reach
		// the collector's informers after the owner is gone; the collector
		// releases them from a live read first, so all 50 stay.
		{"orphan", metav1.DeletePropagationOrphan, 50},
	} {
		sts := &appsv1.StatefulSet{
			ObjectMeta: metav1.ObjectMeta{Name: "sts-" + tc.name},
			Spec: appsv1.StatefulSetSpec{
				Replicas:            ptr.To(int32(50)),
				PodManagementPolicy: appsv1.ParallelPodManagement,
				ServiceName:         "sts-" + tc.name,
				Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{"app": "sts-" + tc.name}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "sts-" + tc.name}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox:1.28", Command: []string{"sleep", "3600"}}}},
				},
			},
		}
		if _, err := cs.AppsV1().StatefulSets("default").Create(ctx, sts, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "50 pods of the StatefulSet", 60*time.Second, func() bool { return countPods(t, ctx, cs, "sts-"+tc.name) == 50 })
		start := time.Now()
		if err := cs.AppsV1().StatefulSets("default").Delete(ctx, "sts-"+tc.name, metav1.DeleteOptions{PropagationPolicy: ptr.To(tc.policy)}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the StatefulSet to go", 30*time.Second, func() bool {
			_, err := cs.AppsV1().StatefulSets("default").Get(ctx, "sts-"+tc.name, metav1.GetOptions{})
			return apierrors.IsNotFound(err)
		})
		if tc.left == 0 {
			waitFor(t, "the pods to be collected", 30*time.Second, func() bool { return countPods(t, ctx, cs, "sts-"+tc.name) == 0 })
			t.Logf("Background: 50 pods gone %v after the StatefulSet's delete", time.Since(start).Round(time.Millisecond))
		} else if n := countPods(t, ctx, cs, "sts-"+tc.name); n != tc.left {
			evs, _ := cs.CoreV1().Events("default").List(ctx, metav1.ListOptions{})
			var lines []string
			for _, e := range evs.Items {
				lines = append(lines, e.InvolvedObject.Name+" "+e.Reason+" "+e.Message)
			}
			t.Fatalf("Orphan left %d pods, want %d; events:\n%s", n, tc.left, strings.Join(lines, "\n"))
		}
	}
}

// flakyDiscovery fails its first fails discoveries as the server did once
// at a start in CI (a 403 whose body the discovery client could not read).
type flakyDiscovery struct {
	discovery.DiscoveryInterface
	fails int
	calls atomic.Int64
}

func (d *flakyDiscovery) ServerGroupsAndResources() ([]*metav1.APIGroup, []*metav1.APIResourceList, error) {
	if d.calls.Add(1) <= int64(d.fails) {
		return nil, nil, apierrors.NewGenericServerResponse(http.StatusForbidden, "GET", schema.GroupResource{}, "", "unknown", 0, true)
	}
	return d.DiscoveryInterface.ServerGroupsAndResources()
}

// TestFirstDiscoveryRetried: a collector whose first discoveries fail
// tries again and then collects (it used to stop for good).
func TestFirstDiscoveryRetried(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutControllers())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	md, err := metadata.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	disc := &flakyDiscovery{DiscoveryInterface: c.Client.Discovery(), fails: 2}
	collector := gc.New(md, disc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	done := make(chan struct{})
	go func() {
		defer close(done)
		collector.Run(ctx)
	}()
	defer func() {
		cancel()
		<-done
	}()

	ownerWithPods(t, ctx, c.Client, "retried", 3)
	if err := c.Client.CoreV1().ConfigMaps("default").Delete(ctx, "retried", metav1.DeleteOptions{PropagationPolicy: ptr.To(metav1.DeletePropagationBackground)}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the pods of a deleted owner to be collected after two failed discoveries", 30*time.Second, func() bool { return countPods(t, ctx, c.Client, "retried") == 0 })
	if n := disc.calls.Load(); n < 3 {
		t.Fatalf("discovery was called %d times; the test meant two failures and a success", n)
	}
}
