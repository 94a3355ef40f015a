package statefulset

import (
	"encoding/json"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/strategicpatch"

	"github.com/headway/headway/internal/controller/history"
)

// NewRevision builds the ControllerRevision that records the set's current
// template under the revision number.
func NewRevision(set *appsv1.StatefulSet, revision int64, collisionCount *int32) (*appsv1.ControllerRevision, error) {
	data, err := history.TemplatePatch(set)
	if err != nil {
		return nil, err
	}
	hash := history.Hash(data, collisionCount)
	labels := map[string]string{}
	for k, v := range set.Spec.Template.Labels {
		labels[k] = v
	}
	labels[HashLabel] = hash
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Name:            set.Name + "-" + hash,
			Namespace:       set.Namespace,
			Labels:          labels,
			OwnerReferences: []metav1.OwnerReference{controllerRef(set)},
		},
		Data:     runtime.RawExtension{Raw: data},
		Revision: revision,
	}, nil
}

// ApplyRevision returns a copy of the set with the revision's template.
func ApplyRevision(set *appsv1.StatefulSet, rev *appsv1.ControllerRevision) (*appsv1.StatefulSet, error) {
	raw, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	patched, err := strategicpatch.StrategicMergePatch(raw, rev.Data.Raw, &appsv1.StatefulSet{})
	if err != nil {
		return nil, fmt.Errorf("applying revision %s: %w", rev.Name, err)
	}
	out := &appsv1.StatefulSet{}
	if err := json.Unmarshal(patched, out); err != nil {
		return nil, err
	}
	return out, nil
}

// RevisionWrite says what must be written for the update revision to be
// stored as ChooseRevisions decided (see history.Write).
type RevisionWrite = history.Write

// The writes ChooseRevisions asks for.
const (
	RevisionStored   = history.Stored
	RevisionRenumber = history.Renumber
	RevisionCreate   = history.Create
)

// RevisionChoice is which revisions a sync works with.
type RevisionChoice struct {
	// Update is the revision of the set's template, the one pods are
	// updated to, as it is to be stored (see Write).
	Update *appsv1.ControllerRevision
	Write  RevisionWrite
	// Current is the revision pods below the partition stay at: the owned
	// revision status.currentRevision names, or nil to mean Update (a new
	// set, or one whose current revision is gone).
	Current *appsv1.ControllerRevision
	// CollisionCount is the set's hash collision count (status), the one
	// Update's name is derived with.
	CollisionCount int32
}

// ChooseRevisions decides, from the set and the revisions it owns (in any
// order; neither is modified), which revision its template is and which
// its pods are currently at. It has no side effects; the controller then
// carries out Write.
func ChooseRevisions(set *appsv1.StatefulSet, owned []*appsv1.ControllerRevision) (RevisionChoice, error) {
	sorted := history.Sorted(owned)
	var ch RevisionChoice
	if set.Status.CollisionCount != nil {
		ch.CollisionCount = *set.Status.CollisionCount
	}
	want, err := NewRevision(set, history.Next(sorted), &ch.CollisionCount)
	if err != nil {
		return RevisionChoice{}, err
	}
	ch.Update, ch.Write = history.Choose(sorted, want)
	for _, r := range sorted {
		if r.Name == set.Status.CurrentRevision {
			ch.Current = r
		}
	}
	if ch.Current != nil && ch.Current.Name == ch.Update.Name {
		ch.Current = nil // the update revision, as it is once written
	}
	return ch, nil
}

// SameRevision decides what it means that creating the update revision
// want found its name taken by existing: true if existing is that revision
// (the same data, and controlled by the set or by nothing: the garbage
// collector releases revisions while a set is deleted with orphaning, and
// the cache may not show that yet), false for a hash collision (the set's
// collision count goes up and the next sync tries another name).
func SameRevision(set *appsv1.StatefulSet, want, existing *appsv1.ControllerRevision) bool {
	return history.Same(set.UID, want, existing)
}

// AtUpdateRevision reports whether the pod with the given ordinal is
// created at the update revision rather than the current one: under
// RollingUpdate the replicas from the partition up (the partition counted
// from the set's start ordinal, and clamped to [0, replicas]); under
// OnDelete every pod created from now on.
func AtUpdateRevision(set *appsv1.StatefulSet, ordinal int) bool {
	if set.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType {
		return true
	}
	partition, _ := rollingParams(set, replicaCount(set))
	return ordinal >= startOrdinal(set)+partition
}

// RevisionsToDelete returns the oldest revisions beyond the history limit
// that neither a live pod, the current nor the update revision uses.
func RevisionsToDelete(revs []*appsv1.ControllerRevision, limit int, live map[string]bool) []*appsv1.ControllerRevision {
	return history.ToDelete(revs, limit, func(r *appsv1.ControllerRevision) bool { return live[r.Name] })
}
