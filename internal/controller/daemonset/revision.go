package daemonset

import (
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/headway/headway/internal/controller/history"
)

// NewRevision is the ControllerRevision recording the set's template as
// revision number revision. Like kube's, it carries the set's annotations
// (kubectl rollout history shows its kubernetes.io/change-cause).
func NewRevision(set *appsv1.DaemonSet, revision int64, collisionCount int32) (*appsv1.ControllerRevision, error) {
	data, err := history.TemplatePatch(set)
	if err != nil {
		return nil, err
	}
	var probe *int32
	if collisionCount != 0 {
		probe = &collisionCount
	}
	hash := history.Hash(data, probe)
	labels := map[string]string{}
	for k, v := range set.Spec.Template.Labels {
		labels[k] = v
	}
	labels[HashLabel] = hash
	var annotations map[string]string
	if len(set.Annotations) > 0 {
		annotations = map[string]string{}
		for k, v := range set.Annotations {
			annotations[k] = v
		}
	}
	return &appsv1.ControllerRevision{
		ObjectMeta: metav1.ObjectMeta{
			Name:            set.Name + "-" + hash,
			Namespace:       set.Namespace,
			Labels:          labels,
			Annotations:     annotations,
			OwnerReferences: []metav1.OwnerReference{controllerRef(set)},
		},
		Data:     runtime.RawExtension{Raw: data},
		Revision: revision,
	}, nil
}

// RevisionHash is the hash a revision's pods carry.
func RevisionHash(rev *appsv1.ControllerRevision) string { return rev.Labels[HashLabel] }

// RevisionWrite says what to write for the update revision to be stored
// (see history.Write).
type RevisionWrite = history.Write

// The writes ChooseRevision asks for.
const (
	RevisionStored   = history.Stored
	RevisionRenumber = history.Renumber
	RevisionCreate   = history.Create
)

// ChooseRevision decides which owned revision (in any order) is the set's
// template, and what must be written for it to be the newest.
func ChooseRevision(set *appsv1.DaemonSet, owned []*appsv1.ControllerRevision) (*appsv1.ControllerRevision, RevisionWrite, error) {
	sorted := history.Sorted(owned)
	var collisions int32
	if set.Status.CollisionCount != nil {
		collisions = *set.Status.CollisionCount
	}
	want, err := NewRevision(set, history.Next(sorted), collisions)
	if err != nil {
		return nil, "", err
	}
	rev, write := history.Choose(sorted, want)
	if write == RevisionRenumber {
		rev.Annotations = want.Annotations
	}
	return rev, write, nil
}

// SameRevision: creating want found its name taken by existing; true if
// that is the revision itself (same data, the set's or nobody's), false
// for a hash collision.
func SameRevision(set *appsv1.DaemonSet, want, existing *appsv1.ControllerRevision) bool {
	return history.Same(set.UID, want, existing)
}

// RevisionsToDelete are the oldest revisions beyond limit that no live pod
// and not the update revision use.
func RevisionsToDelete(revs []*appsv1.ControllerRevision, limit int, live map[string]bool) []*appsv1.ControllerRevision {
	return history.ToDelete(revs, limit, func(r *appsv1.ControllerRevision) bool { return live[RevisionHash(r)] })
}
