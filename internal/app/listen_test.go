package app

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

func TestJoinedListenersAcceptOnEach(t *testing.T) {
	// The second address, as the pod address is: the same port elsewhere.
	// A port free on 127.0.0.1 may be taken on 127.0.0.2 by another test
	// running meanwhile: then another port.
	var a, b net.Listener
	for attempt := 0; ; attempt++ {
		var err error
		a, err = net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := a.Addr().(*net.TCPAddr).Port
		b, err = listenFreebind(context.Background(), netip.AddrPortFrom(netip.MustParseAddr("127.0.0.2"), uint16(port)))
		if err == nil {
			break
		}
		a.Close()
		if !errors.Is(err, syscall.EADDRINUSE) || attempt == 20 {
			t.Fatal(err)
		}
	}
	ln := joinListeners(a, b)
	if ln.Addr().String() != a.Addr().String() {
		t.Errorf("Addr %s, want the first listener's %s", ln.Addr(), a.Addr())
	}
	got := map[string]bool{}
	done := make(chan error, 1)
	go func() {
		for range 2 {
			c, err := ln.Accept()
			if err != nil {
				done <- err
				return
			}
			got[c.LocalAddr().(*net.TCPAddr).IP.String()] = true
			c.Close()
		}
		done <- nil
	}()
	for _, addr := range []string{a.Addr().String(), b.Addr().String()} {
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			t.Fatalf("dialing %s: %v", addr, err)
		}
		io.ReadAll(c) // until the server closes it
		c.Close()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !got["127.0.0.1"] || !got["127.0.0.2"] {
		t.Errorf("accepted on %v, want both addresses", got)
	}
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close: %v, want net.ErrClosed", err)
	}
	if _, err := net.DialTimeout("tcp", b.Addr().String(), time.Second); err == nil {
		t.Error("the second address still accepts after Close")
	}
}

func TestPodAPIAddr(t *testing.T) {
	gw := netip.MustParseAddr("198.18.0.1")
	for _, tc := range []struct {
		runtime string
		gateway netip.Addr
		want    string
	}{
		{"process", gw, "198.18.0.1:6443"},
		{"cri", gw, "198.18.0.1:6443"},
		{"auto", gw, "198.18.0.1:6443"},
		{"none", gw, "invalid AddrPort"},
		{"process", netip.Addr{}, "invalid AddrPort"},
	} {
		got := podAPIAddr(Config{Runtime: tc.runtime, Gateway: tc.gateway}, 6443)
		if got.String() != tc.want {
			t.Errorf("runtime %s gateway %v: %v, want %s", tc.runtime, tc.gateway, got, tc.want)
		}
	}
}

func TestServingCertificateNamesThePodAddress(t *testing.T) {
	o := DefaultOptions()
	o.Runtime = "process"
	cfg, err := o.Config()
	if err != nil {
		t.Fatal(err)
	}
	hosts := kubernetesHosts(cfg, "127.0.0.1")
	found := false
	for _, h := range hosts {
		found = found || h == "198.18.0.1"
	}
	if !found {
		t.Errorf("hosts %v lack the gateway 198.18.0.1 pods reach the API on", hosts)
	}
	o.Runtime = "none"
	cfg, _ = o.Config()
	for _, h := range kubernetesHosts(cfg, "127.0.0.1") {
		if h == "198.18.0.1" {
			t.Errorf("with --runtime none the certificate names the gateway")
		}
	}
}
