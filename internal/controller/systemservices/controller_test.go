package systemservices

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDecide(t *testing.T) {
	want := KubeDNSService("198.19.0.10")
	now := metav1.Now()
	other := want.DeepCopy()
	other.Spec.ClusterIP = "198.19.0.99"
	going := want.DeepCopy()
	going.DeletionTimestamp = &now
	held := going.DeepCopy()
	held.Finalizers = []string{"example.com/hold"}
	for _, tc := range []struct {
		name     string
		observed *corev1.Service
		want     Action
	}{
		{"missing", nil, Create},
		{"present", want.DeepCopy(), Keep},
		{"present with another ClusterIP (left as it is)", other, Keep},
		{"being deleted, no finalizers", going, Create},
		{"being deleted, held by a finalizer", held, Keep},
	} {
		if got := Decide(want, tc.observed); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	k := KubernetesService("198.19.0.1", 6443)
	if k.Namespace != "default" || k.Name != "kubernetes" || k.Spec.Ports[0].Port != 443 || k.Spec.Ports[0].TargetPort.IntVal != 6443 {
		t.Fatalf("kubernetes Service: %+v", k)
	}
}
