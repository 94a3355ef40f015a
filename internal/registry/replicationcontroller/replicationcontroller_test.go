package replicationcontroller

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func seed() *corev1.ReplicationController {
	return &corev1.ReplicationController{
		ObjectMeta: metav1.ObjectMeta{Name: "legacy"},
		Spec: corev1.ReplicationControllerSpec{Template: &corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "legacy"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
		}},
	}
}

func TestDefaults(t *testing.T) {
	rc := seed()
	Default(rc)
	if *rc.Spec.Replicas != 1 || rc.Spec.Selector["app"] != "legacy" || rc.Labels["app"] != "legacy" ||
		rc.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		t.Errorf("defaults %+v %+v", rc.ObjectMeta, rc.Spec)
	}
	own := seed()
	own.Labels = map[string]string{"team": "a"}
	own.Spec.Selector = map[string]string{"app": "legacy"}
	Default(own)
	if len(own.Labels) != 1 || own.Labels["team"] != "a" {
		t.Errorf("labels %v", own.Labels)
	}
}

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*corev1.ReplicationController)
		want []string
	}{
		{"seed", func(*corev1.ReplicationController) {}, nil},
		{"no template", func(rc *corev1.ReplicationController) { rc.Spec.Template = nil }, []string{"spec.selector: Required value", "spec.template: Required value"}},
		{"selector does not match", func(rc *corev1.ReplicationController) { rc.Spec.Selector = map[string]string{"app": "other"} },
			[]string{"spec.template.metadata.labels: Invalid value"}},
		{"negative replicas", func(rc *corev1.ReplicationController) { r := int32(-1); rc.Spec.Replicas = &r },
			[]string{"spec.replicas: Invalid value"}},
		{"restartPolicy Never", func(rc *corev1.ReplicationController) {
			rc.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever
		},
			[]string{"spec.template.spec.restartPolicy: Unsupported value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc := seed()
			tc.mod(rc)
			Default(rc)
			registrytest.Errors(t, Validate(rc), tc.want...)
		})
	}
}
