// Package headwaytest starts a whole Kubernetes-compatible cluster inside a
// Go test: Headway's API server, its controllers and its cluster DNS, in the
// test's own process, on free loopback ports, with an in-memory store. A
// cluster is ready in tens of milliseconds, so each test can have its own,
// and many may run in parallel in one test binary.
//
//	func TestMyController(t *testing.T) {
//		c := headwaytest.Start(t, headwaytest.Options{})
//		objs := c.Apply(`apiVersion: apps/v1
//	kind: Deployment
//	...`)
//		c.WaitReady(objs[0])
//		// use c.Client, c.RestConfig, c.Resolver
//	}
//
// # What runs
//
// The API serves the built-in kinds (core, apps, batch, discovery,
// networking, policy, RBAC, storage, coordination, ...) and
// CustomResourceDefinitions, with watch, server-side apply, the status and
// scale subresources, and the admin identity Client and RestConfig use. The
// controllers of a real cluster run: scheduler, Deployment, ReplicaSet,
// StatefulSet, DaemonSet, Job, CronJob, EndpointSlice, garbage collector,
// namespace, disruption. The cluster DNS answers the Kubernetes DNS
// specification's names (Services, headless per-pod names, SRV, PTR) on
// DNSAddr; Resolver asks it.
//
// By default pods are simulated: one node (NodeName) whose simulated kubelet marks
// every pod scheduled to it Running and Ready with an IP from PodCIDR, and
// finishes deletions (after PodTerminationDelay). Nothing is executed: a
// test that needs something to answer on a pod's address serves it itself,
// for instance from PodReady with PodCIDR inside 127.0.0.0/8, where every
// address is local. With Options.Process (root only), pods run for real
// through Headway's process runtime, as with `headway server` as root:
// their processes answer on their addresses, which the cluster DNS and
// Resolver give out.
//
// # Compared with envtest
//
// controller-runtime's envtest starts the real kube-apiserver and etcd
// binaries (downloaded beforehand): the exact upstream API, admission
// chain and validation, in about seconds per start, with no controllers,
// no scheduler, no kubelet and no DNS, so a Deployment never gets pods and
// a Service never gets endpoints. headwaytest needs no binaries or
// downloads, starts in milliseconds, and runs the controllers and DNS, so
// workloads go all the way to ready endpoints and resolvable names; but
// the API is Headway's implementation of Kubernetes' behaviour rather than
// kube-apiserver itself (no aggregated APIs, no admission webhooks beyond
// what Headway implements, its own OpenAPI), pods run nothing, and there is
// one node. Use envtest to test against the exact upstream API server; use
// headwaytest to test clients, controllers and discovery end to end.
//
// # Global state
//
// Clusters share nothing but the process: each has its own ports, store,
// certificates, data directory and logger (its lines go to t.Log, Warn and
// above, everything with HEADWAY_TEST_DEBUG set). Two things are
// process-wide: Prometheus metrics of the API server and DNS are
// registered once and count for all clusters together, and client-go
// reports its own errors through klog, which this package leaves alone.
package headwaytest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/testing/kubeletsim"
)

// Options change the cluster Start starts. The zero value is a usable
// default.
type Options struct {
	// ClusterDomain is the cluster's DNS domain (default cluster.local).
	ClusterDomain string
	// DNSTTL is the TTL of the cluster DNS's answers, and the negative
	// caching time of its NXDOMAIN answers (default 5s).
	DNSTTL time.Duration
	// NodeName names the simulated node (default "node-1").
	NodeName string
	// PodCIDR is where simulated pods' IPs come from (default
	// 198.18.0.0/16); a range inside 127.0.0.0/8 gives pods loopback
	// addresses a test can serve on.
	PodCIDR netip.Prefix
	// PodReady decides whether a pod becomes Ready; it gets the pod with
	// its IP (status.podIP) chosen. Nil: every pod is Ready at once. The
	// simulated kubelet asks again whenever the pod changes.
	PodReady func(*corev1.Pod) bool
	// PodTerminationDelay is how long a deleted pod stays terminating
	// (its endpoints terminating, serving as before) before the simulated
	// kubelet finishes the deletion; 0 finishes it at once.
	PodTerminationDelay time.Duration
	// Process, when set, runs pods for real through Headway's process
	// runtime, as `headway server` does as root, instead of the simulated
	// node: the node agent registers the node and runs each container as
	// a process in its own network namespace on a bridge; PodCIDR,
	// PodReady and PodTerminationDelay are then unused, and Kubelet is
	// nil. It needs root (Linux), and changes the network of the process's
	// network namespace (a bridge, routes, an nftables table): run such a
	// test in a network namespace of its own. It is opt-in because those
	// are host resources: clusters run in parallel only with a bridge and
	// address ranges each of their own.
	Process *ProcessRuntime
	// NoDNS leaves the cluster DNS out (Resolver is then nil).
	NoDNS bool
	// NoControllers leaves the controllers out: an API server only, like
	// envtest's (no simulated node either).
	NoControllers bool
	// WaitTimeout bounds WaitReady (default 30s).
	WaitTimeout time.Duration
	// Logger receives the cluster's log lines (default: the test's log).
	Logger *slog.Logger
}

