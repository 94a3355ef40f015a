package network_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/agent/network"
	"github.com/headway/headway/internal/agent/nsfile"
	"github.com/headway/headway/internal/dns"
	"github.com/headway/headway/internal/testing/netnstest"
)

var (
	podDNSIP      = netip.MustParseAddr("198.19.250.10")
	podDNSCluster = netip.MustParsePrefix("198.18.250.0/24")
	podDNSAddr    = netip.AddrPortFrom(podDNSIP, 53).String()
)

// testPodDNS serves pods' sockets with a real DNS handler, as the app's
// DNS server does; fail makes it refuse them (a server that has stopped).
type testPodDNS struct {
	h    *dns.Handler
	fail bool

	mu      sync.Mutex
	sockets map[string][]uint64 // socket inodes by pod
	stops   map[string]func()
}

// stopAll stops serving every pod's sockets, as the process's end does.
func (s *testPodDNS) stopAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, stop := range s.stops {
		stop()
	}
}

func (s *testPodDNS) ServePod(pod string, udp *net.UDPConn, tcp *net.TCPListener) (func(), error) {
	if s.fail {
		return nil, errors.New("the test's DNS server refuses")
	}
	s.mu.Lock()
	s.sockets[pod] = append(s.sockets[pod], socketInode(udp), socketInode(tcp))
	s.mu.Unlock()
	srv := s.h.ServerOn(udp, tcp)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ctx) }()
	var once sync.Once
	stop := func() { once.Do(func() { cancel(); <-done }) }
	s.mu.Lock()
	s.stops[pod] = stop
	s.mu.Unlock()
	return stop, nil
}

func socketInode(c syscall.Conn) uint64 {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0
	}
	var st unix.Stat_t
	rc.Control(func(fd uintptr) { unix.Fstat(int(fd), &st) })
	return st.Ino
}

// podDNSSetup makes the node network (in the test's own namespaces) with a
// DNS handler that forwards names outside its zone to an upstream on the
// node, for clients in the pod range only: a query for such a name is
// answered when the server sees the pod's address, REFUSED when it sees
// the DNS address.
func podDNSSetup(t *testing.T, fail bool) (*network.Network, *testPodDNS) {
	n, pd, _ := podDNSSetupConfig(t, fail)
	return n, pd
}

func podDNSSetupConfig(t *testing.T, fail bool) (*network.Network, *testPodDNS, network.Config) {
	t.Helper()
	upstream := mdns.HandlerFunc(func(w mdns.ResponseWriter, q *mdns.Msg) {
		m := new(mdns.Msg)
		m.SetReply(q)
		m.Answer = append(m.Answer, &mdns.A{Hdr: mdns.RR_Header{Name: q.Question[0].Name, Rrtype: mdns.TypeA, Class: mdns.ClassINET, Ttl: 5},
			A: net.ParseIP("198.18.251.77")})
		w.WriteMsg(m)
	})
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, us := range []*mdns.Server{{PacketConn: pc, Handler: upstream}, {Listener: ln, Handler: upstream}} {
		go us.ActivateAndServe()
		t.Cleanup(func() { us.Shutdown() })
	}
	h, err := dns.New(dns.Config{Zone: "cluster.local", Metrics: dns.NewMetrics(),
		Upstreams: []string{pc.LocalAddr().String()}, RecursionFrom: []netip.Prefix{podDNSCluster}})
	if err != nil {
		t.Fatal(err)
	}
	h.Apply(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: "198.19.250.1", ClusterIPs: []string{"198.19.250.1"}, Type: corev1.ServiceTypeClusterIP,
			Ports: []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP}}}})
	pd := &testPodDNS{h: h, fail: fail, sockets: map[string][]uint64{}, stops: map[string]func(){}}
	cfg := network.Config{
		StateDir: t.TempDir(), Bridge: "hwtest0",
		ClusterCIDR: podDNSCluster, Gateway: netip.MustParseAddr("198.18.250.1"),
		ServiceCIDR: netip.MustParsePrefix("198.19.250.0/24"), DNSIP: podDNSIP, PodDNS: pd,
	}
	return setUp(t, cfg), pd, cfg
}

// setUp opens the network of cfg and sets it up; when the test ends, its
// pods are removed and it is torn down.
func setUp(t *testing.T, cfg network.Config) *network.Network {
	t.Helper()
	n, err := network.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Setup(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, o := range n.PodNamespaces() {
			n.RemovePod(o, true)
		}
		if err := n.Teardown(); err != nil {
			t.Error(err)
		}
	})
	return n
}

