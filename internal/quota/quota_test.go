package quota

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
)

func list(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func TestPodUsage(t *testing.T) {
	c := func(cpu, mem string) corev1.Container {
		return corev1.Container{Resources: corev1.ResourceRequirements{Requests: list("cpu", cpu), Limits: list("memory", mem)}}
	}
	sidecar := c("100m", "64Mi")
	sidecar.RestartPolicy = ptr.To(corev1.ContainerRestartPolicyAlways)
	for _, tc := range []struct {
		name string
		pod  corev1.Pod
		want corev1.ResourceList
	}{
		{"two containers", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{c("250m", "128Mi"), c("250m", "128Mi")}}},
			list("count/pods", "1", "pods", "1", "cpu", "500m", "requests.cpu", "500m", "limits.memory", "256Mi")},
		{"a big init container raises the total", corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{c("2", "1Gi")}, Containers: []corev1.Container{c("250m", "128Mi")}}},
			list("count/pods", "1", "pods", "1", "cpu", "2", "requests.cpu", "2", "limits.memory", "1Gi")},
		{"a sidecar adds to everything", corev1.Pod{Spec: corev1.PodSpec{InitContainers: []corev1.Container{sidecar}, Containers: []corev1.Container{c("250m", "128Mi")}}},
			list("count/pods", "1", "pods", "1", "cpu", "350m", "requests.cpu", "350m", "limits.memory", "192Mi")},
		{"finished", corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{c("1", "1Gi")}}, Status: corev1.PodStatus{Phase: corev1.PodSucceeded}},
			list("count/pods", "1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := PodUsage(&tc.pod); !Equal(got, tc.want) {
				t.Fatalf("usage %s, want %s", String(got), String(tc.want))
			}
		})
	}
}

func TestNamesAndComparisons(t *testing.T) {
	if gr, ok := ParseObjectCountName("count/deployments.apps"); !ok || gr != (schema.GroupResource{Group: "apps", Resource: "deployments"}) {
		t.Errorf("count/deployments.apps parsed as %v", gr)
	}
	if ObjectCountName(schema.GroupResource{Resource: "secrets"}) != "count/secrets" {
		t.Error("count name of secrets")
	}
	ok, exceeded := LessThanOrEqual(list("pods", "3", "cpu", "1"), list("pods", "2", "cpu", "2", "memory", "1Gi"))
	if ok || len(exceeded) != 1 || exceeded[0] != "pods" {
		t.Errorf("LessThanOrEqual = %v %v", ok, exceeded)
	}
	if s := String(list("requests.cpu", "500m", "pods", "1")); s != "pods=1,requests.cpu=500m" {
		t.Errorf("String = %q", s)
	}
	got := Matching(schema.GroupResource{Resource: "configmaps"}, Names(list("configmaps", "1", "count/configmaps", "1", "pods", "1", "count/secrets", "1")))
	if len(got) != 2 || got[0] != "configmaps" || got[1] != "count/configmaps" {
		t.Errorf("Matching configmaps = %v", got)
	}
	got = Matching(schema.GroupResource{Resource: "pods"}, Names(list("requests.cpu", "1", "services", "1", "requests.nvidia.com/gpu", "1", "hugepages-2Mi", "1")))
	if len(got) != 3 {
		t.Errorf("Matching pods = %v", got)
	}
}
