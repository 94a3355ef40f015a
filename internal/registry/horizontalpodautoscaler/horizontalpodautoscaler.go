// Package horizontalpodautoscaler is the registry entry of autoscaling/v2
// HorizontalPodAutoscalers, also served as autoscaling/v1 from the same
// stored objects. They are stored and served; no autoscaler acts on them.
package horizontalpodautoscaler

import (
	"context"
	"fmt"
	"strings"

	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/validation/path"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// DefaultCPUUtilization is the target an autoscaler without metrics gets.
const DefaultCPUUtilization = 80

var columns = []metav1.TableColumnDefinition{
	registry.NameColumn,
	registry.Column("Reference", "string", 0, autoscalingv2.HorizontalPodAutoscalerSpec{}.SwaggerDoc()["scaleTargetRef"]),
	registry.Column("Targets", "string", 0, autoscalingv2.HorizontalPodAutoscalerSpec{}.SwaggerDoc()["metrics"]),
	registry.Column("MinPods", "string", 0, autoscalingv2.HorizontalPodAutoscalerSpec{}.SwaggerDoc()["minReplicas"]),
	registry.Column("MaxPods", "string", 0, autoscalingv2.HorizontalPodAutoscalerSpec{}.SwaggerDoc()["maxReplicas"]),
	registry.Column("Replicas", "string", 0, autoscalingv2.HorizontalPodAutoscalerStatus{}.SwaggerDoc()["currentReplicas"]),
	registry.AgeColumn,
}

// Resource returns the autoscaling/v2 horizontalpodautoscalers entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: autoscalingv2.SchemeGroupVersion,
		Kind:         "HorizontalPodAutoscaler", ListKind: "HorizontalPodAutoscalerList",
		AllowUnconditionalUpdate: true,
		Plural:                   "horizontalpodautoscalers", Singular: "horizontalpodautoscaler",
		ShortNames: []string{"hpa"},
		Categories: []string{"all"},
		Namespaced: true,
		New:        func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscaler{} },
		NewList:    func() runtime.Object { return &autoscalingv2.HorizontalPodAutoscalerList{} },
		HasStatus:  true,
		Generation: true,
		Default:    func(obj runtime.Object) { Default(obj.(*autoscalingv2.HorizontalPodAutoscaler)) },
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			registry.ResetStatus(obj)
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return Validate(obj.(*autoscalingv2.HorizontalPodAutoscaler))
		},
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList {
			return Validate(obj.(*autoscalingv2.HorizontalPodAutoscaler))
		},
		Columns: columns,
		Row: func(obj runtime.Object) ([]interface{}, error) {
			return Row(obj.(*autoscalingv2.HorizontalPodAutoscaler)), nil
		},
	}
}

// Default sets what kube-apiserver defaults on an autoscaling/v2 HPA.
func Default(h *autoscalingv2.HorizontalPodAutoscaler) {
	if h.Spec.MinReplicas == nil {
		one := int32(1)
		h.Spec.MinReplicas = &one
	}
	if len(h.Spec.Metrics) == 0 {
		u := int32(DefaultCPUUtilization)
		h.Spec.Metrics = []autoscalingv2.MetricSpec{{
			Type: autoscalingv2.ResourceMetricSourceType,
			Resource: &autoscalingv2.ResourceMetricSource{Name: corev1.ResourceCPU,
				Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &u}},
		}}
	}
	if b := h.Spec.Behavior; b != nil {
		b.ScaleUp = fillRules(b.ScaleUp, scaleUpRules())
		b.ScaleDown = fillRules(b.ScaleDown, scaleDownRules())
	}
}

func scaleUpRules() *autoscalingv2.HPAScalingRules {
	zero, max := int32(0), autoscalingv2.MaxChangePolicySelect
	return &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: &zero, SelectPolicy: &max,
		Policies: []autoscalingv2.HPAScalingPolicy{
			{Type: autoscalingv2.PodsScalingPolicy, Value: 4, PeriodSeconds: 15},
			{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15},
		}}
}

