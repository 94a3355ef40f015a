package event

import (
	"testing"

	"github.com/headway/headway/internal/registry/registrytest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func event(ns, involvedNS string) *corev1.Event {
	return &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "web.1", Namespace: ns},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", Namespace: involvedNS, Name: "web-0", UID: "u1", APIVersion: "v1"},
		Reason:         "Started", Message: "Started container", Type: corev1.EventTypeNormal, Count: 3,
		Source: corev1.EventSource{Component: "kubelet"}, ReportingController: "kubelet"}
}

func TestValidate(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name string
		obj  *corev1.Event
		want []string
	}{
		{"same namespace", event("default", "default"), nil},
		{"cluster-scoped object", event("default", ""), nil},
		{"other namespace", event("default", "kube-system"), []string{"involvedObject.namespace: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) { registrytest.Errors(t, r.Validate(tc.obj), tc.want...) })
	}
}

func TestFields(t *testing.T) {
	f := Resource().Fields(event("default", "default"))
	for k, v := range map[string]string{
		"involvedObject.kind": "Pod", "involvedObject.name": "web-0", "involvedObject.namespace": "default", "involvedObject.uid": "u1",
		"reason": "Started", "type": "Normal", "source": "kubelet", "reportingComponent": "kubelet", "count": "3",
	} {
		if f[k] != v {
			t.Errorf("field %s = %q, want %q", k, f[k], v)
		}
	}
}

func TestRow(t *testing.T) {
	row, err := Resource().Row(event("default", "default"))
	if err != nil || row[1] != "Normal" || row[2] != "Started" || row[3] != "pod/web-0" || row[4] != "Started container" {
		t.Fatalf("row %v (%v)", row, err)
	}
}
