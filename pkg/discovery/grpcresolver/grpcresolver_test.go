package grpcresolver_test

import (
	"context"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/headway/headway/pkg/discovery/grpcresolver"
	"github.com/headway/headway/pkg/headwaytest"
)

func TestParseTarget(t *testing.T) {
	good := map[string]grpcresolver.Target{
		"web.default:http":  {Service: "web", Namespace: "default", Port: "http"},
		"web.shop:8080":     {Service: "web", Namespace: "shop", Port: "8080"},
		"nginx-headless:80": {Service: "nginx-headless", Namespace: "default", Port: "80"},
	}
	for in, want := range good {
		got, err := grpcresolver.ParseTarget(in)
		if err != nil || got != want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"web.default", "web.default:", ":80", "Web.default:80", "web.a.b:80", "web.default:0", "web.default:70000", "web.default:Not_A_Name"} {
		if got, err := grpcresolver.ParseTarget(in); err == nil {
			t.Errorf("ParseTarget(%q) = %+v; want an error", in, got)
		}
	}
}

// clientConn records the states a resolver pushes.
type clientConn struct {
	resolver.ClientConn
	mu     sync.Mutex
	states [][]string
	errs   []error
	ch     chan []string
}

func newClientConn() *clientConn { return &clientConn{ch: make(chan []string, 100)} }

func (c *clientConn) UpdateState(s resolver.State) error {
	var addrs []string
	for _, e := range s.Endpoints {
		addrs = append(addrs, e.Addresses[0].Addr)
	}
	c.mu.Lock()
	c.states = append(c.states, addrs)
	c.mu.Unlock()
	c.ch <- addrs
	return nil
}

func (c *clientConn) ReportError(err error) {
	c.mu.Lock()
	c.errs = append(c.errs, err)
	c.mu.Unlock()
}

func (c *clientConn) ParseServiceConfig(string) *serviceconfig.ParseResult { return nil }

// next waits for a state equal to want.
func (c *clientConn) next(t *testing.T, want ...string) {
	t.Helper()
	slices.Sort(want)
	timeout := time.After(30 * time.Second)
	var last []string
	for {
		select {
		case got := <-c.ch:
			if slices.Equal(got, want) {
				return
			}
			last = got
		case <-timeout:
			t.Fatalf("resolver never pushed %v; last %v", want, last)
		}
	}
}

func build(t *testing.T, b *grpcresolver.Builder, target string, cc resolver.ClientConn) resolver.Resolver {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	r, err := b.Build(resolver.Target{URL: *u}, cc, resolver.BuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func ptr[T any](v T) *T { return &v }

func slice(name string, port int32, eps map[string]discoveryv1.EndpointConditions) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "shop", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("http"), Port: ptr(port)}},
	}
	for _, a := range slices.Sorted(func(yield func(string) bool) {
		for a := range eps {
			if !yield(a) {
				return
			}
		}
	}) {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{a}, Conditions: eps[a]})
	}
	return s
}

// TestWatchResolver: ready endpoints are pushed with their named port, a
// terminating endpoint leaves the list at once, and when no endpoint is
// ready the serving terminating ones are used.
func TestWatchResolver(t *testing.T) {
	ctx := context.Background()
	ready := discoveryv1.EndpointConditions{Ready: ptr(true), Serving: ptr(true), Terminating: ptr(false)}
	terminating := discoveryv1.EndpointConditions{Ready: ptr(false), Serving: ptr(true), Terminating: ptr(true)}
	client := fake.NewClientset(slice("web-a", 8080, map[string]discoveryv1.EndpointConditions{"198.18.0.2": ready, "198.18.0.3": ready}))
	cc := newClientConn()
	build(t, grpcresolver.NewBuilder(client), "headway:///web.shop:http", cc)
	cc.next(t, "198.18.0.2:8080", "198.18.0.3:8080")

	ss := client.DiscoveryV1().EndpointSlices("shop")
	if _, err := ss.Create(ctx, slice("web-b", 8080, map[string]discoveryv1.EndpointConditions{"198.18.0.4": ready}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cc.next(t, "198.18.0.2:8080", "198.18.0.3:8080", "198.18.0.4:8080")
	if _, err := ss.Update(ctx, slice("web-a", 8080, map[string]discoveryv1.EndpointConditions{"198.18.0.2": ready, "198.18.0.3": terminating}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cc.next(t, "198.18.0.2:8080", "198.18.0.4:8080")
	if err := ss.Delete(ctx, "web-b", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := ss.Update(ctx, slice("web-a", 8080, map[string]discoveryv1.EndpointConditions{"198.18.0.2": terminating, "198.18.0.3": terminating}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cc.next(t, "198.18.0.2:8080", "198.18.0.3:8080")
	if err := ss.Delete(ctx, "web-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cc.next(t)

	// A numeric port that no slice names is used as it is.
	cc2 := newClientConn()
	if _, err := ss.Create(ctx, slice("web-c", 8080, map[string]discoveryv1.EndpointConditions{"198.18.0.5": ready}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	build(t, grpcresolver.NewBuilder(client), "headway:///web.shop:9090", cc2)
	cc2.next(t, "198.18.0.5:9090")
}

// TestDNSFallback resolves through a real cluster DNS (headwaytest): SRV
// for a named port, A for a number; a scale-up shows at the next lookup.
func TestDNSFallback(t *testing.T) {
	t.Parallel()
	c := headwaytest.Start(t, headwaytest.Options{PodCIDR: netip.MustParsePrefix("198.18.7.0/24"), DNSTTL: time.Second})
	manifest := `apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: web
  replicas: %d
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: nginx}]
`
	objs := c.Apply(fmt.Sprintf(manifest, 2))
	c.WaitReady(objs[1])
	c.WaitReady(objs[0])
	b := grpcresolver.NewBuilder(nil)
	b.DNS, b.DNSRefresh = c.Resolver, 50*time.Millisecond
	srv := newClientConn()
	build(t, b, "headway:///web.default:http", srv)
	a := newClientConn()
	build(t, b, "headway:///web.default:9000", a)
	srv.next(t, "198.18.7.2:8080", "198.18.7.3:8080")
	a.next(t, "198.18.7.2:9000", "198.18.7.3:9000")

	c.WaitReady(c.Apply(fmt.Sprintf(manifest, 3))[1])
	srv.next(t, "198.18.7.2:8080", "198.18.7.3:8080", "198.18.7.4:8080")

	// An unknown Service resolves to no address (NXDOMAIN), not an error.
	none := newClientConn()
	build(t, b, "headway:///missing.default:http", none)
	none.next(t)
}