// scaleDownRules leave the stabilization window unset: the controller's
// flag decides it.
func scaleDownRules() *autoscalingv2.HPAScalingRules {
	max := autoscalingv2.MaxChangePolicySelect
	return &autoscalingv2.HPAScalingRules{SelectPolicy: &max,
		Policies: []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PercentScalingPolicy, Value: 100, PeriodSeconds: 15}}}
}

func fillRules(from, to *autoscalingv2.HPAScalingRules) *autoscalingv2.HPAScalingRules {
	if from == nil {
		return to
	}
	if from.SelectPolicy != nil {
		to.SelectPolicy = from.SelectPolicy
	}
	if from.StabilizationWindowSeconds != nil {
		to.StabilizationWindowSeconds = from.StabilizationWindowSeconds
	}
	if from.Policies != nil {
		to.Policies = from.Policies
	}
	if from.Tolerance != nil {
		to.Tolerance = from.Tolerance
	}
	return to
}

// Validate checks an autoscaling/v2 HPA as kube-apiserver does.
func Validate(h *autoscalingv2.HorizontalPodAutoscaler) field.ErrorList {
	spec := field.NewPath("spec")
	var errs field.ErrorList
	ref, rp := h.Spec.ScaleTargetRef, spec.Child("scaleTargetRef")
	for _, f := range []struct{ name, value string }{{"kind", ref.Kind}, {"name", ref.Name}} {
		if f.value == "" {
			errs = append(errs, field.Required(rp.Child(f.name), ""))
			continue
		}
		for _, msg := range path.IsValidPathSegmentName(f.value) {
			errs = append(errs, field.Invalid(rp.Child(f.name), f.value, msg))
		}
	}
	if m := h.Spec.MinReplicas; m != nil && *m < 1 {
		errs = append(errs, field.Invalid(spec.Child("minReplicas"), *m, "must be greater than or equal to 1"))
	}
	if h.Spec.MaxReplicas < 1 {
		errs = append(errs, field.Invalid(spec.Child("maxReplicas"), h.Spec.MaxReplicas, "must be greater than 0"))
	}
	if m := h.Spec.MinReplicas; m != nil && h.Spec.MaxReplicas < *m {
		errs = append(errs, field.Invalid(spec.Child("maxReplicas"), h.Spec.MaxReplicas, "must be greater than or equal to `minReplicas`"))
	}
	for i, m := range h.Spec.Metrics {
		errs = append(errs, validateMetric(&m, spec.Child("metrics").Index(i))...)
	}
	if b := h.Spec.Behavior; b != nil {
		bp := spec.Child("behavior")
		errs = append(errs, validateRules(b.ScaleUp, bp.Child("scaleUp"))...)
		errs = append(errs, validateRules(b.ScaleDown, bp.Child("scaleDown"))...)
	}
	return errs
}

