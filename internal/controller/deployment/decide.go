// Package deployment is the Deployment controller: it rolls a Deployment's
// pod template out through ReplicaSets named <deployment>-<pod-template-hash>
// (RollingUpdate within maxSurge/maxUnavailable, or Recreate), scales them
// proportionally, keeps revisionHistoryLimit old sets, honours pause, and
// reports the Progressing and Available conditions kubectl rollout reads.
//
// controller.go is the queue loop, decide.go the policy (a pure function of
// the Deployment and its sets), status.go the status and conditions,
// replicasets.go and hash.go what names, labels and annotates the sets,
// seam.go the writes.
package deployment

import (
	"fmt"
	"reflect"
	"strconv"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Input is what a sync decides from. Nothing in it is modified.
type Input struct {
	// Deployment is the live Deployment, status included.
	Deployment *appsv1.Deployment
	// ReplicaSets are the sets the Deployment controls.
	ReplicaSets []*appsv1.ReplicaSet
	// Pods are the pods of those sets by set UID (Recreate waits for the old
	// ones to be gone).
	Pods map[types.UID][]*corev1.Pod
	Now  time.Time
}

// Scale is a write to an existing set: its new replicas and annotations.
type Scale struct {
	// ReplicaSet is the set as it should be written.
	ReplicaSet *appsv1.ReplicaSet
	// From and To are the replicas before and after (equal when only
	// annotations or minReadySeconds change).
	From, To int32
}

// Plan is the outcome of Decide, to be carried out in order: create, then
// the writes to existing sets, then the deletions, then the Deployment's
// revision annotation and status.
type Plan struct {
	// Create is the new set to create, if any.
	Create *appsv1.ReplicaSet
	// Scales are the writes to existing sets.
	Scales []Scale
	// Delete are old sets beyond revisionHistoryLimit.
	Delete []*appsv1.ReplicaSet
	// Revision is the revision annotation the Deployment should carry
	// ("" leaves it alone).
	Revision string
	// Status is the Deployment's status afterwards.
	Status appsv1.DeploymentStatus
	// RequeueAfter asks for another look then (progress deadline).
	RequeueAfter time.Duration
	// Warning, when set, is a Warning event: reason and message.
	Warning [2]string
	// Step says which path the sync took (logs, tests).
	Step string
}

// decision is the working state of one Decide: copies of the sets that the
// steps scale, and the Deployment whose status conditions they update.
type decision struct {
	in       Input
	d        *appsv1.Deployment
	sets     []*appsv1.ReplicaSet // working copies, by position of in.ReplicaSets
	observed map[*appsv1.ReplicaSet]*appsv1.ReplicaSet
	created  *appsv1.ReplicaSet
	plan     Plan
	now      time.Time
}

// Decide computes one sync of a Deployment: Kubernetes' order of checks
// (selector, deletion, pause conditions, paused, scaling event, then the
// strategy's rollout step) as a pure function.
func Decide(in Input) Plan {
	x := &decision{in: in, d: in.Deployment.DeepCopy(), observed: map[*appsv1.ReplicaSet]*appsv1.ReplicaSet{}, now: in.Now}
	for _, rs := range in.ReplicaSets {
		c := rs.DeepCopy()
		x.sets = append(x.sets, c)
		x.observed[c] = rs
	}
	d := x.d
	if d.Spec.Selector == nil || reflect.DeepEqual(*d.Spec.Selector, metav1.LabelSelector{}) {
		x.plan.Warning = [2]string{"SelectingAll", "This deployment is selecting all pods. A non-empty selector is required."}
		x.plan.Status = d.Status
		if d.Status.ObservedGeneration < d.Generation {
			x.plan.Status.ObservedGeneration = d.Generation
		}
		x.plan.Step = "selecting all"
		return x.plan
	}
	switch {
	case d.DeletionTimestamp != nil:
		x.plan.Step = "deleting"
		newRS, olds := x.newAndOld(false)
		x.plan.Status = calculateStatus(d, x.statusView(olds, newRS), x.statusNew(newRS), x.now)
	case d.Spec.Paused:
		x.pauseConditions()
		x.plan.Step = "paused"
		x.sync()
	default:
		x.pauseConditions()
		if x.scalingEvent() {
			x.plan.Step = "scaling"
			x.sync()
		} else if d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
			x.recreate()
		} else {
			x.rolling()
		}
	}
	return x.plan
}

