package role

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry/registrytest"
)

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name       string
		rule       rbacv1.PolicyRule
		namespaced bool
		want       []string
	}{
		{"pods", rbacv1.PolicyRule{Verbs: []string{"get", "list"}, APIGroups: []string{""}, Resources: []string{"pods"}}, true, nil},
		{"cluster urls", rbacv1.PolicyRule{Verbs: []string{"get"}, NonResourceURLs: []string{"/healthz"}}, false, nil},
		{"no verbs", rbacv1.PolicyRule{APIGroups: []string{""}, Resources: []string{"pods"}}, true,
			[]string{"rules[0].verbs: Required value: verbs must contain at least one value"}},
		{"no groups", rbacv1.PolicyRule{Verbs: []string{"get"}, Resources: []string{"pods"}}, true,
			[]string{"rules[0].apiGroups: Required value: resource rules must supply at least one api group"}},
		{"no resources", rbacv1.PolicyRule{Verbs: []string{"get"}, APIGroups: []string{""}}, true,
			[]string{"rules[0].resources: Required value: resource rules must supply at least one resource"}},
		{"namespaced urls", rbacv1.PolicyRule{Verbs: []string{"get"}, NonResourceURLs: []string{"/metrics"}}, true,
			[]string{"rules[0].nonResourceURLs: Invalid value: [\"/metrics\"]: namespaced rules cannot apply to non-resource URLs"}},
		{"urls and resources", rbacv1.PolicyRule{Verbs: []string{"get"}, NonResourceURLs: []string{"/x"}, Resources: []string{"pods"}}, false,
			[]string{"rules[0].nonResourceURLs: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			registrytest.Errors(t, ValidateRules([]rbacv1.PolicyRule{tc.rule}, tc.namespaced, field.NewPath("rules")), tc.want...)
		})
	}
	r := Resource()
	if msgs := r.NameValidation("a/b", false); len(msgs) == 0 {
		t.Error("a/b accepted as a role name")
	}
	if msgs := r.NameValidation("system:controller:x", false); len(msgs) != 0 {
		t.Errorf("system:controller:x refused: %v", msgs)
	}
	registrytest.Errors(t, r.Validate(&rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "r"}}))
}
