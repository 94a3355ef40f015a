// Package priorityclass is the registry entry of scheduling.k8s.io/v1
// PriorityClasses.
package priorityclass

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// HighestUserDefinablePriority is the largest value of a PriorityClass that
// is not one of the system's.
const HighestUserDefinablePriority = 1000000000

// system are the PriorityClasses Kubernetes reserves, with their values.
var system = map[string]int32{"system-node-critical": 2000001000, "system-cluster-critical": 2000000000}

// Resource returns the priorityclasses registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: schedulingv1.SchemeGroupVersion,
		Kind:         "PriorityClass", ListKind: "PriorityClassList",
		AllowUnconditionalUpdate: true,
		Plural:                   "priorityclasses", Singular: "priorityclass",
		ShortNames: []string{"pc"},
		New:        func() runtime.Object { return &schedulingv1.PriorityClass{} },
		NewList:    func() runtime.Object { return &schedulingv1.PriorityClassList{} },
		Default: func(obj runtime.Object) {
			if pc := obj.(*schedulingv1.PriorityClass); pc.PreemptionPolicy == nil {
				p := corev1.PreemptLowerPriority
				pc.PreemptionPolicy = &p
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return Validate(obj.(*schedulingv1.PriorityClass)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			n, o := obj.(*schedulingv1.PriorityClass), old.(*schedulingv1.PriorityClass)
			errs := Validate(n)
			if n.Value != o.Value {
				errs = append(errs, field.Forbidden(field.NewPath("value"), "may not be changed in an update."))
			}
			return append(errs, registry.Immutable(n.PreemptionPolicy, o.PreemptionPolicy, field.NewPath("preemptionPolicy"))...)
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Value", "integer", 0, schedulingv1.PriorityClass{}.SwaggerDoc()["value"]),
			registry.Column("Global-Default", "boolean", 0, schedulingv1.PriorityClass{}.SwaggerDoc()["globalDefault"]),
			registry.AgeColumn,
			registry.Column("PreemptionPolicy", "string", 1, schedulingv1.PriorityClass{}.SwaggerDoc()["preemptionPolicy"]),
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			pc := obj.(*schedulingv1.PriorityClass)
			policy := ""
			if pc.PreemptionPolicy != nil {
				policy = string(*pc.PreemptionPolicy)
			}
			return []interface{}{pc.Name, int64(pc.Value), pc.GlobalDefault, registry.Age(pc.CreationTimestamp), policy}, nil
		},
	}
}

// Validate checks a PriorityClass as kube-apiserver does.
func Validate(pc *schedulingv1.PriorityClass) field.ErrorList {
	var errs field.ErrorList
	if strings.HasPrefix(pc.Name, "system-") {
		if v, ok := system[pc.Name]; !ok || v != pc.Value || pc.GlobalDefault {
			errs = append(errs, field.Forbidden(field.NewPath("metadata", "name"),
				"priority class names with 'system-' prefix are reserved for system use only"))
		}
	} else if pc.Value > HighestUserDefinablePriority {
		errs = append(errs, field.Forbidden(field.NewPath("value"),
			fmt.Sprintf("maximum allowed value of a user defined priority is %d", HighestUserDefinablePriority)))
	}
	if p := pc.PreemptionPolicy; p != nil && *p != corev1.PreemptLowerPriority && *p != corev1.PreemptNever {
		errs = append(errs, field.NotSupported(field.NewPath("preemptionPolicy"), *p, []string{"Never", "PreemptLowerPriority"}))
	}
	return errs
}
