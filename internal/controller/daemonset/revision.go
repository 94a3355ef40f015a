package daemonset

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
)

// templatePatch is a revision's data: a strategic merge patch replacing
// spec.template. kubectl rollout undo applies it as it is and compares it
// byte for byte with the one it computes from the live set, so it is
// encoded the same way (through a generic map: keys sorted).
func templatePatch(set *appsv1.DaemonSet) ([]byte, error) {
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

func revisionHash(data []byte, collisionCount int32) string {
	h := fnv.New32a()
	h.Write(data)
	if collisionCount != 0 {
		h.Write([]byte(strconv.FormatInt(int64(collisionCount), 10)))
	}
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// NewRevision is the ControllerRevision recording the set's template as
// revision number revision. Like kube's, it carries the set's annotations
// (kubectl rollout history shows its kubernetes.io/change-cause).
func NewRevision(set *appsv1.DaemonSet, revision int64, collisionCount int32) (*appsv1.ControllerRevision, error) {
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

func sortRevisions(revs []*appsv1.ControllerRevision) {
	sort.SliceStable(revs, func(i, j int) bool {
		a, b := revs[i], revs[j]
		if a.Revision != b.Revision {
			return a.Revision < b.Revision
		}
		return a.Name < b.Name
	})
}

// RevisionWrite says what to write for the update revision to be stored.
type RevisionWrite string

const (
	RevisionStored   RevisionWrite = ""         // it is the newest owned revision
	RevisionRenumber RevisionWrite = "Renumber" // an older one has the template (undo): renumber it
	RevisionCreate   RevisionWrite = "Create"   // none has it: create it (the name may be taken)
)

// ChooseRevision decides which owned revision (in any order) is the set's
// template, and what must be written for it to be the newest.
func ChooseRevision(set *appsv1.DaemonSet, owned []*appsv1.ControllerRevision) (*appsv1.ControllerRevision, RevisionWrite, error) {
	sorted := append([]*appsv1.ControllerRevision(nil), owned...)
	sortRevisions(sorted)
	var next int64 = 1
	if len(sorted) > 0 {
		next = sorted[len(sorted)-1].Revision + 1
	}
	var collisions int32
	if set.Status.CollisionCount != nil {
		collisions = *set.Status.CollisionCount
	}
	want, err := NewRevision(set, next, collisions)
	if err != nil {
		return nil, "", err
	}
	var equal *appsv1.ControllerRevision
	for _, r := range sorted {
		if bytes.Equal(r.Data.Raw, want.Data.Raw) {
			equal = r
		}
	}
	switch {
	case equal == nil:
		return want, RevisionCreate, nil
	case equal == sorted[len(sorted)-1]:
		return equal, RevisionStored, nil
	default:
		r := equal.DeepCopy()
		r.Revision = next
		r.Annotations = want.Annotations
		return r, RevisionRenumber, nil
	}
}

// SameRevision: creating want found its name taken by existing; true if
// that is the revision itself (same data, the set's or nobody's), false
// for a hash collision.
func SameRevision(set *appsv1.DaemonSet, want, existing *appsv1.ControllerRevision) bool {
	ref := metav1.GetControllerOf(existing)
	return (ref == nil || ref.UID == set.UID) && bytes.Equal(existing.Data.Raw, want.Data.Raw)
}

// RevisionsToDelete are the oldest revisions beyond limit that no live pod
// and not the update revision use.
func RevisionsToDelete(revs []*appsv1.ControllerRevision, limit int, live map[string]bool) []*appsv1.ControllerRevision {
	sorted := append([]*appsv1.ControllerRevision(nil), revs...)
	sortRevisions(sorted)
	var unused []*appsv1.ControllerRevision
	for _, r := range sorted {
		if !live[RevisionHash(r)] {
			unused = append(unused, r)
		}
	}
	if extra := len(unused) - limit; extra > 0 {
		return unused[:extra]
	}
	return nil
}
