package network_test

import (
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/headway/headway/internal/agent/network"
	"github.com/headway/headway/internal/testing/netnstest"
)

// TestPodDNSIsNotTracked: a pod's DNS queries to the cluster DNS address,
// over UDP and TCP, reach a server bound there with the pod's own address
// and are answered, and conntrack (live in the node's namespace: the
// masquerade chain needs it, and other traffic to the same address is
// tracked) holds no entry for them.
func TestPodDNSIsNotTracked(t *testing.T) {
	if !netnstest.RunInOwn(t) {
		return
	}
	dnsIP := netip.MustParseAddr("198.19.250.10")
	n := setUp(t, network.Config{
		StateDir: t.TempDir(), Bridge: "hwtest0",
		ClusterCIDR: netip.MustParsePrefix("198.18.250.0/24"), Gateway: netip.MustParseAddr("198.18.250.1"),
		ServiceCIDR: netip.MustParsePrefix("198.19.250.0/24"), DNSIP: dnsIP, Masquerade: true,
	})

	// The cluster DNS server on the address: it answers with the address
	// the query came from.
	var mu sync.Mutex
	var from []string
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		mu.Lock()
		from = append(from, w.RemoteAddr().Network()+" "+w.RemoteAddr().String())
		mu.Unlock()
		m := new(dns.Msg)
		m.SetReply(q)
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
			A: net.ParseIP("198.18.250.99")})
		w.WriteMsg(m)
	})
	addr := netip.AddrPortFrom(dnsIP, 53).String()
	pc, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		go s.ActivateAndServe()
		t.Cleanup(func() { s.Shutdown() })
	}
	// Traffic to another port of the address, which conntrack follows.
	other, err := net.ListenPacket("udp", netip.AddrPortFrom(dnsIP, 5353).String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()

	pod, err := n.AddPod("pod-a", "default/a")
	if err != nil {
		t.Fatal(err)
	}
	network.InNS(t, pod.NetNS, func() {
		for _, proto := range []string{"udp", "tcp"} {
			c := &dns.Client{Net: proto, Timeout: 3 * time.Second}
			q := new(dns.Msg)
			q.SetQuestion("kubernetes.default.svc.cluster.local.", dns.TypeA)
			r, _, err := c.Exchange(q, addr)
			if err != nil {
				t.Errorf("pod → %s over %s: %v", addr, proto, err)
				continue
			}
			if len(r.Answer) != 1 || r.Answer[0].(*dns.A).A.String() != "198.18.250.99" {
				t.Errorf("pod → %s over %s: answer %v", addr, proto, r.Answer)
			}
		}
		c, err := net.Dial("udp", netip.AddrPortFrom(dnsIP, 5353).String())
		if err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		if _, err := c.Write([]byte("tracked")); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	buf := make([]byte, 64)
	other.SetReadDeadline(time.Now().Add(3 * time.Second))
	if _, _, err := other.ReadFrom(buf); err != nil {
		t.Fatalf("the pod's datagram to port 5353 did not arrive: %v", err)
	}
	mu.Lock()
	got := strings.Join(from, ", ")
	mu.Unlock()
	for _, proto := range []string{"udp", "tcp"} {
		if !strings.Contains(got, proto+" "+pod.IP.String()+":") {
			t.Errorf("the server saw queries from %s; want one over %s from the pod's address %s", got, proto, pod.IP)
		}
	}

	// This thread's table: /proc/net is the main thread's namespace, which
	// may be the pod's (a goroutine locked to the main thread keeps it when
	// it ends).
	runtime.LockOSThread()
	ct, err := os.ReadFile("/proc/thread-self/net/nf_conntrack")
	runtime.UnlockOSThread()
	if err != nil {
		t.Skipf("no conntrack table to read (%v): the DNS answers were checked, the tracking is not", err)
	}
	var tracked, control []string
	for _, l := range strings.Split(string(ct), "\n") {
		if !strings.Contains(l, "dst="+dnsIP.String()+" ") {
			continue
		}
		switch {
		case strings.Contains(l, "dport=53 "):
			tracked = append(tracked, l)
		case strings.Contains(l, "dport=5353 "):
			control = append(control, l)
		}
	}
	if len(control) == 0 {
		t.Fatalf("conntrack has no entry for the pod's datagram to port 5353; is it on in this namespace?\n%s", ct)
	}
	if len(tracked) > 0 {
		t.Errorf("conntrack follows the pod's DNS queries:\n%s", strings.Join(tracked, "\n"))
	}
}
