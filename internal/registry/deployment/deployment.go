// Package deployment is the registry entry of apps/v1 Deployments.
package deployment

import (
	"context"
	"fmt"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/pod"
	"github.com/headway/headway/internal/registry/podtemplate"
)

// Resource returns the deployments registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: appsv1.SchemeGroupVersion,
		Kind:         "Deployment", ListKind: "DeploymentList",
		AllowUnconditionalUpdate: true,
		Plural:                   "deployments", Singular: "deployment",
		ShortNames: []string{"deploy"},
		Categories: []string{"all"},
		Namespaced: true,
		New:        func() runtime.Object { return &appsv1.Deployment{} },
		NewList:    func() runtime.Object { return &appsv1.DeploymentList{} },
		HasStatus:  true,
		Generation: true,
		Default:    func(obj runtime.Object) { Default(obj.(*appsv1.Deployment)) },
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			registry.ResetStatus(obj)
		},
		Validate: func(obj runtime.Object) field.ErrorList { return Validate(obj.(*appsv1.Deployment)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			n, o := obj.(*appsv1.Deployment), old.(*appsv1.Deployment)
			return append(Validate(n), registry.Immutable(n.Spec.Selector, o.Spec.Selector, field.NewPath("spec", "selector"))...)
		},
		Scale: &registry.ScaleSubresource{
			Get: func(obj runtime.Object) (int32, int32, string) {
				d := obj.(*appsv1.Deployment)
				return replicas(d), d.Status.Replicas, selectorString(d.Spec.Selector)
			},
			Set: func(obj runtime.Object, n int32) { obj.(*appsv1.Deployment).Spec.Replicas = &n },
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Ready", "string", 0, "Number of the pod with ready state"),
			registry.Column("Up-to-date", "string", 0, appsv1.DeploymentStatus{}.SwaggerDoc()["updatedReplicas"]),
			registry.Column("Available", "string", 0, appsv1.DeploymentStatus{}.SwaggerDoc()["availableReplicas"]),
			registry.AgeColumn,
			registry.Column("Containers", "string", 1, "Names of each container in the template."),
			registry.Column("Images", "string", 1, "Images referenced by each container in the template."),
			registry.Column("Selector", "string", 1, appsv1.DeploymentSpec{}.SwaggerDoc()["selector"]),
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			d := obj.(*appsv1.Deployment)
			names, images := registry.ContainerCells(d.Spec.Template.Spec.Containers)
			return []interface{}{d.Name, fmt.Sprintf("%d/%d", d.Status.ReadyReplicas, replicas(d)),
				int64(d.Status.UpdatedReplicas), int64(d.Status.AvailableReplicas), registry.Age(d.CreationTimestamp),
				names, images, selectorString(d.Spec.Selector)}, nil
		},
	}
}

func replicas(d *appsv1.Deployment) int32 {
	if d.Spec.Replicas == nil {
		return 1
	}
	return *d.Spec.Replicas
}

// selectorString renders a selector as kubectl's SELECTOR column does.
func selectorString(sel *metav1.LabelSelector) string {
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return "<invalid>"
	}
	return s.String()
}

// Default sets what kube-apiserver defaults on a Deployment.
func Default(d *appsv1.Deployment) {
	if d.Spec.Replicas == nil {
		r := int32(1)
		d.Spec.Replicas = &r
	}
	st := &d.Spec.Strategy
	if st.Type == "" {
		st.Type = appsv1.RollingUpdateDeploymentStrategyType
	}
	if st.Type == appsv1.RollingUpdateDeploymentStrategyType {
		if st.RollingUpdate == nil {
			st.RollingUpdate = &appsv1.RollingUpdateDeployment{}
		}
		if st.RollingUpdate.MaxUnavailable == nil {
			v := intstr.FromString("25%")
			st.RollingUpdate.MaxUnavailable = &v
		}
		if st.RollingUpdate.MaxSurge == nil {
			v := intstr.FromString("25%")
			st.RollingUpdate.MaxSurge = &v
		}
	}
	if d.Spec.RevisionHistoryLimit == nil {
		l := int32(10)
		d.Spec.RevisionHistoryLimit = &l
	}
	if d.Spec.ProgressDeadlineSeconds == nil {
		p := int32(600)
		d.Spec.ProgressDeadlineSeconds = &p
	}
	pod.DefaultPodSpec(&d.Spec.Template.Spec)
}

// Validate checks a Deployment as kube-apiserver does.
func Validate(d *appsv1.Deployment) field.ErrorList {
	spec := field.NewPath("spec")
	errs := registry.NonNegative32(d.Spec.Replicas, spec.Child("replicas"))
	errs = append(errs, podtemplate.ValidateSelector(d.Spec.Selector, spec.Child("selector"), "deployment")...)
	errs = append(errs, podtemplate.ValidateReplicatedTemplate(d.Spec.Selector, &d.Spec.Template, spec.Child("template"))...)
	errs = append(errs, ValidateStrategy(&d.Spec.Strategy, spec.Child("strategy"))...)
	errs = append(errs, registry.NonNegative(int64(d.Spec.MinReadySeconds), spec.Child("minReadySeconds"))...)
	errs = append(errs, registry.NonNegative32(d.Spec.RevisionHistoryLimit, spec.Child("revisionHistoryLimit"))...)
	if p := d.Spec.ProgressDeadlineSeconds; p != nil {
		errs = append(errs, registry.NonNegative(int64(*p), spec.Child("progressDeadlineSeconds"))...)
		if *p <= d.Spec.MinReadySeconds {
			errs = append(errs, field.Invalid(spec.Child("progressDeadlineSeconds"), *p, "must be greater than minReadySeconds"))
		}
	}
	return errs
}

// ValidateStrategy checks a Deployment's update strategy.
func ValidateStrategy(st *appsv1.DeploymentStrategy, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	switch st.Type {
	case appsv1.RecreateDeploymentStrategyType:
		if st.RollingUpdate != nil {
			errs = append(errs, field.Forbidden(path.Child("rollingUpdate"), "may not be specified when strategy `type` is 'Recreate'"))
		}
	case appsv1.RollingUpdateDeploymentStrategyType:
		ru := st.RollingUpdate
		if ru == nil {
			return append(errs, field.Required(path.Child("rollingUpdate"), "this should be defaulted and never be nil"))
		}
		rp := path.Child("rollingUpdate")
		errs = append(errs, registry.IntOrPercent(ru.MaxUnavailable, rp.Child("maxUnavailable"), true)...)
		errs = append(errs, registry.IntOrPercent(ru.MaxSurge, rp.Child("maxSurge"), false)...)
		if registry.IsZero(ru.MaxUnavailable) && registry.IsZero(ru.MaxSurge) {
			errs = append(errs, field.Invalid(rp.Child("maxUnavailable"), ru.MaxUnavailable.String(), "may not be 0 when `maxSurge` is 0"))
		}
	default:
		errs = append(errs, field.NotSupported(path.Child("type"), st.Type, []string{"Recreate", "RollingUpdate"}))
	}
	return errs
}
