package etcd_test

import (
	"bytes"
	"context"
	"net"
	"net/url"
	"os/exec"
	"sync"
	"syscall"
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
	stop func()
	c    *clientv3.Client
	once sync.Once
}

func (o *owned) Close() error {
	err := o.Store.Close()
	o.once.Do(func() {
		o.c.Close()
		o.stop()
	})
	return err
}

func newOwned(t *testing.T, c *clientv3.Client, stop func()) storage.Interface {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := etcd.New(ctx, c, etcd.Options{})
	if err != nil {
		c.Close()
		stop()
		t.Fatal(err)
	}
	return &owned{Store: s, stop: stop, c: c}
}

func open(t *testing.T, dir string) storage.Interface {
	e, c := startEtcd(t, dir)
	return newOwned(t, c, e.Close)
}

// openProcess runs a real etcd process (Debian's etcd-server) on dir.
func openProcess(bin string) func(t *testing.T, dir string) storage.Interface {
	return func(t *testing.T, dir string) storage.Interface {
		t.Helper()
		client, peer := freeURL(t), freeURL(t)
		cmd := exec.Command(bin, "--name", "conformance", "--data-dir", dir,
			"--listen-client-urls", client.String(), "--advertise-client-urls", client.String(),
			"--listen-peer-urls", peer.String(), "--initial-advertise-peer-urls", peer.String(),
			"--initial-cluster", "conformance="+peer.String(), "--log-level", "error")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		stop := func() {
			// SIGTERM: etcd ends cleanly, as the persistent suite's
			// Close then reopen expects.
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				<-done
			}
		}
		t.Cleanup(stop)
		c, err := clientv3.New(clientv3.Config{Endpoints: []string{client.String()}, DialTimeout: 5 * time.Second})
		if err != nil {
			stop()
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := c.Get(ctx, "/health-probe")
			cancel()
			if err == nil {
				break
			}
			select {
			case <-done:
				c.Close()
				t.Fatalf("etcd exited: %s", out.String())
			default:
			}
			if time.Now().After(deadline) {
				c.Close()
				stop()
				t.Fatalf("etcd at %s not answering after 30s: %v", client.String(), err)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return newOwned(t, c, stop)
	}
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Interface { return open(t, t.TempDir()) })
}

func TestPersistent(t *testing.T) {
	storagetest.RunPersistent(t, open)
}

// etcdBinary is a real etcd to run, or a skip.
func etcdBinary(t *testing.T) string {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("needs etcd (apt-get install etcd-server; .ci/run installs it)")
	}
	return bin
}

// TestConformanceRealProcess: the same suites against Debian's etcd
// process, one member per store.
func TestConformanceRealProcess(t *testing.T) {
	open := openProcess(etcdBinary(t))
	t.Run("Conformance", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) storage.Interface { return open(t, t.TempDir()) })
	})
	t.Run("Persistent", func(t *testing.T) { storagetest.RunPersistent(t, open) })
}
