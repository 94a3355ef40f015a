package app

import (
	"errors"
	"log/slog"
	"net"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
)

// TestDNSServesPodSockets: the DNS server answers on sockets handed to it
// (a pod's, made in its namespace by the agent) with its handler, closes
// them when its Run ends (stopPods), and refuses sockets after that (the agent then
// keeps the pod on the node's path).
func TestDNSServesPodSockets(t *testing.T) {
	d, err := ListenDNS(DNSConfig{Listen: "127.0.0.1:0", Upstream: "none", TTL: 5 * time.Second, PodRecords: "verified", ClusterDomain: "cluster.local"},
		nil, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	d.h.Apply() // synced, empty (Run would list the API)

	udp, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: udp.LocalAddr().(*net.UDPAddr).Port})
	if err != nil {
		udp.Close()
		t.Fatal(err)
	}
	stop, err := d.ServePod("default/a", udp, tcp)
	if err != nil {
		t.Fatal(err)
	}
	for _, proto := range []string{"udp", "tcp"} {
		q := new(mdns.Msg)
		q.SetQuestion("kube-dns.kube-system.svc.cluster.local.", mdns.TypeA)
		r, _, err := (&mdns.Client{Net: proto, Timeout: 3 * time.Second}).Exchange(q, udp.LocalAddr().String())
		if err != nil || r.Rcode != mdns.RcodeNameError {
			t.Fatalf("the pod's socket over %s: %v, %v; want the server's NXDOMAIN", proto, r, err)
		}
	}

	d.stopPods() // as Run does when it ends
	if err := udp.SetReadDeadline(time.Now()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the pod's UDP socket after the server stopped: %v; want it closed", err)
	}
	if _, err := tcp.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("the pod's TCP listener after the server stopped: %v; want it closed", err)
	}
	stop() // already stopped: returns at once

	udp2, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer udp2.Close()
	tcp2, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer tcp2.Close()
	if _, err := d.ServePod("default/b", udp2, tcp2); err == nil {
		t.Error("a stopped server took a pod's sockets")
	}
}
