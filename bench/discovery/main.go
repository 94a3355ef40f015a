// Command discovery benchmarks client-side discovery (pkg/discovery,
// pkg/headwaytest):
//
//   - headwaytest.StartE to ready: an in-process cluster (API, controllers,
//     simulated node, DNS answering) started one after another, the first
//     start of the process apart (it builds the OpenAPI documents the
//     others reuse);
//
//   - discovery update latency: one endpoint of a headless Service flips
//     ready/not ready in its EndpointSlice; time from the Update call to the
//     gRPC resolver (grpcresolver with an API client) handing gRPC the new
//     address list;
//
//   - the DNS path for the same change: time until the cluster DNS answers
//     the Service's name with the change (polled every 0.2 ms), and the TTL
//     and negative-caching time a caching client adds on top.
//
//     go run ./bench/discovery -out bench/results-discovery.md
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/serviceconfig"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/pkg/discovery/grpcresolver"
	"github.com/headway/headway/pkg/headwaytest"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("bench/discovery: ")
	starts := flag.Int("starts", 20, "clusters started one after another")
	changes := flag.Int("changes", 300, "EndpointSlice changes measured")
	endpoints := flag.Int("endpoints", 10, "endpoints of the headless Service")
	ttl := flag.Duration("dns-ttl", 5*time.Second, "the cluster DNS's TTL (and negative caching time)")
	out := flag.String("out", "", "also write the markdown figures here")
	flag.Parse()

	var b strings.Builder
	fmt.Fprintln(&b, "| figure | value | target | meets | notes |")
	fmt.Fprintln(&b, "| --- | --- | --- | --- | --- |")
	loadBefore := loadavg()

	first, rest, stops, err := benchStart(*starts)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(&b, "| headwaytest.Start → ready, first in the process | %s | | | builds the OpenAPI documents the later starts reuse |\n", ms(first))
	fmt.Fprintf(&b, "| headwaytest.Start → ready (median / p99 of %d) | %s / %s | < 100 ms | %s | API serving, controllers running, node Ready, DNS answering; stop median %s |\n",
		len(rest), ms(pct(rest, 50)), ms(pct(rest, 99)), meets(pct(rest, 50) < 100*time.Millisecond), ms(pct(stops, 50)))

	r, err := benchChanges(*changes, *endpoints, *ttl)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Fprintf(&b, "| slice change → resolver update (p50 / p99 / max of %d) | %s / %s / %s | p99 < 10 ms | %s | Update call → grpcresolver's UpdateState with the new list (API write, watch, informer, resolver) |\n",
		len(r.resolver), ms(pct(r.resolver, 50)), ms(pct(r.resolver, 99)), ms(pct(r.resolver, 100)), meets(pct(r.resolver, 99) < 10*time.Millisecond))
	fmt.Fprintf(&b, "| slice change → cluster DNS answer (p50 / p99 / max of %d) | %s / %s / %s | | | Update call → first A answer for the Service with the change (polled every 0.2 ms); what a client without a cache sees |\n",
		len(r.dns), ms(pct(r.dns, 50)), ms(pct(r.dns, 99)), ms(pct(r.dns, 100)))
	fmt.Fprintf(&b, "| DNS path with a caching client: added staleness | up to %s (mean %s) | | | the answers' TTL is %s: a cached answer lives that long after the change |\n",
		r.answerTTL, r.answerTTL/2, r.answerTTL)
	fmt.Fprintf(&b, "| DNS path with a caching client: a new pod's name asked before it existed | up to %s | | | NXDOMAIN is cached for the SOA minimum, %s (negative caching) |\n",
		r.negativeTTL, r.negativeTTL)
	fmt.Fprintf(&b, "\n- Load average before: %s; after: %s (2 CPUs shared with other work: read the figures with that in mind).\n", loadBefore, loadavg())
	fmt.Fprintf(&b, "- In-process: API server (memory store), controllers, DNS, the resolver and its informer share the process and its cores; client-go, protobuf.\n")
	fmt.Print(b.String())
	if *out != "" {
		if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

func benchStart(n int) (first time.Duration, rest, stops []time.Duration, err error) {
	for i := 0; i <= n; i++ {
		c, err := headwaytest.StartE(headwaytest.Options{})
		if err != nil {
			return 0, nil, nil, err
		}
		if i == 0 {
			first = c.StartedIn
		} else {
			rest = append(rest, c.StartedIn)
		}
		t := time.Now()
		if err := c.Stop(); err != nil {
			return 0, nil, nil, err
		}
		stops = append(stops, time.Since(t))
	}
	return first, rest, stops, nil
}

type changeResult struct {
	resolver, dns          []time.Duration
	answerTTL, negativeTTL time.Duration
}

// clientConn hands each address list the resolver pushes to a channel.
type clientConn struct {
	resolver.ClientConn
	ch chan []string
}

func (c *clientConn) UpdateState(s resolver.State) error {
	var addrs []string
	for _, e := range s.Endpoints {
		addrs = append(addrs, e.Addresses[0].Addr)
	}
	c.ch <- addrs
	return nil
}
func (c *clientConn) ReportError(error)                                    {}
func (c *clientConn) ParseServiceConfig(string) *serviceconfig.ParseResult { return nil }

func benchChanges(n, endpoints int, ttl time.Duration) (changeResult, error) {
	var res changeResult
	// No controllers: the benchmark writes the slice itself, and nothing
	// else does.
	c, err := headwaytest.StartE(headwaytest.Options{NoControllers: true, DNSTTL: ttl})
	if err != nil {
		return res, err
	}
	defer c.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
	if _, err := c.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return res, err
	}
	name, port, proto := "http", int32(80), corev1.ProtocolTCP
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-x", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: &name, Port: &port, Protocol: &proto}},
	}
	for i := range endpoints {
		t := true
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("198.18.0.%d", i+2)},
			Conditions: discoveryv1.EndpointConditions{Ready: &t}})
	}
	cur, err := c.Client.DiscoveryV1().EndpointSlices("default").Create(ctx, slice, metav1.CreateOptions{})
	if err != nil {
		return res, err
	}

	cc := &clientConn{ch: make(chan []string, 1000)}
	u, _ := url.Parse("headway:///web.default:http")
	r, err := grpcresolver.NewBuilder(c.Client).Build(resolver.Target{URL: *u}, cc, resolver.BuildOptions{})
	if err != nil {
		return res, err
	}
	defer r.Close()
	waitList := func(want int) error {
		for {
			select {
			case got := <-cc.ch:
				if len(got) == want {
					return nil
				}
			case <-ctx.Done():
				return fmt.Errorf("the resolver never listed %d addresses", want)
			}
		}
	}
	if err := waitList(endpoints); err != nil {
		return res, err
	}

	// The DNS side: one A query for the Service's name, over UDP.
	qname := "web.default.svc." + c.ClusterDomain + "."
	dc := &dns.Client{Net: "udp", Timeout: time.Second}
	query := func() (*dns.Msg, error) {
		m := new(dns.Msg)
		m.SetQuestion(qname, dns.TypeA)
		in, _, err := dc.ExchangeContext(ctx, m, c.DNSAddr)
		return in, err
	}
	countA := func(m *dns.Msg) int {
		n := 0
		for _, rr := range m.Answer {
			if _, ok := rr.(*dns.A); ok {
				n++
			}
		}
		return n
	}
	// Wait until the DNS shows every endpoint, and read the answer's TTL.
	for {
		m, err := query()
		if err == nil && countA(m) == endpoints {
			res.answerTTL = time.Duration(m.Answer[0].Header().Ttl) * time.Second
			break
		}
		if ctx.Err() != nil {
			return res, fmt.Errorf("the DNS never answered %s with %d addresses", qname, endpoints)
		}
		time.Sleep(time.Millisecond)
	}
	// The negative caching time: the SOA minimum of an NXDOMAIN.
	nx := new(dns.Msg)
	nx.SetQuestion("web-99.web.default.svc."+c.ClusterDomain+".", dns.TypeA)
	if in, _, err := dc.ExchangeContext(ctx, nx, c.DNSAddr); err == nil {
		for _, rr := range in.Ns {
			if soa, ok := rr.(*dns.SOA); ok {
				res.negativeTTL = time.Duration(min(soa.Minttl, soa.Hdr.Ttl)) * time.Second
			}
		}
	}

	for i := range n {
		ready := i%2 == 1 // flip the last endpoint: not ready, ready, ...
		want := endpoints
		if !ready {
			want--
		}
		next := cur.DeepCopy()
		next.Endpoints[endpoints-1].Conditions.Ready = &ready
		start := time.Now()
		cur, err = c.Client.DiscoveryV1().EndpointSlices("default").Update(ctx, next, metav1.UpdateOptions{})
		if err != nil {
			return res, err
		}
		// DNS poller and resolver wait run side by side.
		dnsDone := make(chan time.Duration, 1)
		go func() {
			for ctx.Err() == nil {
				if m, err := query(); err == nil && countA(m) == want {
					dnsDone <- time.Since(start)
					return
				}
				time.Sleep(200 * time.Microsecond)
			}
			dnsDone <- 0
		}()
		if err := waitList(want); err != nil {
			return res, err
		}
		res.resolver = append(res.resolver, time.Since(start))
		res.dns = append(res.dns, <-dnsDone)
	}
	return res, nil
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	return s[max(0, min(len(s)-1, i-1))]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }

func meets(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	return strings.Join(f[:3], " ")
}
