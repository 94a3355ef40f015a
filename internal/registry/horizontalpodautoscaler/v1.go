package horizontalpodautoscaler

import (
	"context"
	"encoding/json"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Annotations that carry, on an autoscaling/v1 object, what only v2 can
// say, so that a read-modify-write through v1 keeps it (as kube-apiserver's
// conversion does).
const (
	metricsAnnotation        = "autoscaling.alpha.kubernetes.io/metrics"
	currentMetricsAnnotation = "autoscaling.alpha.kubernetes.io/current-metrics"
	conditionsAnnotation     = "autoscaling.alpha.kubernetes.io/conditions"
	behaviorAnnotation       = "autoscaling.alpha.kubernetes.io/behavior"
)

// ResourceV1 returns the autoscaling/v1 horizontalpodautoscalers entry: the
// autoscaling/v2 objects, converted both ways.
func ResourceV1() *registry.Resource {
	return &registry.Resource{
		GroupVersion: autoscalingv1.SchemeGroupVersion,
		Kind:         "HorizontalPodAutoscaler", ListKind: "HorizontalPodAutoscalerList",
		AllowUnconditionalUpdate: true,
		Plural:                   "horizontalpodautoscalers", Singular: "horizontalpodautoscaler",
		ShortNames: []string{"hpa"},
		Categories: []string{"all"},
		Namespaced: true,
		New:        func() runtime.Object { return &autoscalingv1.HorizontalPodAutoscaler{} },
		NewList:    func() runtime.Object { return &autoscalingv1.HorizontalPodAutoscalerList{} },
		HasStatus:  true,
		Generation: true,
		SharedStorage: &registry.SharedStorage{
			Group: "autoscaling", Plural: "horizontalpodautoscalers",
			StoredKind: autoscalingv2.SchemeGroupVersion.WithKind("HorizontalPodAutoscaler"),
			NewStored:  func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} },
			ToStored: func(obj runtime.Object) runtime.Object {
				// Stored objects carry the v2 defaults, as kube-apiserver's do
				// once read back from storage.
				h := ToV2(obj.(*autoscalingv1.HorizontalPodAutoscaler))
				Default(h)
				return h
			},
			FromStored: func(obj runtime.Object) runtime.Object { return FromV2(obj.(*autoscalingv2.HorizontalPodAutoscaler)) },
		},
		Default: func(obj runtime.Object) {
			if h := obj.(*autoscalingv1.HorizontalPodAutoscaler); h.Spec.MinReplicas == nil {
				one := int32(1)
				h.Spec.MinReplicas = &one
			}
		},
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			registry.ResetStatus(obj)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return Validate(ToV2(obj.(*autoscalingv1.HorizontalPodAutoscaler)))
		},
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList {
			return Validate(ToV2(obj.(*autoscalingv1.HorizontalPodAutoscaler)))
		},
		Columns: columns,
		Row: func(obj runtime.Object) ([]interface{}, error) {
			return Row(ToV2(obj.(*autoscalingv1.HorizontalPodAutoscaler))), nil
		},
	}
}

func isCPUUtilization(m autoscalingv2.MetricSpec) bool {
	return m.Type == autoscalingv2.ResourceMetricSourceType && m.Resource != nil && m.Resource.Name == corev1.ResourceCPU &&
		m.Resource.Target.Type == autoscalingv2.UtilizationMetricType && m.Resource.Target.AverageUtilization != nil
}

