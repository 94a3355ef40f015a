package rolebinding

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func TestDefaultsAndValidation(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name string
		b    rbacv1.RoleBinding
		want []string
	}{
		{"good", rbacv1.RoleBinding{RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "reader"}, Subjects: []rbacv1.Subject{
			{Kind: "User", Name: "alice"}, {Kind: "Group", Name: "devs"}, {Kind: "ServiceAccount", Name: "default", Namespace: "default"}}}, nil},
		{"cluster role", rbacv1.RoleBinding{RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "view"}}, nil},
		{"no role name", rbacv1.RoleBinding{RoleRef: rbacv1.RoleRef{Kind: "Role"}}, []string{"roleRef.name: Required value"}},
		{"bad role kind", rbacv1.RoleBinding{RoleRef: rbacv1.RoleRef{Kind: "Policy", Name: "x"}}, []string{"roleRef.kind: Unsupported value: \"Policy\""}},
		{"bad role group", rbacv1.RoleBinding{RoleRef: rbacv1.RoleRef{APIGroup: "example.com", Kind: "Role", Name: "x"}},
			[]string{"roleRef.apiGroup: Unsupported value: \"example.com\""}},
		{"bad subject kind", rbacv1.RoleBinding{RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "x"}, Subjects: []rbacv1.Subject{{Kind: "Robot", Name: "r2"}}},
			[]string{"subjects[0].kind: Unsupported value: \"Robot\""}},
		{"service account with group", rbacv1.RoleBinding{RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "x"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", APIGroup: "rbac.authorization.k8s.io", Name: "sa"}}},
			[]string{"subjects[0].apiGroup: Unsupported value"}},
		{"no subject name", rbacv1.RoleBinding{RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "x"}, Subjects: []rbacv1.Subject{{Kind: "User"}}},
			[]string{"subjects[0].name: Required value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := tc.b.DeepCopy()
			r.Default(b)
			if b.RoleRef.APIGroup == "" {
				t.Fatal("roleRef.apiGroup not defaulted")
			}
			for _, s := range b.Subjects {
				if (s.Kind == "User" || s.Kind == "Group") && s.APIGroup != rbacv1.GroupName {
					t.Errorf("subject %+v apiGroup not defaulted", s)
				}
			}
			registrytest.Errors(t, r.Validate(b), tc.want...)
		})
	}
	old := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "b"}, RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "a"}}
	r.Default(old)
	n := old.DeepCopy()
	n.RoleRef.Name = "b"
	registrytest.Errors(t, r.ValidateUpdate(n, old), "roleRef: Invalid value")
}

func TestRow(t *testing.T) {
	row := Row("b", metav1.Now(), rbacv1.RoleRef{Kind: "ClusterRole", Name: "view"},
		[]rbacv1.Subject{{Kind: "User", Name: "a"}, {Kind: "User", Name: "b"}, {Kind: "ServiceAccount", Namespace: "ns", Name: "sa"}})
	if row[1] != "ClusterRole/view" || row[3] != "a, b" || row[4] != "" || row[5] != "ns/sa" {
		t.Errorf("row %v", row)
	}
}
