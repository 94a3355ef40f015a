package scheduler_test

import (
	"fmt"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	apitypes "k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/controller/scheduler"
)

// readyNode is a Ready node with the hostname label and extra labels
// (k=v pairs) and taints.
func readyNode(name string, lbls map[string]string, taints ...corev1.Taint) *corev1.Node {
	n := node(name, corev1.ConditionTrue, false)
	n.Labels = map[string]string{corev1.LabelHostname: name}
	for k, v := range lbls {
		n.Labels[k] = v
	}
	n.Spec.Taints = taints
	return n
}

// owned is a pod of the controller uid, bound to nodeName, with labels.
func owned(name, nodeName, uid string, lbls map[string]string) *corev1.Pod {
	p := pod(name, nodeName, corev1.PodRunning)
	p.Labels = lbls
	if uid != "" {
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: uid, UID: apitypes.UID(uid), Controller: ptr.To(true)}}
	}
	return p
}

var (
	unreachableNoExecute = corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoExecute}
	unreachableNoSched   = corev1.Taint{Key: corev1.TaintNodeUnreachable, Effect: corev1.TaintEffectNoSchedule}
	notReadyNoSched      = corev1.Taint{Key: corev1.TaintNodeNotReady, Effect: corev1.TaintEffectNoSchedule}
	gpuTaint             = corev1.Taint{Key: "gpu", Value: "true", Effect: corev1.TaintEffectNoSchedule}
	preferTaint          = corev1.Taint{Key: "soft", Effect: corev1.TaintEffectPreferNoSchedule}
)

func hostnameAnti(app string) *corev1.Affinity {
	return &corev1.Affinity{PodAntiAffinity: &corev1.PodAntiAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
		LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": app}}, TopologyKey: corev1.LabelHostname}}}}
}

func nodeAffinity(reqs ...corev1.NodeSelectorRequirement) *corev1.Affinity {
	return &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: reqs}}}}}
}

