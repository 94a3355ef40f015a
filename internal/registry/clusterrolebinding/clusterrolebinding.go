// Package clusterrolebinding is the registry entry of
// rbac.authorization.k8s.io/v1 ClusterRoleBindings (stored and served;
// enforcing them is authorization's).
package clusterrolebinding

import (
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/validation/path"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/rolebinding"
)

// Resource returns the clusterrolebindings registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: rbacv1.SchemeGroupVersion,
		Kind:         "ClusterRoleBinding", ListKind: "ClusterRoleBindingList",
		AllowUnconditionalUpdate: true,
		Plural:                   "clusterrolebindings", Singular: "clusterrolebinding",
		New:            func() runtime.Object { return &rbacv1.ClusterRoleBinding{} },
		NewList:        func() runtime.Object { return &rbacv1.ClusterRoleBindingList{} },
		NameValidation: path.ValidatePathSegmentName,
		Default: func(obj runtime.Object) {
			b := obj.(*rbacv1.ClusterRoleBinding)
			rolebinding.Default(&b.RoleRef, b.Subjects)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			b := obj.(*rbacv1.ClusterRoleBinding)
			return rolebinding.Validate(b.RoleRef, b.Subjects, []string{"ClusterRole"}, false)
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			b, o := obj.(*rbacv1.ClusterRoleBinding), old.(*rbacv1.ClusterRoleBinding)
			return append(rolebinding.Validate(b.RoleRef, b.Subjects, []string{"ClusterRole"}, false),
				rolebinding.ValidateRoleRefUpdate(b.RoleRef, o.RoleRef)...)
		},
		Columns: rolebinding.Columns("clusterRoleBinding"),
		Row: func(obj runtime.Object) ([]interface{}, error) {
			b := obj.(*rbacv1.ClusterRoleBinding)
			return rolebinding.Row(b.Name, b.CreationTimestamp, b.RoleRef, b.Subjects), nil
		},
	}
}
