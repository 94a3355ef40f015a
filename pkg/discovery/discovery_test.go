package discovery_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/headway/headway/pkg/discovery"
)

func ptr[T any](v T) *T { return &v }

type ep struct {
	addr, host, node, zone, pod string
	ready, serving, terminating *bool
}

func slice(name, svc string, ports map[string]int32, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
	}
	for n, p := range ports {
		s.Ports = append(s.Ports, discoveryv1.EndpointPort{Name: ptr(n), Port: ptr(p)})
	}
	for _, e := range eps {
		x := discoveryv1.Endpoint{Addresses: []string{e.addr}, Conditions: discoveryv1.EndpointConditions{Ready: e.ready, Serving: e.serving, Terminating: e.terminating}}
		if e.host != "" {
			x.Hostname = ptr(e.host)
		}
		if e.node != "" {
			x.NodeName = ptr(e.node)
		}
		if e.zone != "" {
			x.Zone = ptr(e.zone)
		}
		if e.pod != "" {
			x.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: e.pod, Namespace: "default"}
		}
		s.Endpoints = append(s.Endpoints, x)
	}
	return s
}

func TestMerge(t *testing.T) {
	yes, no := ptr(true), ptr(false)
	cases := []struct {
		name   string
		slices []*discoveryv1.EndpointSlice
		want   []discovery.Endpoint
	}{{
		name: "two slices merged, sorted by address, per-pod names and ports",
		slices: []*discoveryv1.EndpointSlice{
			slice("a", "web", map[string]int32{"http": 8080}, ep{addr: "198.18.0.3", host: "web-1", node: "n1", zone: "z1", pod: "web-1", ready: yes, serving: yes, terminating: no}),
			slice("b", "web", map[string]int32{"http": 8080}, ep{addr: "198.18.0.2", host: "web-0", pod: "web-0"}),
		},
		want: []discovery.Endpoint{
			{Address: "198.18.0.2", Addresses: []string{"198.18.0.2"}, AddressType: "IPv4", Hostname: "web-0", DNSName: "web-0.web.default.svc.example.test",
				Ready: true, Serving: true, Pod: "web-0", Ports: map[string]discovery.Port{"http": {Name: "http", Port: 8080, Protocol: "TCP"}}},
			{Address: "198.18.0.3", Addresses: []string{"198.18.0.3"}, AddressType: "IPv4", Hostname: "web-1", DNSName: "web-1.web.default.svc.example.test",
				Ready: true, Serving: true, Zone: "z1", NodeName: "n1", Pod: "web-1", Ports: map[string]discovery.Port{"http": {Name: "http", Port: 8080, Protocol: "TCP"}}},
		},
	}, {
		name: "terminating is never ready; another Service's slice is ignored",
		slices: []*discoveryv1.EndpointSlice{
			slice("a", "web", nil, ep{addr: "198.18.0.4", ready: yes, serving: yes, terminating: yes}),
			slice("x", "other", nil, ep{addr: "198.18.0.9"}),
		},
		want: []discovery.Endpoint{{Address: "198.18.0.4", Addresses: []string{"198.18.0.4"}, AddressType: "IPv4", Serving: true, Terminating: true, Ports: map[string]discovery.Port{}}},
	}, {
		name: "an address in two slices appears once with both slices' ports, ready when one says so",
		slices: []*discoveryv1.EndpointSlice{
			slice("a", "web", map[string]int32{"http": 80}, ep{addr: "198.18.0.5", ready: no, serving: no}),
			slice("b", "web", map[string]int32{"grpc": 90}, ep{addr: "198.18.0.5", ready: yes}),
		},
		want: []discovery.Endpoint{{Address: "198.18.0.5", Addresses: []string{"198.18.0.5"}, AddressType: "IPv4", Ready: true, Serving: true,
			Ports: map[string]discovery.Port{"http": {Name: "http", Port: 80, Protocol: "TCP"}, "grpc": {Name: "grpc", Port: 90, Protocol: "TCP"}}}},
	}}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := discovery.Merge("web", "default", "example.test", c.slices)
			if len(got) != len(c.want) {
				t.Fatalf("got %d endpoints, want %d: %+v", len(got), len(c.want), got)
			}
			for i := range got {
				g, w := got[i], c.want[i]
				if g.Address != w.Address || g.Hostname != w.Hostname || g.DNSName != w.DNSName || g.Ready != w.Ready ||
					g.Serving != w.Serving || g.Terminating != w.Terminating || g.Zone != w.Zone || g.NodeName != w.NodeName ||
					g.Pod != w.Pod || g.AddressType != w.AddressType || len(g.Ports) != len(w.Ports) {
					t.Errorf("endpoint %d:\n got %+v\nwant %+v", i, g, w)
				}
				for n, p := range w.Ports {
					if g.Ports[n] != p {
						t.Errorf("endpoint %d port %q: got %+v want %+v", i, n, g.Ports[n], p)
					}
				}
			}
		})
	}
}

