package clusterrolebinding

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func TestValidation(t *testing.T) {
	r := Resource()
	good := &rbacv1.ClusterRoleBinding{RoleRef: rbacv1.RoleRef{Kind: "ClusterRole", Name: "view"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: "kube-system"}}}
	r.Default(good)
	registrytest.Errors(t, r.Validate(good))
	bad := &rbacv1.ClusterRoleBinding{RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "view"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default"}}}
	r.Default(bad)
	registrytest.Errors(t, r.Validate(bad), "roleRef.kind: Unsupported value: \"Role\"", "subjects[0].namespace: Required value")
}
