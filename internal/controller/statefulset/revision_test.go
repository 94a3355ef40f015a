package statefulset

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"
)

// withImage is the seed set with another image (another template).
func withImage(image string, collisions int32) *appsv1.StatefulSet {
	set := newSet(3, appsv1.OrderedReadyPodManagement, 0)
	set.Spec.Template.Spec.Containers[0].Image = image
	set.Status.CollisionCount = &collisions
	return set
}

// storedRevision is the revision of image recorded under number n, as the
// controller would have created it.
func storedRevision(t *testing.T, image string, collisions int32, n int64) *appsv1.ControllerRevision {
	t.Helper()
	r, err := NewRevision(withImage(image, collisions), n, &collisions)
	if err != nil {
		t.Fatal(err)
	}
	r.UID = types.UID("uid-" + r.Name)
	return r
}

func TestChooseRevisions(t *testing.T) {
	a1 := storedRevision(t, "nginx:1.26", 0, 1)
	b2 := storedRevision(t, "nginx:1.27", 0, 2)
	a1cc1 := storedRevision(t, "nginx:1.26", 1, 2) // A again, named after a collision
	b3 := storedRevision(t, "nginx:1.27", 0, 3)
	a5 := storedRevision(t, "nginx:1.26", 0, 5)
	wantNew := func(image string, collisions int32) string {
		return storedRevision(t, image, collisions, 0).Name
	}
	for _, tc := range []struct {
		name       string
		image      string
		collisions int32
		current    string // status.currentRevision
		owned      []*appsv1.ControllerRevision
		// want
		write                    RevisionWrite
		update                   string
		number                   int64
		currentIs                string // the revision pods below the partition stay at
		wantCollisions           int32
		sameObjectAsOwned, fresh bool
	}{
		{name: "new set: first revision created", image: "nginx:1.26",
			write: RevisionCreate, update: wantNew("nginx:1.26", 0), number: 1, currentIs: wantNew("nginx:1.26", 0)},
		{name: "template unchanged: nothing to write", image: "nginx:1.26", current: a1.Name, owned: []*appsv1.ControllerRevision{a1},
			write: RevisionStored, update: a1.Name, number: 1, currentIs: a1.Name, sameObjectAsOwned: true},
		{name: "template changed: new revision, pods stay at the current one", image: "nginx:1.27", current: a1.Name, owned: []*appsv1.ControllerRevision{a1},
			write: RevisionCreate, update: wantNew("nginx:1.27", 0), number: 2, currentIs: a1.Name},
		{name: "rollout undo: the older revision renumbered", image: "nginx:1.26", current: b2.Name, owned: []*appsv1.ControllerRevision{a1, b2},
			write: RevisionRenumber, update: a1.Name, number: 3, currentIs: b2.Name},
		{name: "owned in any order: the newest number counts", image: "nginx:1.27", current: b3.Name, owned: []*appsv1.ControllerRevision{b3, a1},
			write: RevisionStored, update: b3.Name, number: 3, currentIs: b3.Name, sameObjectAsOwned: true},
		{name: "undo with two revisions of the template: the newest is renumbered", image: "nginx:1.26", collisions: 1, current: b3.Name,
			owned: []*appsv1.ControllerRevision{b3, a1, a1cc1},
			write: RevisionRenumber, update: a1cc1.Name, number: 4, currentIs: b3.Name, wantCollisions: 1},
		{name: "current revision gone: the update revision is current", image: "nginx:1.27", current: "web-gone", owned: []*appsv1.ControllerRevision{a1},
			write: RevisionCreate, update: wantNew("nginx:1.27", 0), number: 2, currentIs: wantNew("nginx:1.27", 0)},
		{name: "collision count names the revision", image: "nginx:1.26", collisions: 3,
			write: RevisionCreate, update: wantNew("nginx:1.26", 3), number: 1, currentIs: wantNew("nginx:1.26", 3), wantCollisions: 3},
		{name: "numbers continue after gaps", image: "nginx:1.27", current: a5.Name, owned: []*appsv1.ControllerRevision{a5},
			write: RevisionCreate, update: wantNew("nginx:1.27", 0), number: 6, currentIs: a5.Name},
	} {
		t.Run(tc.name, func(t *testing.T) {
			set := withImage(tc.image, tc.collisions)
			set.Status.CurrentRevision = tc.current
			var before []int64
			for _, r := range tc.owned {
				before = append(before, r.Revision)
			}
			ch, err := ChooseRevisions(set, tc.owned)
			if err != nil {
				t.Fatal(err)
			}
			current := ch.Update
			if ch.Current != nil {
				current = ch.Current
			}
			if ch.Write != tc.write || ch.Update.Name != tc.update || ch.Update.Revision != tc.number || current.Name != tc.currentIs || ch.CollisionCount != tc.wantCollisions {
				t.Fatalf("got write %q update %s #%d current %s collisions %d; want %q %s #%d %s %d",
					ch.Write, ch.Update.Name, ch.Update.Revision, current.Name, ch.CollisionCount,
					tc.write, tc.update, tc.number, tc.currentIs, tc.wantCollisions)
			}
			if !strings.HasPrefix(ch.Update.Name, "web-") || ch.Update.Labels[HashLabel] != strings.TrimPrefix(ch.Update.Name, "web-") {
				t.Errorf("update revision %s carries hash label %q", ch.Update.Name, ch.Update.Labels[HashLabel])
			}
			if ref := metav1.GetControllerOf(ch.Update); ref == nil || ref.UID != set.UID {
				t.Errorf("update revision not controlled by the set: %v", ch.Update.OwnerReferences)
			}
			applied, err := ApplyRevision(set, ch.Update)
			if err != nil || applied.Spec.Template.Spec.Containers[0].Image != tc.image {
				t.Errorf("the update revision does not hold the set's template: %v", err)
			}
			isOwned := false
			for i, r := range tc.owned {
				isOwned = isOwned || r == ch.Update
				if r.Revision != before[i] {
					t.Errorf("owned revision %s renumbered in place (%d → %d)", r.Name, before[i], r.Revision)
				}
			}
			if isOwned != tc.sameObjectAsOwned {
				t.Errorf("update is an owned object: %v, want %v", isOwned, tc.sameObjectAsOwned)
			}
		})
	}
}

