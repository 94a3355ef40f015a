// Package replicaset is the registry entry of apps/v1 ReplicaSets.
package replicaset

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/pod"
	"github.com/headway/headway/internal/registry/podtemplate"
)

// Resource returns the replicasets registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: appsv1.SchemeGroupVersion,
		Kind:         "ReplicaSet", ListKind: "ReplicaSetList",
		AllowUnconditionalUpdate: true,
		Plural:                   "replicasets", Singular: "replicaset",
		ShortNames: []string{"rs"},
		Categories: []string{"all"},
		Namespaced: true,
		New:        func() runtime.Object { return &appsv1.ReplicaSet{} },
		NewList:    func() runtime.Object { return &appsv1.ReplicaSetList{} },
		HasStatus:  true,
		Generation: true,
		Default:    func(obj runtime.Object) { Default(obj.(*appsv1.ReplicaSet)) },
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			registry.ResetStatus(obj)
		},
		Validate: func(obj runtime.Object) field.ErrorList { return Validate(obj.(*appsv1.ReplicaSet)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			n, o := obj.(*appsv1.ReplicaSet), old.(*appsv1.ReplicaSet)
			return append(Validate(n), registry.Immutable(n.Spec.Selector, o.Spec.Selector, field.NewPath("spec", "selector"))...)
		},
		Scale: &registry.ScaleSubresource{
			Get: func(obj runtime.Object) (int32, int32, string) {
				rs := obj.(*appsv1.ReplicaSet)
				sel := ""
				if s, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector); err == nil {
					sel = s.String()
				}
				return replicas(rs), rs.Status.Replicas, sel
			},
			Set: func(obj runtime.Object, n int32) { obj.(*appsv1.ReplicaSet).Spec.Replicas = &n },
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Desired", "integer", 0, appsv1.ReplicaSetSpec{}.SwaggerDoc()["replicas"]),
			registry.Column("Current", "integer", 0, appsv1.ReplicaSetStatus{}.SwaggerDoc()["replicas"]),
			registry.Column("Ready", "integer", 0, appsv1.ReplicaSetStatus{}.SwaggerDoc()["readyReplicas"]),
			registry.AgeColumn,
			registry.Column("Containers", "string", 1, "Names of each container in the template."),
			registry.Column("Images", "string", 1, "Images referenced by each container in the template."),
			registry.Column("Selector", "string", 1, appsv1.ReplicaSetSpec{}.SwaggerDoc()["selector"]),
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			rs := obj.(*appsv1.ReplicaSet)
			names, images := registry.ContainerCells(rs.Spec.Template.Spec.Containers)
			return []interface{}{rs.Name, int64(replicas(rs)), int64(rs.Status.Replicas), int64(rs.Status.ReadyReplicas),
				registry.Age(rs.CreationTimestamp), names, images, metav1.FormatLabelSelector(rs.Spec.Selector)}, nil
		},
	}
}

func replicas(rs *appsv1.ReplicaSet) int32 {
	if rs.Spec.Replicas == nil {
		return 1
	}
	return *rs.Spec.Replicas
}

// Default sets what kube-apiserver defaults on a ReplicaSet.
func Default(rs *appsv1.ReplicaSet) {
	if rs.Spec.Replicas == nil {
		r := int32(1)
		rs.Spec.Replicas = &r
	}
	pod.DefaultPodSpec(&rs.Spec.Template.Spec)
}

// Validate checks a ReplicaSet as kube-apiserver does.
func Validate(rs *appsv1.ReplicaSet) field.ErrorList {
	spec := field.NewPath("spec")
	errs := registry.NonNegative32(rs.Spec.Replicas, spec.Child("replicas"))
	errs = append(errs, registry.NonNegative(int64(rs.Spec.MinReadySeconds), spec.Child("minReadySeconds"))...)
	errs = append(errs, podtemplate.ValidateSelector(rs.Spec.Selector, spec.Child("selector"), "deployment")...)
	errs = append(errs, podtemplate.ValidateReplicatedTemplate(rs.Spec.Selector, &rs.Spec.Template, spec.Child("template"))...)
	return errs
}
