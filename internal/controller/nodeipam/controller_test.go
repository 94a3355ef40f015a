package nodeipam

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"
)

func TestNext(t *testing.T) {
	pfx := netip.MustParsePrefix
	cluster := pfx("198.18.0.0/16")
	for _, c := range []struct {
		name string
		used []netip.Prefix
		bits int
		want string // "" for none
	}{
		{"empty cluster: the first block", nil, 24, "198.18.0.0/24"},
		{"the lowest free block", []netip.Prefix{pfx("198.18.0.0/24"), pfx("198.18.2.0/24")}, 24, "198.18.1.0/24"},
		{"a larger range used by one node covers many blocks", []netip.Prefix{pfx("198.18.0.0/23")}, 24, "198.18.2.0/24"},
		{"a node holding the whole cluster range leaves none", []netip.Prefix{pfx("198.18.0.0/16")}, 24, ""},
		{"ranges outside the cluster do not count", []netip.Prefix{pfx("198.19.0.0/24")}, 24, "198.18.0.0/24"},
		{"a block larger than the cluster does not fit", nil, 15, ""},
	} {
		got, ok := Next(cluster, c.bits, c.used)
		if (c.want == "" && ok) || (c.want != "" && (!ok || got != pfx(c.want))) {
			t.Errorf("%s: Next = %v, %v; want %q", c.name, got, ok, c.want)
		}
	}
	// Every /24 of a /22 handed out, then none.
	var used []netip.Prefix
	for i := range 4 {
		p, ok := Next(pfx("198.18.4.0/22"), 24, used)
		if !ok || p != pfx(fmt.Sprintf("198.18.%d.0/24", 4+i)) {
			t.Fatalf("block %d: %v %v", i, p, ok)
		}
		used = append(used, p)
	}
	if p, ok := Next(pfx("198.18.4.0/22"), 24, used); ok {
		t.Fatalf("a full range gave %v", p)
	}
}

func TestControllerGivesEachNodeItsOwnRange(t *testing.T) {
	nodes := []*corev1.Node{
		{ObjectMeta: metav1.ObjectMeta{Name: "a"}, Spec: corev1.NodeSpec{PodCIDR: "198.18.0.0/24", PodCIDRs: []string{"198.18.0.0/24"}}},
		{ObjectMeta: metav1.ObjectMeta{Name: "b"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "c"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "d"}},
	}
	client := fake.NewClientset()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, n := range nodes {
		if _, err := client.CoreV1().Nodes().Create(ctx, n, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	c := New(client, factory, netip.MustParsePrefix("198.18.0.0/22"), 24, record.NewFakeRecorder(10), slogDiscard())
	factory.Start(ctx.Done())
	done := make(chan struct{})
	go func() { c.Run(ctx); close(done) }()
	defer func() { cancel(); <-done; factory.Shutdown() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		seen := map[string]string{}
		ok := true
		for _, n := range nodes {
			got, err := client.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if got.Spec.PodCIDR == "" || len(got.Spec.PodCIDRs) != 1 || got.Spec.PodCIDRs[0] != got.Spec.PodCIDR {
				ok = false
				break
			}
			if other, dup := seen[got.Spec.PodCIDR]; dup {
				t.Fatalf("nodes %s and %s both have %s", other, n.Name, got.Spec.PodCIDR)
			}
			seen[got.Spec.PodCIDR] = n.Name
		}
		if ok {
			if seen["198.18.0.0/24"] != "a" || len(seen) != 4 {
				t.Fatalf("ranges %v; want a to keep 198.18.0.0/24 and the others the other three /24s", seen)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("not every node got a pod range within 10s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
