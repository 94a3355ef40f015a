package dns_test

import (
	"context"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/headway/headway/internal/dns"
)

// runFake serves a Handler fed by informers on a fake clientset.
func runFake(t *testing.T, cfg dns.Config, client *fake.Clientset) string {
	t.Helper()
	cfg.Metrics = dns.NewMetrics()
	cfg.Zone = testZone
	h, err := dns.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := h.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, 2)
	go func() { srv.Serve(ctx); done <- struct{}{} }()
	go func() { h.Run(ctx, client); done <- struct{}{} }()
	t.Cleanup(func() { cancel(); <-done; <-done })
	return srv.Addr().String()
}

func rcodeOf(t *testing.T, addr, name string, qtype uint16) (int, int) {
	t.Helper()
	r := exchange(t, "udp", addr, query(name, qtype))
	return r.Rcode, len(r.Answer)
}

// TestPodRecordsFake: the three pod record modes, through informers.
func TestPodRecordsFake(t *testing.T) {
	for _, tc := range []struct {
		mode             string
		pod, other, junk int // rcodes for a pod's name, an address without a pod, a non-address
	}{
		{dns.PodsVerified, mdns.RcodeSuccess, mdns.RcodeNameError, mdns.RcodeNameError},
		{dns.PodsInsecure, mdns.RcodeSuccess, mdns.RcodeSuccess, mdns.RcodeNameError},
		{dns.PodsDisabled, mdns.RcodeNameError, mdns.RcodeNameError, mdns.RcodeNameError},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			client := fake.NewClientset(ns("default"), pod("default", "web-0", "198.18.0.22"))
			addr := runFake(t, dns.Config{PodMode: tc.mode}, client)
			eventually(t, 10*time.Second, func() string {
				if rc, _ := rcodeOf(t, addr, "default.svc.cluster.local.", mdns.TypeA); rc != mdns.RcodeSuccess {
					return "not synced"
				}
				return ""
			})
			for _, c := range []struct {
				name  string
				rcode int
			}{
				{"198-18-0-22.default.pod.cluster.local.", tc.pod},
				{"198-18-0-99.default.pod.cluster.local.", tc.other},
				{"not-an-ip.default.pod.cluster.local.", tc.junk},
				{"198-18-0-22.nope.pod.cluster.local.", mdns.RcodeNameError},
			} {
				if rc, n := rcodeOf(t, addr, c.name, mdns.TypeA); rc != c.rcode || (rc == 0 && n != 1) {
					t.Errorf("%s: rcode %s with %d answers, want %s", c.name, mdns.RcodeToString[rc], n, mdns.RcodeToString[c.rcode])
				}
			}
			if tc.mode != dns.PodsVerified {
				return
			}
			// A pod going away takes its record with it.
			if err := client.CoreV1().Pods("default").Delete(context.Background(), "web-0", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, func() string {
				if rc, _ := rcodeOf(t, addr, "198-18-0-22.default.pod.cluster.local.", mdns.TypeA); rc != mdns.RcodeNameError {
					return "pod record still answered"
				}
				return ""
			})
		})
	}
}