func validateMetric(m *autoscalingv2.MetricSpec, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	var target *autoscalingv2.MetricTarget
	var sourceField string
	set := 0
	if m.Object != nil {
		set, target = set+1, &m.Object.Target
	}
	if m.Pods != nil {
		set, target = set+1, &m.Pods.Target
	}
	if m.Resource != nil {
		set, target = set+1, &m.Resource.Target
	}
	if m.ContainerResource != nil {
		set, target = set+1, &m.ContainerResource.Target
	}
	if m.External != nil {
		set, target = set+1, &m.External.Target
	}
	switch m.Type {
	case autoscalingv2.ObjectMetricSourceType:
		sourceField = "object"
		if m.Object == nil {
			target = nil
		}
	case autoscalingv2.PodsMetricSourceType:
		sourceField = "pods"
		if m.Pods == nil {
			target = nil
		}
	case autoscalingv2.ResourceMetricSourceType:
		sourceField = "resource"
		if m.Resource == nil {
			target = nil
		} else if m.Resource.Name == "" {
			errs = append(errs, field.Required(p.Child("resource", "name"), "must specify a resource name"))
		}
	case autoscalingv2.ContainerResourceMetricSourceType:
		sourceField = "containerResource"
		if m.ContainerResource == nil {
			target = nil
		} else if m.ContainerResource.Container == "" {
			errs = append(errs, field.Required(p.Child("containerResource", "container"), "must specify a container"))
		}
	case autoscalingv2.ExternalMetricSourceType:
		sourceField = "external"
		if m.External == nil {
			target = nil
		}
	case "":
		return append(errs, field.Required(p.Child("type"), "must specify a metric source type"))
	default:
		return append(errs, field.NotSupported(p.Child("type"), m.Type, []string{"ContainerResource", "External", "Object", "Pods", "Resource"}))
	}
	if target == nil {
		return append(errs, field.Required(p.Child(sourceField), "must populate information for the given metric source"))
	}
	if set > 1 {
		errs = append(errs, field.Forbidden(p, "must populate the given metric source only"))
	}
	tp := p.Child(sourceField, "target")
	switch target.Type {
	case autoscalingv2.UtilizationMetricType:
		if target.AverageUtilization == nil {
			errs = append(errs, field.Required(tp.Child("averageUtilization"), "must set either a target value or averageUtilization"))
		} else if *target.AverageUtilization < 1 {
			errs = append(errs, field.Invalid(tp.Child("averageUtilization"), *target.AverageUtilization, "must be greater than 0"))
		}
	case autoscalingv2.ValueMetricType:
		if target.Value == nil {
			errs = append(errs, field.Required(tp.Child("value"), "must set either a target value for metric or a per-pod target"))
		} else if target.Value.Sign() != 1 {
			errs = append(errs, field.Invalid(tp.Child("value"), target.Value.String(), "must be positive"))
		}
	case autoscalingv2.AverageValueMetricType:
		if target.AverageValue == nil {
			errs = append(errs, field.Required(tp.Child("averageValue"), "must set either a target value for metric or a per-pod target"))
		} else if target.AverageValue.Sign() != 1 {
			errs = append(errs, field.Invalid(tp.Child("averageValue"), target.AverageValue.String(), "must be positive"))
		}
	case "":
		errs = append(errs, field.Required(tp.Child("type"), "must specify a metric target type"))
	default:
		errs = append(errs, field.NotSupported(tp.Child("type"), target.Type, []string{"AverageValue", "Utilization", "Value"}))
	}
	return errs
}

func validateRules(r *autoscalingv2.HPAScalingRules, p *field.Path) field.ErrorList {
	if r == nil {
		return nil
	}
	var errs field.ErrorList
	if w := r.StabilizationWindowSeconds; w != nil {
		if *w < 0 {
			errs = append(errs, field.Invalid(p.Child("stabilizationWindowSeconds"), *w, "must be greater than or equal to zero"))
		} else if *w > 3600 {
			errs = append(errs, field.Invalid(p.Child("stabilizationWindowSeconds"), *w, "must be less than or equal to 3600"))
		}
	}
	if s := r.SelectPolicy; s != nil {
		switch *s {
		case autoscalingv2.MaxChangePolicySelect, autoscalingv2.MinChangePolicySelect, autoscalingv2.DisabledPolicySelect:
		default:
			errs = append(errs, field.NotSupported(p.Child("selectPolicy"), *s, []string{"Disabled", "Max", "Min"}))
		}
	}
	if len(r.Policies) == 0 {
		errs = append(errs, field.Required(p.Child("policies"), "must specify at least one Policy"))
	}
	for i, pol := range r.Policies {
		pp := p.Child("policies").Index(i)
		if pol.Type != autoscalingv2.PodsScalingPolicy && pol.Type != autoscalingv2.PercentScalingPolicy {
			errs = append(errs, field.NotSupported(pp.Child("type"), pol.Type, []string{"Percent", "Pods"}))
		}
		if pol.Value <= 0 {
			errs = append(errs, field.Invalid(pp.Child("value"), pol.Value, "must be greater than zero"))
		}
		if pol.PeriodSeconds <= 0 {
			errs = append(errs, field.Invalid(pp.Child("periodSeconds"), pol.PeriodSeconds, "must be greater than zero"))
		} else if pol.PeriodSeconds > 1800 {
			errs = append(errs, field.Invalid(pp.Child("periodSeconds"), pol.PeriodSeconds, "must be less than or equal to 1800"))
		}
	}
	return errs
}

