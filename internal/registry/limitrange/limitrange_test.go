package limitrange

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	"github.com/headway/headway/internal/registry/registrytest"
)

func list(kv ...string) corev1.ResourceList {
	l := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		l[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return l
}

func TestDefaults(t *testing.T) {
	lr := &corev1.LimitRange{Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{
		{Type: corev1.LimitTypeContainer, Max: list("cpu", "1", "memory", "1Gi"), Min: list("cpu", "100m", "ephemeral-storage", "1Mi"), Default: list("memory", "512Mi")},
		{Type: corev1.LimitTypePod, Max: list("cpu", "2")},
	}}}
	Default(lr)
	c := lr.Spec.Limits[0]
	got := func(l corev1.ResourceList, k string) string { q := l[corev1.ResourceName(k)]; return q.String() }
	if got(c.Default, "cpu") != "1" || got(c.Default, "memory") != "512Mi" || got(c.DefaultRequest, "cpu") != "1" ||
		got(c.DefaultRequest, "memory") != "512Mi" || got(c.DefaultRequest, "ephemeral-storage") != "1Mi" {
		t.Errorf("container defaults %v / %v", c.Default, c.DefaultRequest)
	}
	if lr.Spec.Limits[1].Default != nil {
		t.Errorf("pod limit got defaults")
	}
}

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		item corev1.LimitRangeItem
		want []string
	}{
		{"container", corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Max: list("cpu", "1"), Min: list("cpu", "100m")}, nil},
		{"no type", corev1.LimitRangeItem{Max: list("cpu", "1")}, []string{"spec.limits[0].type: Required value"}},
		{"unknown type", corev1.LimitRangeItem{Type: "Node"}, []string{"spec.limits[0].type: Unsupported value"}},
		{"pod default", corev1.LimitRangeItem{Type: corev1.LimitTypePod, Default: list("cpu", "1")}, []string{"spec.limits[0].default: Forbidden"}},
		{"min above max", corev1.LimitRangeItem{Type: corev1.LimitTypePod, Max: list("cpu", "500m"), Min: list("cpu", "1")},
			[]string{"spec.limits[0].min[cpu]: Invalid value: \"1\": min value 1 is greater than max value 500m"}},
		{"default above max", corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Max: list("memory", "1Gi"), Default: list("memory", "2Gi")},
			[]string{"spec.limits[0].defaultRequest[memory]: Invalid value", "spec.limits[0].default[memory]: Invalid value: \"2Gi\": default value 2Gi is greater than max value 1Gi"}},
		{"ratio below one", corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, MaxLimitRequestRatio: list("cpu", "500m")},
			[]string{"spec.limits[0].maxLimitRequestRatio[cpu]: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lr := &corev1.LimitRange{Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{tc.item}}}
			Default(lr)
			registrytest.Errors(t, Validate(lr), tc.want...)
		})
	}
}
