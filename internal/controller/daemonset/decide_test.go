package daemonset

import (
	"reflect"
	"slices"
	"sort"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/types"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var now = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

func testSet(mod ...func(*appsv1.DaemonSet)) *appsv1.DaemonSet {
	one, zero := intstr.FromInt32(1), intstr.FromInt32(0)
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "default", UID: "ds-uid", Generation: 2},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "busybox"}}},
			},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &one, MaxSurge: &zero}},
		},
	}
	for _, m := range mod {
		m(ds)
	}
	return ds
}

func surge(unavailable, surge int32) func(*appsv1.DaemonSet) {
	return func(ds *appsv1.DaemonSet) {
		u, s := intstr.FromInt32(unavailable), intstr.FromInt32(surge)
		ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &u, MaxSurge: &s}
	}
}

type nodeOpt func(*corev1.Node)

func node(name string, opts ...nodeOpt) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{corev1.LabelHostname: name}},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}}}
	for _, o := range opts {
		o(n)
	}
	return n
}

func notReady(n *corev1.Node) { n.Status.Conditions[0].Status = corev1.ConditionFalse }
func labeled(k, v string) nodeOpt {
	return func(n *corev1.Node) { n.Labels[k] = v }
}
func tainted(key string, effect corev1.TaintEffect) nodeOpt {
	return func(n *corev1.Node) { n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: key, Effect: effect}) }
}

type podOpt func(*corev1.Pod)

// pod is a daemon pod on nodeName at revision hash, created age ago.
func pod(name, nodeName, hash string, age time.Duration, opts ...podOpt) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name),
			CreationTimestamp: metav1.NewTime(now.Add(-age)),
			Labels:            map[string]string{"app": "agent", HashLabel: hash, GenerationLabel: "1"}},
		Spec: corev1.PodSpec{NodeName: nodeName},
	}
	for _, o := range opts {
		o(p)
	}
	return p
}

// readyFor makes the pod Running and Ready since d ago.
func readyFor(d time.Duration) podOpt {
	return func(p *corev1.Pod) {
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(now.Add(-d))}}
	}
}

var ready = readyFor(time.Hour)

func deleting(p *corev1.Pod) { t := metav1.NewTime(now); p.DeletionTimestamp = &t }
func failed(p *corev1.Pod)   { p.Status.Phase = corev1.PodFailed }

func names(pl Plan) (create, del []string) {
	create = append([]string(nil), pl.Create...)
	sort.Strings(create)
	for _, d := range pl.Delete {
		del = append(del, d.Pod.Name)
	}
	sort.Strings(del)
	return create, del
}

