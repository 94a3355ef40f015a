package scheduler_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	apitypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/client-go/tools/record"

	"github.com/headway/headway/internal/controller/scheduler"
)

func node(name string, ready corev1.ConditionStatus, unschedulable bool) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NodeSpec{Unschedulable: unschedulable}}
	if ready != "" {
		n.Status.Conditions = []corev1.NodeCondition{
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse},
			{Type: corev1.NodeReady, Status: ready},
		}
	}
	return n
}

func pod(name, nodeName string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: apitypes.UID("uid-" + name)},
		Spec:       corev1.PodSpec{NodeName: nodeName, SchedulerName: scheduler.Name, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		Status:     corev1.PodStatus{Phase: phase},
	}
}

func TestPick(t *testing.T) {
	ready := corev1.ConditionTrue
	for _, tc := range []struct {
		name  string
		nodes []*corev1.Node
		pods  []*corev1.Pod
		want  string
	}{
		{"no nodes", nil, nil, ""},
		{"one Ready node", []*corev1.Node{node("a", ready, false)}, nil, "a"},
		{"NotReady node skipped", []*corev1.Node{node("a", corev1.ConditionFalse, false), node("b", ready, false)}, nil, "b"},
		{"Unknown readiness skipped", []*corev1.Node{node("a", corev1.ConditionUnknown, false)}, nil, ""},
		{"node without a Ready condition skipped", []*corev1.Node{node("a", "", false)}, nil, ""},
		{"cordoned node skipped", []*corev1.Node{node("a", ready, true), node("b", ready, false)},
			[]*corev1.Pod{pod("p", "b", corev1.PodRunning)}, "b"},
		{"fewest pods wins", []*corev1.Node{node("a", ready, false), node("b", ready, false)},
			[]*corev1.Pod{pod("p1", "a", corev1.PodRunning), pod("p2", "a", corev1.PodPending), pod("p3", "b", corev1.PodRunning)}, "b"},
		{"finished pods do not count", []*corev1.Node{node("a", ready, false), node("b", ready, false)},
			[]*corev1.Pod{pod("p1", "a", corev1.PodSucceeded), pod("p2", "a", corev1.PodFailed), pod("p3", "b", corev1.PodRunning)}, "a"},
		{"unbound pods do not count", []*corev1.Node{node("b", ready, false), node("a", ready, false)},
			[]*corev1.Pod{pod("p1", "", corev1.PodPending), pod("p2", "b", corev1.PodRunning)}, "a"},
		{"ties broken by name", []*corev1.Node{node("c", ready, false), node("a", ready, false), node("b", ready, false)}, nil, "a"},
		{"only cordoned or not ready nodes", []*corev1.Node{node("a", ready, true), node("b", corev1.ConditionFalse, false)}, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := scheduler.Pick(tc.nodes, tc.pods); got != tc.want {
				t.Fatalf("Pick = %q, want %q", got, tc.want)
			}
		})
	}
}

// cluster is a fake API with the scheduler running on it; bindings set the
// pod's node as the API server's binding subresource does.
type cluster struct {
	client   *fake.Clientset
	recorder *record.FakeRecorder
}

func start(t *testing.T, objs ...runtime.Object) *cluster {
	t.Helper()
	client := fake.NewClientset(objs...)
	client.PrependReactor("create", "pods", func(a k8stesting.Action) (bool, runtime.Object, error) {
		ca := a.(k8stesting.CreateAction)
		if ca.GetSubresource() != "binding" {
			return false, nil, nil
		}
		b := ca.GetObject().(*corev1.Binding)
		obj, err := client.Tracker().Get(corev1.SchemeGroupVersion.WithResource("pods"), b.Namespace, b.Name)
		if err != nil {
			return true, nil, err
		}
		p := obj.(*corev1.Pod).DeepCopy()
		p.Spec.NodeName = b.Target.Name
		return true, nil, client.Tracker().Update(corev1.SchemeGroupVersion.WithResource("pods"), p, b.Namespace)
	})
	factory := informers.NewSharedInformerFactory(client, 0)
	recorder := record.NewFakeRecorder(100)
	c := scheduler.New(client, factory, recorder, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	factory.Start(ctx.Done())
	go func() { defer close(done); c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		factory.Shutdown()
	})
	return &cluster{client: client, recorder: recorder}
}

func (c *cluster) pod(t *testing.T, name string) *corev1.Pod {
	t.Helper()
	p, err := c.client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (c *cluster) event(t *testing.T, prefix string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case e := <-c.recorder.Events:
			if strings.HasPrefix(e, prefix) {
				return
			}
		case <-deadline:
			t.Fatalf("no event %q", prefix)
		}
	}
}

