package clusterroleaggregation

import (
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func cr(name string, labels map[string]string, rules ...rbacv1.PolicyRule) *rbacv1.ClusterRole {
	return &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}, Rules: rules}
}

func r(verb, resource string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{Verbs: []string{verb}, APIGroups: []string{""}, Resources: []string{resource}}
}

func TestAggregate(t *testing.T) {
	sel := func(k string) metav1.LabelSelector {
		return metav1.LabelSelector{MatchLabels: map[string]string{k: "true"}}
	}
	view := cr("view", map[string]string{"to-edit": "true"})
	view.AggregationRule = &rbacv1.AggregationRule{ClusterRoleSelectors: []metav1.LabelSelector{sel("to-view")}}
	edit := cr("edit", nil, r("stale", "x"))
	edit.AggregationRule = &rbacv1.AggregationRule{ClusterRoleSelectors: []metav1.LabelSelector{sel("to-edit"), sel("also")}}
	view.Rules = []rbacv1.PolicyRule{r("get", "pods")}
	all := []*rbacv1.ClusterRole{
		edit, view,
		cr("z-edit", map[string]string{"to-edit": "true"}, r("create", "pods"), r("get", "pods")),
		cr("a-also", map[string]string{"also": "true"}, r("delete", "pods")),
		cr("unrelated", map[string]string{"other": "true"}, r("*", "*")),
	}
	for _, tc := range []struct {
		name string
		role *rbacv1.ClusterRole
		want []rbacv1.PolicyRule
	}{
		// Selectors in order, matching roles by name, each rule once; the
		// stale rule is dropped; view's own rules come through its label.
		{"edit", edit, []rbacv1.PolicyRule{r("get", "pods"), r("create", "pods"), r("delete", "pods")}},
		{"nothing matches", view, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Aggregate(tc.role, all)
			if err != nil {
				t.Fatal(err)
			}
			if !rulesEqual(got, tc.want) || (len(got) > 0 && !equality.Semantic.DeepEqual(got, tc.want)) {
				t.Errorf("got %v, want %v", got, tc.want)
			}
		})
	}
}
