package history

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

func rev(name string, n int64, data string) *appsv1.ControllerRevision {
	return &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: name}, Revision: n, Data: runtime.RawExtension{Raw: []byte(data)}}
}

func TestHashTakesTheCollisionCountWhenGiven(t *testing.T) {
	zero, one := int32(0), int32(1)
	data := []byte(`{"spec":{}}`)
	if Hash(data, nil) == Hash(data, &zero) || Hash(data, &zero) == Hash(data, &one) {
		t.Fatal("the collision count (given, even 0) must change the hash")
	}
	if Hash(data, &one) != Hash(data, &one) {
		t.Fatal("the hash is not stable")
	}
}

func TestChoose(t *testing.T) {
	a1, b2 := rev("a", 1, "A"), rev("b", 2, "B")
	for _, tc := range []struct {
		name      string
		owned     []*appsv1.ControllerRevision
		want      *appsv1.ControllerRevision
		wantName  string
		wantRev   int64
		wantWrite Write
	}{
		{"none owned", nil, rev("c", 1, "C"), "c", 1, Create},
		{"new template", []*appsv1.ControllerRevision{a1, b2}, rev("c", 3, "C"), "c", 3, Create},
		{"the newest", []*appsv1.ControllerRevision{a1, b2}, rev("b", 3, "B"), "b", 2, Stored},
		{"undo to an older one", []*appsv1.ControllerRevision{a1, b2}, rev("a", 3, "A"), "a", 3, Renumber},
	} {
		got, write := Choose(Sorted(tc.owned), tc.want)
		if got.Name != tc.wantName || got.Revision != tc.wantRev || write != tc.wantWrite {
			t.Errorf("%s: got %s rev %d %q, want %s rev %d %q", tc.name, got.Name, got.Revision, write, tc.wantName, tc.wantRev, tc.wantWrite)
		}
	}
	if a1.Revision != 1 {
		t.Fatal("Choose renumbered an owned revision in place")
	}
}

func TestToDeleteKeepsTheNewestUnusedAndAllInUse(t *testing.T) {
	revs := []*appsv1.ControllerRevision{rev("d", 4, ""), rev("a", 1, ""), rev("c", 3, ""), rev("b", 2, "")}
	got := ToDelete(revs, 1, func(r *appsv1.ControllerRevision) bool { return r.Name == "a" })
	if len(got) != 2 || got[0].Name != "b" || got[1].Name != "c" {
		t.Fatalf("ToDelete: %v", got)
	}
}
