package busybox

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

// fakeDNS answers A and PTR questions for a headless Service on loopback.
func fakeDNS(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	records := map[string][]dns.RR{}
	add := func(s string) {
		rr, err := dns.NewRR(s)
		if err != nil {
			t.Fatal(err)
		}
		name := strings.ToLower(rr.Header().Name)
		records[name+dns.TypeToString[rr.Header().Rrtype]] = append(records[name+dns.TypeToString[rr.Header().Rrtype]], rr)
	}
	add("nginx-headless.default.svc.cluster.local. 5 IN A 198.18.0.2")
	add("nginx-headless.default.svc.cluster.local. 5 IN A 198.18.0.3")
	add("2.0.18.198.in-addr.arpa. 5 IN PTR web-0.nginx-headless.default.svc.cluster.local.")
	add("3.0.18.198.in-addr.arpa. 5 IN PTR web-1.nginx-headless.default.svc.cluster.local.")
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		q := req.Question[0]
		m.Answer = records[strings.ToLower(q.Name)+dns.TypeToString[q.Qtype]]
		if len(m.Answer) == 0 && q.Qtype != dns.TypeAAAA {
			m.Rcode = dns.RcodeNameError
		}
		w.WriteMsg(m)
	})}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return pc.LocalAddr().String()
}

func TestNslookupPrintsNamesLikeBusybox128(t *testing.T) {
	server := fakeDNS(t)
	var out, errOut bytes.Buffer
	if code := Nslookup([]string{"nginx-headless.default.svc.cluster.local", server}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	got := out.String()
	for _, want := range []string{
		"Server:    " + server + "\n",
		"Name:      nginx-headless.default.svc.cluster.local\n",
		"198.18.0.2 web-0.nginx-headless.default.svc.cluster.local\n",
		"198.18.0.3 web-1.nginx-headless.default.svc.cluster.local\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if !strings.Contains(got, "Address 1: ") || !strings.Contains(got, "Address 2: ") {
		t.Errorf("addresses are not numbered:\n%s", got)
	}
	out.Reset()
	errOut.Reset()
	if code := Nslookup([]string{"missing.default.svc.cluster.local", server}, &out, &errOut); code != 1 || !strings.Contains(errOut.String(), "can't resolve 'missing.default.svc.cluster.local'") {
		t.Fatalf("missing name: exit %d, stderr %q", code, errOut.String())
	}
}