func TestBindsToLeastLoadedReadyNode(t *testing.T) {
	ready := corev1.ConditionTrue
	other := pod("other-scheduler", "", corev1.PodPending)
	other.Spec.SchedulerName = "someone-else"
	c := start(t,
		node("busy", ready, false), node("idle", ready, false), node("cordoned", ready, true), node("down", corev1.ConditionFalse, false),
		pod("running", "busy", corev1.PodRunning),
		pod("web", "", corev1.PodPending),
		other,
	)
	waitFor(t, "web bound", func() bool { return c.pod(t, "web").Spec.NodeName != "" })
	if n := c.pod(t, "web").Spec.NodeName; n != "idle" {
		t.Fatalf("web bound to %q, want idle (the Ready, schedulable node with fewest pods)", n)
	}
	c.event(t, "Normal Scheduled Successfully assigned default/web to idle")
	time.Sleep(100 * time.Millisecond)
	if n := c.pod(t, "other-scheduler").Spec.NodeName; n != "" {
		t.Fatalf("a pod for another scheduler was bound to %q", n)
	}
	if n := c.pod(t, "running").Spec.NodeName; n != "busy" {
		t.Fatalf("a bound pod moved to %q", n)
	}
}

func TestUnschedulableUntilANodeIsReady(t *testing.T) {
	c := start(t, node("down", corev1.ConditionFalse, false), pod("web", "", corev1.PodPending))
	scheduled := func() *corev1.PodCondition {
		for _, cond := range c.pod(t, "web").Status.Conditions {
			if cond.Type == corev1.PodScheduled {
				return &cond
			}
		}
		return nil
	}
	waitFor(t, "PodScheduled=False", func() bool { return scheduled() != nil })
	cond := scheduled()
	if cond.Status != corev1.ConditionFalse || cond.Reason != corev1.PodReasonUnschedulable || !strings.HasPrefix(cond.Message, "0/1 nodes are available") {
		t.Fatalf("PodScheduled condition %+v, want False/Unschedulable 0/1 nodes", cond)
	}
	c.event(t, "Warning FailedScheduling 0/1 nodes are available")

	// The node turns Ready: the waiting pod is bound.
	n := node("down", corev1.ConditionTrue, false)
	if _, err := c.client.CoreV1().Nodes().UpdateStatus(context.Background(), n, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "web bound once the node is Ready", func() bool { return c.pod(t, "web").Spec.NodeName == "down" })
}

func TestPodsSpreadAcrossNodes(t *testing.T) {
	ready := corev1.ConditionTrue
	c := start(t, node("a", ready, false), node("b", ready, false))
	// One at a time, each bound before the next comes: each goes to the
	// node with fewer pods, ties to the first by name.
	want := []string{"a", "b", "a", "b"}
	for i, name := range []string{"p0", "p1", "p2", "p3"} {
		if _, err := c.client.CoreV1().Pods("default").Create(context.Background(), pod(name, "", corev1.PodPending), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, name+" bound", func() bool { return c.pod(t, name).Spec.NodeName != "" })
		if n := c.pod(t, name).Spec.NodeName; n != want[i] {
			t.Fatalf("%s bound to %q, want %q", name, n, want[i])
		}
	}
}

// TestPodsCreatedTogetherSpread: pods that arrive together (a Parallel
// StatefulSet) are placed against the bindings already decided, not only
// what the informer shows: hostname anti-affinity puts one on each node and
// the fourth waits with kube-scheduler's message.
func TestPodsCreatedTogetherSpread(t *testing.T) {
	web := map[string]string{"app": "web"}
	var objs []runtime.Object
	for _, n := range []string{"a", "b", "c"} {
		objs = append(objs, readyNode(n, nil))
	}
	for i := 0; i < 4; i++ {
		p := owned(fmt.Sprintf("web-%d", i), "", "sts", web)
		p.Spec.Affinity = hostnameAnti("web")
		objs = append(objs, p)
	}
	c := start(t, objs...)
	waitFor(t, "three pods bound", func() bool {
		n := 0
		for i := 0; i < 4; i++ {
			if c.pod(t, fmt.Sprintf("web-%d", i)).Spec.NodeName != "" {
				n++
			}
		}
		return n == 3
	})
	c.event(t, "Warning FailedScheduling 0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.")
	used := map[string]bool{}
	for i := 0; i < 4; i++ {
		if n := c.pod(t, fmt.Sprintf("web-%d", i)).Spec.NodeName; n != "" {
			if used[n] {
				t.Fatalf("two pods of the set on %s", n)
			}
			used[n] = true
		}
	}
}