// ProcessRuntime configures a cluster whose pods run as processes
// (Options.Process). Clusters in one network namespace need different
// values for each field.
type ProcessRuntime struct {
	// Bridge names the node's bridge (at most 15 characters).
	Bridge string
	// PodCIDR is the pod range (the bridge has its first address).
	PodCIDR netip.Prefix
	// ServiceCIDR is the Service range.
	ServiceCIDR netip.Prefix
}

// Cluster is a running in-process cluster.
type Cluster struct {
	// URL is the API server's address (https://127.0.0.1:PORT).
	URL string
	// RestConfig authenticates as the cluster admin; copy it before
	// changing it.
	RestConfig *rest.Config
	// Client is a clientset on RestConfig.
	Client kubernetes.Interface
	// Kubeconfig is the path of an admin kubeconfig (for kubectl).
	Kubeconfig string
	// DNSAddr is where the cluster DNS answers (127.0.0.1:PORT, UDP and
	// TCP); empty with NoDNS.
	DNSAddr string
	// Resolver sends every query to the cluster DNS (nil with NoDNS).
	// Ask for fully qualified names ("web.default.svc.cluster.local."):
	// it has no search path.
	Resolver *net.Resolver
	// ClusterDomain is the cluster's DNS domain.
	ClusterDomain string
	// Kubelet is the simulated node (nil with NoControllers).
	Kubelet *kubeletsim.Kubelet
	// StartedIn is the time Start took until the cluster was ready.
	StartedIn time.Duration

	t       testing.TB
	opts    Options
	stop    func() error
	applier applier
}

// Start starts a cluster and stops it when the test ends (t.Cleanup),
// failing the test if it cannot. It returns once the API serves, the
// controllers run, the simulated node is Ready and the DNS answers.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	c, err := start(t, opts)
	if err != nil {
		t.Fatalf("headwaytest: starting a cluster: %v", err)
	}
	t.Cleanup(func() {
		if err := c.stop(); err != nil {
			t.Errorf("headwaytest: the cluster stopped with an error: %v", err)
		}
	})
	return c
}

// StartE starts a cluster outside a test (examples, benchmarks, TestMain):
// the caller stops it with Stop, which also removes its data directory.
// Without a test, Apply and WaitReady panic where they would fail the test
// (use ApplyE and WaitReadyE), and logs are dropped unless Options.Logger
// is set.
func StartE(opts Options) (*Cluster, error) { return start(nil, opts) }

