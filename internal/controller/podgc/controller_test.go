package podgc

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func pod(name, node string, deleting bool) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{NodeName: node}, Status: corev1.PodStatus{Phase: corev1.PodRunning}}
	if deleting {
		now := metav1.Now()
		p.DeletionTimestamp = &now
	}
	return p
}

// TestCollects: pods of a deleted node go only after the quarantine, marked
// Failed with DisruptionTarget first; pods of existing nodes stay;
// unscheduled pods being deleted go at once.
func TestCollects(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "alive"}}
	cs := k8sfake.NewSimpleClientset(node,
		pod("on-alive", "alive", false), pod("on-gone", "gone", false), pod("unscheduled-deleting", "", true), pod("unscheduled", "", false))
	factory := informers.NewSharedInformerFactory(cs, 0)
	c := New(cs, factory, slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.Quarantine = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())

	exists := func(name string) bool {
		_, err := cs.CoreV1().Pods("default").Get(ctx, name, metav1.GetOptions{})
		return err == nil
	}
	t0 := time.Now()
	c.check(ctx, t0)
	if exists("unscheduled-deleting") {
		t.Error("an unscheduled pod being deleted is still there")
	}
	if !exists("on-gone") {
		t.Fatal("the pod of a missing node went before the quarantine")
	}
	c.check(ctx, t0.Add(30*time.Second))
	if !exists("on-gone") {
		t.Fatal("the pod of a missing node went half-way through the quarantine")
	}
	c.check(ctx, t0.Add(61*time.Second))
	if exists("on-gone") {
		t.Fatal("the pod of a deleted node is still there after the quarantine")
	}
	if !exists("on-alive") || !exists("unscheduled") {
		t.Fatal("a pod of a live node, or an unscheduled one not being deleted, was deleted")
	}
	var marked, forced bool
	for _, a := range cs.Actions() {
		switch {
		case a.GetVerb() == "update" && a.GetSubresource() == "status":
			p := a.(k8stesting.UpdateAction).GetObject().(*corev1.Pod)
			if p.Name == "on-gone" && p.Status.Phase == corev1.PodFailed {
				for _, cond := range p.Status.Conditions {
					marked = marked || (cond.Type == corev1.DisruptionTarget && cond.Reason == "DeletionByPodGC")
				}
			}
		case a.GetVerb() == "delete":
			d := a.(k8stesting.DeleteAction).GetDeleteOptions()
			if d.GracePeriodSeconds != nil && *d.GracePeriodSeconds == 0 {
				forced = true
			}
		}
	}
	if !marked || !forced {
		t.Fatalf("marked Failed with DisruptionTarget %v, force-deleted %v", marked, forced)
	}
}

// TestNodeBackBeforeQuarantine: a node that exists again when the
// quarantine ends keeps its pods (the live read decides).
func TestNodeBackBeforeQuarantine(t *testing.T) {
	cs := k8sfake.NewSimpleClientset(pod("p", "flaky", false))
	factory := informers.NewSharedInformerFactory(cs, 0)
	c := New(cs, factory, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	factory.Start(ctx.Done())
	factory.WaitForCacheSync(ctx.Done())
	t0 := time.Now()
	c.check(ctx, t0)
	// The node is back; whether the informer shows it yet or only the
	// live read does, the pod stays.
	if _, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "flaky"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	c.check(ctx, t0.Add(DefaultQuarantine+time.Second))
	if _, err := cs.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{}); err != nil {
		t.Fatalf("the pod of a node that came back was collected: %v", err)
	}
}