// FromV2 converts a stored autoscaling/v2 HPA to autoscaling/v1.
func FromV2(in *autoscalingv2.HorizontalPodAutoscaler) *autoscalingv1.HorizontalPodAutoscaler {
	out := &autoscalingv1.HorizontalPodAutoscaler{ObjectMeta: *in.ObjectMeta.DeepCopy()}
	out.Spec = autoscalingv1.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv1.CrossVersionObjectReference(in.Spec.ScaleTargetRef),
		MinReplicas:    in.Spec.MinReplicas,
		MaxReplicas:    in.Spec.MaxReplicas,
	}
	var others []autoscalingv2.MetricSpec
	for _, m := range in.Spec.Metrics {
		if out.Spec.TargetCPUUtilizationPercentage == nil && isCPUUtilization(m) {
			v := *m.Resource.Target.AverageUtilization
			out.Spec.TargetCPUUtilizationPercentage = &v
			continue
		}
		others = append(others, m)
	}
	out.Status = autoscalingv1.HorizontalPodAutoscalerStatus{
		ObservedGeneration: in.Status.ObservedGeneration,
		LastScaleTime:      in.Status.LastScaleTime,
		CurrentReplicas:    in.Status.CurrentReplicas,
		DesiredReplicas:    in.Status.DesiredReplicas,
	}
	var current []autoscalingv2.MetricStatus
	for _, m := range in.Status.CurrentMetrics {
		if out.Status.CurrentCPUUtilizationPercentage == nil && m.Type == autoscalingv2.ResourceMetricSourceType &&
			m.Resource != nil && m.Resource.Name == corev1.ResourceCPU && m.Resource.Current.AverageUtilization != nil {
			v := *m.Resource.Current.AverageUtilization
			out.Status.CurrentCPUUtilizationPercentage = &v
			continue
		}
		current = append(current, m)
	}
	annotate := func(key string, v interface{}, present bool) {
		if !present {
			return
		}
		b, err := json.Marshal(v)
		if err != nil {
			return
		}
		if out.Annotations == nil {
			out.Annotations = map[string]string{}
		}
		out.Annotations[key] = string(b)
	}
	annotate(metricsAnnotation, others, len(others) > 0)
	annotate(currentMetricsAnnotation, current, len(current) > 0)
	annotate(conditionsAnnotation, in.Status.Conditions, len(in.Status.Conditions) > 0)
	annotate(behaviorAnnotation, in.Spec.Behavior, in.Spec.Behavior != nil)
	return out
}

// ToV2 converts an autoscaling/v1 HPA to the stored autoscaling/v2 form.
func ToV2(in *autoscalingv1.HorizontalPodAutoscaler) *autoscalingv2.HorizontalPodAutoscaler {
	out := &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: *in.ObjectMeta.DeepCopy()}
	out.Spec = autoscalingv2.HorizontalPodAutoscalerSpec{
		ScaleTargetRef: autoscalingv2.CrossVersionObjectReference(in.Spec.ScaleTargetRef),
		MinReplicas:    in.Spec.MinReplicas,
		MaxReplicas:    in.Spec.MaxReplicas,
	}
	if t := in.Spec.TargetCPUUtilizationPercentage; t != nil {
		v := *t
		out.Spec.Metrics = append(out.Spec.Metrics, autoscalingv2.MetricSpec{
			Type: autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricSource{Name: corev1.ResourceCPU,
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &v}},
		})
	}
	out.Status = autoscalingv2.HorizontalPodAutoscalerStatus{
		ObservedGeneration: in.Status.ObservedGeneration,
		LastScaleTime:      in.Status.LastScaleTime,
		CurrentReplicas:    in.Status.CurrentReplicas,
		DesiredReplicas:    in.Status.DesiredReplicas,
	}
	if c := in.Status.CurrentCPUUtilizationPercentage; c != nil {
		v := *c
		out.Status.CurrentMetrics = append(out.Status.CurrentMetrics, autoscalingv2.MetricStatus{
			Type:     autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricStatus{Name: corev1.ResourceCPU, Current: autoscalingv2.MetricValueStatus{AverageUtilization: &v}},
		})
	}
	restore := func(key string, into interface{}) {
		if s, ok := out.Annotations[key]; ok {
			_ = json.Unmarshal([]byte(s), into)
			delete(out.Annotations, key)
		}
	}
	var others []autoscalingv2.MetricSpec
	restore(metricsAnnotation, &others)
	out.Spec.Metrics = append(out.Spec.Metrics, others...)
	var current []autoscalingv2.MetricStatus
	restore(currentMetricsAnnotation, &current)
	out.Status.CurrentMetrics = append(out.Status.CurrentMetrics, current...)
	restore(conditionsAnnotation, &out.Status.Conditions)
	restore(behaviorAnnotation, &out.Spec.Behavior)
	if len(out.Annotations) == 0 {
		out.Annotations = nil
	}
	return out
}
