// Package poddisruptionbudget is the registry entry of policy/v1
// PodDisruptionBudgets (status written by the disruption controller).
package poddisruptionbudget

import (
	"context"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Resource returns the poddisruptionbudgets registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: policyv1.SchemeGroupVersion,
		Kind:         "PodDisruptionBudget", ListKind: "PodDisruptionBudgetList",
		AllowUnconditionalUpdate: false,
		Plural:                   "poddisruptionbudgets", Singular: "poddisruptionbudget",
		ShortNames: []string{"pdb"},
		Namespaced: true,
		New:        func() runtime.Object { return &policyv1.PodDisruptionBudget{} },
		NewList:    func() runtime.Object { return &policyv1.PodDisruptionBudgetList{} },
		HasStatus:  true,
		Generation: true,
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			registry.ResetStatus(obj)
		},
		Validate:       func(obj runtime.Object) field.ErrorList { return Validate(obj.(*policyv1.PodDisruptionBudget)) },
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList { return Validate(obj.(*policyv1.PodDisruptionBudget)) },
		ValidateStatusUpdate: func(obj, _ runtime.Object) field.ErrorList {
			st, p := obj.(*policyv1.PodDisruptionBudget).Status, field.NewPath("status")
			errs := registry.NonNegative(int64(st.DisruptionsAllowed), p.Child("disruptionsAllowed"))
			errs = append(errs, registry.NonNegative(int64(st.CurrentHealthy), p.Child("currentHealthy"))...)
			errs = append(errs, registry.NonNegative(int64(st.DesiredHealthy), p.Child("desiredHealthy"))...)
			return append(errs, registry.NonNegative(int64(st.ExpectedPods), p.Child("expectedPods"))...)
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Min Available", "string", 0, "The minimum number of pods that must be available."),
			registry.Column("Max Unavailable", "string", 0, "The maximum number of pods that may be unavailable."),
			registry.Column("Allowed Disruptions", "integer", 0, "Calculated number of pods that may be disrupted at this time."),
			registry.AgeColumn,
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			pdb := obj.(*policyv1.PodDisruptionBudget)
			minA, maxU := "N/A", "N/A"
			if v := pdb.Spec.MinAvailable; v != nil {
				minA = v.String()
			}
			if v := pdb.Spec.MaxUnavailable; v != nil {
				maxU = v.String()
			}
			return []interface{}{pdb.Name, minA, maxU, int64(pdb.Status.DisruptionsAllowed), registry.Age(pdb.CreationTimestamp)}, nil
		},
	}
}

// Validate checks a PodDisruptionBudget as kube-apiserver does.
func Validate(pdb *policyv1.PodDisruptionBudget) field.ErrorList {
	spec := field.NewPath("spec")
	var errs field.ErrorList
	if pdb.Spec.MinAvailable != nil && pdb.Spec.MaxUnavailable != nil {
		errs = append(errs, field.Invalid(spec, field.OmitValueType{}, "minAvailable and maxUnavailable cannot be both set"))
	}
	errs = append(errs, registry.IntOrPercent(pdb.Spec.MinAvailable, spec.Child("minAvailable"), true)...)
	errs = append(errs, registry.IntOrPercent(pdb.Spec.MaxUnavailable, spec.Child("maxUnavailable"), true)...)
	if pdb.Spec.Selector != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(pdb.Spec.Selector, metav1validation.LabelSelectorValidationOptions{}, spec.Child("selector"))...)
	}
	if p := pdb.Spec.UnhealthyPodEvictionPolicy; p != nil && *p != policyv1.IfHealthyBudget && *p != policyv1.AlwaysAllow {
		errs = append(errs, field.NotSupported(spec.Child("unhealthyPodEvictionPolicy"), *p, []string{"AlwaysAllow", "IfHealthyBudget"}))
	}
	return errs
}
