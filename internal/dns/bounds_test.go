package dns_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"os/exec"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	mdns "github.com/miekg/dns"

	"github.com/headway/headway/internal/dns"
)

// The probe: SRV on a 750-endpoint headless Service from a client that
// puts its own OPT record with 65535 bytes in the query got a 56.7 KB UDP
// answer, while `dig +bufsize=65535` got at most 1,226 bytes. The server
// honoured any advertised size; dig 9.18 never advertised 65535 (it sends
// 1232 for any +bufsize of 32768 or more). Now no UDP answer is over 1232
// bytes, whatever the client advertises; TC sends it to TCP.
func TestUDPAnswersNeverOver1232Bytes(t *testing.T) {
	_, addr := serve(t, dns.Config{}, append(fixture(), bigHeadless(750)...)...)
	srv := "_web._tcp.big.default.svc.cluster.local."
	for _, tc := range []struct {
		name  string
		qtype uint16
		size  uint16
	}{
		{srv, mdns.TypeSRV, 65535},
		{srv, mdns.TypeSRV, 4096},
		{"big.default.svc.cluster.local.", mdns.TypeA, 65535},
	} {
		q := query(tc.name, tc.qtype)
		q.SetEdns0(tc.size, false)
		b, err := q.Pack()
		if err != nil {
			t.Fatal(err)
		}
		wire := rawExchange(t, addr, b)
		r := new(mdns.Msg)
		if err := r.Unpack(wire); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s %s at EDNS %d: %d bytes, TC %v, %d answers", tc.name, mdns.TypeToString[tc.qtype], tc.size, len(wire), r.Truncated, len(r.Answer))
		if len(wire) > dns.MaxUDPAnswer || !r.Truncated || len(r.Answer) == 0 {
			t.Fatalf("%s at EDNS %d: %d bytes over UDP, TC %v, %d answers; want at most %d, TC, some answers",
				tc.name, tc.size, len(wire), r.Truncated, len(r.Answer), dns.MaxUDPAnswer)
		}
	}
	// miekg/dns' own client, with its own OPT record and buffer at 65535.
	q := query(srv, mdns.TypeSRV)
	q.SetEdns0(65535, false)
	c := &mdns.Client{Net: "udp", UDPSize: 65535, Timeout: 5 * time.Second}
	r, _, err := c.Exchange(q, addr)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Truncated {
		t.Fatalf("miekg client at EDNS 65535: not truncated")
	}
	// Over TCP the whole answer comes.
	r = exchange(t, "tcp", addr, query(srv, mdns.TypeSRV))
	if r.Truncated || len(r.Answer) != 750 {
		t.Fatalf("tcp: TC %v, %d answers", r.Truncated, len(r.Answer))
	}

	// dig: +bufsize=16384 is advertised as is; +bufsize=65535 is sent as
	// 1232 by dig 9.18.
	dig, err := exec.LookPath("dig")
	if err != nil {
		t.Skip("dig is not installed (apt-get install dnsutils)")
	}
	host, port, _ := net.SplitHostPort(addr)
	rcvd := regexp.MustCompile(`MSG SIZE\s+rcvd: (\d+)`)
	for _, bufsize := range []string{"16384", "65535"} {
		out, err := exec.Command(dig, "@"+host, "-p", port, "+time=5", "+tries=1", "+ignore", "+bufsize="+bufsize, "SRV", srv).CombinedOutput()
		if err != nil {
			t.Fatalf("dig: %v\n%s", err, out)
		}
		m := rcvd.FindSubmatch(out)
		if m == nil {
			t.Fatalf("dig +bufsize=%s: no size in\n%s", bufsize, out)
		}
		n, _ := strconv.Atoi(string(m[1]))
		t.Logf("dig +bufsize=%s SRV: %d bytes", bufsize, n)
		if n > dns.MaxUDPAnswer || !regexp.MustCompile(`flags: qr aa tc`).Match(out) {
			t.Fatalf("dig +bufsize=%s: %d bytes, want at most %d with TC:\n%.600s", bufsize, n, dns.MaxUDPAnswer, out)
		}
	}
}

