// Package disruption is the disruption controller: it keeps the status of
// policy/v1 PodDisruptionBudgets (how many pods are expected, healthy and
// may be disrupted) which the eviction subresource reads.
package disruption

import (
	"fmt"
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// Condition reasons, as Kubernetes names them.
const (
	ReasonSufficientPods   = policyv1.SufficientPodsReason
	ReasonInsufficientPods = policyv1.InsufficientPodsReason
	ReasonSyncFailed       = policyv1.SyncFailedReason
)

// DeletionTimeout is how long an eviction's entry in status.disruptedPods
// keeps its pod out of the healthy count while the pod is not seen deleted.
const DeletionTimeout = 2 * time.Minute

// Scale is the controller a pod belongs to for a budget's expected count:
// the Deployment (for a ReplicaSet a Deployment controls), ReplicaSet,
// StatefulSet or ReplicationController, and its spec.replicas.
type Scale struct {
	UID      types.UID
	Replicas int32
}

// Input is what the status of one budget is computed from.
type Input struct {
	PDB *policyv1.PodDisruptionBudget
	// Pods are the pods of the budget's namespace its selector matches.
	Pods []*corev1.Pod
	// Scales maps a pod name to its controller's scale; a pod with a
	// controller reference and no entry has a controller that was not found.
	Scales map[string]Scale
	Now    time.Time
}

// Result is the computed status and when to compute it again whatever
// happens (an entry of disruptedPods expiring; 0: only on events).
type Result struct {
	Status  policyv1.PodDisruptionBudgetStatus
	Recheck time.Duration
	// Expired names the pods whose eviction was not followed by a deletion
	// within DeletionTimeout.
	Expired []string
}

// Status computes a budget's status as Kubernetes' disruption controller
// does. When the expected count cannot be known (a pod's controller is
// missing) the budget fails safe: no disruption allowed, DisruptionAllowed
// False with reason SyncFailed.
func Status(in Input) Result {
	pdb := in.PDB
	st := *pdb.Status.DeepCopy()
	st.ObservedGeneration = pdb.Generation

	expected, desired, err := expectedAndDesired(in)
	if err != nil {
		st.DisruptionsAllowed = 0
		apimeta.SetStatusCondition(&st.Conditions, metav1.Condition{
			Type: policyv1.DisruptionAllowedCondition, Status: metav1.ConditionFalse,
			Reason: ReasonSyncFailed, Message: err.Error(), ObservedGeneration: st.ObservedGeneration,
			LastTransitionTime: metav1.NewTime(in.Now),
		})
		return Result{Status: st}
	}

	disrupted, recheck, expired := disruptedPods(in)
	healthy := int32(0)
	for _, p := range in.Pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		if _, ok := disrupted[p.Name]; ok {
			continue
		}
		if podReady(p) {
			healthy++
		}
	}
	allowed := healthy - desired
	if expected <= 0 || allowed <= 0 {
		allowed = 0
	}
	st.ExpectedPods, st.DesiredHealthy, st.CurrentHealthy, st.DisruptionsAllowed = expected, desired, healthy, allowed
	st.DisruptedPods = disrupted
	setAllowedCondition(&st, in.Now)
	return Result{Status: st, Recheck: recheck, Expired: expired}
}

// setAllowedCondition sets DisruptionAllowed from disruptionsAllowed.
func setAllowedCondition(st *policyv1.PodDisruptionBudgetStatus, now time.Time) {
	c := metav1.Condition{Type: policyv1.DisruptionAllowedCondition, Status: metav1.ConditionFalse,
		Reason: ReasonInsufficientPods, ObservedGeneration: st.ObservedGeneration, LastTransitionTime: metav1.NewTime(now)}
	if st.DisruptionsAllowed > 0 {
		c.Status, c.Reason = metav1.ConditionTrue, ReasonSufficientPods
	}
	apimeta.SetStatusCondition(&st.Conditions, c)
}

// expectedAndDesired returns expectedPods and desiredHealthy.
func expectedAndDesired(in Input) (int32, int32, error) {
	spec := in.PDB.Spec
	switch {
	case spec.MaxUnavailable != nil:
		expected, err := expectedScale(in)
		if err != nil {
			return 0, 0, err
		}
		maxUnavailable, err := intstr.GetScaledValueFromIntOrPercent(spec.MaxUnavailable, int(expected), true)
		if err != nil {
			return 0, 0, err
		}
		return expected, max(expected-int32(maxUnavailable), 0), nil
	case spec.MinAvailable != nil && spec.MinAvailable.Type == intstr.Int:
		return int32(len(in.Pods)), spec.MinAvailable.IntVal, nil
	case spec.MinAvailable != nil:
		expected, err := expectedScale(in)
		if err != nil {
			return 0, 0, err
		}
		minAvailable, err := intstr.GetScaledValueFromIntOrPercent(spec.MinAvailable, int(expected), true)
		if err != nil {
			return 0, 0, err
		}
		return expected, int32(minAvailable), nil
	}
	return 0, 0, nil
}

// expectedScale sums the replicas of the pods' controllers, each counted
// once. Pods without a controller are left out.
func expectedScale(in Input) (int32, error) {
	seen := map[types.UID]bool{}
	total := int32(0)
	for _, p := range in.Pods {
		if metav1.GetControllerOf(p) == nil {
			continue
		}
		s, ok := in.Scales[p.Name]
		if !ok {
			return 0, fmt.Errorf("found no controllers for pod %q", p.Name)
		}
		if !seen[s.UID] {
			seen[s.UID] = true
			total += s.Replicas
		}
	}
	return total, nil
}

// disruptedPods keeps the entries of status.disruptedPods for pods that
// still exist, are not being deleted and were evicted less than
// DeletionTimeout ago.
func disruptedPods(in Input) (map[string]metav1.Time, time.Duration, []string) {
	old := in.PDB.Status.DisruptedPods
	if len(old) == 0 {
		return nil, 0, nil
	}
	out := map[string]metav1.Time{}
	var recheck time.Duration
	var expired []string
	for _, p := range in.Pods {
		if p.DeletionTimestamp != nil {
			continue
		}
		t, ok := old[p.Name]
		if !ok {
			continue
		}
		due := t.Add(DeletionTimeout)
		if due.Before(in.Now) {
			expired = append(expired, p.Name)
			continue
		}
		out[p.Name] = t
		if d := due.Sub(in.Now); recheck == 0 || d < recheck {
			recheck = d
		}
	}
	sort.Strings(expired)
	if len(out) == 0 {
		out = nil
	}
	return out, recheck, expired
}

// podReady is the pod's Ready condition.
func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
