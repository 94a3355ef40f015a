package agent

import (
	"net/netip"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/agent/network"
)

func TestNodeRoutes(t *testing.T) {
	node := func(name, cidr, ip string) *corev1.Node {
		n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
		if cidr != "" {
			n.Spec.PodCIDR, n.Spec.PodCIDRs = cidr, []string{cidr}
		}
		if ip != "" {
			n.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeHostName, Address: name}, {Type: corev1.NodeInternalIP, Address: ip}}
		}
		return n
	}
	nodes := []*corev1.Node{
		node("c", "198.18.2.0/24", "198.18.250.3"),
		node("a", "198.18.0.0/24", "198.18.250.1"), // this node
		node("b", "198.18.1.0/24", "198.18.250.2"),
		node("new", "", "198.18.250.4"),       // no range yet
		node("nostatus", "198.18.3.0/24", ""), // no address yet
	}
	got := NodeRoutes("a", nodes)
	want := []network.NodeRoute{
		{PodCIDR: netip.MustParsePrefix("198.18.1.0/24"), Via: netip.MustParseAddr("198.18.250.2")},
		{PodCIDR: netip.MustParsePrefix("198.18.2.0/24"), Via: netip.MustParseAddr("198.18.250.3")},
	}
	if !slices.Equal(got, want) {
		t.Fatalf("NodeRoutes = %v; want %v", got, want)
	}
}