// tcpQuery sends one query on conn and reads the answer.
func tcpQuery(conn net.Conn, q []byte) (*mdns.Msg, error) {
	frame := binary.BigEndian.AppendUint16(nil, uint16(len(q)))
	if _, err := conn.Write(append(frame, q...)); err != nil {
		return nil, err
	}
	var l [2]byte
	if _, err := io.ReadFull(conn, l[:]); err != nil {
		return nil, err
	}
	b := make([]byte, binary.BigEndian.Uint16(l[:]))
	if _, err := io.ReadFull(conn, b); err != nil {
		return nil, err
	}
	r := new(mdns.Msg)
	return r, r.Unpack(b)
}

func heapAndStacks() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse + m.StackInuse
}

// The probe: 3,000 TCP connections that each asked a question and stay
// open cost ~405 MB (128 KiB of buffers each). Now they cost what their
// queries need.
func TestTCPConnectionsCheap(t *testing.T) {
	const n = 3000
	// The connections must outlive the 3,000 dials on a loaded machine:
	// the idle timeout (10 s by default) is another test's subject.
	_, addr := serve(t, dns.Config{TCPIdleTimeout: 5 * time.Minute}, fixture()...)
	q, _ := query("nginx.default.svc.cluster.local.", mdns.TypeA).Pack()
	before := heapAndStacks()
	conns := make([]net.Conn, 0, n)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		r, err := tcpQuery(c, q)
		if err != nil || len(r.Answer) != 1 {
			t.Fatalf("connection %d: %v %v", i, r, err)
		}
	}
	grew := int64(heapAndStacks()) - int64(before)
	t.Logf("%d open TCP connections: +%.1f MB (heap and stacks, server and client)", n, float64(grew)/(1<<20))
	if grew > 50<<20 {
		t.Fatalf("%d open TCP connections cost %.1f MB, want under 50 MB", n, float64(grew)/(1<<20))
	}
	// They still answer, the largest answers included.
	r, err := tcpQuery(conns[0], q)
	if err != nil || len(r.Answer) != 1 {
		t.Fatalf("after: %v %v", r, err)
	}
}

// Past MaxTCPConns a new connection closes the oldest; a connection idle
// for TCPIdleTimeout is closed.
func TestTCPConnectionCapAndIdleTimeout(t *testing.T) {
	const max, idle = 10, 700 * time.Millisecond
	_, addr := serve(t, dns.Config{MaxTCPConns: max, TCPIdleTimeout: idle}, fixture()...)
	q, _ := query("nginx.default.svc.cluster.local.", mdns.TypeA).Pack()
	var conns []net.Conn
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for i := 0; i < max+5; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		if _, err := tcpQuery(c, q); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
	}
	// The five oldest were closed to make room; the ten newest answer.
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			_, err := tcpQuery(c, q)
			if old := i < 5; old != (err != nil) {
				t.Errorf("connection %d (oldest first): err %v", i, err)
			}
		}()
	}
	wg.Wait()
	// Idle connections are closed after the idle timeout, not before.
	c := conns[len(conns)-1]
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, io.EOF) || time.Since(start) < idle/2 {
		t.Fatalf("an idle connection: %v after %v, want EOF after about %v", err, time.Since(start), idle)
	}
}

// ListenNonLocal binds an address the host does not have (the DNS Service
// address before the agent puts it on lo), where Listen cannot.
func TestListenNonLocal(t *testing.T) {
	h, err := dns.New(dns.Config{Zone: "cluster.local"})
	if err != nil {
		t.Fatal(err)
	}
	const addr = "198.18.250.250:0" // on no interface of this machine
	if srv, err := h.Listen(addr); err == nil {
		srv.Serve(canceledContext())
		t.Skipf("%s is an address of this machine; the test needs one that is not", addr)
	}
	srv, err := h.ListenNonLocal(addr)
	if err != nil {
		t.Fatalf("ListenNonLocal(%s): %v", addr, err)
	}
	if got := srv.Addr(); got.Addr().String() != "198.18.250.250" || got.Port() == 0 {
		t.Errorf("bound %v", got)
	}
	srv.Serve(canceledContext())
}

func canceledContext() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}