// Row renders an HPA the way kubectl get hpa does.
func Row(h *autoscalingv2.HorizontalPodAutoscaler) []interface{} {
	minPods := "<unset>"
	if h.Spec.MinReplicas != nil {
		minPods = fmt.Sprintf("%d", *h.Spec.MinReplicas)
	}
	return []interface{}{h.Name, h.Spec.ScaleTargetRef.Kind + "/" + h.Spec.ScaleTargetRef.Name,
		formatMetrics(h.Spec.Metrics, h.Status.CurrentMetrics), minPods, int64(h.Spec.MaxReplicas),
		int64(h.Status.CurrentReplicas), registry.Age(h.CreationTimestamp)}
}

func formatMetrics(specs []autoscalingv2.MetricSpec, statuses []autoscalingv2.MetricStatus) string {
	if len(specs) == 0 {
		return "<none>"
	}
	var list []string
	for i, s := range specs {
		var st *autoscalingv2.MetricStatus
		if i < len(statuses) {
			st = &statuses[i]
		}
		list = append(list, formatMetric(s, st))
	}
	if len(list) > 2 {
		return fmt.Sprintf("%s + %d more...", strings.Join(list[:2], ", "), len(list)-2)
	}
	return strings.Join(list, ", ")
}

func formatMetric(s autoscalingv2.MetricSpec, st *autoscalingv2.MetricStatus) string {
	current := "<unknown>"
	utilization := func(target autoscalingv2.MetricTarget, cur *autoscalingv2.MetricValueStatus, name string) string {
		if target.AverageValue != nil {
			if cur != nil && cur.AverageValue != nil {
				current = cur.AverageValue.String()
			}
			return fmt.Sprintf("%s: %s/%s", name, current, target.AverageValue.String())
		}
		if cur != nil && cur.AverageUtilization != nil {
			current = fmt.Sprintf("%d%%", *cur.AverageUtilization)
		}
		want := "<auto>"
		if target.AverageUtilization != nil {
			want = fmt.Sprintf("%d%%", *target.AverageUtilization)
		}
		return fmt.Sprintf("%s: %s/%s", name, current, want)
	}
	valueOrAverage := func(target autoscalingv2.MetricTarget, cur *autoscalingv2.MetricValueStatus) string {
		if target.AverageValue != nil {
			if cur != nil && cur.AverageValue != nil {
				current = cur.AverageValue.String()
			}
			return fmt.Sprintf("%s/%s (avg)", current, target.AverageValue.String())
		}
		if cur != nil && cur.Value != nil {
			current = cur.Value.String()
		}
		want := "<unset>"
		if target.Value != nil {
			want = target.Value.String()
		}
		return fmt.Sprintf("%s/%s", current, want)
	}
	switch s.Type {
	case autoscalingv2.ResourceMetricSourceType:
		var cur *autoscalingv2.MetricValueStatus
		if st != nil && st.Resource != nil {
			cur = &st.Resource.Current
		}
		return utilization(s.Resource.Target, cur, s.Resource.Name.String())
	case autoscalingv2.ContainerResourceMetricSourceType:
		var cur *autoscalingv2.MetricValueStatus
		if st != nil && st.ContainerResource != nil {
			cur = &st.ContainerResource.Current
		}
		return utilization(s.ContainerResource.Target, cur, s.ContainerResource.Name.String())
	case autoscalingv2.PodsMetricSourceType:
		if st != nil && st.Pods != nil && st.Pods.Current.AverageValue != nil {
			current = st.Pods.Current.AverageValue.String()
		}
		want := "<unset>"
		if s.Pods.Target.AverageValue != nil {
			want = s.Pods.Target.AverageValue.String()
		}
		return fmt.Sprintf("%s/%s", current, want)
	case autoscalingv2.ObjectMetricSourceType:
		var cur *autoscalingv2.MetricValueStatus
		if st != nil && st.Object != nil {
			cur = &st.Object.Current
		}
		return valueOrAverage(s.Object.Target, cur)
	case autoscalingv2.ExternalMetricSourceType:
		var cur *autoscalingv2.MetricValueStatus
		if st != nil && st.External != nil {
			cur = &st.External.Current
		}
		return valueOrAverage(s.External.Target, cur)
	}
	return "<unknown type>"
}
