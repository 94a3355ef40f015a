// Command proxy benchmarks Headway's Service proxy (internal/proxy) on a node
// made of network namespaces it creates and removes: programming latency with
// many Services, and throughput through a ClusterIP against straight to the
// pod. It needs root; all traffic stays inside its namespaces (198.18.0.0/15)
// and the API server is on 127.0.0.1.
//
//	sudo go run ./bench/proxy -out bench/results-proxy.md
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/proxy"
	"github.com/headway/headway/internal/testing/cluster"
)

type options struct {
	out       string
	services  int
	endpoints int
	updates   int
	duration  time.Duration
	runs      int
}

var (
	prefix = fmt.Sprintf("hwpb%d", os.Getpid())
	made   []string // namespaces to remove
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("bench/proxy: ")
	var o options
	flag.StringVar(&o.out, "out", "", "also write the markdown figures to this file")
	flag.IntVar(&o.services, "services", 1000, "Services for the programming latency benchmark")
	flag.IntVar(&o.endpoints, "endpoints", 10, "endpoints per Service")
	flag.IntVar(&o.updates, "updates", 200, "single EndpointSlice updates timed one after another")
	flag.DurationVar(&o.duration, "duration", 2*time.Second, "length of one throughput run")
	flag.IntVar(&o.runs, "runs", 3, "throughput runs per path (median reported)")
	flag.Parse()
	if os.Geteuid() != 0 {
		log.Fatal("needs root: it creates network namespaces and programs nftables inside them")
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() { <-sig; cleanup(); os.Exit(1) }()
	defer cleanup()

	var md strings.Builder
	if err := latency(&md, o); err != nil {
		cleanup()
		log.Fatal(err)
	}
	if err := throughput(&md, o); err != nil {
		cleanup()
		log.Fatal(err)
	}
	fmt.Print(md.String())
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(md.String()), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

func sh(args ...string) error {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

func must(err error) {
	if err != nil {
		cleanup()
		log.Fatal(err)
	}
}

func cleanup() {
	for _, ns := range made {
		exec.Command("ip", "netns", "del", ns).Run()
	}
	made = nil
}

// node makes a namespace with the bridge headway0 (198.18.0.1/16).
func node(name string) proxy.NetNS {
	ns := prefix + "-" + name
	must(sh("ip", "netns", "add", ns))
	made = append(made, ns)
	for _, c := range [][]string{
		{"link", "set", "lo", "up"},
		{"link", "add", "headway0", "type", "bridge"},
		{"addr", "add", "198.18.0.1/16", "dev", "headway0"},
		{"link", "set", "headway0", "up"},
	} {
		must(sh(append([]string{"ip", "-n", ns}, c...)...))
	}
	must(sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"))
	return proxy.NetNS{Path: "/var/run/netns/" + ns}
}

// pod joins a namespace with address ip to the node's bridge.
func pod(nodeName, name, ip string, i int) proxy.NetNS {
	ns, nodeNS := prefix+"-"+name, prefix+"-"+nodeName
	must(sh("ip", "netns", "add", ns))
	made = append(made, ns)
	veth := fmt.Sprintf("veth%d", i)
	must(sh("ip", "-n", nodeNS, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns))
	must(sh("ip", "-n", nodeNS, "link", "set", veth, "master", "headway0", "up"))
	for _, c := range [][]string{
		{"link", "set", "lo", "up"},
		{"addr", "add", ip + "/16", "dev", "eth0"},
		{"link", "set", "eth0", "up"},
		{"route", "add", "default", "via", "198.18.0.1"},
	} {
		must(sh(append([]string{"ip", "-n", ns}, c...)...))
	}
	return proxy.NetNS{Path: "/var/run/netns/" + ns}
}

func runProxy(client kubernetes.Interface, ns proxy.NetNS, mode string) (*proxy.Proxy, func()) {
	p, err := proxy.New(client, proxy.Config{
		Mode: mode, NetNS: ns, Bridge: "headway0",
		ServiceCIDR: netip.MustParsePrefix("198.19.0.0/16"), PodCIDR: netip.MustParsePrefix("198.18.0.0/16"),
	})
	must(err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	return p, func() { cancel(); <-done }
}

func wait(p *proxy.Proxy, d time.Duration, cond func(map[string][]proxy.ServicePort) bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return p.WaitFor(ctx, cond)
}

func epIP(svc, j int) string { return fmt.Sprintf("198.18.%d.%d", 10+(svc*16+j)/250, 2+(svc*16+j)%250) }

func mkSlice(svc, gen, n int) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc%d-1", svc), Namespace: "default",
			Labels:      map[string]string{proxy.ServiceNameLabel: fmt.Sprintf("svc%d", svc)},
			Annotations: map[string]string{corev1.EndpointsLastChangeTriggerTime: time.Now().UTC().Format(time.RFC3339Nano)}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](8080)}},
	}
	for j := range n {
		ip := epIP(svc, j)
		if j == 0 && gen > 0 {
			ip = fmt.Sprintf("198.18.%d.%d", 200+(gen/250)%50, 2+gen%250)
		}
		s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}})
	}
	return s
}

