package poddisruptionbudget

import (
	"testing"

	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/headway/headway/internal/registry/registrytest"
)

func TestValidation(t *testing.T) {
	one, pct, over, bad, neg := intstr.FromInt32(1), intstr.FromString("50%"), intstr.FromString("150%"), intstr.FromString("x"), intstr.FromInt32(-1)
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}
	policy := func(p string) *policyv1.UnhealthyPodEvictionPolicyType {
		v := policyv1.UnhealthyPodEvictionPolicyType(p)
		return &v
	}
	for _, tc := range []struct {
		name string
		spec policyv1.PodDisruptionBudgetSpec
		want []string
	}{
		{"min available", policyv1.PodDisruptionBudgetSpec{Selector: sel, MinAvailable: &one}, nil},
		{"max unavailable percent", policyv1.PodDisruptionBudgetSpec{Selector: sel, MaxUnavailable: &pct, UnhealthyPodEvictionPolicy: policy("AlwaysAllow")}, nil},
		{"both", policyv1.PodDisruptionBudgetSpec{Selector: sel, MinAvailable: &one, MaxUnavailable: &one},
			[]string{"spec: Invalid value: minAvailable and maxUnavailable cannot be both set"}},
		{"over 100%", policyv1.PodDisruptionBudgetSpec{MinAvailable: &over}, []string{"spec.minAvailable: Invalid value: \"150%\": must not be greater than 100%"}},
		{"not a percentage", policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &bad}, []string{"spec.maxUnavailable: Invalid value: \"x\""}},
		{"negative", policyv1.PodDisruptionBudgetSpec{MinAvailable: &neg}, []string{"spec.minAvailable: Invalid value: -1"}},
		{"bad policy", policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, UnhealthyPodEvictionPolicy: policy("Never")},
			[]string{"spec.unhealthyPodEvictionPolicy: Unsupported value"}},
		{"bad selector", policyv1.PodDisruptionBudgetSpec{MinAvailable: &one, Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"a b": "c"}}},
			[]string{"spec.selector.matchLabels: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			registrytest.Errors(t, Validate(&policyv1.PodDisruptionBudget{Spec: tc.spec}), tc.want...)
		})
	}
	st := &policyv1.PodDisruptionBudget{Status: policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: -1}}
	registrytest.Errors(t, Resource().ValidateStatusUpdate(st, st), "status.disruptionsAllowed: Invalid value")
}

func TestRow(t *testing.T) {
	one := intstr.FromInt32(1)
	pdb := &policyv1.PodDisruptionBudget{Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &one}, Status: policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: 2}}
	row, _ := Resource().Row(pdb)
	if row[1] != "1" || row[2] != "N/A" || row[3] != int64(2) {
		t.Errorf("row %v", row)
	}
}
