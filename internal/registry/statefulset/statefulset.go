// Package statefulset is the registry entry of apps/v1 StatefulSets.
package statefulset

import (
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/persistentvolumeclaim"
	"github.com/headway/headway/internal/registry/pod"
)

// Resource returns the statefulsets registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: appsv1.SchemeGroupVersion,
		Kind:         "StatefulSet", ListKind: "StatefulSetList",
		Plural: "statefulsets", Singular: "statefulset",
		ShortNames: []string{"sts"},
		Categories: []string{"all"},
		Namespaced: true,
		New:        func() runtime.Object { return &appsv1.StatefulSet{} },
		NewList:    func() runtime.Object { return &appsv1.StatefulSetList{} },

		// As in kube-apiserver's strategy for the kind, a PUT without a
		// resourceVersion overwrites the current object.
		AllowUnconditionalUpdate: true,

		HasStatus:  true,
		Generation: true,
		Default:    func(obj runtime.Object) { Default(obj.(*appsv1.StatefulSet)) },
		Validate:   func(obj runtime.Object) field.ErrorList { return Validate(obj.(*appsv1.StatefulSet)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			n, o := obj.(*appsv1.StatefulSet), old.(*appsv1.StatefulSet)
			errs := Validate(n)
			spec := field.NewPath("spec")
			if n.Spec.ServiceName != o.Spec.ServiceName || !equalSelector(n.Spec.Selector, o.Spec.Selector) ||
				n.Spec.PodManagementPolicy != o.Spec.PodManagementPolicy {
				errs = append(errs, field.Forbidden(spec, "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'revisionHistoryLimit', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"))
			}
			return errs
		},
		Scale: &registry.ScaleSubresource{
			Get: func(obj runtime.Object) (int32, int32, string) {
				s := obj.(*appsv1.StatefulSet)
				var spec int32 = 1
				if s.Spec.Replicas != nil {
					spec = *s.Spec.Replicas
				}
				sel := ""
				if ls, err := metav1.LabelSelectorAsSelector(s.Spec.Selector); err == nil {
					sel = ls.String()
				}
				return spec, s.Status.Replicas, sel
			},
			Set: func(obj runtime.Object, replicas int32) {
				obj.(*appsv1.StatefulSet).Spec.Replicas = &replicas
			},
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Ready", "string", 0, "Number of the pod with ready state"),
			registry.AgeColumn,
			registry.Column("Containers", "string", 1, "Names of each container in the template."),
			registry.Column("Images", "string", 1, "Images referenced by each container in the template."),
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			s := obj.(*appsv1.StatefulSet)
			var replicas int32 = 1
			if s.Spec.Replicas != nil {
				replicas = *s.Spec.Replicas
			}
			var names, images []string
			for _, c := range s.Spec.Template.Spec.Containers {
				names = append(names, c.Name)
				images = append(images, c.Image)
			}
			return []interface{}{s.Name, itoa(s.Status.ReadyReplicas) + "/" + itoa(replicas), registry.Age(s.CreationTimestamp),
				strings.Join(names, ","), strings.Join(images, ",")}, nil
		},
	}
}

func itoa(n int32) string { return strconv.Itoa(int(n)) }

func equalSelector(a, b *metav1.LabelSelector) bool {
	if a == nil || b == nil {
		return a == b
	}
	sa, ea := metav1.LabelSelectorAsSelector(a)
	sb, eb := metav1.LabelSelectorAsSelector(b)
	return ea == nil && eb == nil && sa.String() == sb.String()
}

// Default sets what kube-apiserver defaults on a StatefulSet: its spec, its
// pod template's spec (as a Pod's, without the Pod-only defaults) and its
// volume claim templates (as claims: volumeMode Filesystem, phase Pending).
func Default(s *appsv1.StatefulSet) {
	if s.Spec.Replicas == nil {
		r := int32(1)
		s.Spec.Replicas = &r
	}
	if s.Spec.PodManagementPolicy == "" {
		s.Spec.PodManagementPolicy = appsv1.OrderedReadyPodManagement
	}
	// rollingUpdate is filled in when the strategy is left out; a strategy
	// of type RollingUpdate without it is stored as given.
	if s.Spec.UpdateStrategy.Type == "" {
		s.Spec.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType
		if s.Spec.UpdateStrategy.RollingUpdate == nil {
			s.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{}
		}
	}
	if ru := s.Spec.UpdateStrategy.RollingUpdate; ru != nil && s.Spec.UpdateStrategy.Type == appsv1.RollingUpdateStatefulSetStrategyType {
		if ru.Partition == nil {
			ru.Partition = ptr.To[int32](0)
		}
		// maxUnavailable 1: kube-apiserver's default since
		// MaxUnavailableStatefulSet is on by default (1.35).
		if ru.MaxUnavailable == nil {
			ru.MaxUnavailable = ptr.To(intstr.FromInt32(1))
		}
	}
	if s.Spec.RevisionHistoryLimit == nil {
		l := int32(10)
		s.Spec.RevisionHistoryLimit = &l
	}
	if s.Spec.PersistentVolumeClaimRetentionPolicy == nil {
		s.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{}
	}
	if s.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted == "" {
		s.Spec.PersistentVolumeClaimRetentionPolicy.WhenDeleted = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	if s.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled == "" {
		s.Spec.PersistentVolumeClaimRetentionPolicy.WhenScaled = appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	}
	pod.DefaultPodSpec(&s.Spec.Template.Spec)
	for i := range s.Spec.VolumeClaimTemplates {
		persistentvolumeclaim.Default(&s.Spec.VolumeClaimTemplates[i])
	}
}

// Validate checks a StatefulSet for the rules kube-apiserver enforces on
// the fields Headway uses.
func Validate(s *appsv1.StatefulSet) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if s.Spec.Replicas != nil && *s.Spec.Replicas < 0 {
		errs = append(errs, field.Invalid(spec.Child("replicas"), *s.Spec.Replicas, "must be greater than or equal to 0"))
	}
	switch s.Spec.PodManagementPolicy {
	case appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement:
	default:
		errs = append(errs, field.Invalid(spec.Child("podManagementPolicy"), s.Spec.PodManagementPolicy, "must be 'OrderedReady' or 'Parallel'"))
	}
	if s.Spec.Selector == nil {
		errs = append(errs, field.Required(spec.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(s.Spec.Selector, metav1validation.LabelSelectorValidationOptions{}, spec.Child("selector"))...)
		if len(s.Spec.Selector.MatchLabels)+len(s.Spec.Selector.MatchExpressions) == 0 {
			errs = append(errs, field.Invalid(spec.Child("selector"), s.Spec.Selector, "empty selector is invalid for statefulset"))
		}
		sel, err := metav1.LabelSelectorAsSelector(s.Spec.Selector)
		if err == nil && !sel.Matches(labels.Set(s.Spec.Template.Labels)) {
			errs = append(errs, field.Invalid(spec.Child("template", "metadata", "labels"), s.Spec.Template.Labels, "`selector` does not match template `labels`"))
		}
	}
	if s.Spec.ServiceName != "" {
		for _, msg := range validation.IsDNS1123Label(s.Spec.ServiceName) {
			errs = append(errs, field.Invalid(spec.Child("serviceName"), s.Spec.ServiceName, msg))
		}
	}
	if s.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(spec.Child("template", "spec", "restartPolicy"), s.Spec.Template.Spec.RestartPolicy, []string{string(corev1.RestartPolicyAlways)}))
	}
	errs = append(errs, pod.ValidatePodSpec(&s.Spec.Template.Spec, spec.Child("template", "spec"))...)
	return errs
}
