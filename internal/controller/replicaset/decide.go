// Package replicaset is the ReplicaSet controller: it keeps the number of
// pods a set's selector owns equal to its replicas, creating them from the
// template (in slow-start batches) and deleting the least useful first,
// adopts matching orphans, releases pods that stop matching, and reports
// status.
//
// controller.go is the queue loop, decide.go and rank.go the policy (pure
// functions), expectations.go what the loop waits for after a write,
// seam.go the writes.
package replicaset

import (
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

// BurstReplicas is the most pods one sync creates or deletes.
const BurstReplicas = 500

// SlowStartInitialBatchSize is the first batch of creations; each batch
// that succeeds doubles the next.
const SlowStartInitialBatchSize = 1

var controllerKind = appsv1.SchemeGroupVersion.WithKind("ReplicaSet")

// Input is what a sync decides from. Nothing in it is modified.
type Input struct {
	ReplicaSet *appsv1.ReplicaSet
	// Pods are the active pods the set owns.
	Pods []*corev1.Pod
	// Related are the active pods of the set and of the other sets with the
	// same owner (a Deployment's), to spread deletions over nodes.
	Related []*corev1.Pod
	Now     time.Time
}

// Plan is the outcome of Decide.
type Plan struct {
	// Create is the number of pods to create from the template.
	Create int
	// Delete are the pods to delete.
	Delete []*corev1.Pod
}

// Decide says how many pods to create or which to delete so that the set
// owns replicas pods, at most BurstReplicas at a time.
func Decide(in Input) Plan {
	want := 0
	if in.ReplicaSet.Spec.Replicas != nil {
		want = int(*in.ReplicaSet.Spec.Replicas)
	} else {
		want = 1
	}
	diff := len(in.Pods) - want
	switch {
	case diff < 0:
		return Plan{Create: min(-diff, BurstReplicas)}
	case diff > 0:
		return Plan{Delete: PodsToDelete(in.Pods, in.Related, min(diff, BurstReplicas), in.Now)}
	}
	return Plan{}
}

// Claim sorts the active pods of a namespace for a set: the ones it owns
// and keeps, the orphans it should adopt (they match its selector), and the
// ones it owns that no longer match and should be released. A set being
// deleted adopts nothing and releases nothing.
func Claim(rs *appsv1.ReplicaSet, sel labels.Selector, pods []*corev1.Pod) (owned, adopt, release []*corev1.Pod) {
	deleting := rs.DeletionTimestamp != nil
	for _, p := range pods {
		matches := sel.Matches(labels.Set(p.Labels))
		ref := metav1.GetControllerOf(p)
		switch {
		case ref != nil && ref.UID != rs.UID:
		case ref != nil && matches:
			owned = append(owned, p)
		case ref != nil:
			if !deleting {
				release = append(release, p)
			}
		case matches && !deleting && p.DeletionTimestamp == nil:
			adopt = append(adopt, p)
		}
	}
	return owned, adopt, release
}

// FailedCreate and FailedDelete are the reasons of the ReplicaFailure
// condition.
const (
	FailedCreate = "FailedCreate"
	FailedDelete = "FailedDelete"
)

// Status is the status the set reports for the pods it owns, given the
// error (if any) of the last attempt to create or delete pods.
func Status(rs *appsv1.ReplicaSet, pods []*corev1.Pod, manageErr error, now time.Time) appsv1.ReplicaSetStatus {
	st := *rs.Status.DeepCopy()
	template := labels.SelectorFromSet(rs.Spec.Template.Labels)
	var full, ready, available int32
	for _, p := range pods {
		if template.Matches(labels.Set(p.Labels)) {
			full++
		}
		if IsReady(p) {
			ready++
			if IsAvailable(p, rs.Spec.MinReadySeconds, now) {
				available++
			}
		}
	}
	failure := condition(st.Conditions, appsv1.ReplicaSetReplicaFailure)
	switch {
	case manageErr != nil && failure == nil:
		want := int32(1)
		if rs.Spec.Replicas != nil {
			want = *rs.Spec.Replicas
		}
		reason := ""
		if n := int32(len(pods)); n < want {
			reason = FailedCreate
		} else if n > want {
			reason = FailedDelete
		}
		st.Conditions = append(st.Conditions, appsv1.ReplicaSetCondition{
			Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue,
			LastTransitionTime: metav1.NewTime(now), Reason: reason, Message: manageErr.Error(),
		})
	case manageErr == nil && failure != nil:
		var keep []appsv1.ReplicaSetCondition
		for _, c := range st.Conditions {
			if c.Type != appsv1.ReplicaSetReplicaFailure {
				keep = append(keep, c)
			}
		}
		st.Conditions = keep
	}
	st.Replicas = int32(len(pods))
	st.FullyLabeledReplicas = full
	st.ReadyReplicas = ready
	st.AvailableReplicas = available
	st.ObservedGeneration = rs.Generation
	return st
}

func condition(conds []appsv1.ReplicaSetCondition, t appsv1.ReplicaSetConditionType) *appsv1.ReplicaSetCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}

// ControllerRef is the owner reference a set puts on its pods.
func ControllerRef(rs *appsv1.ReplicaSet) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{
		APIVersion: controllerKind.GroupVersion().String(), Kind: controllerKind.Kind,
		Name: rs.Name, UID: rs.UID, Controller: &t, BlockOwnerDeletion: &t,
	}
}

// NewPod builds a pod of the set from its template: the template's labels,
// annotations, finalizers and spec, the set as controller, and a generated
// name "<set>-" plus the random suffix the API server adds.
func NewPod(rs *appsv1.ReplicaSet) *corev1.Pod {
	t := rs.Spec.Template.DeepCopy()
	prefix := rs.Name + "-"
	if len(apivalidation.NameIsDNSSubdomain(prefix, true)) != 0 {
		prefix = rs.Name
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    prefix,
			Namespace:       rs.Namespace,
			Labels:          t.Labels,
			Annotations:     t.Annotations,
			Finalizers:      t.Finalizers,
			OwnerReferences: []metav1.OwnerReference{ControllerRef(rs)},
		},
		Spec: t.Spec,
	}
}

// isControlledBy reports whether obj's controller reference points at uid.
func isControlledBy(obj metav1.Object, uid types.UID) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && ref.UID == uid
}
