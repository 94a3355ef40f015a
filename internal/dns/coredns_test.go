package dns_test

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/dns"
	"github.com/headway/headway/internal/testing/cluster"
)

// corednsBinary finds CoreDNS: $HEADWAY_COREDNS, then PATH, then
// $(go env GOPATH)/bin, where bench/dns/run.sh installs it.
func corednsBinary() string {
	if p := os.Getenv("HEADWAY_COREDNS"); p != "" {
		return p
	}
	if p, err := exec.LookPath("coredns"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		home, _ := os.UserHomeDir()
		gopath = filepath.Join(home, "go")
	}
	p := filepath.Join(gopath, "bin", "coredns")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// freePort picks a loopback port free for UDP and TCP.
func freePort(t *testing.T) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// comparable renders an answer for comparison between servers: names lower
// case, TTLs and SOA serials left out, sections sorted.
func comparable(r *mdns.Msg) string {
	var b strings.Builder
	fmt.Fprintf(&b, "rcode=%s aa=%v tc=%v\n", mdns.RcodeToString[r.Rcode], r.Authoritative, r.Truncated)
	for _, s := range []struct {
		name string
		rrs  []mdns.RR
	}{{"answer", r.Answer}, {"authority", r.Ns}, {"additional", r.Extra}} {
		lines := rrs(s.rrs, false)
		for i := range lines {
			lines[i] = strings.ToLower(lines[i])
		}
		fmt.Fprintf(&b, "%s:\n  %s\n", s.name, strings.Join(lines, "\n  "))
	}
	return b.String()
}

// TestSameAnswersAsCoreDNS: CoreDNS' kubernetes plugin and Headway's DNS,
// following the same API server, answer the same questions identically
// (ignoring TTLs, SOA serials and record order).
func TestSameAnswersAsCoreDNS(t *testing.T) {
	bin := corednsBinary()
	if bin == "" {
		t.Skip("CoreDNS is not installed (bench/dns/run.sh installs it: go install github.com/coredns/coredns@v1.14.7)")
	}
	c := cluster.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	create(t, ctx, c.Client, fixture()...)
	for _, p := range []*corev1.Pod{pod("default", "web-0", "198.18.0.22"), pod("default", "web-1", "198.18.0.23")} {
		created, err := c.Client.CoreV1().Pods(p.Namespace).Create(ctx, &corev1.Pod{ObjectMeta: p.ObjectMeta,
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:alpine"}}}}, metav1.CreateOptions{})
		if err != nil {
			t.Logf("pods are not served (%v): pod record questions are left out", err)
			break
		}
		setPodIP(t, ctx, c.Client, created.Namespace, created.Name, p.Status.PodIP)
	}

	dir := t.TempDir()
	port := freePort(t)
	corefile := fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    kubernetes cluster.local 19.198.in-addr.arpa 18.198.in-addr.arpa {
        kubeconfig %s headway
        pods verified
        ttl 5
    }
}
`, port, c.Kubeconfig)
	if err := os.WriteFile(filepath.Join(dir, "Corefile"), []byte(corefile), 0o644); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-conf", filepath.Join(dir, "Corefile"))
	cmd.Dir, cmd.Stdout, cmd.Stderr = dir, &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("CoreDNS log:\n%s", log.String())
		}
	})
	coreAddr := fmt.Sprintf("127.0.0.1:%d", port)
	ready := func(addr string) func() string {
		return func() string {
			r, err := dns.Exchange(ctx, "udp", addr, query("web-1.nginx-headless.default.svc.cluster.local.", mdns.TypeA))
			if err != nil {
				return err.Error()
			}
			if len(r.Answer) != 1 {
				return "not synced: " + r.String()
			}
			return ""
		}
	}
	eventually(t, 30*time.Second, ready(coreAddr))
	eventually(t, 10*time.Second, ready(c.DNSAddr))

	// Where the two differ on purpose; every other question must match.
	differ := map[string]string{
		// CoreDNS names the address it is bound to (none: loopback);
		// Headway names the kube-dns Service.
		"apex NS":             "NS addresses",
		"name server address": "NS addresses",
		// The spec: publishNotReadyAddresses publishes not-ready
		// endpoints; CoreDNS relies on the EndpointSlice controller having
		// marked them ready.
		"publishNotReadyAddresses": "spec",
		// CoreDNS answers only the names without upstream; both refuse.
		"outside the zones without upstream": "plugin chain",
		"AXFR refused":                       "transfer plugin",
		// CoreDNS' answer order for PTR is map order.
		"headless PTR names the hostname first": "order only",
	}
	n := 0
	for _, tc := range wireCases {
		if differ[tc.name] != "" {
			continue
		}
		n++
		q := query(tc.qname, tc.qtype)
		want := exchange(t, "udp", coreAddr, q)
		got := exchange(t, "udp", c.DNSAddr, q)
		if comparable(got) != comparable(want) {
			t.Errorf("%s (%s %s):\nheadway:\n%s\ncoredns:\n%s", tc.name, tc.qname, mdns.TypeToString[tc.qtype], comparable(got), comparable(want))
		}
	}
	// The PTR set is the same, whatever the order.
	q := query("22.0.18.198.in-addr.arpa.", mdns.TypePTR)
	if a, b := comparable(exchange(t, "udp", coreAddr, q)), comparable(exchange(t, "udp", c.DNSAddr, q)); a != b {
		t.Errorf("PTR sets differ:\nheadway:\n%s\ncoredns:\n%s", b, a)
	}
	t.Logf("%d questions answered identically; left out on purpose: %v", n+1, slices.Sorted(maps.Keys(differ)))
}
