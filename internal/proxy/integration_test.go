package proxy_test

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/proxy"
	"github.com/headway/headway/internal/testing/cluster"
)

// startProxy runs a proxy programming the lab's node namespace until the
// test ends; it returns the proxy and a stop function that waits for it.
func startProxy(t *testing.T, client kubernetes.Interface, l *lab, mode string, leave bool) (*proxy.Proxy, func()) {
	t.Helper()
	p, err := proxy.New(client, proxy.Config{
		Mode: mode, ServiceCIDR: labCfg.ServiceCIDR, PodCIDR: labCfg.PodCIDR, Bridge: "headway0",
		NetNS: l.node, LeaveRulesOnExit: leave, Log: discard(),
	})
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode() != mode {
		t.Fatalf("mode %s, want %s", p.Mode(), mode)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("proxy: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return p, stop
}

func waitFor(t *testing.T, p *proxy.Proxy, what string, cond func(map[string][]proxy.ServicePort) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.WaitFor(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v; programmed: %v", what, err, p.Programmed())
	}
}

func endpointsOf(prog map[string][]proxy.ServicePort, key string) int {
	if len(prog[key]) == 0 {
		return -1
	}
	return len(prog[key][0].Endpoints)
}

func service(name string, mutate func(*corev1.Service)) *corev1.Service {
	s := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{"app": name},
			Ports:    []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromString("web")}},
		},
	}
	if mutate != nil {
		mutate(s)
	}
	return s
}

type ep struct {
	ip                          string
	ready, serving, terminating bool
}

func slice(svc, name, portName string, proto corev1.Protocol, port int32, eps ...ep) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
			Labels:      map[string]string{proxy.ServiceNameLabel: svc},
			Annotations: map[string]string{corev1.EndpointsLastChangeTriggerTime: time.Now().UTC().Format(time.RFC3339Nano)}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To(portName), Protocol: ptr.To(proto), Port: ptr.To(port)}},
	}
	for _, e := range eps {
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{e.ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(e.ready), Serving: ptr.To(e.serving), Terminating: ptr.To(e.terminating)},
		})
	}
	return s
}

func readyEP(ip string) ep { return ep{ip: ip, ready: true, serving: true} }

type fixture struct {
	t      *testing.T
	client kubernetes.Interface
	ctx    context.Context
}

