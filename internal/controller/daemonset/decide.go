package daemonset

import (
	"sort"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	corev1helpers "k8s.io/component-helpers/scheduling/corev1"
	"k8s.io/component-helpers/scheduling/corev1/nodeaffinity"
	"k8s.io/klog/v2"
)

// The labels a daemon pod carries: its revision's hash, and the set's
// generation it was created at (deprecated in kube, still written).
const (
	HashLabel       = appsv1.DefaultDaemonSetUniqueLabelKey // controller-revision-hash
	GenerationLabel = "pod-template-generation"
)

// Input is everything a sync decides from. Nothing in it is modified.
type Input struct {
	// Set is the live DaemonSet (spec, generation, status).
	Set *appsv1.DaemonSet
	// Hash is the update revision's hash: pods with it are up to date.
	Hash string
	// Nodes are all nodes; Pods the pods the set owns, on any node.
	Nodes []*corev1.Node
	Pods  []*corev1.Pod
	Now   time.Time
}

// Plan is the outcome of Decide.
type Plan struct {
	// Create are the nodes that get a new pod of the update revision.
	Create []string
	// Delete are pods to delete, each with why.
	Delete []Deletion
	// Status is what the set reports once the plan is carried out.
	Status appsv1.DaemonSetStatus
	// RequeueAfter, when set, is when a Ready pod becomes available
	// (minReadySeconds).
	RequeueAfter time.Duration
}

// Deletion is one pod to delete.
type Deletion struct {
	Pod *corev1.Pod
	Why string
}

// DaemonTolerations are the tolerations the controller adds to every daemon
// pod, as kube's DaemonSet controller does: daemons keep running on nodes
// that are not ready or unreachable, and are placed on nodes under
// pressure or cordoned; hostNetwork daemons also on nodes whose network
// is not set up yet.
func DaemonTolerations(spec *corev1.PodSpec) []corev1.Toleration {
	out := []corev1.Toleration{
		{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute},
		{Key: corev1.TaintNodeDiskPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeMemoryPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodePIDPressure, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
		{Key: corev1.TaintNodeUnschedulable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule},
	}
	if spec.HostNetwork {
		out = append(out, corev1.Toleration{Key: corev1.TaintNodeNetworkUnavailable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule})
	}
	return out
}

// withDaemonTolerations is spec's tolerations plus the daemon ones it does
// not have yet.
func withDaemonTolerations(spec *corev1.PodSpec) []corev1.Toleration {
	out := append([]corev1.Toleration(nil), spec.Tolerations...)
	for _, t := range DaemonTolerations(spec) {
		have := false
		for _, o := range out {
			if o.Key == t.Key && o.Effect == t.Effect && o.Operator == t.Operator {
				have = true
				break
			}
		}
		if !have {
			out = append(out, t)
		}
	}
	return out
}

// Placement says whether a daemon pod belongs on a node.
type Placement struct {
	// ShouldRun: a new pod is placed there (the node is Ready, matches the
	// template's nodeName, nodeSelector and required node affinity, and
	// its NoSchedule and NoExecute taints are tolerated).
	ShouldRun bool
	// ShouldContinue: a pod already there keeps running (the node matches
	// and its NoExecute taints are tolerated; readiness does not matter).
	ShouldContinue bool
}

// Place decides where the set's pods belong on node.
func Place(set *appsv1.DaemonSet, node *corev1.Node) Placement {
	spec := &set.Spec.Template.Spec
	if spec.NodeName != "" && spec.NodeName != node.Name {
		return Placement{}
	}
	pod := &corev1.Pod{Spec: *spec}
	pod.Spec.Tolerations = withDaemonTolerations(spec)
	if ok, _ := nodeaffinity.GetRequiredNodeAffinity(pod).Match(node); !ok {
		return Placement{}
	}
	noExec := func(t *corev1.Taint) bool { return t.Effect == corev1.TaintEffectNoExecute }
	sched := func(t *corev1.Taint) bool {
		return t.Effect == corev1.TaintEffectNoExecute || t.Effect == corev1.TaintEffectNoSchedule
	}
	_, untolerated := corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), node.Spec.Taints, pod.Spec.Tolerations, noExec, false)
	if untolerated {
		return Placement{}
	}
	_, untolerated = corev1helpers.FindMatchingUntoleratedTaint(klog.Background(), node.Spec.Taints, pod.Spec.Tolerations, sched, false)
	return Placement{ShouldRun: !untolerated && nodeReady(node), ShouldContinue: true}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func readySince(p *corev1.Pod) (time.Time, bool) {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.LastTransitionTime.Time, c.Status == corev1.ConditionTrue
		}
	}
	return time.Time{}, false
}

