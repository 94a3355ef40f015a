// Package replicationcontroller is the registry entry of core/v1
// ReplicationControllers.
package replicationcontroller

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/pod"
	"github.com/headway/headway/internal/registry/podtemplate"
)

// Resource returns the replicationcontrollers registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Kind:         "ReplicationController", ListKind: "ReplicationControllerList",
		AllowUnconditionalUpdate: true,
		Plural:                   "replicationcontrollers", Singular: "replicationcontroller",
		ShortNames: []string{"rc"},
		Categories: []string{"all"},
		Namespaced: true,
		New:        func() runtime.Object { return &corev1.ReplicationController{} },
		NewList:    func() runtime.Object { return &corev1.ReplicationControllerList{} },
		HasStatus:  true,
		Generation: true,
		Default:    func(obj runtime.Object) { Default(obj.(*corev1.ReplicationController)) },
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			registry.ResetStatus(obj)
		},
		Validate:       func(obj runtime.Object) field.ErrorList { return Validate(obj.(*corev1.ReplicationController)) },
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList { return Validate(obj.(*corev1.ReplicationController)) },
		Scale: &registry.ScaleSubresource{
			Get: func(obj runtime.Object) (int32, int32, string) {
				rc := obj.(*corev1.ReplicationController)
				return replicas(rc), rc.Status.Replicas, labels.SelectorFromSet(rc.Spec.Selector).String()
			},
			Set: func(obj runtime.Object, n int32) { obj.(*corev1.ReplicationController).Spec.Replicas = &n },
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Desired", "integer", 0, corev1.ReplicationControllerSpec{}.SwaggerDoc()["replicas"]),
			registry.Column("Current", "integer", 0, corev1.ReplicationControllerStatus{}.SwaggerDoc()["replicas"]),
			registry.Column("Ready", "integer", 0, corev1.ReplicationControllerStatus{}.SwaggerDoc()["readyReplicas"]),
			registry.AgeColumn,
			registry.Column("Containers", "string", 1, "Names of each container in the template."),
			registry.Column("Images", "string", 1, "Images referenced by each container in the template."),
			registry.Column("Selector", "string", 1, corev1.ReplicationControllerSpec{}.SwaggerDoc()["selector"]),
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			rc := obj.(*corev1.ReplicationController)
			var names, images string
			if rc.Spec.Template != nil {
				names, images = registry.ContainerCells(rc.Spec.Template.Spec.Containers)
			}
			return []interface{}{rc.Name, int64(replicas(rc)), int64(rc.Status.Replicas), int64(rc.Status.ReadyReplicas),
				registry.Age(rc.CreationTimestamp), names, images, labels.FormatLabels(rc.Spec.Selector)}, nil
		},
	}
}

func replicas(rc *corev1.ReplicationController) int32 {
	if rc.Spec.Replicas == nil {
		return 1
	}
	return *rc.Spec.Replicas
}

// Default sets what kube-apiserver defaults on a ReplicationController: the
// selector and the labels come from the template when missing.
func Default(rc *corev1.ReplicationController) {
	if t := rc.Spec.Template; t != nil && t.Labels != nil {
		if len(rc.Spec.Selector) == 0 {
			rc.Spec.Selector = t.Labels
		}
		if len(rc.Labels) == 0 {
			rc.Labels = t.Labels
		}
	}
	if rc.Spec.Replicas == nil {
		r := int32(1)
		rc.Spec.Replicas = &r
	}
	if rc.Spec.Template != nil {
		pod.DefaultPodSpec(&rc.Spec.Template.Spec)
	}
}

// Validate checks a ReplicationController as kube-apiserver does.
func Validate(rc *corev1.ReplicationController) field.ErrorList {
	spec := field.NewPath("spec")
	errs := registry.NonNegative32(rc.Spec.Replicas, spec.Child("replicas"))
	errs = append(errs, registry.NonNegative(int64(rc.Spec.MinReadySeconds), spec.Child("minReadySeconds"))...)
	if len(rc.Spec.Selector) == 0 {
		errs = append(errs, field.Required(spec.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabels(rc.Spec.Selector, spec.Child("selector"))...)
	}
	if rc.Spec.Template == nil {
		return append(errs, field.Required(spec.Child("template"), ""))
	}
	var sel *metav1.LabelSelector
	if len(rc.Spec.Selector) > 0 {
		sel = &metav1.LabelSelector{MatchLabels: rc.Spec.Selector}
	}
	return append(errs, podtemplate.ValidateReplicatedTemplate(sel, rc.Spec.Template, spec.Child("template"))...)
}