func TestDecide(t *testing.T) {
	cases := []struct {
		name       string
		set        *appsv1.DaemonSet
		nodes      []*corev1.Node
		pods       []*corev1.Pod
		create     []string
		del        []string
		status     appsv1.DaemonSetStatus
		requeueFor time.Duration
	}{{
		name:   "a pod on every Ready node; none on a NotReady one",
		set:    testSet(),
		nodes:  []*corev1.Node{node("n1"), node("n2"), node("n3", notReady)},
		create: []string{"n1", "n2"},
		status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, NumberUnavailable: 2},
	}, {
		name: "nodeSelector and required node affinity pick the nodes",
		set: testSet(func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.NodeSelector = map[string]string{"disk": "ssd"}
			ds.Spec.Template.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
				RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
					MatchExpressions: []corev1.NodeSelectorRequirement{{Key: "zone", Operator: corev1.NodeSelectorOpIn, Values: []string{"a"}}}}}}}}
		}),
		nodes:  []*corev1.Node{node("n1", labeled("disk", "ssd"), labeled("zone", "a")), node("n2", labeled("disk", "ssd"), labeled("zone", "b")), node("n3", labeled("zone", "a"))},
		create: []string{"n1"},
		status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, NumberUnavailable: 1},
	}, {
		name:  "template nodeName places on that node only",
		set:   testSet(func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.NodeName = "n2" }),
		nodes: []*corev1.Node{node("n1"), node("n2")}, create: []string{"n2"},
		status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, NumberUnavailable: 1},
	}, {
		name: "standard node taints are tolerated, others are not",
		set:  testSet(),
		nodes: []*corev1.Node{
			node("cordoned", tainted(corev1.TaintNodeUnschedulable, corev1.TaintEffectNoSchedule)),
			node("pressure", tainted(corev1.TaintNodeDiskPressure, corev1.TaintEffectNoSchedule), tainted(corev1.TaintNodeMemoryPressure, corev1.TaintEffectNoSchedule), tainted(corev1.TaintNodePIDPressure, corev1.TaintEffectNoSchedule)),
			node("network", tainted(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule)),
			node("dedicated", tainted("dedicated", corev1.TaintEffectNoSchedule)),
		},
		create: []string{"cordoned", "pressure"},
		status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, NumberUnavailable: 2},
	}, {
		name: "hostNetwork daemons tolerate network-unavailable; a user toleration works",
		set: testSet(func(ds *appsv1.DaemonSet) {
			ds.Spec.Template.Spec.HostNetwork = true
			ds.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: "dedicated", Operator: corev1.TolerationOpExists}}
		}),
		nodes:  []*corev1.Node{node("network", tainted(corev1.TaintNodeNetworkUnavailable, corev1.TaintEffectNoSchedule)), node("dedicated", tainted("dedicated", corev1.TaintEffectNoSchedule))},
		create: []string{"dedicated", "network"},
		status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, NumberUnavailable: 2},
	}, {
		name:   "a pod keeps running on a node that became NotReady; counted misscheduled there",
		set:    testSet(),
		nodes:  []*corev1.Node{node("n1", notReady)},
		pods:   []*corev1.Pod{pod("p1", "n1", "new", time.Hour, ready)},
		status: appsv1.DaemonSetStatus{NumberMisscheduled: 1},
	}, {
		name:   "an untolerated NoExecute taint or a node no longer matching evicts the pod",
		set:    testSet(func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.NodeSelector = map[string]string{"run": "yes"} }),
		nodes:  []*corev1.Node{node("n1", labeled("run", "yes"), tainted("evict", corev1.TaintEffectNoExecute)), node("n2")},
		pods:   []*corev1.Pod{pod("p1", "n1", "new", time.Hour, ready), pod("p2", "n2", "new", time.Hour, ready)},
		del:    []string{"p1", "p2"},
		status: appsv1.DaemonSetStatus{NumberMisscheduled: 2},
	}, {
		name:   "a pod on a node that is gone is deleted",
		set:    testSet(),
		nodes:  []*corev1.Node{node("n1")},
		pods:   []*corev1.Pod{pod("p1", "n1", "new", time.Hour, ready), pod("p2", "gone", "new", time.Hour, ready)},
		del:    []string{"p2"},
		status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, CurrentNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1, UpdatedNumberScheduled: 1},
	}, {
		name:   "a failed daemon pod is deleted; its successor waits until it is gone",
		set:    testSet(),
		nodes:  []*corev1.Node{node("n1"), node("n2")},
		pods:   []*corev1.Pod{pod("p1", "n1", "new", time.Hour, failed), pod("p2", "n2", "new", time.Hour, deleting)},
		del:    []string{"p1"},
		status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, NumberUnavailable: 2},
	}, {
		name:   "two pods on a node: the updated one stays",
		set:    testSet(),
		nodes:  []*corev1.Node{node("n1")},
		pods:   []*corev1.Pod{pod("old", "n1", "old", time.Hour, ready), pod("new", "n1", "new", time.Minute, ready)},
		del:    []string{"old"},
		status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, CurrentNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1, UpdatedNumberScheduled: 1},
	}, {
		name:   "rolling update, maxUnavailable 1: one old pod at a time",
		set:    testSet(),
		nodes:  []*corev1.Node{node("n1"), node("n2"), node("n3")},
		pods:   []*corev1.Pod{pod("a", "n1", "old", time.Hour, ready), pod("b", "n2", "old", time.Hour, ready), pod("c", "n3", "old", time.Hour, ready)},
		del:    []string{"a"},
		status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, NumberReady: 3, NumberAvailable: 3},
	}, {
		name:   "rolling update waits while a new pod is not available yet",
		set:    testSet(),
		nodes:  []*corev1.Node{node("n1"), node("n2")},
		pods:   []*corev1.Pod{pod("a", "n1", "new", time.Second), pod("b", "n2", "old", time.Hour, ready)},
		status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, CurrentNumberScheduled: 2, NumberReady: 1, NumberAvailable: 1, UpdatedNumberScheduled: 1, NumberUnavailable: 1},
	}, {
		name:   "an unavailable old pod is replaced at once, within maxUnavailable",
		set:    testSet(surge(2, 0)),
		nodes:  []*corev1.Node{node("n1"), node("n2"), node("n3")},
		pods:   []*corev1.Pod{pod("a", "n1", "old", time.Hour), pod("b", "n2", "old", time.Hour, ready), pod("c", "n3", "old", time.Hour, ready)},
		del:    []string{"a", "b"},
		status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 3, CurrentNumberScheduled: 3, NumberReady: 2, NumberAvailable: 2, NumberUnavailable: 1},
	}, {
		name:   "maxSurge 1: the new pod starts beside the old one",
		set:    testSet(surge(0, 1)),
		nodes:  []*corev1.Node{node("n1"), node("n2")},
		pods:   []*corev1.Pod{pod("a", "n1", "old", time.Hour, ready), pod("b", "n2", "old", time.Hour, ready)},
		create: []string{"n1"},
		status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, CurrentNumberScheduled: 2, NumberReady: 2, NumberAvailable: 2},
	}, {
		name:  "maxSurge 1: the old pod goes once its successor is available, then the next node surges",
		set:   testSet(surge(0, 1)),
		nodes: []*corev1.Node{node("n1"), node("n2")},
		pods: []*corev1.Pod{pod("a", "n1", "old", time.Hour, ready), pod("a2", "n1", "new", time.Minute, ready),
			pod("b", "n2", "old", time.Hour, ready)},
		del:    []string{"a"},
		status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, CurrentNumberScheduled: 2, NumberReady: 2, NumberAvailable: 2, UpdatedNumberScheduled: 1},
	}, {
		name:       "maxSurge with minReadySeconds: the old pod stays until the new one is available",
		set:        testSet(surge(0, 1), func(ds *appsv1.DaemonSet) { ds.Spec.MinReadySeconds = 30 }),
		nodes:      []*corev1.Node{node("n1")},
		pods:       []*corev1.Pod{pod("a", "n1", "old", time.Hour, ready), pod("a2", "n1", "new", time.Minute, readyFor(10*time.Second))},
		status:     appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, CurrentNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1, UpdatedNumberScheduled: 1},
		requeueFor: 20 * time.Second,
	}, {
		name:   "maxSurge: a terminating old pod does not hold back its successor",
		set:    testSet(surge(0, 1)),
		nodes:  []*corev1.Node{node("n1")},
		pods:   []*corev1.Pod{pod("a", "n1", "old", time.Hour, ready, deleting)},
		create: []string{"n1"},
		status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 1, NumberUnavailable: 1},
	}, {
		name: "OnDelete: old pods stay, a new node gets the new template",
		set: testSet(func(ds *appsv1.DaemonSet) {
			ds.Spec.UpdateStrategy = appsv1.DaemonSetUpdateStrategy{Type: appsv1.OnDeleteDaemonSetStrategyType}
		}),
		nodes:  []*corev1.Node{node("n1"), node("n2")},
		pods:   []*corev1.Pod{pod("a", "n1", "old", time.Hour, ready)},
		create: []string{"n2"},
		status: appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, CurrentNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1, NumberUnavailable: 1},
	}, {
		name:   "the generation label counts as updated",
		set:    testSet(func(ds *appsv1.DaemonSet) { ds.Generation = 1 }),
		nodes:  []*corev1.Node{node("n1")},
		pods:   []*corev1.Pod{pod("a", "n1", "other", time.Hour, ready)},
		status: appsv1.DaemonSetStatus{ObservedGeneration: 1, DesiredNumberScheduled: 1, CurrentNumberScheduled: 1, NumberReady: 1, NumberAvailable: 1, UpdatedNumberScheduled: 1},
	}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan := Decide(Input{Set: tc.set, Hash: "new", Nodes: tc.nodes, Pods: tc.pods, Now: now})
			create, del := names(plan)
			if !slices.Equal(create, tc.create) || !slices.Equal(del, tc.del) {
				t.Errorf("create %v delete %v; want create %v delete %v", create, del, tc.create, tc.del)
			}
			want := tc.status
			if want.ObservedGeneration == 0 {
				want.ObservedGeneration = tc.set.Generation
			}
			if !reflect.DeepEqual(plan.Status, want) {
				t.Errorf("status\n got %+v\nwant %+v", plan.Status, want)
			}
			if plan.RequeueAfter != tc.requeueFor {
				t.Errorf("requeue after %v, want %v", plan.RequeueAfter, tc.requeueFor)
			}
		})
	}
}