func (f fixture) createSvc(s *corev1.Service) *corev1.Service {
	f.t.Helper()
	got, err := f.client.CoreV1().Services("default").Create(f.ctx, s, metav1.CreateOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	return got
}

func (f fixture) createSlice(s *discoveryv1.EndpointSlice) {
	f.t.Helper()
	if _, err := f.client.DiscoveryV1().EndpointSlices("default").Create(f.ctx, s, metav1.CreateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

func (f fixture) updateSlice(s *discoveryv1.EndpointSlice) {
	f.t.Helper()
	cur, err := f.client.DiscoveryV1().EndpointSlices("default").Get(f.ctx, s.Name, metav1.GetOptions{})
	if err != nil {
		f.t.Fatal(err)
	}
	s.ResourceVersion = cur.ResourceVersion
	if _, err := f.client.DiscoveryV1().EndpointSlices("default").Update(f.ctx, s, metav1.UpdateOptions{}); err != nil {
		f.t.Fatal(err)
	}
}

// spread does n GETs from ns and counts the answers.
func spread(t *testing.T, ns proxy.NetNS, url string, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		body, err := get(ns, url)
		if err != nil {
			t.Fatalf("GET %s: %v (after %v)", url, err, seen)
		}
		seen[body]++
	}
	return seen
}

// TestProxy runs the proxy against the in-process API server, in each mode,
// programming a node made of network namespaces, and sends real traffic.
func TestProxy(t *testing.T) {
	for _, mode := range []string{proxy.ModeNFTables, proxy.ModeUserspace} {
		t.Run(mode, func(t *testing.T) { testProxy(t, mode) })
	}
}

func testProxy(t *testing.T, mode string) {
	l := newLab(t)
	c := cluster.Start(t, cluster.WithoutDNS())
	f := fixture{t: t, client: c.Client, ctx: context.Background()}
	client := l.addPod("198.18.0.10")
	a, b, cc := l.addPod("198.18.0.11"), l.addPod("198.18.0.12"), l.addPod("198.18.0.13")
	// targetPort "web" resolves to 8080 on a and b, to 9090 on c.
	a.serveHTTP(8080, "a")
	b.serveHTTP(8080, "b")
	cc.serveHTTP(9090, "c")
	for _, p := range []*labPod{a, b, cc} {
		p.serveUDP(5353, p.ip.String())
	}

	p, stop := startProxy(t, c.Client, l, mode, false)

	web := f.createSvc(service("web", nil))
	f.createSlice(slice("web", "web-1", "http", corev1.ProtocolTCP, 8080, readyEP(a.ip.String()), readyEP(b.ip.String())))
	f.createSlice(slice("web", "web-2", "http", corev1.ProtocolTCP, 9090, readyEP(cc.ip.String())))
	dnsSvc := f.createSvc(service("udp", func(s *corev1.Service) {
		s.Spec.Ports = []corev1.ServicePort{{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP, TargetPort: intstr.FromInt32(5353)}}
	}))
	f.createSlice(slice("udp", "udp-1", "dns", corev1.ProtocolUDP, 5353, readyEP(a.ip.String()), readyEP(b.ip.String()), readyEP(cc.ip.String())))
	empty := f.createSvc(service("empty", nil))
	f.createSlice(slice("empty", "empty-1", "http", corev1.ProtocolTCP, 8080))
	sticky := f.createSvc(service("sticky", func(s *corev1.Service) {
		s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP
		s.Spec.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](60)}}
	}))
	f.createSlice(slice("sticky", "sticky-1", "http", corev1.ProtocolTCP, 8080, readyEP(a.ip.String()), readyEP(b.ip.String())))
	term := f.createSvc(service("term", nil))
	f.createSlice(slice("term", "term-1", "http", corev1.ProtocolTCP, 8080,
		ep{ip: a.ip.String(), serving: true, terminating: true}, readyEP(b.ip.String())))
	np := f.createSvc(service("np", func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeNodePort }))
	f.createSlice(slice("np", "np-1", "http", corev1.ProtocolTCP, 8080, readyEP(a.ip.String())))
	// Nothing may be programmed for these.
	f.createSvc(service("headless", func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }))
	f.createSlice(slice("headless", "headless-1", "http", corev1.ProtocolTCP, 8080, readyEP(a.ip.String())))
	f.createSvc(&corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "extname", Namespace: "default"},
		Spec: corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.invalid"}})

	waitFor(t, p, "all services", func(prog map[string][]proxy.ServicePort) bool {
		return endpointsOf(prog, "default/web") == 3 && endpointsOf(prog, "default/udp") == 3 &&
			endpointsOf(prog, "default/empty") == 0 && endpointsOf(prog, "default/sticky") == 2 &&
			endpointsOf(prog, "default/term") == 1 && endpointsOf(prog, "default/np") == 1
	})
	prog := p.Programmed()
	for _, k := range []string{"default/headless", "default/extname"} {
		if _, ok := prog[k]; ok {
			t.Errorf("%s is programmed: %v", k, prog[k])
		}
	}
	if mode == proxy.ModeNFTables {
		rs := l.nft("list", "table", "ip", proxy.TableName)
		for _, s := range []string{"default/headless", "default/extname", "svc-default/web/tcp/80"} {
			if has := strings.Contains(rs, s); has != (s == "svc-default/web/tcp/80") {
				t.Errorf("ruleset mentions %q: %v\n%s", s, has, rs)
			}
		}
	}

	webURL := fmt.Sprintf("http://%s/", web.Spec.ClusterIP)
	t.Run("spread", func(t *testing.T) {
		seen := spread(t, client.ns, webURL, 150)
		t.Logf("150 requests from a pod: %v", seen)
		for _, name := range []string{"a", "b", "c"} {
			if seen[name] == 0 {
				t.Errorf("endpoint %s got nothing: %v", name, seen)
			}
		}
	})
	t.Run("from the node", func(t *testing.T) {
		seen := spread(t, l.node, webURL, 30)
		t.Logf("30 requests from the node: %v", seen)
		if seen["a"]+seen["b"]+seen["c"] != 30 {
			t.Errorf("answers %v", seen)
		}
	})
	t.Run("udp", func(t *testing.T) {
		seen := map[string]int{}
		for range 30 {
			got, err := udpAsk(client.ns, fmt.Sprintf("%s:53", dnsSvc.Spec.ClusterIP))
			if err != nil {
				t.Fatalf("UDP through the cluster IP: %v", err)
			}
			seen[got]++
		}
		t.Logf("30 UDP flows: %v", seen)
		if len(seen) < 2 {
			t.Errorf("UDP flows all went to %v", seen)
		}
	})
	t.Run("no endpoints refused", func(t *testing.T) {
		start := time.Now()
		_, err := dialIn(client.ns, "tcp", empty.Spec.ClusterIP+":80", 3*time.Second)
		if !refused(err) {
			t.Fatalf("want refused, got %v", err)
		}
		t.Logf("refused in %v", time.Since(start))
		_, err = dialIn(l.node, "tcp", empty.Spec.ClusterIP+":80", 3*time.Second)
		if !refused(err) {
			t.Fatalf("from the node: want refused, got %v", err)
		}
	})
	t.Run("affinity", func(t *testing.T) {
		seen := spread(t, client.ns, fmt.Sprintf("http://%s/", sticky.Spec.ClusterIP), 30)
		if len(seen) != 1 {
			t.Errorf("ClientIP affinity: answers from %v, want one endpoint", seen)
		}
	})
	t.Run("terminating only as a fallback", func(t *testing.T) {
		url := fmt.Sprintf("http://%s/", term.Spec.ClusterIP)
		if seen := spread(t, client.ns, url, 20); seen["b"] != 20 {
			t.Fatalf("with a ready endpoint: %v, want all to b", seen)
		}
		f.updateSlice(slice("term", "term-1", "http", corev1.ProtocolTCP, 8080,
			ep{ip: a.ip.String(), serving: true, terminating: true}))
		waitFor(t, p, "term on its terminating endpoint", func(prog map[string][]proxy.ServicePort) bool {
			return endpointsOf(prog, "default/term") == 1 && prog["default/term"][0].Endpoints[0].IP == a.ip
		})
		if seen := spread(t, client.ns, url, 20); seen["a"] != 20 {
			t.Fatalf("only terminating: %v, want all to a", seen)
		}
	})
	t.Run("node port", func(t *testing.T) {
		port := np.Spec.Ports[0].NodePort
		// The node's own address on the bridge, from a pod and from the node.
		for _, ns := range []proxy.NetNS{client.ns, l.node} {
			if seen := spread(t, ns, fmt.Sprintf("http://198.18.0.1:%d/", port), 5); seen["a"] != 5 {
				t.Errorf("node port %d: %v", port, seen)
			}
		}
	})
	t.Run("scale to one", func(t *testing.T) {
		f.updateSlice(slice("web", "web-1", "http", corev1.ProtocolTCP, 8080, readyEP(a.ip.String())))
		if err := c.Client.DiscoveryV1().EndpointSlices("default").Delete(f.ctx, "web-2", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, p, "web scaled to one", func(prog map[string][]proxy.ServicePort) bool { return endpointsOf(prog, "default/web") == 1 })
		if seen := spread(t, client.ns, webURL, 30); seen["a"] != 30 {
			t.Errorf("after scaling to one: %v", seen)
		}
	})
	t.Run("delete", func(t *testing.T) {
		if err := c.Client.CoreV1().Services("default").Delete(f.ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, p, "web removed", func(prog map[string][]proxy.ServicePort) bool { _, ok := prog["default/web"]; return !ok })
		if mode == proxy.ModeNFTables {
			if rs := l.nft("list", "table", "ip", proxy.TableName); strings.Contains(rs, "default/web/") {
				t.Errorf("rules left for a deleted service:\n%s", rs)
			}
		}
		if _, err := dialIn(client.ns, "tcp", web.Spec.ClusterIP+":80", 3*time.Second); !refused(err) {
			t.Errorf("deleted service: want refused, got %v", err)
		}
	})
	if n := testutil.CollectAndCount(proxy.ProgrammingLatency); n == 0 {
		t.Errorf("no programming latency recorded")
	}
	stop()
	if mode == proxy.ModeNFTables {
		if out := l.nft("list", "tables"); strings.Contains(out, proxy.TableName) {
			t.Errorf("table left after shutdown: %s", out)
		}
	}
	if out, _ := exec.Command("ip", "-n", l.name+"-node", "route", "show", "table", "local", "198.19.0.0/16").CombinedOutput(); len(strings.TrimSpace(string(out))) != 0 {
		t.Errorf("service route left after shutdown: %s", out)
	}
}