func start(t testing.TB, opts Options) (c *Cluster, err error) {
	begin := time.Now()
	o := app.DefaultOptions()
	if t != nil {
		o.DataDir = t.TempDir()
	} else {
		if o.DataDir, err = os.MkdirTemp("", "headwaytest-"); err != nil {
			return nil, err
		}
		defer func() {
			if err != nil {
				os.RemoveAll(o.DataDir)
			}
		}()
	}
	o.Listen = "127.0.0.1:0"
	o.Store = "memory"
	o.Runtime = "none"
	o.DNSListen = "127.0.0.1:0"
	o.DNSUpstream = "none"
	o.NoSync = true // the data dir is thrown away: no fsyncs
	if p := opts.Process; p != nil {
		if os.Geteuid() != 0 {
			return nil, fmt.Errorf("Options.Process runs pods as processes, which needs root (this process runs as uid %d)", os.Geteuid())
		}
		if p.Bridge == "" || !p.PodCIDR.IsValid() || !p.ServiceCIDR.IsValid() {
			return nil, fmt.Errorf("Options.Process needs a Bridge, a PodCIDR and a ServiceCIDR of this cluster's own")
		}
		if opts.NoControllers {
			return nil, fmt.Errorf("Options.Process needs the controllers (the scheduler puts pods on the node)")
		}
		o.Runtime = "process"
		o.Agent.Bridge = p.Bridge
		o.Agent.Masquerade = false // pods reach cluster addresses only
		o.Agent.Cleanup = true     // nothing of a test's pods outlives it
		o.ClusterCIDR, o.ServiceCIDR = p.PodCIDR.String(), p.ServiceCIDR.String()
		o.Agent.NodeName = opts.NodeName
		if o.Agent.NodeName == "" {
			o.Agent.NodeName = "node-1"
		}
	}
	o.NoDNS = opts.NoDNS
	o.NoControllers = opts.NoControllers
	if opts.ClusterDomain != "" {
		o.ClusterDomain = opts.ClusterDomain
	}
	if opts.DNSTTL > 0 {
		o.DNSTTL = opts.DNSTTL
	}
	var logs *testLog
	o.Logger = opts.Logger
	if o.Logger == nil && t == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Logger == nil {
		logs = &testLog{t: t}
		level := slog.LevelWarn
		if os.Getenv("HEADWAY_TEST_DEBUG") != "" {
			level = slog.LevelDebug
		}
		o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	r, err := app.Start(ctx, o)
	if err != nil {
		cancel()
		return nil, err
	}
	c = &Cluster{
		URL: r.URL, RestConfig: rest.CopyConfig(r.RestConfig), Kubeconfig: r.Kubeconfig, DNSAddr: r.DNSAddr,
		ClusterDomain: strings.TrimSuffix(strings.ToLower(o.ClusterDomain), "."),
		t:             t, opts: opts,
	}
	var kubeletDone chan struct{}
	dataDir := o.DataDir
	c.stop = sync.OnceValue(func() error {
		cancel()
		if kubeletDone != nil {
			<-kubeletDone
		}
		err := r.Wait()
		if logs != nil {
			logs.stop()
		}
		if t == nil {
			os.RemoveAll(dataDir)
		}
		return err
	})
	defer func() {
		if err != nil {
			c.stop()
		}
	}()
	if c.Client, err = kubernetes.NewForConfig(c.RestConfig); err != nil {
		return nil, err
	}
	// The node registers while the DNS lists the cluster.
	dnsErr := make(chan error, 1) // (buffered: nobody reads it when the registration fails)
	if c.DNSAddr != "" {
		addr := c.DNSAddr
		c.Resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
		go func() { dnsErr <- c.waitDNS(ctx, r.DNSSynced) }()
	} else {
		dnsErr <- nil
	}
	if opts.Process != nil {
		if err := c.waitNodeReady(ctx, o.Agent.NodeName); err != nil {
			return nil, err
		}
	} else if !opts.NoControllers {
		node := opts.NodeName
		if node == "" {
			node = "node-1"
		}
		c.Kubelet = &kubeletsim.Kubelet{Client: c.Client, Node: node, Ready: opts.PodReady, PodCIDR: opts.PodCIDR,
			TerminationDelay: opts.PodTerminationDelay}
		if err := c.Kubelet.RegisterNode(ctx); err != nil {
			return nil, fmt.Errorf("registering the simulated node %s: %w", node, err)
		}
		kubeletDone = make(chan struct{})
		go func() { defer close(kubeletDone); c.Kubelet.Run(ctx) }()
	}
	if err := <-dnsErr; err != nil {
		return nil, err
	}
	c.applier = applier{config: c.RestConfig}
	c.StartedIn = time.Since(begin)
	return c, nil
}

// waitDNS waits until the DNS has read the cluster once (before that it
// answers SERVFAIL; synced is closed then), and checks that it answers the
// kubernetes Service's name.
func (c *Cluster) waitDNS(ctx context.Context, synced <-chan struct{}) error {
	name := "kubernetes.default.svc." + c.ClusterDomain + "."
	timer := time.NewTimer(10 * time.Second)
	defer timer.Stop()
	select {
	case <-synced:
	case <-timer.C:
		return fmt.Errorf("the cluster DNS on %s had not read the cluster within 10s", c.DNSAddr)
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := c.Resolver.LookupNetIP(qctx, "ip4", name); err != nil {
		return fmt.Errorf("the cluster DNS on %s does not answer %s: %w", c.DNSAddr, name, err)
	}
	return nil
}

// waitNodeReady waits until the node agent has registered node and
// reports it Ready.
func (c *Cluster) waitNodeReady(ctx context.Context, node string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	sel := fields.OneTermEqualSelector("metadata.name", node).String()
	for {
		list, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return fmt.Errorf("waiting for the node %s: %w", node, err)
		}
		if len(list.Items) == 1 && nodeReady(&list.Items[0]) {
			return nil
		}
		w, err := c.Client.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: list.ResourceVersion})
		if err != nil {
			return fmt.Errorf("waiting for the node %s: %w", node, err)
		}
		for ev := range w.ResultChan() {
			if n, ok := ev.Object.(*corev1.Node); ok && ev.Type != watch.Deleted && nodeReady(n) {
				w.Stop()
				return nil
			}
		}
		w.Stop()
		if ctx.Err() != nil {
			return fmt.Errorf("the node agent did not report the node %s Ready: %w", node, context.Cause(ctx))
		}
	}
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Stop stops the cluster and waits until everything it started has ended:
// at once rather than at the end of the test (to test what a client does
// when the API goes away), or a cluster from StartE. Calling it twice is
// fine; it returns the same error.
func (c *Cluster) Stop() error { return c.stop() }

func (c *Cluster) helper() {
	if c.t != nil {
		c.t.Helper()
	}
}

func (c *Cluster) fatalf(format string, args ...any) {
	if c.t == nil {
		panic(fmt.Sprintf(format, args...))
	}
	c.t.Helper()
	c.t.Fatalf(format, args...)
}

// testLog writes log lines to t.Log until the cluster has stopped (t.Log
// after the test ended would panic).
type testLog struct {
	t       testing.TB
	mu      sync.Mutex
	stopped bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.t.Log(strings.TrimSuffix(string(p), "\n"))
	}
	return len(p), nil
}

func (l *testLog) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
}

var _ io.Writer = (*testLog)(nil)
