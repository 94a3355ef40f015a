package statefulset

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// templatePatch is the revision data of a set: a strategic merge patch that
// replaces spec.template. kubectl rollout undo applies it as it is, and
// compares it byte for byte with the one it computes from the live set,
// so it is encoded the same way (keys sorted, through a generic map).
func templatePatch(set *appsv1.StatefulSet) ([]byte, error) {
	raw, err := json.Marshal(set)
	if err != nil {
		return nil, err
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		return nil, err
	}
	spec, _ := obj["spec"].(map[string]any)
	template, _ := spec["template"].(map[string]any)
	if template == nil {
		template = map[string]any{}
	}
	template["$patch"] = "replace"
	return json.Marshal(map[string]any{"spec": map[string]any{"template": template}})
}

// revisionHash is the hash that names a revision: the patch and the
// collision count, as a short DNS-safe string.
func revisionHash(data []byte, collisionCount *int32) string {
	h := fnv.New32a()
	h.Write(data)
	if collisionCount != nil {
		h.Write([]byte(strconv.FormatInt(int64(*collisionCount), 10)))
	}
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// NewRevision builds the ControllerRevision that records the set's current
// template under the revision number.
func NewRevision(set *appsv1.StatefulSet, revision int64, collisionCount *int32) (*appsv1.ControllerRevision, error) {
	data, err := templatePatch(set)
	if err != nil {
		return nil, err
	}
	hash := revisionHash(data, collisionCount)
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

// sortRevisions orders revisions by revision number, then creation, then name.
func sortRevisions(revs []*appsv1.ControllerRevision) {
	sort.SliceStable(revs, func(i, j int) bool {
		a, b := revs[i], revs[j]
		if a.Revision != b.Revision {
			return a.Revision < b.Revision
		}
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return a.CreationTimestamp.Before(&b.CreationTimestamp)
		}
		return a.Name < b.Name
	})
}

// equalRevisions are the revisions whose data equals rev's.
func equalRevisions(revs []*appsv1.ControllerRevision, rev *appsv1.ControllerRevision) []*appsv1.ControllerRevision {
	var out []*appsv1.ControllerRevision
	for _, r := range revs {
		if bytes.Equal(r.Data.Raw, rev.Data.Raw) {
			out = append(out, r)
		}
	}
	return out
}

// nextRevision is one more than the highest revision number.
func nextRevision(revs []*appsv1.ControllerRevision) int64 {
	var max int64
	for _, r := range revs {
		if r.Revision > max {
			max = r.Revision
		}
	}
	return max + 1
}

// RevisionWrite says what must be written for the update revision to be
// stored as ChooseRevisions decided.
type RevisionWrite string

const (
	// RevisionStored: the update revision is the newest one the set owns;
	// nothing to write.
	RevisionStored RevisionWrite = ""
	// RevisionRenumber: the set's template is that of an older revision
	// (rollout undo); it is updated with the next revision number, which
	// makes it the newest again.
	RevisionRenumber RevisionWrite = "Renumber"
	// RevisionCreate: no owned revision has the template; a new one is
	// created (its name may be taken: see SameRevision).
	RevisionCreate RevisionWrite = "Create"
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
	sorted := append([]*appsv1.ControllerRevision(nil), owned...)
	sortRevisions(sorted)
	var ch RevisionChoice
	if set.Status.CollisionCount != nil {
		ch.CollisionCount = *set.Status.CollisionCount
	}
	want, err := NewRevision(set, nextRevision(sorted), &ch.CollisionCount)
	if err != nil {
		return RevisionChoice{}, err
	}
	equal := equalRevisions(sorted, want)
	switch {
	case len(equal) > 0 && equal[len(equal)-1] == sorted[len(sorted)-1]:
		ch.Update, ch.Write = equal[len(equal)-1], RevisionStored
	case len(equal) > 0:
		r := equal[len(equal)-1].DeepCopy()
		r.Revision = want.Revision
		ch.Update, ch.Write = r, RevisionRenumber
	default:
		ch.Update, ch.Write = want, RevisionCreate
	}
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
	ref := metav1.GetControllerOf(existing)
	return (ref == nil || ref.UID == set.UID) && bytes.Equal(existing.Data.Raw, want.Data.Raw)
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
	sorted := append([]*appsv1.ControllerRevision(nil), revs...)
	sortRevisions(sorted)
	var unused []*appsv1.ControllerRevision
	for _, r := range sorted {
		if !live[r.Name] {
			unused = append(unused, r)
		}
	}
	extra := len(unused) - limit
	if extra <= 0 {
		return nil
	}
	return unused[:extra]
}