// TestProxyRestartNoGap: a proxy stopped with its rules left in place is
// replaced by a new one while a client keeps connecting; no connection to
// the unchanged Service fails.
func TestProxyRestartNoGap(t *testing.T) {
	l := newLab(t)
	c := cluster.Start(t, cluster.WithoutDNS())
	f := fixture{t: t, client: c.Client, ctx: context.Background()}
	client := l.addPod("198.18.0.10")
	a, b := l.addPod("198.18.0.11"), l.addPod("198.18.0.12")
	a.serveHTTP(8080, "a")
	b.serveHTTP(8080, "b")
	web := f.createSvc(service("web", nil))
	f.createSlice(slice("web", "web-1", "http", corev1.ProtocolTCP, 8080, readyEP(a.ip.String()), readyEP(b.ip.String())))
	sticky := f.createSvc(service("sticky", func(s *corev1.Service) { s.Spec.SessionAffinity = corev1.ServiceAffinityClientIP }))
	f.createSlice(slice("sticky", "sticky-1", "http", corev1.ProtocolTCP, 8080, readyEP(a.ip.String()), readyEP(b.ip.String())))

	p1, stop1 := startProxy(t, c.Client, l, proxy.ModeNFTables, true)
	waitFor(t, p1, "web", func(prog map[string][]proxy.ServicePort) bool {
		return endpointsOf(prog, "default/web") == 2 && endpointsOf(prog, "default/sticky") == 2
	})
	first, err := get(client.ns, fmt.Sprintf("http://%s/", sticky.Spec.ClusterIP))
	if err != nil {
		t.Fatal(err)
	}
	stop1()

	url := fmt.Sprintf("http://%s/", web.Spec.ClusterIP)
	var failures, ok int
	var lastErr error
	stopTraffic := make(chan struct{})
	trafficDone := make(chan struct{})
	go func() {
		defer close(trafficDone)
		for {
			select {
			case <-stopTraffic:
				return
			default:
			}
			if _, err := get(client.ns, url); err != nil {
				failures++
				lastErr = err
			} else {
				ok++
			}
		}
	}()
	// Traffic flows on the rules left behind, then through the restart.
	p2, _ := startProxy(t, c.Client, l, proxy.ModeNFTables, false)
	waitFor(t, p2, "web after restart", func(prog map[string][]proxy.ServicePort) bool { return endpointsOf(prog, "default/web") == 2 })
	// A few more requests on the new proxy's rules.
	for range 20 {
		if _, err := get(client.ns, url); err != nil {
			t.Errorf("after restart: %v", err)
		}
	}
	close(stopTraffic)
	<-trafficDone
	t.Logf("during the restart: %d requests ok, %d failed", ok, failures)
	if failures > 0 {
		t.Errorf("%d requests failed across the restart (last: %v)", failures, lastErr)
	}
	// ClientIP affinity survived: the set was adopted, not recreated.
	for range 10 {
		if got, err := get(client.ns, fmt.Sprintf("http://%s/", sticky.Spec.ClusterIP)); err != nil || got != first {
			t.Errorf("affinity after restart: %q %v, want %q", got, err, first)
		}
	}
}

// TestProxyModeInvalid: an unknown mode is refused.
func TestProxyModeInvalid(t *testing.T) {
	if _, err := proxy.New(nil, proxy.Config{Mode: "ipvs"}); err == nil {
		t.Fatal("mode ipvs accepted")
	}
}
