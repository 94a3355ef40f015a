package node

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestRow(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name          string
		ready         corev1.ConditionStatus
		unschedulable bool
		labels        map[string]string
		status, roles string
	}{
		{"Ready", corev1.ConditionTrue, false, nil, "Ready", "<none>"},
		{"NotReady", corev1.ConditionFalse, false, nil, "NotReady", "<none>"},
		{"no condition", "", false, nil, "Unknown", "<none>"},
		{"cordoned", corev1.ConditionTrue, true, nil, "Ready,SchedulingDisabled", "<none>"},
		{"roles sorted", corev1.ConditionTrue, false, map[string]string{
			"node-role.kubernetes.io/worker": "", "node-role.kubernetes.io/control-plane": "", "kubernetes.io/role": "edge", "node-role.kubernetes.io/": "x",
		}, "Ready", "control-plane,edge,worker"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Labels: tc.labels}, Spec: corev1.NodeSpec{Unschedulable: tc.unschedulable}}
			if tc.ready != "" {
				n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: tc.ready}}
			}
			n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: "node-1"}, {Type: corev1.NodeInternalIP, Address: "192.0.2.1"}}
			n.Status.NodeInfo.KubeletVersion = "v1.37.2"
			row, err := r.Row(n)
			if err != nil || row[1] != tc.status || row[2] != tc.roles || row[4] != "v1.37.2" || row[5] != "192.0.2.1" || row[6] != "<none>" {
				t.Fatalf("row %v (%v), want status %q roles %q", row, err, tc.status, tc.roles)
			}
			if len(row) != len(r.Columns) {
				t.Fatalf("%d cells for %d columns", len(row), len(r.Columns))
			}
		})
	}
}

func TestFields(t *testing.T) {
	r := Resource()
	if f := r.Fields(&corev1.Node{Spec: corev1.NodeSpec{Unschedulable: true}}); f["spec.unschedulable"] != "true" {
		t.Errorf("fields %v", f)
	}
	if f := r.Fields(&corev1.Node{}); f["spec.unschedulable"] != "false" {
		t.Errorf("fields %v", f)
	}
	if !r.HasStatus || r.Namespaced {
		t.Error("nodes are cluster-scoped with a status subresource")
	}
}
