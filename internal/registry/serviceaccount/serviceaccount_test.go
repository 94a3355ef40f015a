package serviceaccount

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestRow(t *testing.T) {
	r := Resource()
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "default"},
		Secrets: []corev1.ObjectReference{{Name: "a"}, {Name: "b"}}}
	row, err := r.Row(sa)
	if err != nil || row[0] != "default" || row[1] != int64(2) || len(row) != len(r.Columns) {
		t.Fatalf("row %v (%v), want name and 2 secrets", row, err)
	}
	if !r.Namespaced || r.ShortNames[0] != "sa" {
		t.Error("serviceaccounts are namespaced, short name sa")
	}
}
