package nodelifecycle_test

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/controller/nodelifecycle"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func at(d time.Duration) metav1.Time { return metav1.NewTime(t0.Add(d)) }

func nodeWith(ready corev1.ConditionStatus, taints ...corev1.Taint) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Spec: corev1.NodeSpec{Taints: taints}}
	if ready != "" {
		n.Status.Conditions = []corev1.NodeCondition{
			{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory"},
			{Type: corev1.NodeReady, Status: ready, Reason: "KubeletReady", LastHeartbeatTime: at(0), LastTransitionTime: at(0)},
			{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionFalse},
		}
	}
	return n
}

var (
	unreachSched = corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule}
	unreachExec  = corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute, TimeAdded: ptr.To(at(time.Second))}
	notReadySch  = corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}
	notReadyExec = corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoExecute, TimeAdded: ptr.To(at(time.Second))}
	userTaint    = corev1.Taint{Key: "dedicated", Value: "db", Effect: corev1.TaintEffectNoSchedule}
)

func keys(ts []corev1.Taint) []string {
	var out []string
	for _, t := range ts {
		out = append(out, t.Key+":"+string(t.Effect))
	}
	return out
}

func TestDecideNode(t *testing.T) {
	grace := 40 * time.Second
	fresh := nodelifecycle.Observed{LastSeen: t0, Now: t0.Add(39 * time.Second), Grace: grace}
	stale := nodelifecycle.Observed{LastSeen: t0, Now: t0.Add(41 * time.Second), Grace: grace}
	for _, tc := range []struct {
		name        string
		node        *corev1.Node
		obs         nodelifecycle.Observed
		wantReady   corev1.ConditionStatus // "" when conditions are not written
		wantReason  string
		wantTaints  []string // nil when taints are not written
		became      bool
		unreachable bool
	}{
		{name: "renewed within the grace period: nothing", node: nodeWith(corev1.ConditionTrue), obs: fresh},
		{name: "grace period over: Unknown, unreachable taints", node: nodeWith(corev1.ConditionTrue, userTaint), obs: stale,
			wantReady: corev1.ConditionUnknown, wantReason: nodelifecycle.ReasonNodeStatusUnknown,
			wantTaints: []string{"dedicated:NoSchedule", "node.kubernetes.io/unreachable:NoSchedule", "node.kubernetes.io/unreachable:NoExecute"},
			became:     true, unreachable: true},
		{name: "already marked: nothing more", node: func() *corev1.Node {
			n := nodeWith(corev1.ConditionUnknown, unreachSched, unreachExec)
			for i := range n.Status.Conditions {
				n.Status.Conditions[i].Status = corev1.ConditionUnknown
			}
			return n
		}(), obs: stale, unreachable: true},
		{name: "never posted a status", node: nodeWith(""), obs: stale,
			wantReady: corev1.ConditionUnknown, wantReason: nodelifecycle.ReasonNodeStatusNeverUpdated,
			wantTaints: []string{"node.kubernetes.io/unreachable:NoSchedule", "node.kubernetes.io/unreachable:NoExecute"},
			became:     true, unreachable: true},
		{name: "lease renewed again: unreachable taints lifted, other taints kept", node: nodeWith(corev1.ConditionUnknown, unreachSched, userTaint, unreachExec), obs: fresh,
			wantTaints: []string{"dedicated:NoSchedule"}},
		{name: "agent reports Ready=False: not-ready taints", node: nodeWith(corev1.ConditionFalse), obs: fresh,
			wantTaints: []string{"node.kubernetes.io/not-ready:NoSchedule", "node.kubernetes.io/not-ready:NoExecute"}},
		{name: "Ready=False then unreachable: taints swapped", node: nodeWith(corev1.ConditionFalse, notReadySch, notReadyExec), obs: stale,
			wantReady: corev1.ConditionUnknown, wantReason: nodelifecycle.ReasonNodeStatusUnknown,
			wantTaints: []string{"node.kubernetes.io/unreachable:NoSchedule", "node.kubernetes.io/unreachable:NoExecute"},
			became:     true, unreachable: true},
		{name: "Ready again: not-ready taints lifted", node: nodeWith(corev1.ConditionTrue, notReadySch, notReadyExec), obs: fresh,
			wantTaints: []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := nodelifecycle.DecideNode(tc.node, tc.obs)
			if d.Unreachable != tc.unreachable || d.BecameUnreachable != tc.became {
				t.Fatalf("unreachable %v became %v, want %v %v", d.Unreachable, d.BecameUnreachable, tc.unreachable, tc.became)
			}
			if tc.wantReady == "" {
				if d.Conditions != nil {
					t.Fatalf("conditions written: %+v", d.Conditions)
				}
			} else {
				var ready *corev1.NodeCondition
				for i, c := range d.Conditions {
					if c.Type == corev1.NodeReady {
						ready = &d.Conditions[i]
					}
					if c.Type == corev1.NodeMemoryPressure && c.Status != corev1.ConditionUnknown {
						t.Errorf("MemoryPressure %s, want Unknown", c.Status)
					}
					if c.Type == corev1.NodeNetworkUnavailable && c.Status != corev1.ConditionFalse {
						t.Errorf("NetworkUnavailable changed to %s", c.Status)
					}
				}
				if ready == nil || ready.Status != tc.wantReady || ready.Reason != tc.wantReason || !ready.LastTransitionTime.Time.Equal(tc.obs.Now) {
					t.Fatalf("Ready condition %+v, want %s %s at %v", ready, tc.wantReady, tc.wantReason, tc.obs.Now)
				}
				if tc.wantReason == nodelifecycle.ReasonNodeStatusUnknown && ready.Message != "Kubelet stopped posting node status." {
					t.Errorf("message %q", ready.Message)
				}
			}
			if tc.wantTaints == nil {
				if d.TaintsChanged {
					t.Fatalf("taints written: %v", keys(d.Taints))
				}
				return
			}
			if !d.TaintsChanged || len(keys(d.Taints)) != len(tc.wantTaints) {
				t.Fatalf("taints %v (changed %v), want %v", keys(d.Taints), d.TaintsChanged, tc.wantTaints)
			}
			for i, k := range keys(d.Taints) {
				if k != tc.wantTaints[i] {
					t.Fatalf("taints %v, want %v", keys(d.Taints), tc.wantTaints)
				}
				tm := d.Taints[i]
				if managed := tm.Key != "dedicated"; managed && (tm.Effect == corev1.TaintEffectNoExecute) != (tm.TimeAdded != nil) {
					t.Errorf("taint %s timeAdded %v: want it on NoExecute taints only", k, tm.TimeAdded)
				}
			}
		})
	}
}

