package horizontalpodautoscaler

import (
	"testing"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func seed() *autoscalingv2.HorizontalPodAutoscaler {
	return &autoscalingv2.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: autoscalingv2.HorizontalPodAutoscalerSpec{
			ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"},
			MaxReplicas:    5,
		},
	}
}

func TestDefaults(t *testing.T) {
	h := seed()
	Default(h)
	m := h.Spec.Metrics
	if *h.Spec.MinReplicas != 1 || len(m) != 1 || m[0].Resource.Name != corev1.ResourceCPU || *m[0].Resource.Target.AverageUtilization != 80 || h.Spec.Behavior != nil {
		t.Errorf("spec %+v", h.Spec)
	}
	b := seed()
	w := int32(60)
	b.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleDown: &autoscalingv2.HPAScalingRules{StabilizationWindowSeconds: &w}}
	Default(b)
	up, down := b.Spec.Behavior.ScaleUp, b.Spec.Behavior.ScaleDown
	if *up.StabilizationWindowSeconds != 0 || len(up.Policies) != 2 || *up.SelectPolicy != autoscalingv2.MaxChangePolicySelect ||
		*down.StabilizationWindowSeconds != 60 || len(down.Policies) != 1 || down.Policies[0].Value != 100 {
		t.Errorf("behavior up %+v down %+v", up, down)
	}
}

func TestValidation(t *testing.T) {
	i32 := func(v int32) *int32 { return &v }
	for _, tc := range []struct {
		name string
		mod  func(*autoscalingv2.HorizontalPodAutoscaler)
		want []string
	}{
		{"seed", func(*autoscalingv2.HorizontalPodAutoscaler) {}, nil},
		{"no kind", func(h *autoscalingv2.HorizontalPodAutoscaler) { h.Spec.ScaleTargetRef.Kind = "" }, []string{"spec.scaleTargetRef.kind: Required value"}},
		{"min zero", func(h *autoscalingv2.HorizontalPodAutoscaler) { h.Spec.MinReplicas = i32(0) },
			[]string{"spec.minReplicas: Invalid value: 0: must be greater than or equal to 1"}},
		{"max below min", func(h *autoscalingv2.HorizontalPodAutoscaler) { h.Spec.MinReplicas = i32(6) },
			[]string{"spec.maxReplicas: Invalid value: 5: must be greater than or equal to `minReplicas`"}},
		{"metric without source", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: autoscalingv2.PodsMetricSourceType}}
		}, []string{"spec.metrics[0].pods: Required value"}},
		{"unknown metric type", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: "Magic"}}
		}, []string{"spec.metrics[0].type: Unsupported value"}},
		{"utilization without value", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Metrics = []autoscalingv2.MetricSpec{{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{
				Name: corev1.ResourceMemory, Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType}}}}
		}, []string{"spec.metrics[0].resource.target.averageUtilization: Required value"}},
		{"bad policy period", func(h *autoscalingv2.HorizontalPodAutoscaler) {
			h.Spec.Behavior = &autoscalingv2.HorizontalPodAutoscalerBehavior{ScaleUp: &autoscalingv2.HPAScalingRules{
				Policies: []autoscalingv2.HPAScalingPolicy{{Type: autoscalingv2.PodsScalingPolicy, Value: 1, PeriodSeconds: 3600}}}}
		}, []string{"spec.behavior.scaleUp.policies[0].periodSeconds: Invalid value: 3600: must be less than or equal to 1800"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := seed()
			tc.mod(h)
			Default(h)
			registrytest.Errors(t, Validate(h), tc.want...)
		})
	}
}

func TestV1RoundTrip(t *testing.T) {
	h := seed()
	u := int32(70)
	h.Spec.Metrics = []autoscalingv2.MetricSpec{
		{Type: autoscalingv2.ResourceMetricSourceType, Resource: &autoscalingv2.ResourceMetricSource{Name: corev1.ResourceCPU,
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.UtilizationMetricType, AverageUtilization: &u}}},
		{Type: autoscalingv2.PodsMetricSourceType, Pods: &autoscalingv2.PodsMetricSource{Metric: autoscalingv2.MetricIdentifier{Name: "qps"},
			Target: autoscalingv2.MetricTarget{Type: autoscalingv2.AverageValueMetricType, AverageValue: resource.NewQuantity(10, resource.DecimalSI)}}},
	}
	Default(h)
	h.Status.Conditions = []autoscalingv2.HorizontalPodAutoscalerCondition{{Type: autoscalingv2.AbleToScale, Status: corev1.ConditionTrue}}
	v1 := FromV2(h)
	if *v1.Spec.TargetCPUUtilizationPercentage != 70 || v1.Annotations[metricsAnnotation] == "" || v1.Annotations[conditionsAnnotation] == "" {
		t.Fatalf("v1 %+v", v1)
	}
	back := ToV2(v1)
	if !apiequality.Semantic.DeepEqual(back, h) {
		t.Errorf("round trip changed the object:\n%+v\n%+v", back, h)
	}
	// A v1 object alone becomes a v2 object with its CPU target.
	plain := ToV2(&autoscalingv1.HorizontalPodAutoscaler{Spec: autoscalingv1.HorizontalPodAutoscalerSpec{MaxReplicas: 2, TargetCPUUtilizationPercentage: &u}})
	if len(plain.Spec.Metrics) != 1 || plain.Annotations != nil {
		t.Errorf("converted %+v", plain)
	}
}

func TestRow(t *testing.T) {
	h := seed()
	Default(h)
	cur := int32(42)
	h.Status.CurrentMetrics = []autoscalingv2.MetricStatus{{Type: autoscalingv2.ResourceMetricSourceType,
		Resource: &autoscalingv2.ResourceMetricStatus{Name: corev1.ResourceCPU, Current: autoscalingv2.MetricValueStatus{AverageUtilization: &cur}}}}
	row := Row(h)
	if row[1] != "Deployment/web" || row[2] != "cpu: 42%/80%" || row[3] != "1" || row[4] != int64(5) {
		t.Errorf("row %v", row)
	}
}
