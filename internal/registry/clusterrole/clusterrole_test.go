package clusterrole

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func TestValidation(t *testing.T) {
	registrytest.Errors(t, Validate(&rbacv1.ClusterRole{Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, NonResourceURLs: []string{"/healthz"}}}}))
	registrytest.Errors(t, Validate(&rbacv1.ClusterRole{AggregationRule: &rbacv1.AggregationRule{}}),
		"aggregationRule.clusterRoleSelectors: Required value")
	registrytest.Errors(t, Validate(&rbacv1.ClusterRole{AggregationRule: &rbacv1.AggregationRule{
		ClusterRoleSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"rbac.example.com/aggregate-to-view": "true"}}}}}))
}
