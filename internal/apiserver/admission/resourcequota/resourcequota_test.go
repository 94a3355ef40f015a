package resourcequota

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/apiserver/admission"
	"github.com/headway/headway/internal/quota"
)

func list(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func q(name string, hard, used corev1.ResourceList) *corev1.ResourceQuota {
	return &corev1.ResourceQuota{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.ResourceQuotaSpec{Hard: hard},
		Status: corev1.ResourceQuotaStatus{Hard: hard, Used: used}}
}

func createOf(resource string, obj any) *admission.Attributes {
	a := &admission.Attributes{Operation: admission.Create, Namespace: "ns", Name: "x"}
	a.Resource = corev1.SchemeGroupVersion.WithResource(resource)
	switch o := obj.(type) {
	case *corev1.Pod:
		a.Object = o
	case *corev1.ConfigMap:
		a.Object = o
	case *corev1.Service:
		a.Object = o
	}
	return a
}

func TestPlanAndCharge(t *testing.T) {
	podWith := func(cpu string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c",
			Resources: corev1.ResourceRequirements{Requests: list("cpu", cpu), Limits: list("cpu", cpu)}}}}}
	}
	for _, tc := range []struct {
		name    string
		a       *admission.Attributes
		quotas  []*corev1.ResourceQuota
		wantErr string
		// want is the used of each charged quota after its charge.
		want map[string]corev1.ResourceList
	}{
		{
			name:   "configmap counted under both names",
			a:      createOf("configmaps", &corev1.ConfigMap{}),
			quotas: []*corev1.ResourceQuota{q("a", list("configmaps", "2", "count/configmaps", "5"), list("configmaps", "1", "count/configmaps", "1"))},
			want:   map[string]corev1.ResourceList{"a": list("configmaps", "2", "count/configmaps", "2")},
		},
		{
			name:    "configmap over quota",
			a:       createOf("configmaps", &corev1.ConfigMap{}),
			quotas:  []*corev1.ResourceQuota{q("a", list("configmaps", "1"), list("configmaps", "1"))},
			wantErr: `configmaps "x" is forbidden: exceeded quota: a, requested: configmaps=1, used: configmaps=1, limited: configmaps=1`,
		},
		{
			name:   "quota naming nothing the object uses is not charged",
			a:      createOf("configmaps", &corev1.ConfigMap{}),
			quotas: []*corev1.ResourceQuota{q("a", list("pods", "1"), list("pods", "1"))},
			want:   map[string]corev1.ResourceList{},
		},
		{
			name:    "quota not counted yet",
			a:       createOf("configmaps", &corev1.ConfigMap{}),
			quotas:  []*corev1.ResourceQuota{q("a", list("configmaps", "1"), nil)},
			wantErr: `configmaps "x" is forbidden: status unknown for quota: a, resources: configmaps`,
		},
		{
			name: "pod charged to two quotas",
			a:    createOf("pods", podWith("500m")),
			quotas: []*corev1.ResourceQuota{
				q("a", list("pods", "3"), list("pods", "1")),
				q("b", list("requests.cpu", "2", "limits.cpu", "2"), list("requests.cpu", "1", "limits.cpu", "1")),
			},
			want: map[string]corev1.ResourceList{"a": list("pods", "2"), "b": list("requests.cpu", "1500m", "limits.cpu", "1500m")},
		},
		{
			name:    "pod over cpu",
			a:       createOf("pods", podWith("2")),
			quotas:  []*corev1.ResourceQuota{q("b", list("requests.cpu", "2", "pods", "9"), list("requests.cpu", "1", "pods", "0"))},
			wantErr: `pods "x" is forbidden: exceeded quota: b, requested: requests.cpu=2, used: requests.cpu=1, limited: requests.cpu=2`,
		},
		{
			name:    "pod must state what the quota limits",
			a:       createOf("pods", &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c"}, {Name: "d"}}}}),
			quotas:  []*corev1.ResourceQuota{q("b", list("requests.memory", "1Gi", "limits.cpu", "1"), list("requests.memory", "0", "limits.cpu", "0"))},
			wantErr: `pods "x" is forbidden: failed quota: b: must specify limits.cpu for: c,d; requests.memory for: c,d`,
		},
		{
			name: "node ports of a service",
			a: createOf("services", &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort,
				Ports: []corev1.ServicePort{{Port: 80}, {Port: 443}}}}),
			quotas:  []*corev1.ResourceQuota{q("a", list("services.nodeports", "1"), list("services.nodeports", "0"))},
			wantErr: `services "x" is forbidden: exceeded quota: a, requested: services.nodeports=2, used: services.nodeports=0, limited: services.nodeports=1`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			usage, old, ok := requestUsage(tc.a)
			if !ok {
				t.Fatal("request not counted")
			}
			charges, err := Plan(tc.a, tc.quotas, usage, old)
			got := map[string]corev1.ResourceList{}
			for _, c := range charges {
				if err != nil {
					break
				}
				for _, qq := range tc.quotas {
					if qq.Name == c.name {
						var used corev1.ResourceList
						used, err = Charge(tc.a, qq, c.delta)
						got[c.name] = used
					}
				}
			}
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("error\n got %v\nwant %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(tc.want) {
				t.Fatalf("charged %v, want %v", got, tc.want)
			}
			for name, used := range tc.want {
				if !quota.Equal(got[name], used) {
					t.Errorf("quota %s used %v, want %v", name, got[name], used)
				}
			}
		})
	}
}

func TestUpdatesCountOnlyGrowth(t *testing.T) {
	old := &corev1.Service{Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Port: 80}}}}
	cur := old.DeepCopy()
	cur.Spec.Ports = append(cur.Spec.Ports, corev1.ServicePort{Port: 443})
	a := createOf("services", cur)
	a.Operation, a.OldObject = admission.Update, old
	usage, prev, ok := requestUsage(a)
	if !ok {
		t.Fatal("service update not counted")
	}
	charges, err := Plan(a, []*corev1.ResourceQuota{q("a", list("services", "1", "services.nodeports", "5"), list("services", "1", "services.nodeports", "1"))}, usage, prev)
	if err != nil || len(charges) != 1 || !quota.Equal(charges[0].delta, list("services.nodeports", "1")) {
		t.Fatalf("charges %+v, %v; want one node port and no new service", charges, err)
	}
	cm := createOf("configmaps", &corev1.ConfigMap{})
	cm.Operation, cm.OldObject = admission.Update, &corev1.ConfigMap{}
	if _, _, ok := requestUsage(cm); ok {
		t.Fatal("a configmap update is counted")
	}
}
