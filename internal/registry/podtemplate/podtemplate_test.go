package podtemplate

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func seed() *corev1.PodTemplate {
	return &corev1.PodTemplate{
		ObjectMeta: metav1.ObjectMeta{Name: "tmpl"},
		Template: corev1.PodTemplateSpec{
			ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "t"}},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
		},
	}
}

func TestDefaultsAndValidation(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name string
		mod  func(*corev1.PodTemplate)
		want []string
	}{
		{"seed", func(*corev1.PodTemplate) {}, nil},
		{"restartPolicy Never is fine", func(p *corev1.PodTemplate) { p.Template.Spec.RestartPolicy = corev1.RestartPolicyNever }, nil},
		{"bad restartPolicy", func(p *corev1.PodTemplate) { p.Template.Spec.RestartPolicy = "Sometimes" },
			[]string{"template.spec.restartPolicy: Unsupported value"}},
		{"bad dnsPolicy", func(p *corev1.PodTemplate) { p.Template.Spec.DNSPolicy = "Google" }, []string{"template.spec.dnsPolicy: Unsupported value"}},
		{"no image", func(p *corev1.PodTemplate) { p.Template.Spec.Containers[0].Image = "" },
			[]string{"template.spec.containers[0].image: Required value"}},
		{"bad annotation", func(p *corev1.PodTemplate) { p.Template.Annotations = map[string]string{"a b": "c"} },
			[]string{"template.metadata.annotations: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := seed()
			tc.mod(p)
			r.Default(p)
			if p.Template.Spec.DNSPolicy == "" || p.Template.Spec.Containers[0].TerminationMessagePath == "" {
				t.Errorf("pod defaults missing: %+v", p.Template.Spec)
			}
			registrytest.Errors(t, r.Validate(p), tc.want...)
		})
	}
}
