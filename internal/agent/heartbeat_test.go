package agent

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sfake "k8s.io/client-go/kubernetes/fake"
)

// TestHeartbeatRestoresReadyQuickly: a Node the lifecycle controller marked
// Unknown during a gap in the Lease is set Ready again at the agent's next
// heartbeat, not a minute later, and a Node already Ready is not rewritten
// at each heartbeat.
func TestHeartbeatRestoresReadyQuickly(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}, Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{
		{Type: corev1.NodeReady, Status: corev1.ConditionUnknown, Reason: "NodeStatusUnknown"}}}}
	cs := k8sfake.NewSimpleClientset(node)
	a := &Agent{cfg: Config{Client: cs, NodeName: "n1", DataDir: t.TempDir(), LeaseDuration: 80 * time.Millisecond},
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { a.heartbeat(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	ready := func() (corev1.ConditionStatus, string) {
		n, err := cs.CoreV1().Nodes().Get(context.Background(), "n1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return readyStatus(&n.Status), n.ResourceVersion
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st, _ := ready(); st == corev1.ConditionTrue {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the agent did not set its Unknown node Ready again within 5 s (its heartbeat is every 20 ms)")
		}
		time.Sleep(5 * time.Millisecond)
	}
	updates := func() int {
		n := 0
		for _, act := range cs.Actions() {
			if act.GetVerb() == "update" && act.GetResource().Resource == "nodes" && act.GetSubresource() == "status" {
				n++
			}
		}
		return n
	}
	before := updates()
	// Ten more heartbeats: the Lease is renewed, the Ready node is left as it is.
	leaseUpdates := func() int {
		n := 0
		for _, act := range cs.Actions() {
			if act.GetResource().Resource == "leases" && (act.GetVerb() == "update" || act.GetVerb() == "create") {
				n++
			}
		}
		return n
	}
	leases := leaseUpdates()
	for leaseUpdates() < leases+10 {
		if time.Now().After(deadline) {
			t.Fatal("the agent stopped renewing its Lease")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if after := updates(); after != before {
		t.Fatalf("the agent wrote its Ready node's status %d more times in ten heartbeats; want none (once a minute)", after-before)
	}
}

// TestLeaseRenewedWithoutReading: as the kubelet does, the agent renews the
// Lease its last renewal returned, reading it only when it has none or a
// renewal failed; a Lease deleted meanwhile is made again.
func TestLeaseRenewedWithoutReading(t *testing.T) {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1", UID: "u1"}}
	cs := k8sfake.NewSimpleClientset(node)
	a := &Agent{cfg: Config{Client: cs, NodeName: "n1", DataDir: t.TempDir(), LeaseDuration: 40 * time.Second},
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	count := func(verb string) int {
		n := 0
		for _, act := range cs.Actions() {
			if act.GetResource().Resource == "leases" && act.GetVerb() == verb {
				n++
			}
		}
		return n
	}
	var lease *coordinationv1.Lease
	for range 5 {
		var err error
		if lease, err = a.renewLease(ctx, lease); err != nil {
			t.Fatal(err)
		}
	}
	if g, c, u := count("get"), count("create"), count("update"); g != 1 || c != 1 || u != 4 {
		t.Fatalf("five renewals: %d gets, %d creates, %d updates; want 1, 1, 4", g, c, u)
	}
	l, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, "n1", metav1.GetOptions{})
	if err != nil || l.Spec.RenewTime == nil || len(l.OwnerReferences) != 1 || l.OwnerReferences[0].UID != "u1" {
		t.Fatalf("lease %+v, err %v", l, err)
	}
	if err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Delete(ctx, "n1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if lease, err = a.renewLease(ctx, lease); err == nil || lease != nil {
		t.Fatalf("renewing a deleted Lease gave %v, err %v; want an error and no Lease", lease, err)
	}
	if _, err := a.renewLease(ctx, lease); err != nil {
		t.Fatalf("the renewal after a failure: %v", err)
	}
	if _, err := cs.CoordinationV1().Leases(corev1.NamespaceNodeLease).Get(ctx, "n1", metav1.GetOptions{}); err != nil {
		t.Fatalf("the deleted Lease was not made again: %v", err)
	}
}
