package replicaset

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func seed() *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f"},
		Spec: appsv1.ReplicaSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx"}}},
			},
		},
	}
}

func TestDefaults(t *testing.T) {
	rs := seed()
	Default(rs)
	if *rs.Spec.Replicas != 1 || rs.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways ||
		rs.Spec.Template.Spec.Containers[0].ImagePullPolicy != corev1.PullAlways {
		t.Errorf("defaults %+v", rs.Spec)
	}
}

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*appsv1.ReplicaSet)
		want []string
	}{
		{"seed", func(*appsv1.ReplicaSet) {}, nil},
		{"negative replicas", func(rs *appsv1.ReplicaSet) { r := int32(-2); rs.Spec.Replicas = &r }, []string{"spec.replicas: Invalid value"}},
		{"negative minReadySeconds", func(rs *appsv1.ReplicaSet) { rs.Spec.MinReadySeconds = -1 }, []string{"spec.minReadySeconds: Invalid value"}},
		{"no selector", func(rs *appsv1.ReplicaSet) { rs.Spec.Selector = nil }, []string{"spec.selector: Required value"}},
		{"selector does not match", func(rs *appsv1.ReplicaSet) { rs.Spec.Template.Labels = nil },
			[]string{"spec.template.metadata.labels: Invalid value"}},
		{"active deadline", func(rs *appsv1.ReplicaSet) { s := int64(5); rs.Spec.Template.Spec.ActiveDeadlineSeconds = &s },
			[]string{"spec.template.spec.activeDeadlineSeconds: Forbidden"}},
		{"bad label", func(rs *appsv1.ReplicaSet) { rs.Spec.Template.Labels["bad key!"] = "x" },
			[]string{"spec.template.metadata.labels: Invalid value: \"bad key!\""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs := seed()
			tc.mod(rs)
			Default(rs)
			registrytest.Errors(t, Validate(rs), tc.want...)
		})
	}
	old := seed()
	Default(old)
	moved := old.DeepCopy()
	moved.Spec.Selector.MatchExpressions = []metav1.LabelSelectorRequirement{{Key: "app", Operator: metav1.LabelSelectorOpExists}}
	registrytest.Errors(t, Resource().ValidateUpdate(moved, old), "spec.selector: Invalid value")
}
