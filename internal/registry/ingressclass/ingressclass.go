// Package ingressclass is the registry entry of networking.k8s.io/v1
// IngressClasses.
package ingressclass

import (
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Resource returns the ingressclasses registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: networkingv1.SchemeGroupVersion,
		Kind:         "IngressClass", ListKind: "IngressClassList",
		AllowUnconditionalUpdate: true,
		Plural:                   "ingressclasses", Singular: "ingressclass",
		New:        func() runtime.Object { return &networkingv1.IngressClass{} },
		NewList:    func() runtime.Object { return &networkingv1.IngressClassList{} },
		Generation: true,
		Default:    func(obj runtime.Object) { Default(obj.(*networkingv1.IngressClass)) },
		Validate:   func(obj runtime.Object) field.ErrorList { return Validate(obj.(*networkingv1.IngressClass)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			n, o := obj.(*networkingv1.IngressClass), old.(*networkingv1.IngressClass)
			return append(Validate(n), registry.Immutable(n.Spec.Controller, o.Spec.Controller, field.NewPath("spec", "controller"))...)
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Controller", "string", 0, "Controller that is responsible for handling this class"),
			registry.Column("Parameters", "string", 0, "A reference to a resource with additional parameters"),
			registry.AgeColumn,
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			ic := obj.(*networkingv1.IngressClass)
			params := "<none>"
			if p := ic.Spec.Parameters; p != nil {
				params = p.Kind
				if p.APIGroup != nil {
					params += "." + *p.APIGroup
				}
				params += "/" + p.Name
			}
			return []interface{}{ic.Name, ic.Spec.Controller, params, registry.Age(ic.CreationTimestamp)}, nil
		},
	}
}

// Default scopes parameters to the cluster unless said otherwise.
func Default(ic *networkingv1.IngressClass) {
	if p := ic.Spec.Parameters; p != nil && p.Scope == nil {
		s := networkingv1.IngressClassParametersReferenceScopeCluster
		p.Scope = &s
	}
}

// Validate checks an IngressClass as kube-apiserver does.
func Validate(ic *networkingv1.IngressClass) field.ErrorList {
	spec := field.NewPath("spec")
	var errs field.ErrorList
	cp := spec.Child("controller")
	switch c := ic.Spec.Controller; {
	case c == "":
		errs = append(errs, field.Required(cp, ""))
	case len(c) > 250:
		errs = append(errs, field.TooLong(cp, "", 250))
	default:
		errs = append(errs, validation.IsDomainPrefixedPath(cp, c)...)
	}
	p := ic.Spec.Parameters
	if p == nil {
		return errs
	}
	pp := spec.Child("parameters")
	if p.Kind == "" {
		errs = append(errs, field.Required(pp.Child("kind"), ""))
	}
	if p.Name == "" {
		errs = append(errs, field.Required(pp.Child("name"), ""))
	}
	if p.APIGroup != nil {
		for _, msg := range validation.IsDNS1123Subdomain(*p.APIGroup) {
			errs = append(errs, field.Invalid(pp.Child("apiGroup"), *p.APIGroup, msg))
		}
	}
	if p.Scope == nil {
		return append(errs, field.Required(pp.Child("scope"), ""))
	}
	switch *p.Scope {
	case networkingv1.IngressClassParametersReferenceScopeNamespace:
		if p.Namespace == nil {
			errs = append(errs, field.Required(pp.Child("namespace"), "`parameters.scope` is set to 'Namespace'"))
		}
	case networkingv1.IngressClassParametersReferenceScopeCluster:
		if p.Namespace != nil {
			errs = append(errs, field.Forbidden(pp.Child("namespace"), "`parameters.scope` is set to 'Cluster'"))
		}
	default:
		errs = append(errs, field.NotSupported(pp.Child("scope"), *p.Scope, []string{"Cluster", "Namespace"}))
	}
	return errs
}