// pauseConditions marks the Progressing condition Unknown while paused and
// when resumed, so the time spent paused does not count against the
// progress deadline; a deadline already exceeded stays.
func (x *decision) pauseConditions() {
	d := x.d
	if !HasProgressDeadline(d) {
		return
	}
	c := Condition(d.Status, appsv1.DeploymentProgressing)
	if c != nil && c.Reason == ReasonTimedOut {
		return
	}
	paused := c != nil && c.Reason == ReasonPaused
	switch {
	case d.Spec.Paused && !paused:
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, ReasonPaused, "Deployment is paused", x.now))
	case !d.Spec.Paused && paused:
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionUnknown, ReasonResumed, "Deployment is resumed", x.now))
	}
}

// newAndOld finds the new set (bringing its annotations and the
// Deployment's revision up to date) and the old ones; with create, a
// missing new set is planned for creation.
func (x *decision) newAndOld(create bool) (*appsv1.ReplicaSet, []*appsv1.ReplicaSet) {
	d := x.d
	all := x.sets
	if x.created != nil {
		all = append(append([]*appsv1.ReplicaSet(nil), x.sets...), x.created)
	}
	newRS := FindNew(d, all)
	var olds []*appsv1.ReplicaSet
	for _, rs := range all {
		if rs != newRS {
			olds = append(olds, rs)
		}
	}
	newRevision := maxRevision(olds) + 1
	if newRS != nil {
		if newRS != x.created {
			changed := setNewAnnotations(d, newRS, newRevision, true)
			if newRS.Spec.MinReadySeconds != d.Spec.MinReadySeconds {
				newRS.Spec.MinReadySeconds = d.Spec.MinReadySeconds
				changed = true
			}
			if changed {
				x.touch(newRS, rsReplicas(newRS))
			}
		}
		x.plan.Revision = newRS.Annotations[RevisionAnnotation]
		if HasProgressDeadline(d) && Condition(d.Status, appsv1.DeploymentProgressing) == nil {
			setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonFoundNewRS,
				fmt.Sprintf("Found new replica set %q", newRS.Name), x.now))
		}
		return newRS, olds
	}
	if !create {
		return nil, olds
	}
	rs := NewReplicaSet(d, 0)
	*rs.Spec.Replicas = newReplicas(d, append(append([]*appsv1.ReplicaSet(nil), olds...), rs), rs)
	setNewAnnotations(d, rs, newRevision, false)
	x.created = rs
	x.plan.Create = rs
	x.plan.Revision = strconv.FormatInt(newRevision, 10)
	if HasProgressDeadline(d) {
		setCondition(&d.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonNewRSCreated,
			fmt.Sprintf("Created new replica set %q", rs.Name), x.now))
	}
	return rs, olds
}

// newReplicas is the size of the new set for the next step: for
// RollingUpdate as many as maxSurge leaves room for, up to replicas; for
// Recreate, replicas.
func newReplicas(d *appsv1.Deployment, all []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) int32 {
	if !isRollingUpdate(d) {
		return replicas(d)
	}
	maxTotal := replicas(d) + MaxSurge(d)
	current := sumSpec(all)
	if current >= maxTotal {
		return rsReplicas(newRS)
	}
	up := min(maxTotal-current, replicas(d)-rsReplicas(newRS))
	return rsReplicas(newRS) + up
}

// touch records that a working set is to be written with n replicas; it
// reports whether the size changes.
func (x *decision) touch(rs *appsv1.ReplicaSet, n int32) bool {
	if rs == x.created {
		*rs.Spec.Replicas = n
		return false
	}
	from := rsReplicas(x.observed[rs])
	if rs.Spec.Replicas == nil {
		rs.Spec.Replicas = new(int32)
	}
	*rs.Spec.Replicas = n
	for i := range x.plan.Scales {
		if x.plan.Scales[i].ReplicaSet == rs {
			x.plan.Scales[i].To = n
			return n != rsReplicas(x.observed[rs])
		}
	}
	x.plan.Scales = append(x.plan.Scales, Scale{ReplicaSet: rs, From: from, To: n})
	return n != from
}