func TestSameRevision(t *testing.T) {
	set := withImage("nginx:1.26", 0)
	want, err := NewRevision(set, 2, ptr.To[int32](0))
	if err != nil {
		t.Fatal(err)
	}
	other := storedRevision(t, "nginx:1.27", 0, 1)
	existing := func(mod func(r *appsv1.ControllerRevision)) *appsv1.ControllerRevision {
		r := want.DeepCopy()
		r.Revision = 1
		mod(r)
		return r
	}
	for _, tc := range []struct {
		name     string
		existing *appsv1.ControllerRevision
		same     bool
	}{
		{"controlled by the set, same data", existing(func(*appsv1.ControllerRevision) {}), true},
		// The bug fixed in fa9dbb9: while the set is deleted with orphaning
		// the garbage collector releases the revision; recreating the set
		// (or a sync from a stale cache) must not count a collision.
		{"released by the garbage collector, same data", existing(func(r *appsv1.ControllerRevision) { r.OwnerReferences = nil }), true},
		{"owned but not as controller, same data", existing(func(r *appsv1.ControllerRevision) { r.OwnerReferences[0].Controller = ptr.To(false) }), true},
		{"controlled by another set of the same name", existing(func(r *appsv1.ControllerRevision) { r.OwnerReferences[0].UID = "other-set" }), false},
		{"controlled by the set, other data (hash collision)", existing(func(r *appsv1.ControllerRevision) { r.Data = other.Data }), false},
		{"released, other data", existing(func(r *appsv1.ControllerRevision) { r.OwnerReferences = nil; r.Data = other.Data }), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := SameRevision(set, want, tc.existing); got != tc.same {
				t.Fatalf("SameRevision = %v, want %v", got, tc.same)
			}
		})
	}
}

func TestAtUpdateRevision(t *testing.T) {
	rolling := func(replicas int32, partition *int32, start int32) *appsv1.StatefulSet {
		set := newSet(replicas, appsv1.OrderedReadyPodManagement, 0)
		if partition != nil {
			set.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: partition}
		}
		if start != 0 {
			set.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: start}
		}
		return set
	}
	onDelete := rolling(3, ptr.To[int32](2), 0)
	onDelete.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType
	for _, tc := range []struct {
		name    string
		set     *appsv1.StatefulSet
		updated []int // the ordinals, from those probed, at the update revision
	}{
		{"no partition: all", rolling(3, nil, 0), []int{0, 1, 2}},
		{"partition 0: all", rolling(3, ptr.To[int32](0), 0), []int{0, 1, 2}},
		{"partition 2: from ordinal 2 up", rolling(3, ptr.To[int32](2), 0), []int{2}},
		{"partition 3 of 3: none", rolling(3, ptr.To[int32](3), 0), nil},
		{"partition above replicas: none", rolling(3, ptr.To[int32](10), 0), nil},
		{"partition counted from the start ordinal", rolling(3, ptr.To[int32](1), 5), []int{6, 7}},
		{"OnDelete: every new pod", onDelete, []int{0, 1, 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []int
			for ord := 0; ord < 8; ord++ {
				if inRange(tc.set, ord) && AtUpdateRevision(tc.set, ord) {
					got = append(got, ord)
				}
			}
			if len(got) != len(tc.updated) {
				t.Fatalf("at the update revision: %v, want %v", got, tc.updated)
			}
			for i := range got {
				if got[i] != tc.updated[i] {
					t.Fatalf("at the update revision: %v, want %v", got, tc.updated)
				}
			}
		})
	}
}

