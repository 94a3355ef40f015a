// Package namespace is the registry entry of core/v1 Namespaces.
package namespace

import (
	"context"
	"slices"

	corev1 "k8s.io/api/core/v1"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// NameLabel is the immutable label kube-apiserver puts on every namespace.
const NameLabel = "kubernetes.io/metadata.name"

// Resource returns the namespaces registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Kind:         "Namespace", ListKind: "NamespaceList",
		Plural: "namespaces", Singular: "namespace",
		ShortNames: []string{"ns"},
		New:        func() runtime.Object { return &corev1.Namespace{} },
		NewList:    func() runtime.Object { return &corev1.NamespaceList{} },

		// As in kube-apiserver's strategy for the kind, a PUT without a
		// resourceVersion overwrites the current object.
		AllowUnconditionalUpdate: true,

		NameValidation: metavalidation.ValidateNamespaceName,
		HasStatus:      true,
		Default: func(obj runtime.Object) {
			ns := obj.(*corev1.Namespace)
			if ns.Labels == nil {
				ns.Labels = map[string]string{}
			}
			if ns.Name != "" {
				ns.Labels[NameLabel] = ns.Name
			}
		},
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			ns := obj.(*corev1.Namespace)
			ns.Status = corev1.NamespaceStatus{Phase: corev1.NamespaceActive}
			if !slices.Contains(ns.Spec.Finalizers, corev1.FinalizerKubernetes) {
				ns.Spec.Finalizers = append(ns.Spec.Finalizers, corev1.FinalizerKubernetes)
			}
		},
		PrepareForUpdate: func(_ context.Context, obj, old runtime.Object) {
			// spec.finalizers change only through the finalize subresource.
			obj.(*corev1.Namespace).Spec.Finalizers = old.(*corev1.Namespace).Spec.Finalizers
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return validateFinalizers(obj.(*corev1.Namespace))
		},
		PrepareForDelete: func(obj runtime.Object) {
			obj.(*corev1.Namespace).Status.Phase = corev1.NamespaceTerminating
		},
		Finalizing: func(obj runtime.Object) bool {
			return len(obj.(*corev1.Namespace).Spec.Finalizers) > 0
		},
		Finalize: func(obj, old runtime.Object) runtime.Object {
			out := old.DeepCopyObject().(*corev1.Namespace)
			out.Spec.Finalizers = obj.(*corev1.Namespace).Spec.Finalizers
			out.ManagedFields = obj.(*corev1.Namespace).ManagedFields
			return out
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Status", "string", 0, "The status of the namespace"),
			registry.AgeColumn,
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			ns := obj.(*corev1.Namespace)
			return []interface{}{ns.Name, string(ns.Status.Phase), registry.Age(ns.CreationTimestamp)}, nil
		},
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"status.phase": string(obj.(*corev1.Namespace).Status.Phase)}
		},
	}
}

func validateFinalizers(ns *corev1.Namespace) field.ErrorList {
	var errs field.ErrorList
	for i, f := range ns.Spec.Finalizers {
		if f == "" {
			errs = append(errs, field.Required(field.NewPath("spec", "finalizers").Index(i), ""))
		}
	}
	return errs
}
