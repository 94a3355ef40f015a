package priorityclass

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func TestDefaultsAndValidation(t *testing.T) {
	r := Resource()
	never := corev1.PreemptNever
	odd := corev1.PreemptionPolicy("Sometimes")
	for _, tc := range []struct {
		name string
		pc   schedulingv1.PriorityClass
		want []string
	}{
		{"user", schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "high"}, Value: 1000}, nil},
		{"system", schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "system-node-critical"}, Value: 2000001000}, nil},
		{"system cluster", schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "system-cluster-critical"}, Value: 2000000000}, nil},
		{"system name, another value", schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "system-cluster-critical"}, Value: 5},
			[]string{"metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only"}},
		{"never preempts", schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "batch"}, Value: 1, PreemptionPolicy: &never}, nil},
		{"too high", schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "huge"}, Value: 2000000000},
			[]string{"value: Forbidden: maximum allowed value of a user defined priority is 1000000000"}},
		{"reserved name", schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "system-mine"}, Value: 1},
			[]string{"metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only"}},
		{"bad policy", schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "x"}, PreemptionPolicy: &odd},
			[]string{"preemptionPolicy: Unsupported value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := tc.pc.DeepCopy()
			r.Default(pc)
			if pc.PreemptionPolicy == nil {
				t.Fatal("preemptionPolicy not defaulted")
			}
			registrytest.Errors(t, r.Validate(pc), tc.want...)
		})
	}
	old := &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "high"}, Value: 10}
	r.Default(old)
	n := old.DeepCopy()
	n.Value, n.Description = 20, "changed"
	registrytest.Errors(t, r.ValidateUpdate(n, old), "value: Forbidden: may not be changed in an update.")
}