func isReady(p *corev1.Pod) bool {
	_, ok := readySince(p)
	return ok && p.DeletionTimestamp == nil
}

// availableIn is 0 for a pod Ready for minReadySeconds, the time left for
// a Ready pod that is not yet, and -1 for a pod that is not Ready.
func availableIn(p *corev1.Pod, minReady int32, now time.Time) time.Duration {
	since, ok := readySince(p)
	if !ok || p.DeletionTimestamp != nil {
		return -1
	}
	if minReady <= 0 {
		return 0
	}
	left := since.Add(time.Duration(minReady) * time.Second).Sub(now)
	if left < 0 {
		return 0
	}
	return left
}

// IsUpdated reports whether pod is of the update revision: its hash label,
// or the generation label when the set has not changed since.
func IsUpdated(pod *corev1.Pod, hash string, generation int64) bool {
	if pod.Labels[HashLabel] == hash {
		return true
	}
	g, ok := pod.Labels[GenerationLabel]
	return ok && g == strconv.FormatInt(generation, 10)
}

func finished(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodFailed || p.Status.Phase == corev1.PodSucceeded
}

// olderFirst orders pods by creation, then name.
func olderFirst(pods []*corev1.Pod) {
	sort.SliceStable(pods, func(i, j int) bool {
		a, b := pods[i], pods[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
}

// scaled resolves an int-or-percent against total, rounding up.
func scaled(v *intstr.IntOrString, total int) int {
	if v == nil {
		return 0
	}
	n, err := intstr.GetScaledValueFromIntOrPercent(v, total, true)
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// RollingParams are the set's maxUnavailable and maxSurge resolved against
// the number of nodes that should run it (one unavailable at least when
// both come to zero, as kube does).
func RollingParams(set *appsv1.DaemonSet, desired int) (maxUnavailable, maxSurge int) {
	if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		maxUnavailable, maxSurge = scaled(ru.MaxUnavailable, desired), scaled(ru.MaxSurge, desired)
	} else {
		maxUnavailable = 1
	}
	if maxUnavailable == 0 && maxSurge == 0 {
		maxUnavailable = 1
	}
	return maxUnavailable, maxSurge
}

type nodePods struct {
	node    *corev1.Node
	place   Placement
	live    []*corev1.Pod // neither deleting nor finished, oldest first
	leaving bool          // a pod is terminating there
}

// Decide is the DaemonSet policy: which nodes get a pod, which pods go,
// and the status. It is a pure function of in.
func Decide(in Input) Plan {
	set := in.Set
	minReady := set.Spec.MinReadySeconds
	surgeStrategy := set.Spec.UpdateStrategy.Type != appsv1.OnDeleteDaemonSetStrategyType
	var plan Plan
	deleting := map[string]bool{}
	del := func(p *corev1.Pod, why string) {
		if !deleting[p.Name] {
			deleting[p.Name] = true
			plan.Delete = append(plan.Delete, Deletion{Pod: p, Why: why})
		}
	}

	byNode := map[string]*nodePods{}
	var names []string
	for _, n := range in.Nodes {
		byNode[n.Name] = &nodePods{node: n, place: Place(set, n)}
		names = append(names, n.Name)
	}
	sort.Strings(names)
	for _, p := range in.Pods {
		np := byNode[p.Spec.NodeName]
		switch {
		case np == nil:
			// Its node is gone (or it was never placed): it cannot run.
			if p.DeletionTimestamp == nil {
				del(p, "its node "+p.Spec.NodeName+" does not exist")
			}
		case p.DeletionTimestamp != nil:
			np.leaving = true
		case finished(p):
			// A daemon that exited is replaced (the next sync creates
			// its successor once this one is gone).
			del(p, "it "+string(p.Status.Phase))
			np.leaving = true
		default:
			np.live = append(np.live, p)
		}
	}

	desired := 0
	for _, name := range names {
		np := byNode[name]
		olderFirst(np.live)
		if np.place.ShouldRun {
			desired++
		}
	}
	maxUnavailable, maxSurge := RollingParams(set, desired)
	if !surgeStrategy {
		maxSurge = 0
	}

	// What each node should have, before updates.
	for _, name := range names {
		np := byNode[name]
		switch {
		case !np.place.ShouldContinue:
			for _, p := range np.live {
				del(p, "node "+name+" no longer matches the set's placement")
			}
		case !np.place.ShouldRun:
			// Keep what runs there; place nothing new.
		case len(np.live) == 0:
			if !np.leaving || maxSurge > 0 {
				plan.Create = append(plan.Create, name)
			}
		case len(np.live) > 1:
			np.live = keepOnNode(np.live, in.Hash, set.Generation, maxSurge > 0, minReady, in.Now, del)
		}
	}

	if set.Spec.UpdateStrategy.Type == appsv1.RollingUpdateDaemonSetStrategyType || set.Spec.UpdateStrategy.Type == "" {
		rollingUpdate(in, byNode, names, maxUnavailable, maxSurge, &plan, del)
	}

	plan.Status = status(in, byNode, names)
	for _, name := range names {
		for _, p := range byNode[name].live {
			if left := availableIn(p, minReady, in.Now); left > 0 && (plan.RequeueAfter == 0 || left < plan.RequeueAfter) {
				plan.RequeueAfter = left
			}
		}
	}
	return plan
}

// keepOnNode keeps one pod on a node with several (with surge, one updated
// and one old pod), deleting the rest, and returns what stays.
func keepOnNode(live []*corev1.Pod, hash string, gen int64, surge bool, minReady int32, now time.Time, del func(*corev1.Pod, string)) []*corev1.Pod {
	var updated, old []*corev1.Pod
	for _, p := range live {
		if IsUpdated(p, hash, gen) {
			updated = append(updated, p)
		} else {
			old = append(old, p)
		}
	}
	var keep []*corev1.Pod
	if surge {
		if len(updated) > 0 {
			keep = append(keep, updated[0])
		}
		if len(old) > 0 {
			// The oldest available old pod, else the oldest.
			pick := old[0]
			for _, p := range old {
				if availableIn(p, minReady, now) == 0 {
					pick = p
					break
				}
			}
			keep = append(keep, pick)
		}
	} else {
		// The oldest updated pod, else the oldest available, else the oldest.
		pick := live[0]
		if len(updated) > 0 {
			pick = updated[0]
		} else {
			for _, p := range live {
				if availableIn(p, minReady, now) == 0 {
					pick = p
					break
				}
			}
		}
		keep = []*corev1.Pod{pick}
	}
	for _, p := range live {
		kept := false
		for _, k := range keep {
			kept = kept || k == p
		}
		if !kept {
			del(p, "more than one daemon pod on node "+p.Spec.NodeName)
		}
	}
	olderFirst(keep)
	return keep
}

// rollingUpdate replaces old pods within maxUnavailable (deleting old pods
// first) or maxSurge (starting the new pod beside the old, deleting the
// old once the new one is available).
func rollingUpdate(in Input, byNode map[string]*nodePods, names []string, maxUnavailable, maxSurge int, plan *Plan, del func(*corev1.Pod, string)) {
	minReady := in.Set.Spec.MinReadySeconds
	split := func(np *nodePods) (newPod, oldPod *corev1.Pod) {
		for _, p := range np.live {
			if IsUpdated(p, in.Hash, in.Set.Generation) {
				if newPod == nil {
					newPod = p
				}
			} else if oldPod == nil {
				oldPod = p
			}
		}
		return newPod, oldPod
	}
	if maxSurge == 0 {
		unavailable := 0
		var candidates []*corev1.Pod
		for _, name := range names {
			np := byNode[name]
			if !np.place.ShouldRun {
				continue
			}
			newPod, oldPod := split(np)
			switch {
			case newPod == nil && oldPod == nil:
				unavailable++
			case newPod != nil:
				if availableIn(newPod, minReady, in.Now) != 0 {
					unavailable++
				}
			case availableIn(oldPod, minReady, in.Now) != 0:
				// An old pod that is not available is replaced at once:
				// that costs no availability.
				unavailable++
				del(oldPod, "rolling update: replacing an unavailable old pod")
			default:
				candidates = append(candidates, oldPod)
			}
		}
		for _, p := range candidates {
			if unavailable >= maxUnavailable {
				break
			}
			unavailable++
			del(p, "rolling update")
		}
		return
	}
	surged := 0
	var candidates []string
	for _, name := range names {
		np := byNode[name]
		if !np.place.ShouldRun {
			continue
		}
		newPod, oldPod := split(np)
		switch {
		case oldPod == nil:
		case newPod == nil:
			if availableIn(oldPod, minReady, in.Now) != 0 {
				// Not available anyway: its successor starts now.
				surged++
				plan.Create = append(plan.Create, name)
				continue
			}
			candidates = append(candidates, name)
		default:
			surged++
			if availableIn(newPod, minReady, in.Now) == 0 {
				del(oldPod, "rolling update: its successor is available")
			}
		}
	}
	for _, name := range candidates {
		if surged >= maxSurge {
			break
		}
		surged++
		plan.Create = append(plan.Create, name)
	}
}

// status counts as kube's DaemonSet controller does, on the pods as they
// are (before the plan's writes), oldest pod per node.
func status(in Input, byNode map[string]*nodePods, names []string) appsv1.DaemonSetStatus {
	set := in.Set
	st := appsv1.DaemonSetStatus{
		ObservedGeneration: set.Generation,
		CollisionCount:     set.Status.CollisionCount,
		Conditions:         set.Status.Conditions,
	}
	for _, name := range names {
		np := byNode[name]
		scheduled := len(np.live) > 0
		if !np.place.ShouldRun {
			if scheduled {
				st.NumberMisscheduled++
			}
			continue
		}
		st.DesiredNumberScheduled++
		if !scheduled {
			continue
		}
		st.CurrentNumberScheduled++
		p := np.live[0]
		if isReady(p) {
			st.NumberReady++
			if availableIn(p, set.Spec.MinReadySeconds, in.Now) == 0 {
				st.NumberAvailable++
			}
		}
		for _, q := range np.live {
			if IsUpdated(q, in.Hash, set.Generation) {
				st.UpdatedNumberScheduled++
				break
			}
		}
	}
	st.NumberUnavailable = st.DesiredNumberScheduled - st.NumberAvailable
	return st
}

// NewPod is the daemon pod of the set's template for node.
func NewPod(set *appsv1.DaemonSet, hash, node string) *corev1.Pod {
	t := set.Spec.Template.DeepCopy()
	labels := map[string]string{}
	for k, v := range t.Labels {
		labels[k] = v
	}
	labels[HashLabel] = hash
	labels[GenerationLabel] = strconv.FormatInt(set.Generation, 10)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    set.Name + "-",
			Namespace:       set.Namespace,
			Labels:          labels,
			Annotations:     t.Annotations,
			OwnerReferences: []metav1.OwnerReference{controllerRef(set)},
		},
		Spec: t.Spec,
	}
	pod.Spec.NodeName = node
	pod.Spec.Tolerations = withDaemonTolerations(&t.Spec)
	return pod
}

var controllerKind = appsv1.SchemeGroupVersion.WithKind("DaemonSet")

func controllerRef(set *appsv1.DaemonSet) metav1.OwnerReference {
	return *metav1.NewControllerRef(set, controllerKind)
}
