package scheduler

import (
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
)

// The reasons a node is filtered out, worded as kube-scheduler's plugins
// word them in a FailedScheduling message.
const (
	reasonUnschedulable        = "node(s) were unschedulable"
	reasonNodeAffinity         = "node(s) didn't match Pod's node affinity/selector"
	reasonNotReady             = "node(s) were not ready"
	reasonAntiAffinity         = "node(s) didn't match pod anti-affinity rules"
	reasonExistingAntiAffinity = "node(s) didn't satisfy existing pods anti-affinity rules"
	reasonAffinity             = "node(s) didn't match pod affinity rules"
)

// State is what the scheduler sees of the cluster when it places one pod.
type State struct {
	Nodes []*corev1.Node
	// Pods are the pods bound (or assumed bound) to a node; others are
	// ignored.
	Pods []*corev1.Pod
	// Namespaces are the namespaces' labels, for pod (anti-)affinity terms
	// with a namespaceSelector.
	Namespaces map[string]labels.Set
}

// Decision is where a pod goes: Node, or "" with Message saying why no node
// fits, as kube-scheduler's FailedScheduling event says it.
type Decision struct {
	Node    string
	Message string
}

// Decide places pod as kube-scheduler's default plugins would, for the
// ones Headway has: it filters out nodes that are cordoned
// (NodeUnschedulable), carry a NoSchedule or NoExecute taint the pod does
// not tolerate (TaintToleration: the not-ready and unreachable taints the
// node lifecycle controller adds among them), do not match its nodeSelector
// or required node affinity (NodeAffinity), are not Ready, or break a
// required pod affinity or anti-affinity term (InterPodAffinity, any
// topologyKey, the pod's own terms and existing pods' anti-affinity). Of
// the nodes left it takes the one running the fewest pods of the pod's
// controller (a StatefulSet's or ReplicaSet's pods spread over the nodes),
// then the fewest pods, then the first by name.
func Decide(pod *corev1.Pod, s State) Decision {
	if len(s.Nodes) == 0 {
		return Decision{Message: "0/0 nodes are available: no node is registered; pods run once a node agent joins (headway server runs one unless started with --runtime none, and headway agent joins more)."}
	}
	byName := make(map[string]*corev1.Node, len(s.Nodes))
	for _, n := range s.Nodes {
		byName[n.Name] = n
	}
	var placed []placedPod
	for _, p := range s.Pods {
		if n := byName[p.Spec.NodeName]; n != nil && p.UID != pod.UID && !finished(p) {
			placed = append(placed, placedPod{p, n})
		}
	}
	aff := newAffinityCheck(pod, placed, s.Namespaces)
	reasons := map[string]int{}
	var fit []*corev1.Node
	for _, n := range s.Nodes {
		if r := filter(pod, n, aff); r != "" {
			reasons[r]++
			continue
		}
		fit = append(fit, n)
	}
	if len(fit) == 0 {
		return Decision{Message: fitError(len(s.Nodes), reasons)}
	}
	owner := controllerUID(pod)
	same, total := map[string]int{}, map[string]int{}
	for _, pp := range placed {
		total[pp.node.Name]++
		if owner != "" && controllerUID(pp.pod) == owner {
			same[pp.node.Name]++
		}
	}
	best := fit[0]
	for _, n := range fit[1:] {
		a, b := n.Name, best.Name
		if same[a] < same[b] || same[a] == same[b] && (total[a] < total[b] || total[a] == total[b] && a < b) {
			best = n
		}
	}
	return Decision{Node: best.Name}
}

// Pick is Decide for a pod with no constraints: the node a plain pod goes
// to, or "" when none fits.
func Pick(nodes []*corev1.Node, pods []*corev1.Pod) string {
	return Decide(&corev1.Pod{}, State{Nodes: nodes, Pods: pods}).Node
}

type placedPod struct {
	pod  *corev1.Pod
	node *corev1.Node
}

func finished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

func controllerUID(p *corev1.Pod) types.UID {
	if ref := metav1.GetControllerOf(p); ref != nil {
		return ref.UID
	}
	return ""
}

// filter is "" when pod may run on n, else the reason it may not: the
// first failing check in kube-scheduler's filter order.
func filter(pod *corev1.Pod, n *corev1.Node, aff *affinityCheck) string {
	if n.Spec.Unschedulable && !corev1helpers.TolerationsTolerateTaint(klog.Background(), pod.Spec.Tolerations,
		&corev1.Taint{Key: corev1.TaintNodeUnschedulable, Effect: corev1.TaintEffectNoSchedule}, false) {
		return reasonUnschedulable
	}
	if t, untolerated := corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), n.Spec.Taints, pod.Spec.Tolerations, func(t *corev1.Taint) bool {
		return t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute
	}, false); untolerated {
		return fmt.Sprintf("node(s) had untolerated taint {%s: %s}", t.Key, t.Value)
	}
	if ok, _ := nodeaffinity.GetRequiredNodeAffinity(pod).Match(n); !ok {
		return reasonNodeAffinity
	}
	if !ready(n) {
		return reasonNotReady
	}
	return aff.filter(n)
}

