// Package clusterrole is the registry entry of rbac.authorization.k8s.io/v1
// ClusterRoles (stored and served; enforcing and aggregating them is
// authorization's). kubectl shows them with the default NAME and CREATED
// AT columns, as for kube-apiserver.
package clusterrole

import (
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/role"
)

// Resource returns the clusterroles registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: rbacv1.SchemeGroupVersion,
		Kind:         "ClusterRole", ListKind: "ClusterRoleList",
		AllowUnconditionalUpdate: true,
		Plural:                   "clusterroles", Singular: "clusterrole",
		New:            func() runtime.Object { return &rbacv1.ClusterRole{} },
		NewList:        func() runtime.Object { return &rbacv1.ClusterRoleList{} },
		NameValidation: path.ValidatePathSegmentName,
		Validate:       func(obj runtime.Object) field.ErrorList { return Validate(obj.(*rbacv1.ClusterRole)) },
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList { return Validate(obj.(*rbacv1.ClusterRole)) },
	}
}

// Validate checks a ClusterRole as kube-apiserver does.
func Validate(cr *rbacv1.ClusterRole) field.ErrorList {
	errs := role.ValidateRules(cr.Rules, false, field.NewPath("rules"))
	if a := cr.AggregationRule; a != nil {
		sp := field.NewPath("aggregationRule", "clusterRoleSelectors")
		if len(a.ClusterRoleSelectors) == 0 {
			errs = append(errs, field.Required(sp, "at least one clusterRoleSelector required if aggregationRule is non-nil"))
		}
		for i := range a.ClusterRoleSelectors {
			errs = append(errs, metav1validation.ValidateLabelSelector(&a.ClusterRoleSelectors[i], metav1validation.LabelSelectorValidationOptions{}, sp.Index(i))...)
		}
	}
	return errs
}
