package statefulset

import (
	"sort"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// ActionType says what an Action does.
type ActionType string

// The actions a sync can take.
const (
	CreateClaim ActionType = "CreateClaim" // Claim is the claim to create
	UpdateClaim ActionType = "UpdateClaim" // Claim carries the new owner references
	CreatePod   ActionType = "CreatePod"   // Pod is the pod to create
	DeletePod   ActionType = "DeletePod"   // Pod is the pod to delete
	UpdatePod   ActionType = "UpdatePod"   // Pod carries the repaired identity labels
)

// Action is one change to the cluster.
type Action struct {
	Type  ActionType
	Pod   *corev1.Pod
	Claim *corev1.PersistentVolumeClaim
	// Why is a short reason, for logs and events.
	Why string
}

// Input is everything a sync decides from. Nothing in it is modified.
type Input struct {
	// Set is the live set: replicas, policies, status.
	Set *appsv1.StatefulSet
	// CurrentSet and UpdateSet are the set with the template of the current
	// and of the update revision.
	CurrentSet, UpdateSet           *appsv1.StatefulSet
	CurrentRevision, UpdateRevision string
	CollisionCount                  int32
	// Pods are the pods the set owns (any ordinal).
	Pods []*corev1.Pod
	// Claims are the set's claims by name.
	Claims map[string]*corev1.PersistentVolumeClaim
	Now    time.Time
}

// Plan is the outcome of Decide.
type Plan struct {
	// Actions in order: claims before the pods that use them, and for
	// OrderedReady at most one pod creation or deletion.
	Actions []Action
	// Status is the status the set should report once the actions are done.
	Status appsv1.StatefulSetStatus
	// RequeueAfter, when set, is when minReadySeconds of a waited-for pod
	// elapses.
	RequeueAfter time.Duration
	// Waiting says what the sync waits for, if anything (logs).
	Waiting string
}

func isTerminating(p *corev1.Pod) bool { return p.DeletionTimestamp != nil }

func isFailed(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodFailed }

func isSucceeded(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded }

func readyCondition(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodReady {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

func isRunningAndReady(p *corev1.Pod) bool {
	c := readyCondition(p)
	return p.Status.Phase == corev1.PodRunning && c != nil && c.Status == corev1.ConditionTrue
}

// availableIn is how long until a ready pod counts as available (0 when it
// already does).
func availableIn(p *corev1.Pod, minReady time.Duration, now time.Time) time.Duration {
	if minReady <= 0 {
		return 0
	}
	c := readyCondition(p)
	if c == nil {
		return minReady
	}
	left := c.LastTransitionTime.Add(minReady).Sub(now)
	if left < 0 {
		return 0
	}
	return left
}

func isHealthy(p *corev1.Pod) bool { return p != nil && isRunningAndReady(p) && !isTerminating(p) }

func revisionOf(p *corev1.Pod) string { return p.Labels[RevisionLabel] }

// Decide computes the next actions and the status of a set. It is the
// StatefulSet controller's whole policy and has no side effects.
//
// Pods in [start, start+replicas) are replicas, the others condemned. With
// OrderedReady (monotonic) a sync makes at most one pod change and stops at
// the first replica that is missing, terminating or not yet Running, Ready
// and available; with Parallel it creates and deletes all at once. Scale-down
// runs from the highest ordinal, and only once the replicas are healthy
// under OrderedReady. Rolling updates replace outdated pods from the highest
// ordinal down to the partition, at most maxUnavailable unavailable at a
// time.
func Decide(in Input) Plan {
	set := in.Set
	monotonic := set.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
	minReady := time.Duration(set.Spec.MinReadySeconds) * time.Second
	start, n := startOrdinal(set), replicaCount(set)

	replicas := make([]*corev1.Pod, n)
	var condemned []*corev1.Pod
	ordinal := map[*corev1.Pod]int{}
	for _, p := range in.Pods {
		ord := ordinalOf(set, p)
		if ord < 0 {
			continue
		}
		ordinal[p] = ord
		if inRange(set, ord) {
			replicas[ord-start] = p
		} else {
			condemned = append(condemned, p)
		}
	}
	// Highest ordinal first: that is the order of deletion.
	sort.Slice(condemned, func(i, j int) bool { return ordinal[condemned[i]] > ordinal[condemned[j]] })

	plan := Plan{}
	// after is the pods as they will be once the actions are done; status
	// is computed from it.
	after := map[int]*corev1.Pod{}
	for p, ord := range ordinal {
		after[ord] = p
	}
	now := metav1.NewTime(in.Now)
	markDeleted := func(p *corev1.Pod) {
		q := p.DeepCopy()
		q.DeletionTimestamp = &now
		after[ordinal[p]] = q
	}
	waitFor := func(until time.Duration) {
		if until > 0 && (plan.RequeueAfter == 0 || until < plan.RequeueAfter) {
			plan.RequeueAfter = until
		}
	}

	// The first unhealthy pod: lowest replica, else the lowest condemned.
	var firstUnhealthy *corev1.Pod
	for _, p := range replicas {
		if p != nil && !isHealthy(p) {
			firstUnhealthy = p
			break
		}
	}
	if firstUnhealthy == nil {
		for i := len(condemned) - 1; i >= 0; i-- {
			if !isHealthy(condemned[i]) {
				firstUnhealthy = condemned[i]
				break
			}
		}
	}

	deleting := set.DeletionTimestamp != nil
	stop := deleting
	// ensureClaims creates the missing claims of an ordinal and fixes the
	// owner references of existing ones; it reports whether a claim is
	// being deleted (the pod must then wait).
	ensureClaims := func(ord int, pod *corev1.Pod) (blocked bool) {
		for i := range set.Spec.VolumeClaimTemplates {
			t := &set.Spec.VolumeClaimTemplates[i]
			name := ClaimName(set, t, ord)
			c, ok := in.Claims[name]
			if !ok {
				if !inRange(set, ord) {
					continue
				}
				nc := NewClaim(set, t, ord)
				nc.OwnerReferences = claimOwners(set, nc, pod, ord)
				plan.Actions = append(plan.Actions, Action{Type: CreateClaim, Claim: nc, Pod: pod, Why: "missing"})
				continue
			}
			if c.DeletionTimestamp != nil {
				blocked = true
				continue
			}
			if owners := claimOwners(set, c, pod, ord); !sameOwners(owners, c.OwnerReferences) {
				uc := c.DeepCopy()
				uc.OwnerReferences = owners
				plan.Actions = append(plan.Actions, Action{Type: UpdateClaim, Claim: uc, Pod: pod, Why: "retention policy"})
			}
		}
		return blocked
	}

	// Replicas, lowest ordinal first.
	for i := 0; i < n && !stop; i++ {
		ord := start + i
		pod := replicas[i]
		if pod != nil && (isFailed(pod) || isSucceeded(pod)) && !isTerminating(pod) {
			plan.Actions = append(plan.Actions, Action{Type: DeletePod, Pod: pod, Why: "pod " + string(pod.Status.Phase)})
			markDeleted(pod)
			if monotonic {
				plan.Waiting = pod.Name + " to be recreated"
				stop = true
			}
			continue
		}
		if pod == nil {
			if ensureClaims(ord, nil) {
				plan.Waiting = "a claim of " + PodName(set, ord) + " to finish deleting"
				if monotonic {
					stop = true
				}
				continue
			}
			np := newVersionedPod(in, ord)
			plan.Actions = append(plan.Actions, Action{Type: CreatePod, Pod: np, Why: "missing"})
			after[ord] = np
			if monotonic {
				plan.Waiting = np.Name + " to be Running and Ready"
				stop = true
			}
			continue
		}
		if isTerminating(pod) {
			if monotonic {
				plan.Waiting = pod.Name + " to terminate"
				stop = true
			}
			continue
		}
		if !isRunningAndReady(pod) && monotonic {
			plan.Waiting = pod.Name + " to be Running and Ready"
			stop = true
			continue
		}
		if left := availableIn(pod, minReady, in.Now); left > 0 && monotonic {
			plan.Waiting = pod.Name + " to be available"
			waitFor(left)
			stop = true
			continue
		}
		if !identityMatches(pod, ord) {
			up := pod.DeepCopy()
			setIdentity(set, up, ord)
			plan.Actions = append(plan.Actions, Action{Type: UpdatePod, Pod: up, Why: "identity"})
		}
		ensureClaims(ord, pod)
	}

	// Condemned pods, highest ordinal first, once the replicas allow it.
	for _, pod := range condemned {
		if stop {
			break
		}
		ord := ordinal[pod]
		ensureClaims(ord, pod)
		if isTerminating(pod) {
			if monotonic {
				plan.Waiting = pod.Name + " to terminate"
				stop = true
			}
			continue
		}
		if monotonic && !isHealthy(pod) && pod != firstUnhealthy {
			plan.Waiting = firstUnhealthy.Name + " to be Running and Ready before scaling down"
			stop = true
			continue
		}
		plan.Actions = append(plan.Actions, Action{Type: DeletePod, Pod: pod, Why: "scale down"})
		markDeleted(pod)
		if monotonic {
			stop = true
		}
	}

	// Rolling update.
	if !stop && set.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType {
		partition, maxUnavailable := rollingParams(set, n)
		unavailable := 0
		for i := 0; i < n; i++ {
			p := after[start+i]
			if p == nil || !isHealthy(p) || availableIn(p, minReady, in.Now) > 0 {
				unavailable++
			}
		}
		budget := maxUnavailable - unavailable
		for i := n - 1; i >= partition && budget > 0; i-- {
			p := after[start+i]
			if p == nil || isTerminating(p) || revisionOf(p) == in.UpdateRevision {
				continue
			}
			plan.Actions = append(plan.Actions, Action{Type: DeletePod, Pod: replicas[i], Why: "update to " + in.UpdateRevision})
			markDeleted(replicas[i])
			budget--
		}
	}

	plan.Status = computeStatus(in, after, minReady)
	return plan
}

// rollingParams returns the partition (as an index into the replicas) and
// maxUnavailable (at least 1) of a RollingUpdate set.
func rollingParams(set *appsv1.StatefulSet, n int) (partition, maxUnavailable int) {
	maxUnavailable = 1
	if ru := set.Spec.UpdateStrategy.RollingUpdate; ru != nil {
		if ru.Partition != nil {
			partition = int(*ru.Partition)
		}
		if ru.MaxUnavailable != nil {
			v, err := intstr.GetScaledValueFromIntOrPercent(ru.MaxUnavailable, n, true)
			if err == nil && v > 1 {
				maxUnavailable = v
			}
		}
	}
	if partition > n {
		partition = n
	}
	if partition < 0 {
		partition = 0
	}
	return partition, maxUnavailable
}

// newVersionedPod builds a replica at the revision it belongs to.
func newVersionedPod(in Input, ord int) *corev1.Pod {
	if AtUpdateRevision(in.Set, ord) {
		return NewPod(in.UpdateSet, in.UpdateRevision, ord)
	}
	return NewPod(in.CurrentSet, in.CurrentRevision, ord)
}

// computeStatus counts the pods as they will be after the plan.
func computeStatus(in Input, pods map[int]*corev1.Pod, minReady time.Duration) appsv1.StatefulSetStatus {
	set := in.Set
	st := appsv1.StatefulSetStatus{
		ObservedGeneration: set.Generation,
		CurrentRevision:    in.CurrentRevision,
		UpdateRevision:     in.UpdateRevision,
		CollisionCount:     &in.CollisionCount,
		Conditions:         set.Status.Conditions,
	}
	for _, p := range pods {
		st.Replicas++
		if isRunningAndReady(p) {
			st.ReadyReplicas++
			if availableIn(p, minReady, in.Now) == 0 {
				st.AvailableReplicas++
			}
		}
		if !isTerminating(p) {
			switch rev := revisionOf(p); {
			case rev == in.CurrentRevision && rev == in.UpdateRevision:
				st.CurrentReplicas++
				st.UpdatedReplicas++
			case rev == in.CurrentRevision:
				st.CurrentReplicas++
			case rev == in.UpdateRevision:
				st.UpdatedReplicas++
			}
		}
	}
	// A finished rolling update makes the update revision current.
	if set.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType &&
		st.UpdatedReplicas == st.Replicas && st.ReadyReplicas == st.Replicas {
		st.CurrentReplicas = st.UpdatedReplicas
		st.CurrentRevision = st.UpdateRevision
	}
	return st
}
