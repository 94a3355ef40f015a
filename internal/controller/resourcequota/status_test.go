package resourcequota

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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

func pod(name string, phase corev1.PodPhase, req, lim corev1.ResourceList) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "ns"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}}},
		Status:     corev1.PodStatus{Phase: phase},
	}
}

func quotaOf(hard corev1.ResourceList, scopes ...corev1.ResourceQuotaScope) *corev1.ResourceQuota {
	return &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: "q", Namespace: "ns"}, Spec: corev1.ResourceQuotaSpec{Hard: hard, Scopes: scopes}}
}

func TestStatus(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	stuck := pod("stuck", corev1.PodRunning, list("cpu", "1"), nil)
	stuck.DeletionTimestamp = &metav1.Time{Time: now.Add(-time.Hour)}
	stuck.DeletionGracePeriodSeconds = ptr.To[int64](30)
	deadline := pod("batch", corev1.PodRunning, list("cpu", "100m"), nil)
	deadline.Spec.ActiveDeadlineSeconds = ptr.To[int64](60)
	for _, tc := range []struct {
		name     string
		in       Input
		wantUsed corev1.ResourceList
	}{
		{
			name: "pods and compute; finished and stuck pods free compute but still count",
			in: Input{Quota: quotaOf(list("pods", "10", "requests.cpu", "4", "limits.memory", "1Gi", "count/pods", "20")), Pods: []*corev1.Pod{
				pod("a", corev1.PodRunning, list("cpu", "500m"), list("memory", "256Mi")),
				pod("b", corev1.PodPending, list("cpu", "250m"), list("memory", "256Mi")),
				pod("done", corev1.PodSucceeded, list("cpu", "2"), nil),
				stuck,
			}},
			wantUsed: list("pods", "2", "requests.cpu", "750m", "limits.memory", "512Mi", "count/pods", "4"),
		},
		{
			name:     "nothing yet is zero",
			in:       Input{Quota: quotaOf(list("pods", "1", "services", "2", "requests.storage", "1Gi"))},
			wantUsed: list("pods", "0", "services", "0", "requests.storage", "0"),
		},
		{
			name: "services, node ports, claims and storage",
			in: Input{Quota: quotaOf(list("services", "5", "services.nodeports", "5", "persistentvolumeclaims", "3", "requests.storage", "10Gi")),
				Services: []*corev1.Service{
					{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: []corev1.ServicePort{{Port: 80}}}},
					{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Port: 80}, {Port: 443}}}},
				},
				Claims: []*corev1.PersistentVolumeClaim{
					{Spec: corev1.PersistentVolumeClaimSpec{Resources: corev1.VolumeResourceRequirements{Requests: list("storage", "1Gi")}}},
					{Spec: corev1.PersistentVolumeClaimSpec{Resources: corev1.VolumeResourceRequirements{Requests: list("storage", "2Gi")}}},
				}},
			wantUsed: list("services", "2", "services.nodeports", "2", "persistentvolumeclaims", "2", "requests.storage", "3Gi"),
		},
		{
			name: "object counts, known and not yet known",
			in: Input{Quota: quotaOf(list("configmaps", "10", "count/secrets", "5", "count/deployments.apps", "2", "count/widgets.example.com", "1")),
				Counts: map[schema.GroupResource]int64{{Resource: "configmaps"}: 3, {Resource: "secrets"}: 1, {Group: "apps", Resource: "deployments"}: 2}},
			wantUsed: list("configmaps", "3", "count/secrets", "1", "count/deployments.apps", "2"),
		},
		{
			name: "scopes: only terminating pods count; other objects never match a scoped quota",
			in: Input{Quota: quotaOf(list("pods", "5", "configmaps", "5"), corev1.ResourceQuotaScopeTerminating),
				Pods:   []*corev1.Pod{pod("a", corev1.PodRunning, nil, nil), deadline},
				Counts: map[schema.GroupResource]int64{{Resource: "configmaps"}: 3}},
			wantUsed: list("pods", "1", "configmaps", "0"),
		},
		{
			name: "best effort scope",
			in: Input{Quota: quotaOf(list("pods", "5"), corev1.ResourceQuotaScopeBestEffort),
				Pods: []*corev1.Pod{pod("a", corev1.PodRunning, nil, nil), pod("b", corev1.PodRunning, list("cpu", "1"), nil)}},
			wantUsed: list("pods", "1"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Now = now
			st := Status(tc.in)
			if !Equal(corev1.ResourceQuotaStatus{Hard: tc.in.Quota.Spec.Hard, Used: tc.wantUsed}, st) {
				t.Fatalf("status\n hard %v\n used %v\nwant used %v", st.Hard, st.Used, tc.wantUsed)
			}
		})
	}
}

func TestCounted(t *testing.T) {
	q := quotaOf(list("pods", "1", "configmaps", "1", "count/configmaps", "1", "count/deployments.apps", "1", "count/pods", "1", "requests.cpu", "1"))
	got := Counted(q)
	want := []schema.GroupResource{{Resource: "configmaps"}, {Group: "apps", Resource: "deployments"}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("Counted = %v, want %v", got, want)
	}
}
