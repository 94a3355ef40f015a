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
