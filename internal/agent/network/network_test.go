package network

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/netnsrun"
)

func TestIPAMPersistsAndReuses(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.json")
	p := netip.MustParsePrefix("198.18.0.0/29")
	gw := netip.MustParseAddr("198.18.0.1")
	m, err := OpenIPAM(path, p, gw)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Addr]bool{}
	for _, o := range []string{"a", "b", "c", "d", "e"} {
		a, err := m.Allocate(o)
		if err != nil {
			t.Fatalf("allocate %s: %v", o, err)
		}
		if a == gw || seen[a] || !p.Contains(a) || a == p.Addr() || a.String() == "198.18.0.7" {
			t.Fatalf("allocate %s: bad or duplicate address %s", o, a)
		}
		seen[a] = true
	}
	if _, err := m.Allocate("f"); err == nil {
		t.Fatal("a /29 has 5 pod addresses; the sixth allocation succeeded")
	}
	aB, _ := m.Lookup("b")
	m2, err := OpenIPAM(path, p, gw)
	if err != nil {
		t.Fatal(err)
	}
	if again, _ := m2.Allocate("b"); again != aB {
		t.Fatalf("after reopening, b got %s, had %s", again, aB)
	}
	if err := m2.Release("b"); err != nil {
		t.Fatal(err)
	}
	if a, err := m2.Allocate("f"); err != nil || a != aB {
		t.Fatalf("the released address should go to f: got %s, %v", a, err)
	}
}

// Pods started together allocate at once: each gets its own address, and
// every allocation that returned is on disk (a reopened IPAM has it), also
// when the saves were shared; a release that returned is on disk too.
func TestIPAMConcurrentAllocationsAreEachPersisted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.json")
	p := netip.MustParsePrefix("198.18.0.0/24")
	gw := netip.MustParseAddr("198.18.0.1")
	m, err := OpenIPAM(path, p, gw)
	if err != nil {
		t.Fatal(err)
	}
	const n = 100
	got := make([]netip.Addr, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got[i], errs[i] = m.AllocateNamed(fmt.Sprintf("uid-%d", i), fmt.Sprintf("default/web-%d", i))
		}()
	}
	wg.Wait()
	seen := map[netip.Addr]int{}
	for i, a := range got {
		if errs[i] != nil {
			t.Fatalf("allocation %d: %v", i, errs[i])
		}
		if j, dup := seen[a]; dup || a == gw || !p.Contains(a) {
			t.Fatalf("allocation %d got %s (bad, or also given to %d)", i, a, j)
		}
		seen[a] = i
	}
	if err := m.Release("uid-7"); err != nil {
		t.Fatal(err)
	}
	m2, err := OpenIPAM(path, p, gw)
	if err != nil {
		t.Fatal(err)
	}
	for i, a := range got {
		on, ok := m2.Lookup(fmt.Sprintf("uid-%d", i))
		if i == 7 {
			if ok {
				t.Fatalf("uid-7 was released, but the file still gives it %s", on)
			}
			continue
		}
		if !ok || on != a {
			t.Fatalf("uid-%d was given %s; the file says %s (present: %v)", i, a, on, ok)
		}
	}
}

func TestResolvConfAndHosts(t *testing.T) {
	host := filepath.Join(t.TempDir(), "resolv.conf")
	os.WriteFile(host, []byte("nameserver 127.0.0.53\nnameserver 198.51.100.1\nsearch example.org\noptions edns0\n"), 0o644)
	s := DNSSettings{ClusterDNS: netip.MustParseAddr("198.19.0.10"), ClusterDomain: "cluster.local", HostResolvConf: host}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "default"},
		Spec: corev1.PodSpec{Hostname: "web-0", Subdomain: "nginx-headless", DNSPolicy: corev1.DNSClusterFirst}}
	cases := []struct {
		name   string
		policy corev1.DNSPolicy
		cfg    *corev1.PodDNSConfig
		want   string
	}{
		{"cluster first", corev1.DNSClusterFirst, nil,
			"nameserver 198.19.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local example.org\noptions ndots:5\n"},
		{"default skips a loopback resolver", corev1.DNSDefault, nil,
			"nameserver 198.51.100.1\nsearch example.org\noptions edns0\n"},
		{"none with dnsConfig", corev1.DNSNone, &corev1.PodDNSConfig{Nameservers: []string{"198.18.0.53"}, Searches: []string{"a.b"},
			Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr("2")}}},
			"nameserver 198.18.0.53\nsearch a.b\noptions ndots:2\n"},
		{"cluster first with an option override", corev1.DNSClusterFirst, &corev1.PodDNSConfig{Options: []corev1.PodDNSConfigOption{{Name: "ndots", Value: ptr("1")}}},
			"nameserver 198.19.0.10\nsearch default.svc.cluster.local svc.cluster.local cluster.local example.org\noptions ndots:1\n"},
	}
	for _, c := range cases {
		p := pod.DeepCopy()
		p.Spec.DNSPolicy, p.Spec.DNSConfig = c.policy, c.cfg
		if got := string(ResolvConf(p, s)); got != c.want {
			t.Errorf("%s:\n got %q\nwant %q", c.name, got, c.want)
		}
	}
	hosts := string(Hosts(pod, netip.MustParseAddr("198.18.0.5"), "cluster.local"))
	if !strings.Contains(hosts, "198.18.0.5\tweb-0.nginx-headless.default.svc.cluster.local\tweb-0\n") {
		t.Errorf("hosts lacks the pod's FQDN line:\n%s", hosts)
	}
	if Hostname(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}}) != "p" {
		t.Error("the hostname of a pod without spec.hostname is its name")
	}
}