// scale resizes a set and records the Deployment's size on it; it
// reports whether the size changed.
func (x *decision) scale(rs *appsv1.ReplicaSet, n int32) bool {
	d := x.d
	sizeChange := rsReplicas(rs) != n
	annotations := setReplicasAnnotations(rs, replicas(d), replicas(d)+MaxSurge(d))
	if !sizeChange && !annotations {
		return false
	}
	x.touch(rs, n)
	return sizeChange
}

// resize scales a set whose size differs from n (and only then).
func (x *decision) resize(rs *appsv1.ReplicaSet, n int32) bool {
	if rsReplicas(rs) == n {
		return false
	}
	return x.scale(rs, n)
}

// scalingEvent reports whether replicas changed since the active sets were
// sized (their desired-replicas annotation).
func (x *decision) scalingEvent() bool {
	newRS, olds := x.newAndOld(false)
	for _, rs := range active(append(olds, newRS)) {
		if want, ok := annotatedInt(rs, DesiredReplicasAnnotation); ok && want != replicas(x.d) {
			return true
		}
	}
	return false
}

// sync scales without rolling out (paused, or replicas changed), cleans up
// a paused Deployment's history, and reports status.
func (x *decision) sync() {
	newRS, olds := x.newAndOld(false)
	x.proportionalScale(newRS, olds)
	if x.d.Spec.Paused {
		x.cleanup(olds)
	}
	x.plan.Status = calculateStatus(x.d, x.statusView(olds, newRS), x.statusNew(newRS), x.now)
	if apiequality.Semantic.DeepEqual(x.plan.Status, x.in.Deployment.Status) {
		x.plan.Status = x.in.Deployment.Status
	}
}

// activeOrLatest returns the only active set, or the newest when none is
// active, or nil when several are.
func activeOrLatest(newRS *appsv1.ReplicaSet, olds []*appsv1.ReplicaSet) *appsv1.ReplicaSet {
	if newRS == nil && len(olds) == 0 {
		return nil
	}
	sorted := append([]*appsv1.ReplicaSet(nil), olds...)
	byCreation(sorted)
	act := active(append(append([]*appsv1.ReplicaSet(nil), sorted...), newRS))
	switch len(act) {
	case 0:
		if newRS != nil {
			return newRS
		}
		return sorted[len(sorted)-1]
	case 1:
		return act[0]
	}
	return nil
}

// saturated reports whether the new set runs all replicas, available.
func saturated(d *appsv1.Deployment, rs *appsv1.ReplicaSet) bool {
	if rs == nil {
		return false
	}
	want, ok := annotatedInt(rs, DesiredReplicasAnnotation)
	return ok && rsReplicas(rs) == replicas(d) && want == replicas(d) && rs.Status.AvailableReplicas == replicas(d)
}

// proportionalScale follows a change of replicas: a single active set takes
// all of it; a saturated new set means the old ones go to zero; otherwise
// (a rolling update in flight) the difference is shared between the active
// sets in proportion to their size, the remainder to the largest.
func (x *decision) proportionalScale(newRS *appsv1.ReplicaSet, olds []*appsv1.ReplicaSet) {
	d := x.d
	if one := activeOrLatest(newRS, olds); one != nil {
		x.resize(one, replicas(d))
		return
	}
	if saturated(d, newRS) {
		for _, rs := range active(olds) {
			x.resize(rs, 0)
		}
		return
	}
	if !isRollingUpdate(d) {
		return
	}
	sets := active(append(append([]*appsv1.ReplicaSet(nil), olds...), newRS))
	allowed := int32(0)
	if replicas(d) > 0 {
		allowed = replicas(d) + MaxSurge(d)
	}
	toAdd := allowed - sumSpec(sets)
	switch {
	case toAdd > 0:
		bySize(sets, true)
	case toAdd < 0:
		bySize(sets, false)
	}
	sizes := make([]int32, len(sets))
	added := int32(0)
	for i, rs := range sets {
		sizes[i] = rsReplicas(rs)
		if toAdd != 0 {
			p := x.proportion(rs, toAdd, added)
			sizes[i] += p
			added += p
		}
	}
	for i, rs := range sets {
		if i == 0 && toAdd != 0 {
			sizes[i] = max(sizes[i]+toAdd-added, 0)
		}
		x.scale(rs, sizes[i])
	}
}

