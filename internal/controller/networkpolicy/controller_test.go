package networkpolicy_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/headway/headway/internal/controller/networkpolicy"
	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/internal/testing/kubectl"
)

func TestNeedsNotice(t *testing.T) {
	np := &networkingv1.NetworkPolicy{ObjectMeta: metav1.ObjectMeta{Name: "p", UID: "u1"}}
	for _, tc := range []struct {
		name   string
		events []corev1.Event
		want   bool
	}{
		{"no events", nil, true},
		{"its notice", []corev1.Event{{InvolvedObject: corev1.ObjectReference{UID: "u1"}, Reason: networkpolicy.Reason}}, false},
		{"a notice of an earlier policy of the same name", []corev1.Event{{InvolvedObject: corev1.ObjectReference{UID: "u0"}, Reason: networkpolicy.Reason}}, true},
		{"another event", []corev1.Event{{InvolvedObject: corev1.ObjectReference{UID: "u1"}, Reason: "Other"}}, true},
	} {
		if got := networkpolicy.NeedsNotice(np, tc.events); got != tc.want {
			t.Errorf("%s: NeedsNotice = %v, want %v", tc.name, got, tc.want)
		}
	}
}

const policy = `apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny-all
spec:
  podSelector: {}
  policyTypes: [Ingress]
`

// TestNotEnforcedEvent: a NetworkPolicy applied with kubectl gets one
// Warning Event saying it is not enforced, which kubectl shows.
func TestNotEnforcedEvent(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := kubectl.Run(t, c.Kubeconfig, "apply", "-f", file); err != nil {
		t.Fatal(err)
	}
	np, err := c.Client.NetworkingV1().NetworkPolicies("default").Get(ctx, "deny-all", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var events []corev1.Event
	cluster.WaitFor(t, 30*time.Second, "the NotEnforced event", func() (bool, error) {
		list, err := c.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.uid=" + string(np.UID)})
		if err != nil {
			return false, err
		}
		events = list.Items
		return len(events) > 0, nil
	})
	e := events[0]
	if len(events) != 1 || e.Type != corev1.EventTypeWarning || e.Reason != "NotEnforced" || e.InvolvedObject.Kind != "NetworkPolicy" ||
		e.InvolvedObject.Name != "deny-all" || !strings.Contains(e.Message, "does not enforce NetworkPolicy") {
		t.Fatalf("events %+v", events)
	}
	out, _, err := kubectl.Run(t, c.Kubeconfig, "events", "--for", "networkpolicy/deny-all")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "NotEnforced") || !strings.Contains(out, "NetworkPolicy/deny-all") {
		t.Fatalf("kubectl events --for networkpolicy/deny-all:\n%s", out)
	}
	// Changing the policy does not repeat the notice.
	if _, err := c.Client.NetworkingV1().NetworkPolicies("default").Patch(ctx, "deny-all", types.MergePatchType, []byte(`{"metadata":{"labels":{"x":"y"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	list, err := c.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "reason=NotEnforced"})
	if err != nil || len(list.Items) != 1 {
		t.Fatalf("NotEnforced events after an update: %v, %d", err, len(list.Items))
	}
}
