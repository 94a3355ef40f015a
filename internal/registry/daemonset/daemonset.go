// Package daemonset is the registry entry of apps/v1 DaemonSets.
package daemonset

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/pod"
	"github.com/headway/headway/internal/registry/podtemplate"
)

// Resource returns the daemonsets registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: appsv1.SchemeGroupVersion,
		Kind:         "DaemonSet", ListKind: "DaemonSetList",
		AllowUnconditionalUpdate: true,
		Plural:                   "daemonsets", Singular: "daemonset",
		ShortNames: []string{"ds"},
		Categories: []string{"all"},
		Namespaced: true,
		New:        func() runtime.Object { return &appsv1.DaemonSet{} },
		NewList:    func() runtime.Object { return &appsv1.DaemonSetList{} },
		HasStatus:  true,
		Generation: true,
		Default:    func(obj runtime.Object) { Default(obj.(*appsv1.DaemonSet)) },
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			registry.ResetStatus(obj)
		},
		Validate: func(obj runtime.Object) field.ErrorList { return Validate(obj.(*appsv1.DaemonSet)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			n, o := obj.(*appsv1.DaemonSet), old.(*appsv1.DaemonSet)
			return append(Validate(n), registry.Immutable(n.Spec.Selector, o.Spec.Selector, field.NewPath("spec", "selector"))...)
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Desired", "integer", 0, appsv1.DaemonSetStatus{}.SwaggerDoc()["desiredNumberScheduled"]),
			registry.Column("Current", "integer", 0, appsv1.DaemonSetStatus{}.SwaggerDoc()["currentNumberScheduled"]),
			registry.Column("Ready", "integer", 0, appsv1.DaemonSetStatus{}.SwaggerDoc()["numberReady"]),
			registry.Column("Up-to-date", "integer", 0, appsv1.DaemonSetStatus{}.SwaggerDoc()["updatedNumberScheduled"]),
			registry.Column("Available", "integer", 0, appsv1.DaemonSetStatus{}.SwaggerDoc()["numberAvailable"]),
			registry.Column("Node Selector", "string", 0, corev1.PodSpec{}.SwaggerDoc()["nodeSelector"]),
			registry.AgeColumn,
			registry.Column("Containers", "string", 1, "Names of each container in the template."),
			registry.Column("Images", "string", 1, "Images referenced by each container in the template."),
			registry.Column("Selector", "string", 1, appsv1.DaemonSetSpec{}.SwaggerDoc()["selector"]),
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			ds := obj.(*appsv1.DaemonSet)
			st := ds.Status
			names, images := registry.ContainerCells(ds.Spec.Template.Spec.Containers)
			return []interface{}{ds.Name, int64(st.DesiredNumberScheduled), int64(st.CurrentNumberScheduled), int64(st.NumberReady),
				int64(st.UpdatedNumberScheduled), int64(st.NumberAvailable), labels.FormatLabels(ds.Spec.Template.Spec.NodeSelector),
				registry.Age(ds.CreationTimestamp), names, images, metav1.FormatLabelSelector(ds.Spec.Selector)}, nil
		},
	}
}

// Default sets what kube-apiserver defaults on a DaemonSet.
func Default(ds *appsv1.DaemonSet) {
	us := &ds.Spec.UpdateStrategy
	if us.Type == "" {
		us.Type = appsv1.RollingUpdateDaemonSetStrategyType
	}
	if us.Type == appsv1.RollingUpdateDaemonSetStrategyType {
		if us.RollingUpdate == nil {
			us.RollingUpdate = &appsv1.RollingUpdateDaemonSet{}
		}
		if us.RollingUpdate.MaxUnavailable == nil {
			v := intstr.FromInt32(1)
			us.RollingUpdate.MaxUnavailable = &v
		}
		if us.RollingUpdate.MaxSurge == nil {
			v := intstr.FromInt32(0)
			us.RollingUpdate.MaxSurge = &v
		}
	}
	if ds.Spec.RevisionHistoryLimit == nil {
		l := int32(10)
		ds.Spec.RevisionHistoryLimit = &l
	}
	pod.DefaultPodSpec(&ds.Spec.Template.Spec)
}

// Validate checks a DaemonSet as kube-apiserver does.
func Validate(ds *appsv1.DaemonSet) field.ErrorList {
	spec := field.NewPath("spec")
	errs := podtemplate.ValidateSelector(ds.Spec.Selector, spec.Child("selector"), "daemonset")
	errs = append(errs, podtemplate.ValidateReplicatedTemplate(ds.Spec.Selector, &ds.Spec.Template, spec.Child("template"))...)
	errs = append(errs, registry.NonNegative(int64(ds.Spec.MinReadySeconds), spec.Child("minReadySeconds"))...)
	errs = append(errs, registry.NonNegative32(ds.Spec.RevisionHistoryLimit, spec.Child("revisionHistoryLimit"))...)
	us, up := ds.Spec.UpdateStrategy, spec.Child("updateStrategy")
	switch us.Type {
	case appsv1.OnDeleteDaemonSetStrategyType:
	case appsv1.RollingUpdateDaemonSetStrategyType:
		if us.RollingUpdate == nil {
			errs = append(errs, field.Required(up.Child("rollingUpdate"), ""))
			break
		}
		rp := up.Child("rollingUpdate")
		errs = append(errs, registry.IntOrPercent(us.RollingUpdate.MaxUnavailable, rp.Child("maxUnavailable"), true)...)
		errs = append(errs, registry.IntOrPercent(us.RollingUpdate.MaxSurge, rp.Child("maxSurge"), true)...)
		if registry.IsZero(us.RollingUpdate.MaxUnavailable) && registry.IsZero(us.RollingUpdate.MaxSurge) {
			errs = append(errs, field.Invalid(rp.Child("maxUnavailable"), us.RollingUpdate.MaxUnavailable.String(), "may not be 0 when `maxSurge` is 0"))
		}
	default:
		errs = append(errs, field.NotSupported(up.Child("type"), us.Type, []string{"OnDelete", "RollingUpdate"}))
	}
	return errs
}