// proportion is the share of toAdd (added so far) that a set gets: its
// size scaled by the ratio of the new to the old max replicas, bounded by
// what is left to add or remove.
func (x *decision) proportion(rs *appsv1.ReplicaSet, toAdd, added int32) int32 {
	d := x.d
	if rsReplicas(rs) == 0 || toAdd == 0 || toAdd == added {
		return 0
	}
	var fraction int32
	if replicas(d) == 0 {
		fraction = -rsReplicas(rs)
	} else {
		maxNow := replicas(d) + MaxSurge(d)
		before, ok := annotatedInt(rs, MaxReplicasAnnotation)
		if !ok || before == 0 {
			before = d.Status.Replicas
		}
		if before == 0 {
			return 0
		}
		size := float64(rsReplicas(rs)*maxNow) / float64(before)
		fraction = int32(roundHalfAway(size)) - rsReplicas(rs)
	}
	left := toAdd - added
	if toAdd > 0 {
		return min(fraction, left)
	}
	return max(fraction, left)
}

func roundHalfAway(f float64) float64 {
	if f < 0 {
		return -roundHalfAway(-f)
	}
	return float64(int64(f + 0.5))
}

// rolling is one step of a RollingUpdate: scale the new set up within
// maxSurge, else scale old sets down within maxUnavailable (unhealthy
// replicas first), else, once complete, clean up history.
func (x *decision) rolling() {
	d := x.d
	newRS, olds := x.newAndOld(true)
	all := append(append([]*appsv1.ReplicaSet(nil), olds...), newRS)
	defer func() { x.rolloutStatus(olds, newRS) }()

	// Scale the new set towards replicas.
	switch n := rsReplicas(newRS); {
	case n > replicas(d):
		if x.resize(newRS, replicas(d)) {
			x.plan.Step = "new set down to replicas"
			return
		}
	case n < replicas(d):
		if x.resize(newRS, newReplicas(d, all, newRS)) {
			x.plan.Step = "new set up"
			return
		}
	}
	if x.scaleDownOld(all, olds, newRS) {
		x.plan.Step = "old sets down"
		return
	}
	x.plan.Step = "waiting"
	if Complete(x.in.Deployment, &x.in.Deployment.Status) {
		x.plan.Step = "complete"
		x.cleanup(olds)
	}
}

// scaleDownOld scales old sets down as far as maxUnavailable allows,
// counting the new set's unavailable pods; it reports a change.
func (x *decision) scaleDownOld(all, olds []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) bool {
	d := x.d
	if sumSpec(olds) == 0 {
		return false
	}
	minAvailable := replicas(d) - MaxUnavailable(d)
	newUnavailable := rsReplicas(newRS) - newRS.Status.AvailableReplicas
	maxDown := sumSpec(all) - minAvailable - newUnavailable
	if maxDown <= 0 {
		return false
	}
	sorted := active(olds)
	byCreation(sorted)
	// Unhealthy replicas first: removing them costs no availability.
	cleaned := int32(0)
	for _, rs := range sorted {
		if cleaned >= maxDown {
			break
		}
		n := rsReplicas(rs)
		if n == 0 || n == rs.Status.AvailableReplicas {
			continue
		}
		down := min(maxDown-cleaned, n-rs.Status.AvailableReplicas)
		if down <= 0 {
			continue
		}
		x.resize(rs, n-down)
		cleaned += down
	}
	// Then healthy ones, down to minAvailable.
	scaled := int32(0)
	availableNow := sumStatus(all, statusAvailable)
	if availableNow > minAvailable {
		budget := availableNow - minAvailable
		for _, rs := range sorted {
			if scaled >= budget {
				break
			}
			n := rsReplicas(rs)
			if n == 0 {
				continue
			}
			down := min(n, budget-scaled)
			x.resize(rs, n-down)
			scaled += down
		}
	}
	return cleaned+scaled > 0
}

