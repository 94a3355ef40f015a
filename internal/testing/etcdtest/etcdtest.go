// Package etcdtest runs an embedded etcd member (go.etcd.io/etcd/server/v3/embed)
// for tests, on fixed loopback ports so that it can be stopped and started
// again at the same address.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Etcd is an embedded etcd member with its data in a test's temp dir.
type Etcd struct {
	// Endpoint is the client URL (http://127.0.0.1:PORT).
	Endpoint string

	dir          string
	client, peer url.URL
	e            *embed.Etcd
}

func freeURL(t testing.TB) url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return url.URL{Scheme: "http", Host: ln.Addr().String()}
}

// Start starts a member and stops it when the test ends.
func Start(t testing.TB) *Etcd {
	t.Helper()
	e := &Etcd{dir: t.TempDir(), client: freeURL(t), peer: freeURL(t)}
	e.Endpoint = e.client.String()
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Stop)
	return e
}

// Start starts the member (again) on its data dir and ports, and returns
// once it serves.
func (e *Etcd) Start() error {
	if e.e != nil {
		return nil
	}
	cfg := embed.NewConfig()
	cfg.Dir = e.dir
	cfg.LogLevel = "error"
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{e.client}, []url.URL{e.client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{e.peer}, []url.URL{e.peer}
	cfg.InitialCluster = cfg.Name + "=" + e.peer.String()
	m, err := embed.StartEtcd(cfg)
	if err != nil {
		return fmt.Errorf("starting the embedded etcd at %s: %w", e.Endpoint, err)
	}
	select {
	case <-m.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		m.Close()
		return fmt.Errorf("the embedded etcd at %s is not ready after 30s", e.Endpoint)
	}
	e.e = m
	return nil
}

// Stop stops the member (its data stays for Start).
func (e *Etcd) Stop() {
	if e.e != nil {
		e.e.Close()
		e.e = nil
	}
}