func parallel(n, workers int, fn func(i int) error) error {
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	next := make(chan int)
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(i); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		}()
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	select {
	case err := <-errs:
		return err
	default:
		return nil
	}
}

func quantile(d []time.Duration, q float64) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// metric returns the sum and count of a histogram in the default registry.
func metric(name string) (float64, uint64) {
	mfs, _ := prometheus.DefaultGatherer.Gather()
	var sum float64
	var count uint64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.Metric {
			if h := m.GetHistogram(); h != nil && labelIs(m, "mode", "nftables") {
				sum += h.GetSampleSum()
				count += h.GetSampleCount()
			}
		}
	}
	return sum, count
}

func labelIs(m *dto.Metric, k, v string) bool {
	for _, l := range m.Label {
		if l.GetName() == k {
			return l.GetValue() == v
		}
	}
	return false
}

func latency(md *strings.Builder, o options) error {
	dir, err := os.MkdirTemp("", "headway-bench-proxy")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c, err := cluster.StartE(dir, cluster.WithoutDNS())
	if err != nil {
		return err
	}
	defer c.Stop()
	ctx := context.Background()
	nodeNS := node("lat")
	log.Printf("creating %d Services × %d endpoints", o.services, o.endpoints)
	start := time.Now()
	err = parallel(o.services, 16, func(i int) error {
		svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("svc%d", i), Namespace: "default"},
			Spec: corev1.ServiceSpec{Selector: map[string]string{"app": fmt.Sprintf("svc%d", i)},
				Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080)}}}}
		if _, err := c.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			return err
		}
		_, err := c.Client.DiscoveryV1().EndpointSlices("default").Create(ctx, mkSlice(i, 0, o.endpoints), metav1.CreateOptions{})
		return err
	})
	if err != nil {
		return err
	}
	log.Printf("created in %v", time.Since(start).Round(time.Millisecond))
	all := func(prog map[string][]proxy.ServicePort) bool {
		n := 0
		for _, ports := range prog {
			if len(ports) == 1 && len(ports[0].Endpoints) == o.endpoints {
				n++
			}
		}
		return n >= o.services
	}

	// Cold start: a proxy starting against the full cluster.
	sum0, n0 := metric("headway_proxy_sync_duration_seconds")
	start = time.Now()
	p, stop := runProxy(c.Client, nodeNS, proxy.ModeNFTables)
	if err := wait(p, 2*time.Minute, all); err != nil {
		stop()
		return fmt.Errorf("cold start: %w", err)
	}
	cold := time.Since(start)
	sum1, n1 := metric("headway_proxy_sync_duration_seconds")
	rules, _ := exec.Command("ip", "netns", "exec", prefix+"-lat", "nft", "list", "table", "ip", proxy.TableName).Output()
	chains := strings.Count(string(rules), "\tchain ")
	log.Printf("cold start: %v (%d syncs, %.0f ms in syncs), %d chains", cold, n1-n0, (sum1-sum0)*1000, chains)

	// One change at a time: update → rules in place.
	var lat []time.Duration
	ps0, pn0 := metric("headway_proxy_programming_latency_seconds")
	for u := range o.updates {
		i := rand.IntN(o.services)
		s := mkSlice(i, u+1, o.endpoints)
		want := netip.MustParseAddr(s.Endpoints[0].Addresses[0])
		key := fmt.Sprintf("default/svc%d", i)
		t0 := time.Now()
		cur, err := c.Client.DiscoveryV1().EndpointSlices("default").Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			stop()
			return err
		}
		s.ResourceVersion = cur.ResourceVersion
		if _, err := c.Client.DiscoveryV1().EndpointSlices("default").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
			stop()
			return err
		}
		err = wait(p, 30*time.Second, func(prog map[string][]proxy.ServicePort) bool {
			ports := prog[key]
			return len(ports) == 1 && slices.ContainsFunc(ports[0].Endpoints, func(e proxy.Endpoint) bool { return e.IP == want })
		})
		if err != nil {
			stop()
			return fmt.Errorf("update %d: %w", u, err)
		}
		lat = append(lat, time.Since(t0))
	}
	ps1, pn1 := metric("headway_proxy_programming_latency_seconds")
	log.Printf("single updates: p50 %v p99 %v", quantile(lat, 0.5), quantile(lat, 0.99))

	// A burst: 100 slices changed at once.
	burst := min(100, o.services)
	start = time.Now()
	err = parallel(burst, 16, func(i int) error {
		s := mkSlice(i, 100000+i, o.endpoints)
		cur, err := c.Client.DiscoveryV1().EndpointSlices("default").Get(ctx, s.Name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		s.ResourceVersion = cur.ResourceVersion
		_, err = c.Client.DiscoveryV1().EndpointSlices("default").Update(ctx, s, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		stop()
		return err
	}
	err = wait(p, time.Minute, func(prog map[string][]proxy.ServicePort) bool {
		for i := range burst {
			want := netip.MustParseAddr(mkSlice(i, 100000+i, 1).Endpoints[0].Addresses[0])
			ports := prog[fmt.Sprintf("default/svc%d", i)]
			if len(ports) != 1 || !slices.ContainsFunc(ports[0].Endpoints, func(e proxy.Endpoint) bool { return e.IP == want }) {
				return false
			}
		}
		return true
	})
	if err != nil {
		stop()
		return err
	}
	burstTook := time.Since(start)
	stop()

	fmt.Fprintf(md, "### Programming latency (nftables, %d Services × %d endpoints)\n\n", o.services, o.endpoints)
	fmt.Fprintf(md, "| figure | value | notes |\n| --- | --- | --- |\n")
	fmt.Fprintf(md, "| cold start → all %d Services programmed | %v | proxy start (informer list + one transaction): %d syncs, %.0f ms inside syncs; %d chains in the table |\n",
		o.services, cold.Round(time.Millisecond), n1-n0, (sum1-sum0)*1000, chains)
	fmt.Fprintf(md, "| one EndpointSlice update → rules in place, p50 | %v | %d updates one after another, from the Update call to the proxy's transaction done |\n",
		quantile(lat, 0.5).Round(10*time.Microsecond), o.updates)
	fmt.Fprintf(md, "| same, p99 | %v | max %v |\n", quantile(lat, 0.99).Round(10*time.Microsecond), quantile(lat, 1).Round(10*time.Microsecond))
	if pn1 > pn0 {
		fmt.Fprintf(md, "| proxy's own metric: event received → rules in place, mean | %v | headway_proxy_programming_latency_seconds over the single updates |\n",
			time.Duration((ps1-ps0)/float64(pn1-pn0)*float64(time.Second)).Round(10*time.Microsecond))
	}
	fmt.Fprintf(md, "| %d EndpointSlices updated at once → all in place | %v | 16 concurrent clients |\n\n", burst, burstTook.Round(time.Millisecond))
	return nil
}

// throughput compares a client pod's bulk download and connection rate
// straight to a pod against through a ClusterIP.
func throughput(md *strings.Builder, o options) error {
	dir, err := os.MkdirTemp("", "headway-bench-proxy")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	c, err := cluster.StartE(dir, cluster.WithoutDNS())
	if err != nil {
		return err
	}
	defer c.Stop()
	ctx := context.Background()
	node("tp")
	nodeNS := proxy.NetNS{Path: "/var/run/netns/" + prefix + "-tp"}
	clientNS := pod("tp", "tpc", "198.18.0.10", 0)
	serverNS := pod("tp", "tps", "198.18.0.11", 1)
	stopServers := serve(serverNS, "198.18.0.11")
	defer stopServers()
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "bulk", Namespace: "default"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "bulk"}, Ports: []corev1.ServicePort{
			{Name: "bulk", Port: 5201, TargetPort: intstr.FromInt32(5201)},
			{Name: "rr", Port: 5202, TargetPort: intstr.FromInt32(5202)},
		}}}
	got, err := c.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	es := &discoveryv1.EndpointSlice{ObjectMeta: metav1.ObjectMeta{Name: "bulk-1", Namespace: "default", Labels: map[string]string{proxy.ServiceNameLabel: "bulk"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("bulk"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](5201)},
		},
		Endpoints: []discoveryv1.Endpoint{{Addresses: []string{"198.18.0.11"}}}}
	es2 := es.DeepCopy()
	es2.Name = "bulk-2"
	es2.Ports = []discoveryv1.EndpointPort{{Name: ptr.To("rr"), Protocol: ptr.To(corev1.ProtocolTCP), Port: ptr.To[int32](5202)}}
	for _, s := range []*discoveryv1.EndpointSlice{es, es2} {
		if _, err := c.Client.DiscoveryV1().EndpointSlices("default").Create(ctx, s, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	clusterIP := got.Spec.ClusterIP
	ready := func(prog map[string][]proxy.ServicePort) bool {
		ports := prog["default/bulk"]
		return len(ports) == 2 && len(ports[0].Endpoints) == 1 && len(ports[1].Endpoints) == 1
	}

	type result struct{ bulk, rr float64 }
	measure := func(ip string) result {
		var bulks, rrs []float64
		for range o.runs {
			bulks = append(bulks, bulkRate(clientNS, ip+":5201", o.duration))
			rrs = append(rrs, connRate(clientNS, ip+":5202", o.duration))
		}
		slices.Sort(bulks)
		slices.Sort(rrs)
		return result{bulks[len(bulks)/2], rrs[len(rrs)/2]}
	}
	fmt.Fprintf(md, "### Throughput: ClusterIP against straight to the pod (one client pod, one server pod, one bridge)\n\n")
	fmt.Fprintf(md, "| path | bulk TCP (Gbit/s) | new connections/s | bulk ratio | connections ratio |\n| --- | --- | --- | --- | --- |\n")
	var direct result
	for _, mode := range []string{proxy.ModeNFTables, proxy.ModeUserspace} {
		p, stop := runProxy(c.Client, nodeNS, mode)
		if err := wait(p, 30*time.Second, ready); err != nil {
			stop()
			return fmt.Errorf("%s: %w", mode, err)
		}
		if mode == proxy.ModeNFTables {
			direct = measure("198.18.0.11")
			fmt.Fprintf(md, "| pod IP (direct) | %.2f | %.0f | 1 | 1 |\n", direct.bulk*8/1e9, direct.rr)
		}
		r := measure(clusterIP)
		fmt.Fprintf(md, "| ClusterIP, %s | %.2f | %.0f | %.2f | %.2f |\n", mode, r.bulk*8/1e9, r.rr, r.bulk/direct.bulk, r.rr/direct.rr)
		log.Printf("%s: bulk %.2f Gbit/s (direct %.2f), %.0f conn/s (direct %.0f)", mode, r.bulk*8/1e9, direct.bulk*8/1e9, r.rr, direct.rr)
		stop()
	}
	fmt.Fprintf(md, "\nMedian of %d runs of %v each; bulk = one connection reading what the server writes, connections = connect, 1-byte request, 1-byte answer, close, one after another. nftables ratio target ≥ 0.9.\n", o.runs, o.duration)
	return nil
}

// serve starts, in ns, a bulk sender on :5201 and a 1-byte echo on :5202.
func serve(ns proxy.NetNS, ip string) func() {
	var lns []net.Listener
	for _, port := range []int{5201, 5202} {
		var ln net.Listener
		must(ns.Do(func() error {
			var err error
			ln, err = net.Listen("tcp", fmt.Sprintf("%s:%d", ip, port))
			return err
		}))
		lns = append(lns, ln)
		go func() {
			buf := make([]byte, 256<<10)
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					if port == 5201 {
						for {
							if _, err := c.Write(buf); err != nil {
								return
							}
						}
					}
					b := make([]byte, 1)
					if _, err := io.ReadFull(c, b); err == nil {
						c.Write(b)
					}
				}()
			}
		}()
	}
	return func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
}

func dial(ns proxy.NetNS, addr string) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 3*time.Second)
		return err
	})
	return c, err
}

// bulkRate reads from addr for d: bytes/s.
func bulkRate(ns proxy.NetNS, addr string, d time.Duration) float64 {
	c, err := dial(ns, addr)
	must(err)
	defer c.Close()
	buf := make([]byte, 256<<10)
	var n int64
	start := time.Now()
	c.SetReadDeadline(start.Add(d))
	for {
		k, err := c.Read(buf)
		n += int64(k)
		if err != nil {
			break
		}
	}
	return float64(n) / time.Since(start).Seconds()
}

// connRate opens connections one after another for d: per second.
func connRate(ns proxy.NetNS, addr string, d time.Duration) float64 {
	n := 0
	start := time.Now()
	b := []byte{1}
	for time.Since(start) < d {
		c, err := dial(ns, addr)
		must(err)
		c.Write(b)
		if _, err := io.ReadFull(c, b); err != nil {
			must(fmt.Errorf("request %d to %s: %w", n, addr, err))
		}
		c.Close()
		n++
	}
	return float64(n) / time.Since(start).Seconds()
}
