package app

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
)

func TestParseServers(t *testing.T) {
	s, err := parseServers("https://198.18.250.1:6443, https://198.18.250.2:6443/", slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.hosts, " "); got != "198.18.250.1:6443 198.18.250.2:6443" {
		t.Fatalf("hosts %q", got)
	}
	if s.first() != "https://198.18.250.1:6443" || s.serverName() != "kubernetes" {
		t.Fatalf("first %q, server name %q", s.first(), s.serverName())
	}
	one, err := parseServers("https://h.example", slog.Default())
	if err != nil || one.hosts[0] != "h.example:443" || one.serverName() != "" {
		t.Fatalf("one server: %v %v %q", err, one.hosts, one.serverName())
	}
	for _, bad := range []string{"", "http://198.18.250.1:6443", "https://198.18.250.1:6443,", "198.18.250.1:6443", "https://a:1/api"} {
		if _, err := parseServers(bad, slog.Default()); err == nil || !strings.Contains(err.Error(), "--server") {
			t.Errorf("--server %q: %v", bad, err)
		}
	}
}

// TestServersFailOver: connections go to the server in use; when it stops
// answering they go to the next, which stays in use after the first comes
// back.
func TestServersFailOver(t *testing.T) {
	listen := func() net.Listener {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		return l
	}
	a, b := listen(), listen()
	s, err := parseServers("https://"+a.Addr().String()+",https://"+b.Addr().String(), slog.Default())
	if err != nil {
		t.Fatal(err)
	}
	dialTo := func() string {
		t.Helper()
		c, err := s.dial(context.Background(), "tcp", "ignored:1")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.RemoteAddr().String()
	}
	if got := dialTo(); got != a.Addr().String() {
		t.Fatalf("first connection to %s, want the first server %s", got, a.Addr())
	}
	aAddr := a.Addr().String()
	a.Close()
	if got := dialTo(); got != b.Addr().String() {
		t.Fatalf("with the first server gone the connection went to %s, want %s", got, b.Addr())
	}
	// The first server is back on its address: the agent stays on the second.
	back, err := net.Listen("tcp", aAddr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", aAddr, err)
	}
	defer back.Close()
	if got := dialTo(); got != b.Addr().String() {
		t.Fatalf("after the fail-over the connection went to %s, want %s (the server in use)", got, b.Addr())
	}
	b.Close()
	if got := dialTo(); got != aAddr {
		t.Fatalf("with the second server gone the connection went to %s, want %s", got, aAddr)
	}
	back.Close()
	if _, err := s.dial(context.Background(), "tcp", "x:1"); err == nil || !strings.Contains(err.Error(), "no API server of --server") {
		t.Fatalf("no server answers: %v", err)
	}
}
