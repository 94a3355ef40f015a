package etcd_test

import (
	"context"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"

	"github.com/headway/headway/internal/storage"
	"github.com/headway/headway/internal/storage/etcd"
	"github.com/headway/headway/internal/storage/storagetest"
)

func freeURL(t *testing.T) url.URL {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return url.URL{Scheme: "http", Host: ln.Addr().String()}
}

// startEtcd runs an embedded etcd member with its data in dir.
func startEtcd(t *testing.T, dir string) (*embed.Etcd, *clientv3.Client) {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Dir = dir
	cfg.LogLevel = "error"
	client, peer := freeURL(t), freeURL(t)
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
	cfg.InitialCluster = cfg.Name + "=" + peer.String()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(30 * time.Second):
		e.Close()
		t.Fatal("embedded etcd not ready after 30s")
	}
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{client.String()}, DialTimeout: 5 * time.Second})
	if err != nil {
		e.Close()
		t.Fatal(err)
	}
	return e, c
}

// owned is a Store that stops its own etcd when closed (the suites reopen
// the same data dir).
type owned struct {
	*etcd.Store
	e    *embed.Etcd
	c    *clientv3.Client
	once sync.Once
}

func (o *owned) Close() error {
	err := o.Store.Close()
	o.once.Do(func() {
		o.c.Close()
		o.e.Close()
	})
	return err
}

func open(t *testing.T, dir string) storage.Interface {
	e, c := startEtcd(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := etcd.New(ctx, c, etcd.Options{})
	if err != nil {
		c.Close()
		e.Close()
		t.Fatal(err)
	}
	return &owned{Store: s, e: e, c: c}
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Interface { return open(t, t.TempDir()) })
}

func TestPersistent(t *testing.T) {
	storagetest.RunPersistent(t, open)
}
