package discovery_test

import (
	"context"
	"net"
	"testing"
	"time"

	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/pkg/discovery"
)

// TestSurvivesAPIRestart follows a Service on a real Headway (bolt store),
// stops the API server, changes nothing it can see, starts it again on
// the same address and data, and changes the slices: the watcher's
// informer lists again and the view follows, without a new Watch.
func TestSurvivesAPIRestart(t *testing.T) {
	dir := t.TempDir()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	opts := []cluster.Option{cluster.WithBolt(dir), cluster.WithoutDNS(), func(o *app.Options) { o.Listen = addr; o.NoControllers = true }}
	c1, err := cluster.StartE(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	create := func(client kubernetes.Interface, name, ip string) {
		t.Helper()
		s := &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{ip}}},
		}
		if _, err := client.DiscoveryV1().EndpointSlices("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	create(c1.Client, "web-a", "198.18.0.2")
	// The watcher's own client, kept across the restart.
	client, err := kubernetes.NewForConfig(c1.Config)
	if err != nil {
		t.Fatal(err)
	}
	w, err := discovery.Watch(ctx, client, "web", "default", discovery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if s := w.Snapshot(); len(s.Endpoints) != 1 {
		t.Fatalf("before the restart: %+v", s)
	}
	if err := c1.Stop(); err != nil {
		t.Fatal(err)
	}
	c2, err := cluster.StartE(dir, opts...)
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Stop()
	create(c2.Client, "web-b", "198.18.0.3")
	if err := c2.Client.DiscoveryV1().EndpointSlices("default").Delete(ctx, "web-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		s := w.Snapshot()
		if len(s.Endpoints) == 1 && s.Endpoints[0].Address == "198.18.0.3" {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the watcher did not follow the restarted API: %+v", s)
		case <-w.Changes():
		case <-time.After(50 * time.Millisecond): // polling interval
		}
	}
	cancel()
	<-w.Done()
}