func ptr[T any](v T) *T { return &v }

// needRoot skips tests that make namespaces and links.
func needRoot(t *testing.T) {
	t.Helper()
	if err := Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
}

// inNS runs fn on a thread in the namespace at path, and takes the thread
// back (one dropped there could be the main thread, which Go keeps: the
// namespace would live on).
func inNS(t *testing.T, path string, fn func()) {
	t.Helper()
	if err := netnsrun.Do(path, func() error { fn(); return nil }); err != nil {
		t.Error(err)
	}
}

// TestPodNetworks: two pods on the test bridge reach each other and the
// host reaches them; removing them leaves no namespace or link.
func TestPodNetworks(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	n, err := Open(Config{
		StateDir: dir, Bridge: "hwt-net",
		ClusterCIDR: netip.MustParsePrefix("198.18.250.0/24"),
		Gateway:     netip.MustParseAddr("198.18.250.1"),
		ServiceCIDR: netip.MustParsePrefix("198.19.250.0/24"),
		DNSIP:       netip.MustParseAddr("198.19.250.10"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, o := range n.PodNamespaces() {
			n.RemovePod(o, true)
		}
		if err := n.Teardown(); err != nil {
			t.Error(err)
		}
		if _, err := netlink.LinkByName("hwt-net"); err == nil {
			t.Error("bridge hwt-net left behind")
		}
	})
	if err := n.Setup(); err != nil {
		t.Fatal(err)
	}
	a, err := n.AddPod("pod-a", "")
	if err != nil {
		t.Fatal(err)
	}
	b, err := n.AddPod("pod-b", "")
	if err != nil {
		t.Fatal(err)
	}
	if again, err := n.AddPod("pod-a", ""); err != nil || again.IP != a.IP {
		t.Fatalf("AddPod again: %v, %v", again, err)
	}
	// A listener in pod b; the host and pod a connect to it.
	var ln net.Listener
	inNS(t, b.NetNS, func() {
		ln, err = net.Listen("tcp", netip.AddrPortFrom(b.IP, 8080).String())
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("hello from b"))
			c.Close()
		}
	}()
	get := func() (string, error) {
		d := net.Dialer{Timeout: 3 * time.Second}
		c, err := d.DialContext(context.Background(), "tcp", netip.AddrPortFrom(b.IP, 8080).String())
		if err != nil {
			return "", err
		}
		defer c.Close()
		out, err := io.ReadAll(c)
		return string(out), err
	}
	if got, err := get(); err != nil || got != "hello from b" {
		t.Fatalf("host → pod b: %q, %v", got, err)
	}
	inNS(t, a.NetNS, func() {
		if got, err := get(); err != nil || got != "hello from b" {
			t.Errorf("pod a → pod b: %q, %v", got, err)
		}
	})
	// The DNS address is local: a pod reaches a listener there.
	dl, err := net.Listen("tcp", "198.19.250.10:5353")
	if err != nil {
		t.Fatal(err)
	}
	defer dl.Close()
	go func() {
		if c, err := dl.Accept(); err == nil {
			c.Close()
		}
	}()
	inNS(t, a.NetNS, func() {
		c, err := net.DialTimeout("tcp", "198.19.250.10:5353", 3*time.Second)
		if err != nil {
			t.Errorf("pod a → DNS address on the host: %v", err)
			return
		}
		c.Close()
	})
	host := vethName("pod-a")
	if err := n.RemovePod("pod-a", true); err != nil {
		t.Fatal(err)
	}
	if _, err := netlink.LinkByName(host); err == nil {
		t.Errorf("veth %s still there after RemovePod", host)
	}
	if _, err := os.Stat(a.NetNS); !os.IsNotExist(err) {
		t.Errorf("namespace file %s still there: %v", a.NetNS, err)
	}
}

func TestIPAMGivesANameItsAddressBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ipam.json")
	m, err := OpenIPAM(path, netip.MustParsePrefix("198.18.0.0/24"), netip.MustParseAddr("198.18.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	web1, err := m.AllocateNamed("uid-1", "default/web-1")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := m.AllocateNamed("uid-2", "default/other")
	if err := m.Release("uid-1"); err != nil {
		t.Fatal(err)
	}
	// Another pod comes first: it must not take web-1's address while a
	// free one remains after the last handed out.
	third, _ := m.AllocateNamed("uid-3", "default/third")
	if third == web1 {
		t.Fatalf("a new name got the released address %s of web-1", web1)
	}
	// web-1 made again (a new UID), also after a restart (reloaded file).
	m2, err := OpenIPAM(path, netip.MustParsePrefix("198.18.0.0/24"), netip.MustParseAddr("198.18.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := m2.AllocateNamed("uid-4", "default/web-1")
	if err != nil || again != web1 {
		t.Fatalf("web-1 again: %v, %v; want its old address %s", again, err, web1)
	}
	// While the address is taken, the name gets another.
	if a, _ := m2.AllocateNamed("uid-5", "default/web-1"); a == web1 || a == other {
		t.Fatalf("a second owner named web-1 got a used address %s", a)
	}
}
