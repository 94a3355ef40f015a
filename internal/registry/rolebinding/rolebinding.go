// Package rolebinding is the registry entry of rbac.authorization.k8s.io/v1
// RoleBindings, and the defaults, validation and table ClusterRoleBindings
// share. They are stored and served; enforcing them is authorization's.
package rolebinding

import (
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Columns returns the table of a binding kind ("roleBinding" or
// "clusterRoleBinding" in the descriptions).
func Columns(kind string) []metav1.TableColumnDefinition {
	return []metav1.TableColumnDefinition{
		registry.NameColumn,
		registry.Column("Role", "string", 0, rbacv1.RoleBinding{}.SwaggerDoc()["roleRef"]),
		registry.AgeColumn,
		registry.Column("Users", "string", 1, "Users in the "+kind),
		registry.Column("Groups", "string", 1, "Groups in the "+kind),
		registry.Column("ServiceAccounts", "string", 1, "ServiceAccounts in the "+kind),
	}
}

// Resource returns the rolebindings registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: rbacv1.SchemeGroupVersion,
		Kind:         "RoleBinding", ListKind: "RoleBindingList",
		AllowUnconditionalUpdate: true,
		Plural:                   "rolebindings", Singular: "rolebinding",
		Namespaced:     true,
		New:            func() runtime.Object { return &rbacv1.RoleBinding{} },
		NewList:        func() runtime.Object { return &rbacv1.RoleBindingList{} },
		NameValidation: path.ValidatePathSegmentName,
		Default: func(obj runtime.Object) {
			b := obj.(*rbacv1.RoleBinding)
			Default(&b.RoleRef, b.Subjects)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			b := obj.(*rbacv1.RoleBinding)
			return Validate(b.RoleRef, b.Subjects, []string{"Role", "ClusterRole"}, true)
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			b, o := obj.(*rbacv1.RoleBinding), old.(*rbacv1.RoleBinding)
			return append(Validate(b.RoleRef, b.Subjects, []string{"Role", "ClusterRole"}, true), ValidateRoleRefUpdate(b.RoleRef, o.RoleRef)...)
		},
		Columns: Columns("roleBinding"),
		Row: func(obj runtime.Object) ([]interface{}, error) {
			b := obj.(*rbacv1.RoleBinding)
			return Row(b.Name, b.CreationTimestamp, b.RoleRef, b.Subjects), nil
		},
	}
}

// Default sets the API groups kube-apiserver defaults on a binding.
func Default(ref *rbacv1.RoleRef, subjects []rbacv1.Subject) {
	if ref.APIGroup == "" {
		ref.APIGroup = rbacv1.GroupName
	}
	for i := range subjects {
		s := &subjects[i]
		if s.APIGroup == "" && (s.Kind == rbacv1.UserKind || s.Kind == rbacv1.GroupKind) {
			s.APIGroup = rbacv1.GroupName
		}
	}
}

// Validate checks a binding's role reference and subjects; kinds are the
// role kinds it may reference.
func Validate(ref rbacv1.RoleRef, subjects []rbacv1.Subject, kinds []string, namespaced bool) field.ErrorList {
	var errs field.ErrorList
	rp := field.NewPath("roleRef")
	if ref.APIGroup != rbacv1.GroupName {
		errs = append(errs, field.NotSupported(rp.Child("apiGroup"), ref.APIGroup, []string{rbacv1.GroupName}))
	}
	known := false
	for _, k := range kinds {
		known = known || ref.Kind == k
	}
	if !known {
		errs = append(errs, field.NotSupported(rp.Child("kind"), ref.Kind, kinds))
	}
	if ref.Name == "" {
		errs = append(errs, field.Required(rp.Child("name"), ""))
	} else {
		for _, msg := range path.ValidatePathSegmentName(ref.Name, false) {
			errs = append(errs, field.Invalid(rp.Child("name"), ref.Name, msg))
		}
	}
	for i, s := range subjects {
		sp := field.NewPath("subjects").Index(i)
		if s.Name == "" {
			errs = append(errs, field.Required(sp.Child("name"), ""))
		}
		switch s.Kind {
		case rbacv1.ServiceAccountKind:
			if s.Name != "" {
				for _, msg := range apivalidation.ValidateServiceAccountName(s.Name, false) {
					errs = append(errs, field.Invalid(sp.Child("name"), s.Name, msg))
				}
			}
			if s.APIGroup != "" {
				errs = append(errs, field.NotSupported(sp.Child("apiGroup"), s.APIGroup, []string{""}))
			}
			if !namespaced && s.Namespace == "" {
				errs = append(errs, field.Required(sp.Child("namespace"), ""))
			}
		case rbacv1.UserKind, rbacv1.GroupKind:
			if s.APIGroup != rbacv1.GroupName {
				errs = append(errs, field.NotSupported(sp.Child("apiGroup"), s.APIGroup, []string{rbacv1.GroupName}))
			}
		default:
			errs = append(errs, field.NotSupported(sp.Child("kind"), s.Kind, []string{"ServiceAccount", "User", "Group"}))
		}
	}
	return errs
}

// ValidateRoleRefUpdate refuses a change of the role a binding grants.
func ValidateRoleRefUpdate(n, o rbacv1.RoleRef) field.ErrorList {
	if n != o {
		return field.ErrorList{field.Invalid(field.NewPath("roleRef"), n, "cannot change roleRef")}
	}
	return nil
}

// Row renders a binding the way kubectl get rolebindings does.
func Row(name string, created metav1.Time, ref rbacv1.RoleRef, subjects []rbacv1.Subject) []interface{} {
	var users, groups, sas []string
	for _, s := range subjects {
		switch s.Kind {
		case rbacv1.UserKind:
			users = append(users, s.Name)
		case rbacv1.GroupKind:
			groups = append(groups, s.Name)
		case rbacv1.ServiceAccountKind:
			sas = append(sas, s.Namespace+"/"+s.Name)
		}
	}
	return []interface{}{name, ref.Kind + "/" + ref.Name, registry.Age(created),
		strings.Join(users, ", "), strings.Join(groups, ", "), strings.Join(sas, ", ")}
}
