package statefulset

import (
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
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

// TestDefaultsTable: the update strategy, the pod template and the volume
// claim templates as kube-apiserver stores them (pkg/apis/apps/v1 and core
// v1 defaults; the template gets the pod spec defaults, not the Pod-only
// ones).
func TestDefaultsTable(t *testing.T) {
	ru := func(partition int32) *appsv1.RollingUpdateStatefulSetStrategy {
		return &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To(partition), MaxUnavailable: ptr.To(intstr.FromInt32(1))}
	}
	for _, tc := range []struct {
		name string
		in   func(*appsv1.StatefulSet)
		got  func(*appsv1.StatefulSet) any
		want any
	}{
		{"no update strategy", func(*appsv1.StatefulSet) {},
			func(s *appsv1.StatefulSet) any { return s.Spec.UpdateStrategy },
			appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType, RollingUpdate: ru(0)}},
		{"RollingUpdate without rollingUpdate stays so",
			func(s *appsv1.StatefulSet) { s.Spec.UpdateStrategy.Type = appsv1.RollingUpdateStatefulSetStrategyType },
			func(s *appsv1.StatefulSet) any { return s.Spec.UpdateStrategy },
			appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType}},
		{"partition given",
			func(s *appsv1.StatefulSet) {
				s.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType,
					RollingUpdate: &appsv1.RollingUpdateStatefulSetStrategy{Partition: ptr.To[int32](2)}}
			},
			func(s *appsv1.StatefulSet) any { return s.Spec.UpdateStrategy.RollingUpdate },
			ru(2)},
		{"OnDelete",
			func(s *appsv1.StatefulSet) { s.Spec.UpdateStrategy.Type = appsv1.OnDeleteStatefulSetStrategyType },
			func(s *appsv1.StatefulSet) any { return s.Spec.UpdateStrategy },
			appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}},
		{"template probe and container defaults",
			func(s *appsv1.StatefulSet) {
				s.Spec.Template.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http")}}}
			},
			func(s *appsv1.StatefulSet) any {
				c := s.Spec.Template.Spec.Containers[0]
				return []any{c.ReadinessProbe, c.ImagePullPolicy, c.TerminationMessagePath, c.TerminationMessagePolicy, s.Spec.Template.Spec.SchedulerName, s.Spec.Template.Spec.SecurityContext}
			},
			[]any{&corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/ready", Port: intstr.FromString("http"), Scheme: corev1.URISchemeHTTP}},
				TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3},
				corev1.PullIfNotPresent, "/dev/termination-log", corev1.TerminationMessageReadFile, "default-scheduler", &corev1.PodSecurityContext{}}},
		{"template without Pod-only defaults", func(*appsv1.StatefulSet) {},
			func(s *appsv1.StatefulSet) any {
				t := s.Spec.Template.Spec
				return []any{t.EnableServiceLinks, t.ServiceAccountName, t.Tolerations}
			},
			[]any{(*bool)(nil), "", []corev1.Toleration(nil)}},
		{"volume claim templates",
			func(s *appsv1.StatefulSet) {
				s.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "data"}, Spec: corev1.PersistentVolumeClaimSpec{
					AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
					Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
				}}}
			},
			func(s *appsv1.StatefulSet) any {
				c := s.Spec.VolumeClaimTemplates[0]
				return []any{c.Spec.VolumeMode, c.Status.Phase}
			},
			[]any{ptr.To(corev1.PersistentVolumeFilesystem), corev1.ClaimPending}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := seed()
			tc.in(s)
			Default(s)
			if got := tc.got(s); !apiequality.Semantic.DeepEqual(got, tc.want) {
				t.Errorf("got  %#v\nwant %#v", got, tc.want)
			}
		})
	}
}