func TestSnapshotServing(t *testing.T) {
	s := discovery.Snapshot{Endpoints: []discovery.Endpoint{
		{Address: "a", Serving: true, Terminating: true},
		{Address: "b", Serving: false, Terminating: true},
	}}
	if got := s.Serving(); len(got) != 1 || got[0].Address != "a" {
		t.Fatalf("no ready endpoint: Serving() = %+v, want the serving terminating one", got)
	}
	s.Endpoints = append(s.Endpoints, discovery.Endpoint{Address: "c", Ready: true, Serving: true})
	if got := s.Serving(); len(got) != 1 || got[0].Address != "c" {
		t.Fatalf("with a ready endpoint: Serving() = %+v, want only it", got)
	}
}

// TestWatchFake follows slices in client-go's fake clientset: the snapshot,
// the Changes channel and OnChange see additions, condition changes and
// deletions; slices of other Services never show.
func TestWatchFake(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := fake.NewClientset(slice("web-a", "web", map[string]int32{"http": 80}, ep{addr: "198.18.0.2", host: "web-0"}))
	calls := make(chan discovery.Snapshot, 100)
	w, err := discovery.Watch(ctx, client, "web", "default", discovery.Options{OnChange: func(s discovery.Snapshot) { calls <- s }})
	if err != nil {
		t.Fatal(err)
	}
	s := w.Snapshot()
	if !s.Synced || len(s.Endpoints) != 1 || s.Endpoints[0].DNSName != "web-0.web.default.svc.cluster.local" {
		t.Fatalf("first snapshot: %+v", s)
	}
	waitFor := func(what string, cond func(discovery.Snapshot) bool) discovery.Snapshot {
		t.Helper()
		for {
			select {
			case s := <-w.Changes():
				if cond(s) {
					return s
				}
			case <-ctx.Done():
				t.Fatalf("no change where %s; last snapshot %+v", what, w.Snapshot())
			}
		}
	}
	slices := client.DiscoveryV1().EndpointSlices("default")
	if _, err := slices.Create(ctx, slice("other", "not-web", nil, ep{addr: "198.18.0.99"}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := slices.Create(ctx, slice("web-b", "web", map[string]int32{"http": 80}, ep{addr: "198.18.0.3", ready: ptr(false)}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	s = waitFor("a second endpoint, not ready", func(s discovery.Snapshot) bool { return len(s.Endpoints) == 2 })
	if s.Endpoints[1].Ready || len(s.Ready()) != 1 {
		t.Fatalf("not-ready endpoint shown ready: %+v", s)
	}
	if _, err := slices.Update(ctx, slice("web-b", "web", map[string]int32{"http": 80}, ep{addr: "198.18.0.3", ready: ptr(true)}), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor("both ready", func(s discovery.Snapshot) bool { return len(s.Ready()) == 2 })
	if err := slices.Delete(ctx, "web-a", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	s = waitFor("web-a gone", func(s discovery.Snapshot) bool { return len(s.Endpoints) == 1 })
	if s.Endpoints[0].Address != "198.18.0.3" {
		t.Fatalf("after deleting web-a: %+v", s)
	}
	for _, e := range s.Endpoints {
		if e.Address == "198.18.0.99" {
			t.Fatal("another Service's endpoint appeared")
		}
	}
	// OnChange saw the same final state, in order of versions.
	var last uint64
	for {
		select {
		case c := <-calls:
			if c.Version <= last {
				t.Fatalf("OnChange versions out of order: %d after %d", c.Version, last)
			}
			last = c.Version
			if c.Version == s.Version {
				cancel()
				<-w.Done()
				return
			}
		case <-ctx.Done():
			t.Fatalf("OnChange never saw version %d (last %d)", s.Version, last)
		}
	}
}

// TestChangesCoalesce: a reader that does not read misses nothing but the
// intermediate states: the channel then holds the newest snapshot, and the
// informer was never held up.
func TestChangesCoalesce(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := fake.NewClientset()
	w, err := discovery.Watch(ctx, client, "web", "default", discovery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	slices := client.DiscoveryV1().EndpointSlices("default")
	for i := range 20 {
		if _, err := slices.Create(ctx, slice(fmt.Sprintf("s%d", i), "web", nil, ep{addr: fmt.Sprintf("198.18.1.%d", i+2)}), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for len(w.Snapshot().Endpoints) != 20 {
		select {
		case <-ctx.Done():
			t.Fatalf("snapshot has %d endpoints, want 20", len(w.Snapshot().Endpoints))
		case <-time.After(5 * time.Millisecond): // polling interval
		}
	}
	select {
	case s := <-w.Changes():
		if len(s.Endpoints) != 20 || s.Version != w.Snapshot().Version {
			t.Fatalf("the unread channel holds version %d with %d endpoints; want the newest, %d with 20", s.Version, len(s.Endpoints), w.Snapshot().Version)
		}
	default:
		t.Fatal("no snapshot waiting in Changes")
	}
}

func TestWatchRefusesBadNames(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct{ svc, ns string }{{"Web", "default"}, {"web", ""}, {"", "default"}, {"web", "a.b"}} {
		if _, err := discovery.Watch(ctx, fake.NewClientset(), c.svc, c.ns, discovery.Options{}); err == nil {
			t.Errorf("Watch(%q, %q) accepted", c.svc, c.ns)
		}
	}
	if _, err := discovery.Watch(ctx, nil, "web", "default", discovery.Options{}); err == nil {
		t.Error("a nil client was accepted")
	}
}