// recreate is one step of a Recreate rollout: scale all old sets to zero,
// wait until none of their pods runs, then create or scale the new set.
func (x *decision) recreate() {
	d := x.d
	newRS, olds := x.newAndOld(false)
	defer func() { x.rolloutStatus(olds, newRS) }()
	down := false
	for _, rs := range active(olds) {
		if x.resize(rs, 0) {
			down = true
		}
	}
	if down {
		x.plan.Step = "old sets down"
		return
	}
	if x.oldPodsRunning(newRS, olds) {
		x.plan.Step = "waiting for old pods"
		return
	}
	if newRS == nil {
		newRS, olds = x.newAndOld(true)
	}
	x.plan.Step = "new set up"
	if !x.resize(newRS, replicas(d)) && newRS != x.created {
		x.plan.Step = "waiting"
	}
	if Complete(x.in.Deployment, &x.in.Deployment.Status) {
		x.plan.Step = "complete"
		x.cleanup(olds)
	}
}

// oldPodsRunning reports whether an old set still has pods that are not
// finished (terminating ones included).
func (x *decision) oldPodsRunning(newRS *appsv1.ReplicaSet, olds []*appsv1.ReplicaSet) bool {
	if sumStatus(olds, statusReplicas) > 0 {
		return true
	}
	for uid, pods := range x.in.Pods {
		if newRS != nil && newRS.UID == uid {
			continue
		}
		for _, p := range pods {
			if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
				return true
			}
		}
	}
	return false
}

// cleanup deletes the oldest old sets beyond revisionHistoryLimit that
// have no pods, are not being deleted and whose status is current.
func (x *decision) cleanup(olds []*appsv1.ReplicaSet) {
	d := x.d
	if d.Spec.RevisionHistoryLimit == nil {
		return
	}
	var alive []*appsv1.ReplicaSet
	for _, rs := range olds {
		if rs != nil && rs != x.created && rs.DeletionTimestamp == nil {
			alive = append(alive, rs)
		}
	}
	diff := len(alive) - int(*d.Spec.RevisionHistoryLimit)
	if diff <= 0 {
		return
	}
	byRevision(alive)
	for _, rs := range alive[:diff] {
		obs := x.observed[rs]
		if obs == nil || obs.Status.Replicas != 0 || rsReplicas(obs) != 0 || rsReplicas(rs) != 0 || obs.Generation > obs.Status.ObservedGeneration {
			continue
		}
		x.plan.Delete = append(x.plan.Delete, obs)
	}
}

// statusView is the sets as observed (the counts come from their status),
// with the set being created as it will be.
func (x *decision) statusView(olds []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) []*appsv1.ReplicaSet {
	var out []*appsv1.ReplicaSet
	for _, rs := range append(append([]*appsv1.ReplicaSet(nil), olds...), newRS) {
		if rs == nil {
			continue
		}
		if obs, ok := x.observed[rs]; ok {
			out = append(out, obs)
		} else {
			out = append(out, rs)
		}
	}
	return out
}

func (x *decision) statusNew(newRS *appsv1.ReplicaSet) *appsv1.ReplicaSet {
	if obs, ok := x.observed[newRS]; ok {
		return obs
	}
	return newRS
}

// rolloutStatus sets the plan's status after a rollout step, and when to
// look again for the progress deadline.
func (x *decision) rolloutStatus(olds []*appsv1.ReplicaSet, newRS *appsv1.ReplicaSet) {
	st := rolloutStatus(x.d, x.statusView(olds, newRS), x.statusNew(newRS), x.now)
	if apiequality.Semantic.DeepEqual(st, x.in.Deployment.Status) {
		st = x.in.Deployment.Status
	}
	x.plan.Status = st
	x.plan.RequeueAfter = recheckAfter(x.d, &st, x.now)
}