func TestDecide(t *testing.T) {
	web := map[string]string{"app": "web"}
	three := []*corev1.Node{readyNode("a", nil), readyNode("b", nil), readyNode("c", nil)}
	for _, tc := range []struct {
		name  string
		pod   func(p *corev1.Pod)
		nodes []*corev1.Node
		pods  []*corev1.Pod
		ns    map[string]labels.Set
		want  string
		msg   string
	}{
		{name: "no nodes", msg: "0/0 nodes are available: no node is registered; pods run once a node agent joins (headway server runs one unless started with --runtime none, and headway agent joins more)."},
		{name: "spread: fewest pods of the same controller first, even on a busier node",
			pod: func(p *corev1.Pod) { *p = *owned("web-2", "", "sts", web) }, nodes: three,
			pods: []*corev1.Pod{owned("web-0", "a", "sts", web), owned("web-1", "b", "sts", web),
				owned("x1", "c", "", nil), owned("x2", "c", "", nil)},
			want: "c"},
		{name: "spread: then fewest pods overall",
			pod: func(p *corev1.Pod) { *p = *owned("web-1", "", "sts", web) }, nodes: three,
			pods: []*corev1.Pod{owned("web-0", "a", "sts", web), owned("x1", "b", "", nil)},
			want: "c"},
		{name: "spread: ties by name", pod: func(p *corev1.Pod) { *p = *owned("web-0", "", "sts", web) }, nodes: three, want: "a"},
		{name: "other controllers' pods do not count as the same",
			pod: func(p *corev1.Pod) { *p = *owned("web-1", "", "sts", web) }, nodes: three[:2],
			pods: []*corev1.Pod{owned("web-0", "a", "sts", web), owned("o1", "b", "other", nil), owned("o2", "b", "other", nil)},
			want: "b"},
		{name: "nodeSelector", pod: func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} },
			nodes: []*corev1.Node{readyNode("a", nil), readyNode("b", map[string]string{"disk": "ssd"})}, want: "b"},
		{name: "nodeSelector matching nothing",
			pod:   func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} },
			nodes: three, msg: "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."},
		{name: "node affinity NotIn and Exists",
			pod: func(p *corev1.Pod) {
				p.Spec.Affinity = nodeAffinity(corev1.NodeSelectorRequirement{Key: "zone", Operator: corev1.NodeSelectorOpNotIn, Values: []string{"z1"}},
					corev1.NodeSelectorRequirement{Key: "zone", Operator: corev1.NodeSelectorOpExists})
			},
			nodes: []*corev1.Node{readyNode("a", map[string]string{"zone": "z1"}), readyNode("b", nil), readyNode("c", map[string]string{"zone": "z2"})},
			want:  "c"},
		{name: "node affinity Gt and DoesNotExist",
			pod: func(p *corev1.Pod) {
				p.Spec.Affinity = nodeAffinity(corev1.NodeSelectorRequirement{Key: "cores", Operator: corev1.NodeSelectorOpGt, Values: []string{"4"}},
					corev1.NodeSelectorRequirement{Key: "spot", Operator: corev1.NodeSelectorOpDoesNotExist})
			},
			nodes: []*corev1.Node{readyNode("a", map[string]string{"cores": "4"}), readyNode("b", map[string]string{"cores": "8", "spot": ""}), readyNode("c", map[string]string{"cores": "16"})},
			want:  "c"},
		{name: "node affinity Lt", pod: func(p *corev1.Pod) {
			p.Spec.Affinity = nodeAffinity(corev1.NodeSelectorRequirement{Key: "cores", Operator: corev1.NodeSelectorOpLt, Values: []string{"8"}})
		}, nodes: []*corev1.Node{readyNode("a", map[string]string{"cores": "8"}), readyNode("b", map[string]string{"cores": "2"})}, want: "b"},
		{name: "node affinity matchFields metadata.name", pod: func(p *corev1.Pod) {
			p.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchFields: []corev1.NodeSelectorRequirement{{Key: "metadata.name", Operator: corev1.NodeSelectorOpIn, Values: []string{"b"}}}}}}}}
		}, nodes: three, want: "b"},
		{name: "unreachable and not-ready taints keep pods off",
			nodes: []*corev1.Node{readyNode("a", nil, unreachableNoSched, unreachableNoExecute), readyNode("b", nil, notReadyNoSched), readyNode("c", nil)},
			want:  "c"},
		{name: "untolerated taints counted as kube-scheduler counts them",
			pod:   func(p *corev1.Pod) { p.Spec.NodeSelector = map[string]string{"disk": "ssd"} },
			nodes: []*corev1.Node{readyNode("a", nil, unreachableNoSched, unreachableNoExecute), readyNode("b", nil), readyNode("c", nil)},
			msg:   "0/3 nodes are available: 1 node(s) had untolerated taint {node.kubernetes.io/unreachable: }, 2 node(s) didn't match Pod's node affinity/selector."},
		{name: "taint with a value", nodes: []*corev1.Node{readyNode("a", nil, gpuTaint)},
			msg: "0/1 nodes are available: 1 node(s) had untolerated taint {gpu: true}."},
		{name: "tolerated taint", pod: func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Key: "gpu", Operator: corev1.TolerationOpEqual, Value: "true", Effect: corev1.TaintEffectNoSchedule}}
		}, nodes: []*corev1.Node{readyNode("a", nil, gpuTaint)}, want: "a"},
		{name: "PreferNoSchedule does not filter", nodes: []*corev1.Node{readyNode("a", nil, preferTaint)}, want: "a"},
		{name: "a NoExecute toleration with tolerationSeconds still admits the pod (kube-scheduler ignores the seconds)",
			pod: func(p *corev1.Pod) {
				p.Spec.Tolerations = []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](300)}}
			},
			nodes: []*corev1.Node{readyNode("a", nil, unreachableNoExecute)}, want: "a"},
		{name: "cordoned", nodes: []*corev1.Node{node("a", corev1.ConditionTrue, true), node("b", corev1.ConditionFalse, false)},
			msg: "0/2 nodes are available: 1 node(s) were not ready, 1 node(s) were unschedulable."},
		{name: "cordoned but tolerated", pod: func(p *corev1.Pod) {
			p.Spec.Tolerations = []corev1.Toleration{{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists}}
		}, nodes: []*corev1.Node{node("a", corev1.ConditionTrue, true)}, want: "a"},
		{name: "anti-affinity on hostname: one per node",
			pod: func(p *corev1.Pod) { *p = *owned("web-2", "", "sts", web); p.Spec.Affinity = hostnameAnti("web") }, nodes: three,
			pods: []*corev1.Pod{owned("web-0", "a", "sts", web), owned("web-1", "c", "sts", web)},
			want: "b"},
		{name: "anti-affinity on hostname: no node left",
			pod: func(p *corev1.Pod) { *p = *owned("web-3", "", "sts", web); p.Spec.Affinity = hostnameAnti("web") }, nodes: three,
			pods: []*corev1.Pod{owned("web-0", "a", "sts", web), owned("web-1", "b", "sts", web), owned("web-2", "c", "sts", web)},
			msg:  "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules."},
		{name: "anti-affinity ignores finished pods and other namespaces",
			pod:   func(p *corev1.Pod) { p.Labels = web; p.Spec.Affinity = hostnameAnti("web") },
			nodes: three[:1],
			pods: []*corev1.Pod{func() *corev1.Pod { p := owned("done", "a", "", web); p.Status.Phase = corev1.PodSucceeded; return p }(),
				func() *corev1.Pod { p := owned("elsewhere", "a", "", web); p.Namespace = "other"; return p }()},
			want: "a"},
		{name: "anti-affinity with a namespaceSelector",
			pod: func(p *corev1.Pod) {
				p.Labels = web
				p.Spec.Affinity = hostnameAnti("web")
				p.Spec.Affinity.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0].NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"team": "x"}}
			},
			nodes: three[:2],
			pods: []*corev1.Pod{func() *corev1.Pod { p := owned("p1", "a", "", web); p.Namespace = "x1"; return p }(),
				func() *corev1.Pod { p := owned("p2", "b", "", web); p.Namespace = "y1"; return p }()},
			ns:   map[string]labels.Set{"x1": {"team": "x"}, "y1": {"team": "y"}},
			want: "b"},
		{name: "existing pods' anti-affinity keeps the pod off their node",
			pod:   func(p *corev1.Pod) { p.Labels = web },
			nodes: three[:2],
			pods:  []*corev1.Pod{func() *corev1.Pod { p := owned("guard", "a", "", nil); p.Spec.Affinity = hostnameAnti("web"); return p }()},
			want:  "b"},
		{name: "existing pods' anti-affinity message",
			pod:   func(p *corev1.Pod) { p.Labels = web },
			nodes: three[:1],
			pods:  []*corev1.Pod{func() *corev1.Pod { p := owned("guard", "a", "", nil); p.Spec.Affinity = hostnameAnti("web"); return p }()},
			msg:   "0/1 nodes are available: 1 node(s) didn't satisfy existing pods anti-affinity rules."},
		{name: "pod affinity on hostname: with the cache",
			pod: func(p *corev1.Pod) {
				p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "cache"}}, TopologyKey: corev1.LabelHostname}}}}
			},
			nodes: three, pods: []*corev1.Pod{owned("cache", "b", "", map[string]string{"app": "cache"})}, want: "b"},
		{name: "pod affinity with nothing to join",
			pod: func(p *corev1.Pod) {
				p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
					LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "cache"}}, TopologyKey: corev1.LabelHostname}}}}
			},
			nodes: three[:2], msg: "0/2 nodes are available: 2 node(s) didn't match pod affinity rules."},
		{name: "pod affinity: the first pod of a group matching its own term goes anywhere",
			pod: func(p *corev1.Pod) {
				p.Labels = web
				p.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
					LabelSelector: &metav1.LabelSelector{MatchLabels: web}, TopologyKey: corev1.LabelHostname}}}}
			},
			nodes: three, want: "a"},
		{name: "unbound pods do not count for spreading or affinity",
			pod: func(p *corev1.Pod) { *p = *owned("web-1", "", "sts", web); p.Spec.Affinity = hostnameAnti("web") }, nodes: three[:1],
			pods: []*corev1.Pod{owned("web-0", "", "sts", web)}, want: "a"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pod("new", "", corev1.PodPending)
			if tc.pod != nil {
				tc.pod(p)
			}
			d := scheduler.Decide(p, scheduler.State{Nodes: tc.nodes, Pods: tc.pods, Namespaces: tc.ns})
			if d.Node != tc.want || d.Message != tc.msg {
				t.Fatalf("Decide = %+v, want node %q message %q", d, tc.want, tc.msg)
			}
		})
	}
}

