// Package agent is Headway's node agent, an ordinary API client like a
// kubelet: it registers its Node and renews its Lease, watches the pods
// bound to it, runs them through a runtime (agent/runtime/process by
// default), probes them, writes their status, and finalises their graceful
// deletion.
package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/headway/headway/internal/agent/network"
	hwruntime "github.com/headway/headway/internal/agent/runtime"
	"github.com/headway/headway/internal/agent/runtime/process"
)

// Config configures the agent.
type Config struct {
	Client kubernetes.Interface
	// NodeName defaults to the host name.
	NodeName string
	// DataDir holds pods, logs, volumes and the network state.
	DataDir       string
	ClusterCIDR   netip.Prefix
	ServiceCIDR   netip.Prefix
	ClusterDomain string
	// DNSIP is the cluster DNS service address pods use (198.19.0.10).
	DNSIP netip.Addr
	// DNSServer is where the cluster DNS server really listens
	// (127.0.0.1:10053); the agent relays DNSIP:53 to it. Empty: no relay.
	DNSServer string
	// Bridge is the pod bridge's name (headway0).
	Bridge string
	// NoMasquerade leaves traffic from pods to outside addresses as it is.
	NoMasquerade bool
	// Runtime overrides the process runtime (tests).
	Runtime hwruntime.Runtime
	// BackoffBase is the first crash-loop back-off (10s); it doubles up to
	// BackoffMax (5m).
	BackoffBase, BackoffMax time.Duration
	// ShutdownGrace bounds how long the agent waits for containers to
	// stop when it stops itself (5s).
	ShutdownGrace time.Duration
	// LeaseDuration is the node lease's duration (40s), renewed every
	// quarter of it.
	LeaseDuration time.Duration
	// StreamingTLS, when set, serves pod logs, exec, attach and
	// port-forward to the API server (client certificates required).
	StreamingTLS *tls.Config
	// StreamingPort is the streaming server's port (0: any free one).
	StreamingPort int
	Log           *slog.Logger
}

// Agent is a node agent.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	rt       hwruntime.Runtime
	net      *network.Network
	proc     *process.Runtime
	recorder record.EventRecorder
	objects  objectSource
	pods     corelisters.PodLister

	// notReady is why the node cannot run pods ("" when it can).
	notReady string
	hostIP   netip.Addr
	// streamPort is the streaming server's port, published in the node status.
	streamPort int
	// busyboxDir is the busybox applet directory (see busybox.go), made once.
	busyboxOnce sync.Once
	busyboxDir  string

	mu      sync.Mutex
	workers map[string]*worker
	wg      sync.WaitGroup
}

// New checks the configuration; Run does the work.
func New(cfg Config) (*Agent, error) {
	if cfg.Client == nil {
		return nil, errors.New("agent: no client")
	}
	if cfg.NodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("agent: no node name and no host name: %w", err)
		}
		cfg.NodeName = strings.ToLower(h)
	}
	if cfg.ClusterDomain == "" {
		cfg.ClusterDomain = "cluster.local"
	}
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = 10 * time.Second
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 5 * time.Minute
	}
	if cfg.ShutdownGrace == 0 {
		cfg.ShutdownGrace = 5 * time.Second
	}
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = 40 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Bridge == "" {
		cfg.Bridge = "headway0"
	}
	return &Agent{cfg: cfg, log: cfg.Log.With("node", cfg.NodeName), workers: map[string]*worker{},
		objects: clientSource{cfg.Client}}, nil
}

// NodeName is the node the agent registers.
func (a *Agent) NodeName() string { return a.cfg.NodeName }

// ProcessRuntime is the process runtime in use (nil with another one).
func (a *Agent) ProcessRuntime() *process.Runtime { return a.proc }

// setupRuntime makes the pod network and the process runtime; where that
// is impossible it records why, and the node reports it.
func (a *Agent) setupRuntime() error {
	if a.cfg.Runtime != nil {
		a.rt = a.cfg.Runtime
		a.hostIP = netip.MustParseAddr("127.0.0.1")
		return nil
	}
	n, err := network.Open(network.Config{
		StateDir: filepath.Join(a.cfg.DataDir, "network"), Bridge: a.cfg.Bridge,
		ClusterCIDR: a.cfg.ClusterCIDR, ServiceCIDR: a.cfg.ServiceCIDR, DNSIP: a.cfg.DNSIP,
		Masquerade: !a.cfg.NoMasquerade, Log: a.log,
	})
	if err == nil {
		if err = n.Setup(); err != nil {
			n.Teardown()
		}
	}
	if err != nil {
		a.notReady = fmt.Sprintf("cannot run pods: %v", err)
		a.hostIP = netip.MustParseAddr("127.0.0.1")
		a.log.Error("the node cannot run pods; it registers as NotReady", "err", err)
		return nil
	}
	a.net = n
	a.hostIP = n.Gateway()
	p, err := process.New(process.Config{
		PodsDir: filepath.Join(a.cfg.DataDir, "pods"), Network: n, Log: a.log,
		DNS: network.DNSSettings{ClusterDNS: a.cfg.DNSIP, ClusterDomain: a.cfg.ClusterDomain, HostResolvConf: "/etc/resolv.conf"},
	})
	if err != nil {
		return err
	}
	if err := p.Cleanup(); err != nil {
		a.log.Warn("cleaning up after the previous run", "err", err)
	}
	a.proc, a.rt = p, p
	return nil
}

