// Package cluster starts an in-process Headway (API server and controllers
// on a :0 port, memory store by default) for integration tests.
package cluster

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/headway/headway/internal/app"
)

// Cluster is a running in-process Headway.
type Cluster struct {
	// URL of the API server (https://127.0.0.1:PORT).
	URL string
	// Config authenticates as the admin with the bearer token.
	Config *rest.Config
	// Client is a clientset on Config.
	Client kubernetes.Interface
	// Kubeconfig is the path of the admin kubeconfig.
	Kubeconfig string
	// DataDir holds the PKI, kubeconfig and (bolt) store.
	DataDir string
	// DNSAddr is where the cluster DNS answers (127.0.0.1:PORT, UDP and
	// TCP); empty with WithoutDNS.
	DNSAddr string
	// Running is the underlying server.
	Running *app.Running

	stop context.CancelFunc
}

// Option changes the options the cluster starts with.
type Option func(*app.Options)

// WithBolt uses the bolt store in dir (to test restarts, pass the same dir).
func WithBolt(dir string) Option {
	return func(o *app.Options) { o.Store, o.DataDir = "bolt", dir }
}

// WithEtcd uses the etcd store at endpoint (several clusters may share it:
// they are then several servers of one cluster).
func WithEtcd(endpoint string) Option {
	return func(o *app.Options) { o.Store, o.Etcd.Endpoints = "etcd", []string{endpoint} }
}

// WithPKIDir uses the PKI in dir (--pki-dir): servers of one cluster on
// one store share it (see CopyPKI).
func WithPKIDir(dir string) Option {
	return func(o *app.Options) { o.PKIDir = dir }
}

// CopyPKI copies c's PKI directory into a new temp dir of t and returns
// the option to start another server with it, as a second server joins.
func CopyPKI(t testing.TB, c *Cluster) Option {
	t.Helper()
	dst := t.TempDir()
	src := c.Running.PKI.Dir
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return WithPKIDir(dst)
}

// WithoutDNS leaves the cluster DNS server out.
func WithoutDNS() Option {
	return func(o *app.Options) { o.NoDNS = true }
}

// WithoutControllers leaves the controllers out: an API with nothing else
// writing to it (no default ServiceAccounts or kube-root-ca.crt ConfigMaps,
// so pods are admitted without an account check).
func WithoutControllers() Option {
	return func(o *app.Options) { o.NoControllers = true }
}

// WithAgent runs the node agent with the process runtime (needs root; see
// agent/network.Check). Its pod network gets its own bridge and ranges —
// clusterCIDR inside 198.18.0.0/16, serviceCIDR inside 198.19.0.0/16, the
// cluster DNS address being the tenth of it — so tests of different
// packages, and a headway server on the same machine, do not collide.
// Masquerading stays off: test pods reach only cluster addresses.
func WithAgent(bridge, clusterCIDR, serviceCIDR string) Option {
	return func(o *app.Options) {
		o.Runtime = "process"
		o.Agent.Bridge = bridge
		o.Agent.Masquerade = false
		o.ClusterCIDR, o.ServiceCIDR = clusterCIDR, serviceCIDR
	}
}

// WithNodeMonitorGracePeriod sets --node-monitor-grace-period: how long a
// node may go without renewing its Lease before it is marked Unknown.
func WithNodeMonitorGracePeriod(d time.Duration) Option {
	return func(o *app.Options) { o.NodeMonitorGracePeriod = d }
}

// WithBackoff sets the agent's first crash-loop back-off (10s by default).
func WithBackoff(d time.Duration) Option {
	return func(o *app.Options) { o.Agent.BackoffBase = d }
}

// Start starts a cluster and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Cluster {
	t.Helper()
	c, err := StartE(t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("starting the in-process cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.Stop(); err != nil {
			t.Errorf("stopping the in-process cluster: %v", err)
		}
	})
	return c
}

// StartE starts a cluster with its data in dataDir; the caller stops it.
func StartE(dataDir string, opts ...Option) (*Cluster, error) {
	o := app.DefaultOptions()
	o.DataDir = dataDir
	o.Listen = "127.0.0.1:0"
	o.Store = "memory"
	o.Runtime = "none"
	o.DNSListen = "127.0.0.1:0"
	o.DNSUpstream = "none"
	level := slog.LevelWarn
	if os.Getenv("HEADWAY_TEST_DEBUG") != "" {
		level = slog.LevelDebug
	}
	var out io.Writer = os.Stderr
	o.Logger = slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: level}))
	for _, opt := range opts {
		opt(&o)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r, err := app.Start(ctx, o)
	if err != nil {
		cancel()
		return nil, err
	}
	client, err := kubernetes.NewForConfig(r.RestConfig)
	if err != nil {
		cancel()
		r.Wait()
		return nil, err
	}
	return &Cluster{
		URL: r.URL, Config: rest.CopyConfig(r.RestConfig), Client: client, Kubeconfig: r.Kubeconfig,
		DataDir: o.DataDir, Running: r, stop: cancel, DNSAddr: r.DNSAddr,
	}, nil
}

// Stop stops the cluster and waits until everything it started has ended.
func (c *Cluster) Stop() error {
	if c.stop == nil {
		return nil
	}
	c.stop()
	c.stop = nil
	return c.Running.Wait()
}

// WaitFor polls cond (every 20ms) until it holds without error, or fails
// the test when timeout passes, naming what it waited for and the last
// error.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		ok, err := cond()
		if ok && err == nil {
			return
		}
		last = err
		time.Sleep(20 * time.Millisecond) // polling interval, not synchronisation
	}
	t.Fatalf("timed out waiting for %s (last error: %v)", what, last)
}
