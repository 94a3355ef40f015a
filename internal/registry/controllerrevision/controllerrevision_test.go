package controllerrevision

import (
	"testing"

	"github.com/headway/headway/internal/registry/registrytest"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"
)

func rev(n int64, data string) *appsv1.ControllerRevision {
	return &appsv1.ControllerRevision{ObjectMeta: metav1.ObjectMeta{Name: "web-abc", Namespace: "default"},
		Revision: n, Data: runtime.RawExtension{Raw: []byte(data)}}
}

func TestValidate(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name string
		obj  *appsv1.ControllerRevision
		want []string
	}{
		{"revision 1", rev(1, `{"spec":{}}`), nil},
		{"revision 0", rev(0, `{}`), nil},
		{"negative revision", rev(-1, `{}`), []string{"revision: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) { registrytest.Errors(t, r.Validate(tc.obj), tc.want...) })
	}
}

func TestValidateUpdate(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name     string
		old, obj *appsv1.ControllerRevision
		want     []string
	}{
		// Rollout undo renumbers a revision: allowed.
		{"renumbered", rev(1, `{"a":1}`), rev(5, `{"a":1}`), nil},
		{"data changed", rev(1, `{"a":1}`), rev(1, `{"a":2}`), []string{"data: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) { registrytest.Errors(t, r.ValidateUpdate(tc.obj, tc.old), tc.want...) })
	}
}

func TestRow(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name string
		refs []metav1.OwnerReference
		want string
	}{
		{"apps controller", []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", Controller: ptr.To(true)}}, "statefulset.apps/web"},
		{"core controller", []metav1.OwnerReference{{APIVersion: "v1", Kind: "Pod", Name: "p", Controller: ptr.To(true)}}, "pod/p"},
		{"owner that is not the controller", []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web"}}, "<none>"},
		{"no owner", nil, "<none>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cr := rev(3, `{}`)
			cr.OwnerReferences = tc.refs
			row, err := r.Row(cr)
			if err != nil || row[1] != tc.want || row[2] != "3" {
				t.Fatalf("row %v (%v), want controller %q and revision 3", row, err, tc.want)
			}
		})
	}
}