// Run registers the node and runs its pods until ctx ends; then it stops
// every container, removes the pod networks and the bridge, and returns.
func (a *Agent) Run(ctx context.Context) error {
	if err := a.setupRuntime(); err != nil {
		return err
	}
	defer func() {
		if a.net != nil {
			if err := a.net.Teardown(); err != nil {
				a.log.Warn("removing the pod network", "err", err)
			}
		}
	}()
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: a.cfg.Client.CoreV1().Events("")})
	defer broadcaster.Shutdown()
	a.recorder = broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: "kubelet", Host: a.cfg.NodeName})

	var relayWG sync.WaitGroup
	if a.net != nil && a.cfg.DNSServer != "" && a.cfg.DNSIP.IsValid() {
		relay, err := network.ListenDNSRelay(netip.AddrPortFrom(a.cfg.DNSIP, 53), a.cfg.DNSServer, a.log)
		if err != nil {
			a.log.Warn("pods cannot reach the cluster DNS", "addr", a.cfg.DNSIP, "err", err)
		} else {
			relayWG.Add(1)
			go func() { defer relayWG.Done(); relay.Run(ctx) }()
		}
	}
	defer relayWG.Wait()

	factory := informers.NewSharedInformerFactoryWithOptions(a.cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.cfg.NodeName).String()
		}))
	inf := factory.Core().V1().Pods()
	a.pods = inf.Lister()
	inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { a.podChanged(ctx, obj) },
		UpdateFunc: func(_, obj any) { a.podChanged(ctx, obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				a.podGone(p)
			}
		},
	})
	port, stopStreaming, err := a.startStreaming(ctx)
	if err != nil {
		return err
	}
	defer stopStreaming()
	a.streamPort = port
	if err := a.registerNode(ctx); err != nil {
		return err
	}
	var hb sync.WaitGroup
	hb.Add(1)
	go func() { defer hb.Done(); a.heartbeat(ctx) }()
	defer hb.Wait()

	factory.Start(ctx.Done())
	if cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) && a.proc != nil {
		keep := map[string]bool{}
		pods, _ := a.pods.List(labelsEverything())
		for _, p := range pods {
			keep[string(p.UID)] = true
		}
		a.proc.ForgetPods(keep)
	}
	a.log.Info("node agent running", "runtime", a.runtimeName(), "pod-cidr", a.cfg.ClusterCIDR, "bridge", a.cfg.Bridge)
	<-ctx.Done()
	factory.Shutdown()
	// Each worker stops its containers as its context ends.
	a.wg.Wait()
	return nil
}

func (a *Agent) runtimeName() string {
	if a.rt == nil {
		return "none"
	}
	return a.rt.Name()
}

// podChanged hands the pod to its worker, starting one if needed.
func (a *Agent) podChanged(ctx context.Context, obj any) {
	pod, ok := obj.(*corev1.Pod)
	if !ok || pod.Spec.NodeName != a.cfg.NodeName || ctx.Err() != nil {
		return
	}
	uid := string(pod.UID)
	a.mu.Lock()
	w, ok := a.workers[uid]
	if !ok {
		if a.rt == nil {
			a.mu.Unlock()
			return
		}
		w = newWorker(a, pod)
		a.workers[uid] = w
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			w.run(ctx)
			a.mu.Lock()
			if a.workers[uid] == w {
				delete(a.workers, uid)
			}
			a.mu.Unlock()
		}()
	}
	a.mu.Unlock()
	w.update(pod)
}

func (a *Agent) podGone(pod *corev1.Pod) {
	a.mu.Lock()
	w := a.workers[string(pod.UID)]
	a.mu.Unlock()
	if w != nil {
		w.update(nil)
	}
}

// worker returns the worker of a pod (tests, exec).
func (a *Agent) worker(uid string) *worker {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.workers[uid]
}
