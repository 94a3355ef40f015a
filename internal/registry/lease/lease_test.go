package lease

import (
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func TestRow(t *testing.T) {
	r := Resource()
	l := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "node-1", Namespace: "kube-node-lease"}}
	if row, err := r.Row(l); err != nil || row[0] != "node-1" || row[1] != "" || len(row) != len(r.Columns) {
		t.Fatalf("row %v (%v), want no holder", row, err)
	}
	l.Spec.HolderIdentity = ptr.To("node-1")
	if row, _ := r.Row(l); row[1] != "node-1" {
		t.Fatalf("holder %v", row[1])
	}
	if !r.Namespaced || r.Validate != nil || r.Default != nil {
		t.Error("leases are namespaced and accepted as written")
	}
}
