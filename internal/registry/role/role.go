// Package role is the registry entry of rbac.authorization.k8s.io/v1 Roles
// and the rule validation ClusterRoles share. Roles are stored and served;
// enforcing them is authorization's. kubectl shows them with the default
// NAME and CREATED AT columns, as for kube-apiserver.
package role

import (
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/validation/path"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Resource returns the roles registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: rbacv1.SchemeGroupVersion,
		Kind:         "Role", ListKind: "RoleList",
		AllowUnconditionalUpdate: true,
		Plural:                   "roles", Singular: "role",
		Namespaced:     true,
		New:            func() runtime.Object { return &rbacv1.Role{} },
		NewList:        func() runtime.Object { return &rbacv1.RoleList{} },
		NameValidation: path.ValidatePathSegmentName,
		Validate: func(obj runtime.Object) field.ErrorList {
			return ValidateRules(obj.(*rbacv1.Role).Rules, true, field.NewPath("rules"))
		},
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList {
			return ValidateRules(obj.(*rbacv1.Role).Rules, true, field.NewPath("rules"))
		},
	}
}

// ValidateRules checks policy rules; namespaced rules cannot name
// non-resource URLs.
func ValidateRules(rules []rbacv1.PolicyRule, namespaced bool, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	for i, r := range rules {
		rp := p.Index(i)
		if len(r.Verbs) == 0 {
			errs = append(errs, field.Required(rp.Child("verbs"), "verbs must contain at least one value"))
		}
		if len(r.NonResourceURLs) > 0 {
			if namespaced {
				errs = append(errs, field.Invalid(rp.Child("nonResourceURLs"), r.NonResourceURLs, "namespaced rules cannot apply to non-resource URLs"))
			}
			if len(r.APIGroups) > 0 || len(r.Resources) > 0 || len(r.ResourceNames) > 0 {
				errs = append(errs, field.Invalid(rp.Child("nonResourceURLs"), r.NonResourceURLs, "rules cannot apply to both regular resources and non-resource URLs"))
			}
			continue
		}
		if len(r.APIGroups) == 0 {
			errs = append(errs, field.Required(rp.Child("apiGroups"), "resource rules must supply at least one api group"))
		}
		if len(r.Resources) == 0 {
			errs = append(errs, field.Required(rp.Child("resources"), "resource rules must supply at least one resource"))
		}
	}
	return errs
}