// TestDecideSpreadsAStatefulSet: placing the pods of a three-replica
// StatefulSet one after another over three nodes puts one on each, and the
// pod of a node that goes away lands on the node with fewest of its set.
func TestDecideSpreadsAStatefulSet(t *testing.T) {
	web := map[string]string{"app": "web"}
	nodes := []*corev1.Node{readyNode("n1", nil), readyNode("n2", nil), readyNode("n3", nil)}
	var placed []*corev1.Pod
	seen := map[string]bool{}
	for i := 0; i < 3; i++ {
		p := owned(fmt.Sprintf("web-%d", i), "", "sts", web)
		d := scheduler.Decide(p, scheduler.State{Nodes: nodes, Pods: placed})
		if d.Node == "" || seen[d.Node] {
			t.Fatalf("web-%d placed on %q; placed so far %v", i, d.Node, seen)
		}
		seen[d.Node] = true
		p.Spec.NodeName = d.Node
		placed = append(placed, p)
	}
	// n2 becomes unreachable and web-1 (which was on it) is re-created.
	nodes[1] = readyNode("n2", nil, unreachableNoSched, unreachableNoExecute)
	placed = append(placed[:1], placed[2], owned("other", "n1", "", nil))
	d := scheduler.Decide(owned("web-1", "", "sts", web), scheduler.State{Nodes: nodes, Pods: placed})
	if d.Node != "n3" {
		t.Fatalf("web-1 re-created on %q, want n3 (not the tainted n2; n1 and n3 have one web pod each, n1 one more pod)", d.Node)
	}
}
