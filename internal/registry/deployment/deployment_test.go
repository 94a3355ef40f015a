package deployment

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/headway/headway/internal/registry/registrytest"
)

func seed() *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:1.27"}}},
			},
		},
	}
}

func TestDefaults(t *testing.T) {
	d := seed()
	Default(d)
	s := d.Spec
	ru := s.Strategy.RollingUpdate
	switch {
	case *s.Replicas != 1, *s.RevisionHistoryLimit != 10, *s.ProgressDeadlineSeconds != 600:
		t.Errorf("replicas/history/deadline %d/%d/%d", *s.Replicas, *s.RevisionHistoryLimit, *s.ProgressDeadlineSeconds)
	case s.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType || ru.MaxSurge.String() != "25%" || ru.MaxUnavailable.String() != "25%":
		t.Errorf("strategy %+v", s.Strategy)
	case s.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways || s.Template.Spec.Containers[0].ImagePullPolicy != corev1.PullIfNotPresent:
		t.Errorf("pod template defaults %+v", s.Template.Spec)
	}
	r := seed()
	r.Spec.Strategy.Type = appsv1.RecreateDeploymentStrategyType
	Default(r)
	if r.Spec.Strategy.RollingUpdate != nil {
		t.Errorf("Recreate got rollingUpdate %+v", r.Spec.Strategy.RollingUpdate)
	}
}

func TestValidation(t *testing.T) {
	zero, tooMuch, bad := intstr.FromInt32(0), intstr.FromString("120%"), intstr.FromString("half")
	for _, tc := range []struct {
		name string
		mod  func(*appsv1.Deployment)
		want []string
	}{
		{"seed", func(*appsv1.Deployment) {}, nil},
		{"negative replicas", func(d *appsv1.Deployment) { r := int32(-1); d.Spec.Replicas = &r }, []string{"spec.replicas: Invalid value"}},
		{"no selector", func(d *appsv1.Deployment) { d.Spec.Selector = nil }, []string{"spec.selector: Required value"}},
		{"empty selector", func(d *appsv1.Deployment) { d.Spec.Selector = &metav1.LabelSelector{} },
			[]string{"spec.selector: Invalid value: {}: empty selector is invalid for deployment"}},
		{"selector does not match", func(d *appsv1.Deployment) { d.Spec.Template.Labels = map[string]string{"app": "db"} },
			[]string{"spec.template.metadata.labels: Invalid value"}},
		{"restartPolicy Never", func(d *appsv1.Deployment) { d.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever },
			[]string{"spec.template.spec.restartPolicy: Unsupported value"}},
		{"no containers", func(d *appsv1.Deployment) { d.Spec.Template.Spec.Containers = nil },
			[]string{"spec.template.spec.containers: Required value"}},
		{"unknown strategy", func(d *appsv1.Deployment) { d.Spec.Strategy.Type = "BlueGreen" },
			[]string{"spec.strategy.type: Unsupported value"}},
		{"recreate with rolling update", func(d *appsv1.Deployment) {
			d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType, RollingUpdate: &appsv1.RollingUpdateDeployment{}}
		}, []string{"spec.strategy.rollingUpdate: Forbidden"}},
		{"surge and unavailable zero", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: &zero, MaxUnavailable: &zero}
		}, []string{"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"0\": may not be 0 when `maxSurge` is 0"}},
		{"unavailable above 100%", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxUnavailable: &tooMuch}
		}, []string{"spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"120%\": must not be greater than 100%"}},
		{"surge not a percentage", func(d *appsv1.Deployment) {
			d.Spec.Strategy.RollingUpdate = &appsv1.RollingUpdateDeployment{MaxSurge: &bad}
		}, []string{"spec.strategy.rollingUpdate.maxSurge: Invalid value: \"half\": must be an integer or percentage"}},
		{"deadline not above minReady", func(d *appsv1.Deployment) {
			p := int32(5)
			d.Spec.ProgressDeadlineSeconds, d.Spec.MinReadySeconds = &p, 5
		}, []string{"spec.progressDeadlineSeconds: Invalid value: 5: must be greater than minReadySeconds"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := seed()
			tc.mod(d)
			Default(d)
			registrytest.Errors(t, Validate(d), tc.want...)
		})
	}
}

func TestUpdate(t *testing.T) {
	old := seed()
	Default(old)
	r := Resource()
	scaled := old.DeepCopy()
	five := int32(5)
	scaled.Spec.Replicas = &five
	registrytest.Errors(t, r.ValidateUpdate(scaled, old))
	moved := old.DeepCopy()
	moved.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web", "tier": "x"}}
	moved.Spec.Template.Labels["tier"] = "x"
	registrytest.Errors(t, r.ValidateUpdate(moved, old), "spec.selector: Invalid value")
	if errs := r.ValidateUpdate(moved, old); errs[0].Detail != "field is immutable" {
		t.Errorf("detail %q", errs[0].Detail)
	}
}

func TestRow(t *testing.T) {
	d := seed()
	Default(d)
	d.Status = appsv1.DeploymentStatus{ReadyReplicas: 1, UpdatedReplicas: 1, AvailableReplicas: 1}
	row, _ := Resource().Row(d)
	if row[1] != "1/1" || row[2] != int64(1) || row[5] != "nginx" || row[6] != "nginx:1.27" || row[7] != "app=web" {
		t.Errorf("row %v", row)
	}
}
