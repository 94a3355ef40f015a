package statefulset

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func seed() *appsv1.StatefulSet {
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: "nginx-headless",
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "nginx"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "nginx"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:alpine"}}},
			},
		},
	}
}

func TestDefaults(t *testing.T) {
	s := seed()
	Default(s)
	sp := s.Spec
	switch {
	case *sp.Replicas != 1:
		t.Errorf("replicas %d", *sp.Replicas)
	case sp.PodManagementPolicy != appsv1.OrderedReadyPodManagement:
		t.Errorf("podManagementPolicy %q", sp.PodManagementPolicy)
	case sp.UpdateStrategy.Type != appsv1.RollingUpdateStatefulSetStrategyType || *sp.UpdateStrategy.RollingUpdate.Partition != 0:
		t.Errorf("updateStrategy %+v", sp.UpdateStrategy)
	case *sp.RevisionHistoryLimit != 10:
		t.Errorf("revisionHistoryLimit %d", *sp.RevisionHistoryLimit)
	case sp.PersistentVolumeClaimRetentionPolicy.WhenDeleted != appsv1.RetainPersistentVolumeClaimRetentionPolicyType ||
		sp.PersistentVolumeClaimRetentionPolicy.WhenScaled != appsv1.RetainPersistentVolumeClaimRetentionPolicyType:
		t.Errorf("retention %+v", sp.PersistentVolumeClaimRetentionPolicy)
	case sp.Template.Spec.RestartPolicy != corev1.RestartPolicyAlways || sp.Template.Spec.DNSPolicy != corev1.DNSClusterFirst:
		t.Errorf("pod template defaults %+v", sp.Template.Spec)
	}
}

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*appsv1.StatefulSet)
		want []string
	}{
		{"seed", func(*appsv1.StatefulSet) {}, nil},
		{"no selector", func(s *appsv1.StatefulSet) { s.Spec.Selector = nil }, []string{"spec.selector: Required value"}},
		{"selector does not match", func(s *appsv1.StatefulSet) { s.Spec.Template.Labels = map[string]string{"app": "other"} },
			[]string{"spec.template.metadata.labels: Invalid value"}},
		{"negative replicas", func(s *appsv1.StatefulSet) { r := int32(-1); s.Spec.Replicas = &r }, []string{"spec.replicas: Invalid value"}},
		{"bad policy", func(s *appsv1.StatefulSet) { s.Spec.PodManagementPolicy = "Random" }, []string{"spec.podManagementPolicy: Invalid value"}},
		{"restartPolicy Never", func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyNever },
			[]string{"spec.template.spec.restartPolicy: Unsupported value"}},
		{"no containers", func(s *appsv1.StatefulSet) { s.Spec.Template.Spec.Containers = nil }, []string{"spec.template.spec.containers: Required value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := seed()
			tc.mod(s)
			Default(s)
			errs := Validate(s)
			if len(errs) != len(tc.want) {
				t.Fatalf("got %v, want %v", errs, tc.want)
			}
			for i, e := range errs {
				if !strings.HasPrefix(e.Error(), tc.want[i]) {
					t.Errorf("error %d = %q, want prefix %q", i, e.Error(), tc.want[i])
				}
			}
		})
	}
}

func TestImmutableFields(t *testing.T) {
	old := seed()
	Default(old)
	r := Resource()
	scaled := old.DeepCopy()
	five := int32(5)
	scaled.Spec.Replicas = &five
	if errs := r.ValidateUpdate(scaled, old); len(errs) != 0 {
		t.Fatalf("scaling refused: %v", errs)
	}
	renamed := old.DeepCopy()
	renamed.Spec.ServiceName = "other"
	if errs := r.ValidateUpdate(renamed, old); len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "spec: Forbidden: updates to statefulset spec for fields other than") {
		t.Fatalf("serviceName change: %v", errs)
	}
}