func podOn(mod func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "default"}, Spec: corev1.PodSpec{NodeName: "n1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue}}}}
	if mod != nil {
		mod(p)
	}
	return p
}

// markedBy sets the pod not ready with reason, its containers ready or not.
func markedBy(reason string, containers corev1.ConditionStatus) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.ContainersReady, Status: containers},
			{Type: corev1.PodReady, Status: corev1.ConditionFalse, Reason: reason}}
	}
}

func tolerate(key string, secs *int64) func(*corev1.Pod) {
	return func(p *corev1.Pod) {
		p.Spec.Tolerations = append(p.Spec.Tolerations, corev1.Toleration{Key: key, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: secs})
	}
}

func TestDecidePod(t *testing.T) {
	now := t0.Add(11 * time.Second) // the NoExecute taints were added at t0+1s
	unreachable := []corev1.Taint{unreachSched, unreachExec}
	for _, tc := range []struct {
		name        string
		pod         *corev1.Pod
		taints      []corev1.Taint
		unreachable bool
		want        nodelifecycle.PodDecision
	}{
		{name: "healthy node: nothing", pod: podOn(nil)},
		{name: "unreachable, no toleration: marked not ready and force-deleted now", pod: podOn(nil), taints: unreachable, unreachable: true,
			want: nodelifecycle.PodDecision{MarkNotReady: true, Delete: true, Force: true}},
		{name: "unreachable, tolerated 300s: marked not ready, evicted 300s after the taint", pod: podOn(tolerate(corev1.TaintNodeUnreachable, ptr.To[int64](300))),
			taints: unreachable, unreachable: true, want: nodelifecycle.PodDecision{MarkNotReady: true, After: 290 * time.Second}},
		{name: "tolerated 10s: the time is up", pod: podOn(tolerate(corev1.TaintNodeUnreachable, ptr.To[int64](10))),
			taints: unreachable, unreachable: true, want: nodelifecycle.PodDecision{MarkNotReady: true, Delete: true, Force: true}},
		{name: "the most patient matching toleration decides", pod: podOn(func(p *corev1.Pod) {
			tolerate(corev1.TaintNodeUnreachable, ptr.To[int64](5))(p)
			tolerate("", ptr.To[int64](60))(p)
		}), taints: unreachable, unreachable: true, want: nodelifecycle.PodDecision{MarkNotReady: true, After: 50 * time.Second}},
		{name: "tolerated for ever", pod: podOn(tolerate(corev1.TaintNodeUnreachable, nil)), taints: unreachable, unreachable: true,
			want: nodelifecycle.PodDecision{MarkNotReady: true}},
		{name: "already not ready: not marked again", pod: podOn(func(p *corev1.Pod) {
			p.Status.Conditions[0].Status = corev1.ConditionFalse
			tolerate(corev1.TaintNodeUnreachable, ptr.To[int64](300))(p)
		}), taints: unreachable, unreachable: true, want: nodelifecycle.PodDecision{After: 290 * time.Second}},
		{name: "not-ready node (agent alive): graceful eviction, readiness left to the agent", pod: podOn(nil),
			taints: []corev1.Taint{notReadySch, notReadyExec}, want: nodelifecycle.PodDecision{Delete: true}},
		{name: "NoSchedule taints do not evict", pod: podOn(nil), taints: []corev1.Taint{userTaint, notReadySch}},
		{name: "a user NoExecute taint evicts untolerating pods", pod: podOn(tolerate(corev1.TaintNodeUnreachable, nil)),
			taints: []corev1.Taint{{Key: "maintenance", Effect: corev1.TaintEffectNoExecute}}, want: nodelifecycle.PodDecision{Delete: true}},
		{name: "terminating on an unreachable node: forced once its grace period is over", pod: podOn(func(p *corev1.Pod) {
			p.DeletionTimestamp = ptr.To(at(10 * time.Second))
		}), taints: unreachable, unreachable: true, want: nodelifecycle.PodDecision{Delete: true, Force: true}},
		{name: "terminating on an unreachable node: waits out its grace period", pod: podOn(func(p *corev1.Pod) {
			p.DeletionTimestamp = ptr.To(at(41 * time.Second))
		}), taints: unreachable, unreachable: true, want: nodelifecycle.PodDecision{After: 30 * time.Second}},
		{name: "terminating on a live node: the agent finishes it", pod: podOn(func(p *corev1.Pod) {
			p.DeletionTimestamp = ptr.To(at(0))
		}), taints: []corev1.Taint{notReadyExec}},
		{name: "node back: the controller's not-ready mark is lifted", pod: podOn(markedBy(nodelifecycle.ReasonPodNodeNotReady, corev1.ConditionTrue)),
			want: nodelifecycle.PodDecision{RestoreReady: true}},
		{name: "node back: the agent's own not-ready is left alone", pod: podOn(markedBy("ContainersNotReady", corev1.ConditionTrue))},
		{name: "node back: containers not ready, the mark stays", pod: podOn(markedBy(nodelifecycle.ReasonPodNodeNotReady, corev1.ConditionFalse))},
		{name: "still unreachable: the mark stays", pod: podOn(markedBy(nodelifecycle.ReasonPodNodeNotReady, corev1.ConditionTrue)),
			taints: []corev1.Taint{unreachSched}, unreachable: true},
		{name: "finished pods are left alone", pod: podOn(func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }), taints: unreachable, unreachable: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := nodelifecycle.DecidePod(tc.pod, tc.taints, tc.unreachable, now); got != tc.want {
				t.Fatalf("DecidePod = %+v, want %+v", got, tc.want)
			}
		})
	}
}
