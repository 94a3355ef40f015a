package daemonset

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/headway/headway/internal/registry/registrytest"
)

func seed() *appsv1.DaemonSet {
	return &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent"},
		Spec: appsv1.DaemonSetSpec{
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "a", Image: "busybox:1.36"}}},
			},
		},
	}
}

func TestDefaults(t *testing.T) {
	ds := seed()
	Default(ds)
	us := ds.Spec.UpdateStrategy
	if us.Type != appsv1.RollingUpdateDaemonSetStrategyType || us.RollingUpdate.MaxUnavailable.String() != "1" ||
		us.RollingUpdate.MaxSurge.String() != "0" || *ds.Spec.RevisionHistoryLimit != 10 {
		t.Errorf("defaults %+v", ds.Spec)
	}
	od := seed()
	od.Spec.UpdateStrategy.Type = appsv1.OnDeleteDaemonSetStrategyType
	Default(od)
	if od.Spec.UpdateStrategy.RollingUpdate != nil {
		t.Errorf("OnDelete got rollingUpdate")
	}
}

func TestValidation(t *testing.T) {
	zero := intstr.FromInt32(0)
	for _, tc := range []struct {
		name string
		mod  func(*appsv1.DaemonSet)
		want []string
	}{
		{"seed", func(*appsv1.DaemonSet) {}, nil},
		{"empty selector", func(ds *appsv1.DaemonSet) { ds.Spec.Selector = &metav1.LabelSelector{} },
			[]string{"spec.selector: Invalid value: {}: empty selector is invalid for daemonset"}},
		{"selector does not match", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Labels = map[string]string{"app": "x"} },
			[]string{"spec.template.metadata.labels: Invalid value"}},
		{"bad strategy", func(ds *appsv1.DaemonSet) { ds.Spec.UpdateStrategy.Type = "Always" },
			[]string{"spec.updateStrategy.type: Unsupported value: \"Always\""}},
		{"nothing can move", func(ds *appsv1.DaemonSet) {
			ds.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &zero, MaxSurge: &zero}
		}, []string{"spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value"}},
		{"restartPolicy OnFailure", func(ds *appsv1.DaemonSet) { ds.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyOnFailure },
			[]string{"spec.template.spec.restartPolicy: Unsupported value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ds := seed()
			tc.mod(ds)
			Default(ds)
			registrytest.Errors(t, Validate(ds), tc.want...)
		})
	}
}

func TestRow(t *testing.T) {
	ds := seed()
	ds.Spec.Template.Spec.NodeSelector = map[string]string{"kubernetes.io/os": "linux"}
	ds.Status = appsv1.DaemonSetStatus{DesiredNumberScheduled: 2, NumberReady: 1}
	row, _ := Resource().Row(ds)
	if row[1] != int64(2) || row[3] != int64(1) || row[6] != "kubernetes.io/os=linux" || row[10] != "app=agent" {
		t.Errorf("row %v", row)
	}
}