// ask sends one query for name to the DNS address over proto (from src
// when valid) and returns the answer's rcode and its first A record.
func ask(proto, name string, src netip.Addr) (int, string, error) {
	c := &mdns.Client{Net: proto, Timeout: 3 * time.Second}
	if src.IsValid() {
		c.Dialer = &net.Dialer{Timeout: 3 * time.Second}
		if proto == "udp" {
			c.Dialer.LocalAddr = net.UDPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
		} else {
			c.Dialer.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(src, 0))
		}
	}
	q := new(mdns.Msg)
	q.SetQuestion(name, mdns.TypeA)
	r, _, err := c.Exchange(q, podDNSAddr)
	if err != nil {
		return 0, "", err
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			return r.Rcode, a.A.String(), nil
		}
	}
	return r.Rcode, "", nil
}

func vethPackets(t *testing.T, owner string) uint64 {
	t.Helper()
	l, err := netlink.LinkByName(network.VethName(owner))
	if err != nil {
		t.Fatal(err)
	}
	s := l.Attrs().Statistics
	return s.RxPackets + s.TxPackets
}

// TestPodDNSOnItsLoopback: with a DNS server in the agent's process, a pod
// resolves a cluster name at the DNS address over UDP and TCP on sockets
// in its own network namespace (the node has no socket there: nothing
// else could answer), its packets never cross its veth, the server sees
// the pod's own address (recursion, allowed for the pod range only, is
// answered; the same query from the DNS address is refused); removing the
// pod closes the sockets and leaves nothing of ours in its namespace.
func TestPodDNSOnItsLoopback(t *testing.T) {
	if !netnstest.RunInOwn(t) {
		return
	}
	n, pd := podDNSSetup(t, false)
	pod, err := n.AddPod("pod-a", "default/a")
	if err != nil {
		t.Fatal(err)
	}
	if !n.PodDNSOpen("pod-a") {
		t.Fatal("the pod has no DNS sockets of its own")
	}
	before := vethPackets(t, "pod-a")
	network.InNS(t, pod.NetNS, func() {
		for _, proto := range []string{"udp", "tcp"} {
			for i := 0; i < 20; i++ {
				rc, a, err := ask(proto, "kubernetes.default.svc.cluster.local.", netip.Addr{})
				if err != nil || rc != mdns.RcodeSuccess || a != "198.19.250.1" {
					t.Errorf("pod → %s over %s: kubernetes.default: rcode %d, A %q, %v", podDNSAddr, proto, rc, a, err)
					return
				}
			}
			rc, a, err := ask(proto, "example.org.", netip.Addr{})
			if err != nil || rc != mdns.RcodeSuccess || a != "198.18.251.77" {
				t.Errorf("pod → %s over %s: example.org (forwarded for the pod's address): rcode %d, A %q, %v", podDNSAddr, proto, rc, a, err)
			}
			rc, _, err = ask(proto, "example.org.", podDNSIP)
			if err != nil || rc != mdns.RcodeRefused {
				t.Errorf("pod → %s over %s from %s: example.org: rcode %d, %v; want REFUSED (the observable that the server sees the source)", podDNSAddr, proto, podDNSIP, rc, err)
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	// 42 queries each way; a few packets of the link's own (IPv6
	// neighbour discovery) may pass meanwhile.
	if moved := vethPackets(t, "pod-a") - before; moved > 8 {
		t.Errorf("the pod's veth counted %d packets while the pod asked 42 queries: they crossed it", moved)
	}

	var nsStat unix.Stat_t
	if err := unix.Stat(pod.NetNS, &nsStat); err != nil {
		t.Fatal(err)
	}
	pd.mu.Lock()
	socks := pd.sockets["default/a"]
	pd.mu.Unlock()
	if len(socks) != 2 {
		t.Fatalf("the server was given %d sockets for the pod; want 2", len(socks))
	}
	if err := n.RemovePod("pod-a", true); err != nil {
		t.Fatal(err)
	}
	if n.PodDNSOpen("pod-a") {
		t.Error("the pod's DNS sockets are still open after RemovePod")
	}
	// No descriptor of this process is one of the pod's sockets or its
	// namespace, and no process is in it: nothing of ours keeps it.
	fds, _ := filepath.Glob("/proc/self/fd/*")
	for _, fd := range fds {
		l, _ := os.Readlink(fd)
		for _, ino := range socks {
			if l == fmt.Sprintf("socket:[%d]", ino) {
				t.Errorf("descriptor %s is still the pod's DNS socket %s", fd, l)
			}
		}
		if l == fmt.Sprintf("net:[%d]", nsStat.Ino) {
			t.Errorf("descriptor %s still holds the pod's namespace", fd)
		}
	}
	nss, _ := filepath.Glob("/proc/[0-9]*/task/[0-9]*/ns/net")
	for _, p := range nss {
		if l, _ := os.Readlink(p); l == fmt.Sprintf("net:[%d]", nsStat.Ino) {
			t.Errorf("%s is in the pod's namespace", p)
		}
	}
}

// TestPodDNSFallback: when the server cannot take a pod's sockets, the pod
// has no local route for the DNS address and reaches the node's socket
// through the bridge, as without a server in the process.
func TestPodDNSFallback(t *testing.T) {
	if !netnstest.RunInOwn(t) {
		return
	}
	n, pd := podDNSSetup(t, true)
	srv, err := pd.h.ListenNonLocal(podDNSAddr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ctx) }()
	defer func() { cancel(); <-done }()

	pod, err := n.AddPod("pod-b", "default/b")
	if err != nil {
		t.Fatal(err)
	}
	if n.PodDNSOpen("pod-b") {
		t.Fatal("the pod has DNS sockets though the server refused them")
	}
	before := vethPackets(t, "pod-b")
	network.InNS(t, pod.NetNS, func() {
		ns, err := netns.Get()
		if err != nil {
			t.Error(err)
			return
		}
		defer ns.Close()
		routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_LOCAL}, netlink.RT_FILTER_TABLE)
		if err != nil {
			t.Error(err)
			return
		}
		for _, r := range routes {
			if r.Dst != nil && r.Dst.IP.Equal(net.IP(podDNSIP.AsSlice())) {
				t.Errorf("the pod keeps a local route to %s: %v", podDNSIP, r)
			}
		}
		for _, proto := range []string{"udp", "tcp"} {
			rc, a, err := ask(proto, "kubernetes.default.svc.cluster.local.", netip.Addr{})
			if err != nil || rc != mdns.RcodeSuccess || a != "198.19.250.1" {
				t.Errorf("pod → %s over %s through the bridge: rcode %d, A %q, %v", podDNSAddr, proto, rc, a, err)
			}
		}
	})
	if moved := vethPackets(t, "pod-b") - before; moved < 2 {
		t.Errorf("the pod's veth counted %d packets: the queries did not take the bridge", moved)
	}
}

// askFrom resolves kubernetes.default at the DNS address in the namespace
// at nsPath over UDP and TCP.
func askFrom(t *testing.T, nsPath, when string) {
	t.Helper()
	network.InNS(t, nsPath, func() {
		for _, proto := range []string{"udp", "tcp"} {
			rc, a, err := ask(proto, "kubernetes.default.svc.cluster.local.", netip.Addr{})
			if err != nil || rc != mdns.RcodeSuccess || a != "198.19.250.1" {
				t.Errorf("%s: pod → %s over %s: rcode %d, A %q, %v", when, podDNSAddr, proto, rc, a, err)
			}
		}
	})
}

// TestAttachedPodDNSReopens: a pod whose namespace is its runtime's (CRI,
// attached through the CNI plugin) gets its own DNS sockets too; after the
// agent's process ends (its sockets close, the pod runs on), the next run
// adopting the pod (Reattach) opens them again in the recorded namespace;
// forgetting the pod closes them.
func TestAttachedPodDNSReopens(t *testing.T) {
	if !netnstest.RunInOwn(t) {
		return
	}
	n, pd, cfg := podDNSSetupConfig(t, false)
	nsPath := filepath.Join(t.TempDir(), "sandbox")
	if err := nsfile.Create(nsPath, unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsfile.Remove(nsPath) })
	if _, err := n.AttachPod("pod-c", "default/c", nsPath); err != nil {
		t.Fatal(err)
	}
	if !n.PodDNSOpen("pod-c") {
		t.Fatal("the attached pod has no DNS sockets of its own")
	}
	askFrom(t, nsPath, "attached")

	// The process ends; the runtime's namespace and the pod's veth stay.
	pd.stopAll()
	n2, err := network.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := n2.Setup(); err != nil {
		t.Fatal(err)
	}
	if ok, err := n2.Reattach("pod-c"); !ok || err != nil {
		t.Fatalf("Reattach: %v, %v", ok, err)
	}
	if !n2.PodDNSOpen("pod-c") {
		t.Fatal("the adopted pod's DNS sockets were not opened again")
	}
	askFrom(t, nsPath, "adopted")
	n2.ForgetAttached(map[string]bool{})
	if n2.PodDNSOpen("pod-c") {
		t.Error("ForgetAttached left the pod's DNS sockets open")
	}
	if ok, err := n2.Reattach("pod-c"); !ok || err != nil || n2.PodDNSOpen("pod-c") {
		t.Errorf("Reattach of a forgotten pod: %v, %v, sockets open %v; want its veth back and no sockets (no record of its namespace)", ok, err, n2.PodDNSOpen("pod-c"))
	}
}