// fitError is kube-scheduler's FitError message: the reasons counted,
// sorted as strings.
func fitError(nodes int, reasons map[string]int) string {
	var parts []string
	for r, n := range reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(parts)
	return fmt.Sprintf("0/%d nodes are available: %s.", nodes, strings.Join(parts, ", "))
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// affinityCheck holds the pod's required pod affinity and anti-affinity
// terms and the placed pods' anti-affinity terms that select the pod,
// each as the topology domains (key=value) it rules in or out.
type affinityCheck struct {
	// antiDomains: domains the pod's own anti-affinity terms rule out.
	antiDomains map[string]bool
	// existingAnti: domains the placed pods' anti-affinity rules out.
	existingAnti map[string]bool
	antiKeys     []string
	existingKeys []string
	// affinity terms: for each, the domains where a matching pod runs,
	// or nil when the term is satisfied by the pod itself being first.
	affinity []affinityTerm
}

type affinityTerm struct {
	key     string
	domains map[string]bool
	// selfFirst: no placed pod matches and the pod matches its own term,
	// so any node carrying the key will do (kube-scheduler's rule for the
	// first pod of a group).
	selfFirst bool
}

type term struct {
	key        string
	selector   labels.Selector
	namespaces func(ns string) bool
}

func newTerm(owner *corev1.Pod, t corev1.PodAffinityTerm, nsLabels map[string]labels.Set) (term, bool) {
	sel, err := metav1.LabelSelectorAsSelector(t.LabelSelector)
	if err != nil || t.TopologyKey == "" {
		return term{}, false
	}
	if t.LabelSelector == nil {
		sel = labels.Nothing()
	}
	listed := map[string]bool{}
	for _, ns := range t.Namespaces {
		listed[ns] = true
	}
	var nsSel labels.Selector
	if t.NamespaceSelector != nil {
		if nsSel, err = metav1.LabelSelectorAsSelector(t.NamespaceSelector); err != nil {
			return term{}, false
		}
	}
	if len(listed) == 0 && nsSel == nil {
		listed[owner.Namespace] = true
	}
	return term{key: t.TopologyKey, selector: sel, namespaces: func(ns string) bool {
		return listed[ns] || nsSel != nil && nsSel.Matches(nsLabels[ns])
	}}, true
}

func (t term) matches(p *corev1.Pod) bool {
	return t.namespaces(p.Namespace) && t.selector.Matches(labels.Set(p.Labels))
}

func domain(key string, n *corev1.Node) (string, bool) {
	v, ok := n.Labels[key]
	return key + "=" + v, ok
}

func newAffinityCheck(pod *corev1.Pod, placed []placedPod, nsLabels map[string]labels.Set) *affinityCheck {
	a := &affinityCheck{antiDomains: map[string]bool{}, existingAnti: map[string]bool{}}
	if pa := podAntiAffinity(pod); pa != nil {
		for _, t := range pa.RequiredDuringSchedulingIgnoredDuringExecution {
			tm, ok := newTerm(pod, t, nsLabels)
			if !ok {
				continue
			}
			a.antiKeys = append(a.antiKeys, tm.key)
			for _, pp := range placed {
				if d, ok := domain(tm.key, pp.node); ok && tm.matches(pp.pod) {
					a.antiDomains[d] = true
				}
			}
		}
	}
	for _, pp := range placed {
		pa := podAntiAffinity(pp.pod)
		if pa == nil {
			continue
		}
		for _, t := range pa.RequiredDuringSchedulingIgnoredDuringExecution {
			tm, ok := newTerm(pp.pod, t, nsLabels)
			if !ok || !tm.matches(pod) {
				continue
			}
			if d, ok := domain(tm.key, pp.node); ok {
				a.existingAnti[d] = true
				a.existingKeys = append(a.existingKeys, tm.key)
			}
		}
	}
	if pod.Spec.Affinity != nil && pod.Spec.Affinity.PodAffinity != nil {
		for _, t := range pod.Spec.Affinity.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution {
			tm, ok := newTerm(pod, t, nsLabels)
			if !ok {
				continue
			}
			at := affinityTerm{key: tm.key, domains: map[string]bool{}}
			any := false
			for _, pp := range placed {
				if tm.matches(pp.pod) {
					any = true
					if d, ok := domain(tm.key, pp.node); ok {
						at.domains[d] = true
					}
				}
			}
			at.selfFirst = !any && tm.matches(pod)
			a.affinity = append(a.affinity, at)
		}
	}
	return a
}

func podAntiAffinity(p *corev1.Pod) *corev1.PodAntiAffinity {
	if p.Spec.Affinity == nil {
		return nil
	}
	return p.Spec.Affinity.PodAntiAffinity
}

// filter checks in kube-scheduler's InterPodAffinity order: the pod's
// affinity, its anti-affinity, then the placed pods' anti-affinity.
func (a *affinityCheck) filter(n *corev1.Node) string {
	for _, at := range a.affinity {
		d, ok := domain(at.key, n)
		if !ok || !at.selfFirst && !at.domains[d] {
			return reasonAffinity
		}
	}
	for _, k := range a.antiKeys {
		if d, ok := domain(k, n); ok && a.antiDomains[d] {
			return reasonAntiAffinity
		}
	}
	for _, k := range a.existingKeys {
		if d, ok := domain(k, n); ok && a.existingAnti[d] {
			return reasonExistingAntiAffinity
		}
	}
	return ""
}