// revisionWriter records the revision writes of one sync; the name of the
// revision to create is taken by taken (nil: free).
type revisionWriter struct {
	Writer // the other writes are not expected
	taken  *appsv1.ControllerRevision

	created, updated []*appsv1.ControllerRevision
	status           []*appsv1.StatefulSet
}

func (w *revisionWriter) CreateRevision(_ context.Context, r *appsv1.ControllerRevision) (*appsv1.ControllerRevision, error) {
	if w.taken != nil && w.taken.Name == r.Name {
		return nil, apierrors.NewAlreadyExists(schema.GroupResource{Group: "apps", Resource: "controllerrevisions"}, r.Name)
	}
	w.created = append(w.created, r)
	return r, nil
}

func (w *revisionWriter) GetRevision(_ context.Context, _, name string) (*appsv1.ControllerRevision, error) {
	return w.taken, nil
}

func (w *revisionWriter) UpdateRevision(_ context.Context, r *appsv1.ControllerRevision) (*appsv1.ControllerRevision, error) {
	w.updated = append(w.updated, r)
	return r, nil
}

func (w *revisionWriter) UpdateStatus(_ context.Context, set *appsv1.StatefulSet) error {
	w.status = append(w.status, set)
	return nil
}

// TestRevisionNameTaken runs the controller's revision step against a
// revision name already taken.
func TestRevisionNameTaken(t *testing.T) {
	set := withImage("nginx:1.26", 0)
	a1 := storedRevision(t, "nginx:1.26", 0, 1)
	released := a1.DeepCopy()
	released.OwnerReferences = nil
	foreign := a1.DeepCopy()
	foreign.OwnerReferences[0].UID = "another-set"
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	t.Run("released revision of the same template is reused", func(t *testing.T) {
		w := &revisionWriter{taken: released}
		c := &Controller{writer: w, log: log}
		current, update, collisions, err := c.revisions(context.Background(), set, nil)
		if err != nil {
			t.Fatal(err)
		}
		if update != released || current != released || collisions != 0 || len(w.status) != 0 || len(w.created) != 0 {
			t.Fatalf("update %v current %v collisions %d, %d status writes: want the released revision, no collision", update.Name, current.Name, collisions, len(w.status))
		}
	})
	t.Run("another set's revision is a collision", func(t *testing.T) {
		w := &revisionWriter{taken: foreign}
		c := &Controller{writer: w, log: log}
		_, _, _, err := c.revisions(context.Background(), set, nil)
		if err == nil || !strings.Contains(err.Error(), "collides") {
			t.Fatalf("err = %v, want a collision", err)
		}
		if len(w.status) != 1 || w.status[0].Status.CollisionCount == nil || *w.status[0].Status.CollisionCount != 1 {
			t.Fatalf("status writes %v, want one with collisionCount 1", w.status)
		}
		// The next sync names the revision differently and creates it.
		w.taken = foreign
		next := w.status[0]
		_, update, collisions, err := c.revisions(context.Background(), next, nil)
		if err != nil || collisions != 1 || update.Name == foreign.Name || len(w.created) != 1 {
			t.Fatalf("after the collision: %v, update %v, collisions %d, created %d", err, update, collisions, len(w.created))
		}
	})
	t.Run("undo renumbers through an update", func(t *testing.T) {
		b2 := storedRevision(t, "nginx:1.27", 0, 2)
		w := &revisionWriter{}
		c := &Controller{writer: w, log: log}
		s := set.DeepCopy()
		s.Status.CurrentRevision = b2.Name
		current, update, _, err := c.revisions(context.Background(), s, []*appsv1.ControllerRevision{a1, b2})
		if err != nil {
			t.Fatal(err)
		}
		if len(w.updated) != 1 || w.updated[0].Name != a1.Name || w.updated[0].Revision != 3 || update.Name != a1.Name || current != b2 || a1.Revision != 1 {
			t.Fatalf("updated %v, update %s current %s; want %s renumbered 3 (a copy), current %s", w.updated, update.Name, current.Name, a1.Name, b2.Name)
		}
	})
}