// Invariant: with maxSurge 0, a rolling update never leaves more than
// maxUnavailable nodes without an available pod, whatever the start.
func TestRollingUpdateKeepsAvailability(t *testing.T) {
	for maxUnavailable := int32(1); maxUnavailable <= 3; maxUnavailable++ {
		set := testSet(surge(maxUnavailable, 0))
		var nodes []*corev1.Node
		var pods []*corev1.Pod
		for _, n := range []string{"n1", "n2", "n3", "n4", "n5"} {
			nodes = append(nodes, node(n))
			pods = append(pods, pod("p-"+n, n, "old", time.Hour, ready))
		}
		plan := Decide(Input{Set: set, Hash: "new", Nodes: nodes, Pods: pods, Now: now})
		if len(plan.Delete) != int(maxUnavailable) || len(plan.Create) != 0 {
			t.Errorf("maxUnavailable %d: deletes %d, creates %d", maxUnavailable, len(plan.Delete), len(plan.Create))
		}
	}
}

func TestNewPod(t *testing.T) {
	set := testSet(func(ds *appsv1.DaemonSet) {
		ds.Spec.Template.Spec.Tolerations = []corev1.Toleration{{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute}}
	})
	p := NewPod(set, "h1", "n1")
	if p.Spec.NodeName != "n1" || p.Labels[HashLabel] != "h1" || p.Labels[GenerationLabel] != "2" || p.Labels["app"] != "agent" {
		t.Fatalf("pod: nodeName %q labels %v", p.Spec.NodeName, p.Labels)
	}
	if ref := metav1.GetControllerOf(p); ref == nil || ref.UID != "ds-uid" || ref.Kind != "DaemonSet" {
		t.Fatalf("controller ref %+v", ref)
	}
	if len(p.Spec.Tolerations) != 6 { // the user's not-ready one is not doubled
		t.Fatalf("tolerations %+v", p.Spec.Tolerations)
	}
	if len(set.Spec.Template.Spec.Tolerations) != 1 || set.Spec.Template.Labels[HashLabel] != "" {
		t.Fatal("NewPod changed the set's template")
	}
}
