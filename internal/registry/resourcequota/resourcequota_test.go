package resourcequota

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func quota(hard map[string]string) *corev1.ResourceQuota {
	q := &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "q"}, Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{}}}
	for k, v := range hard {
		q.Spec.Hard[corev1.ResourceName(k)] = resource.MustParse(v)
	}
	return q
}

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		q    *corev1.ResourceQuota
		want []string
	}{
		{"standard", quota(map[string]string{"pods": "10", "requests.cpu": "2", "limits.memory": "1Gi", "count/deployments.apps": "5"}), nil},
		{"extended", quota(map[string]string{"requests.nvidia.com/gpu": "1"}), nil},
		{"unknown name", quota(map[string]string{"widgets": "1"}), []string{"spec.hard[widgets]: Invalid value: \"widgets\": must be a standard resource for quota"}},
		{"negative", quota(map[string]string{"cpu": "-1"}), []string{"spec.hard[cpu]: Invalid value: \"-1\": must be greater than or equal to 0"}},
		{"fractional pods", quota(map[string]string{"pods": "1500m"}), []string{"spec.hard[pods]: Invalid value: \"1500m\": must be an integer"}},
		{"bad scope", func() *corev1.ResourceQuota {
			q := quota(nil)
			q.Spec.Scopes = []corev1.ResourceQuotaScope{"Sometimes"}
			return q
		}(), []string{"spec.scopes[0]: Unsupported value"}},
	} {
		t.Run(tc.name, func(t *testing.T) { registrytest.Errors(t, Validate(tc.q), tc.want...) })
	}
	old := quota(nil)
	scoped := old.DeepCopy()
	scoped.Spec.Scopes = []corev1.ResourceQuotaScope{corev1.ResourceQuotaScopeBestEffort}
	registrytest.Errors(t, Resource().ValidateUpdate(scoped, old), "spec.scopes: Invalid value")
}

func TestUsage(t *testing.T) {
	q := quota(nil)
	q.Status.Hard = corev1.ResourceList{"pods": resource.MustParse("10"), "requests.cpu": resource.MustParse("2"), "limits.cpu": resource.MustParse("4")}
	q.Status.Used = corev1.ResourceList{"pods": resource.MustParse("3")}
	req, lim := Usage(q)
	if req != "pods: 3/10, requests.cpu: 0/2" || lim != "limits.cpu: 0/4" {
		t.Errorf("request %q, limit %q", req, lim)
	}
}
