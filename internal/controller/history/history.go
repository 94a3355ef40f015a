// Package history is the ControllerRevision bookkeeping the StatefulSet and
// DaemonSet controllers share (kube's pkg/controller/history): a revision's
// data is a strategic merge patch replacing spec.template, named by a hash
// of it; the newest revision is the workload's template; an undo renumbers
// an older one. It is a library for controllers, not a component.
package history

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"sort"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/client-go/kubernetes"
)

// TemplatePatch is the revision data of a workload (a StatefulSet or a
// DaemonSet): a strategic merge patch that replaces spec.template. kubectl
// rollout undo applies it as it is and compares it byte for byte with the
// one it computes from the live object, so it is encoded the same way (keys
// sorted, through a generic map).
func TemplatePatch(workload any) ([]byte, error) {
	raw, err := json.Marshal(workload)
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

// Hash names a revision: the patch and, when given, the collision count,
// as a short DNS-safe string.
func Hash(data []byte, collisionCount *int32) string {
	h := fnv.New32a()
	h.Write(data)
	if collisionCount != nil {
		h.Write([]byte(strconv.FormatInt(int64(*collisionCount), 10)))
	}
	return rand.SafeEncodeString(fmt.Sprint(h.Sum32()))
}

// Sort orders revisions by revision number, then creation, then name.
func Sort(revs []*appsv1.ControllerRevision) {
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

// Sorted is a sorted copy of revs.
func Sorted(revs []*appsv1.ControllerRevision) []*appsv1.ControllerRevision {
	out := append([]*appsv1.ControllerRevision(nil), revs...)
	Sort(out)
	return out
}

// Next is one more than the highest revision number.
func Next(revs []*appsv1.ControllerRevision) int64 {
	var highest int64
	for _, r := range revs {
		highest = max(highest, r.Revision)
	}
	return highest + 1
}

// Write says what must be written for the update revision to be stored.
type Write string

const (
	// Stored: the update revision is the newest one the workload owns;
	// nothing to write.
	Stored Write = ""
	// Renumber: the template is that of an older revision (rollout undo);
	// it is updated with the next revision number, which makes it the
	// newest again.
	Renumber Write = "Renumber"
	// Create: no owned revision has the template; a new one is created
	// (its name may be taken: see Same).
	Create Write = "Create"
)

// Choose decides which revision is the workload's template: want (built
// with the next revision number) is compared with the owned revisions,
// sorted by Sort. The newest with want's data is the update revision; when
// it is not the newest owned one, a copy with want's revision number is
// returned to be renumbered.
func Choose(sorted []*appsv1.ControllerRevision, want *appsv1.ControllerRevision) (*appsv1.ControllerRevision, Write) {
	var equal *appsv1.ControllerRevision
	for _, r := range sorted {
		if bytes.Equal(r.Data.Raw, want.Data.Raw) {
			equal = r
		}
	}
	switch {
	case equal == nil:
		return want, Create
	case equal == sorted[len(sorted)-1]:
		return equal, Stored
	default:
		r := equal.DeepCopy()
		r.Revision = want.Revision
		return r, Renumber
	}
}

// Same decides what it means that creating the update revision want found
// its name taken by existing: true if existing is that revision (the same
// data, and controlled by the owner or by nothing: the garbage collector
// releases revisions while a workload is deleted with orphaning, and the
// cache may not show that yet), false for a hash collision (the collision
// count goes up and the next sync tries another name).
func Same(owner types.UID, want, existing *appsv1.ControllerRevision) bool {
	ref := metav1.GetControllerOf(existing)
	return (ref == nil || ref.UID == owner) && bytes.Equal(existing.Data.Raw, want.Data.Raw)
}

// ToDelete returns the oldest revisions beyond limit that are not in use.
func ToDelete(revs []*appsv1.ControllerRevision, limit int, inUse func(*appsv1.ControllerRevision) bool) []*appsv1.ControllerRevision {
	var unused []*appsv1.ControllerRevision
	for _, r := range Sorted(revs) {
		if !inUse(r) {
			unused = append(unused, r)
		}
	}
	if extra := len(unused) - limit; extra > 0 {
		return unused[:extra]
	}
	return nil
}

// Client is an API client that also writes ControllerRevisions; the
// controllers' write seams embed it (as their Client field).
type Client struct {
	kubernetes.Interface
}

// CreateRevision creates rev.
func (c Client) CreateRevision(ctx context.Context, rev *appsv1.ControllerRevision) (*appsv1.ControllerRevision, error) {
	return c.AppsV1().ControllerRevisions(rev.Namespace).Create(ctx, rev, metav1.CreateOptions{})
}

// GetRevision reads a revision.
func (c Client) GetRevision(ctx context.Context, namespace, name string) (*appsv1.ControllerRevision, error) {
	return c.AppsV1().ControllerRevisions(namespace).Get(ctx, name, metav1.GetOptions{})
}

// UpdateRevision updates rev.
func (c Client) UpdateRevision(ctx context.Context, rev *appsv1.ControllerRevision) (*appsv1.ControllerRevision, error) {
	return c.AppsV1().ControllerRevisions(rev.Namespace).Update(ctx, rev, metav1.UpdateOptions{})
}

// DeleteRevision deletes rev; one already gone is not an error.
func (c Client) DeleteRevision(ctx context.Context, rev *appsv1.ControllerRevision) error {
	err := c.AppsV1().ControllerRevisions(rev.Namespace).Delete(ctx, rev.Name, metav1.DeleteOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
