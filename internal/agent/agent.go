// Package agent is Headway's node agent, an ordinary API client like a
// kubelet: it registers its Node and renews its Lease, watches the pods
// bound to it, runs them through a runtime (agent/runtime/process by
// default), probes them, writes their status, and finalises their graceful
// deletion.
package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
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

	"github.com/headway/headway/internal/agent/containerd"
	"github.com/headway/headway/internal/agent/network"
	hwruntime "github.com/headway/headway/internal/agent/runtime"
	"github.com/headway/headway/internal/agent/runtime/cri"
	"github.com/headway/headway/internal/agent/runtime/process"
)

// Config configures the agent.
type Config struct {
	Client kubernetes.Interface
	// NodeName defaults to the host name.
	NodeName string
	// DataDir holds pods, logs, volumes and the network state.
	DataDir     string
	ClusterCIDR netip.Prefix
	ServiceCIDR netip.Prefix
	// ClusterDomain is the cluster's domain, normalised (cluster.local).
	ClusterDomain string
	// DNSIP is the cluster DNS service address pods use (198.19.0.10).
	DNSIP netip.Addr
	// DNSServer is where the cluster DNS server really listens
	// (127.0.0.1:10053); the agent relays DNSIP:53 to it. Empty: no relay.
	DNSServer string
	// PodDNS, when set, is the cluster DNS server of this process: it also
	// answers on sockets bound to DNSIP:53 in each pod's network namespace,
	// so pods' queries stay on their own loopback. Nil: pods reach DNSIP
	// on the node.
	PodDNS network.PodDNSServer
	// Bridge is the pod bridge's name.
	Bridge string
	// Gateway is the bridge's address, the first of ClusterCIDR.
	Gateway netip.Addr
	// AwaitPodCIDR: the node's pod range is not all of ClusterCIDR but
	// what the server assigns it (node.spec.podCIDR, a part of
	// ClusterCIDR): the agent registers the Node without one, waits for
	// it, gives the bridge its first address (Gateway is ignored), and
	// routes the other nodes' pod ranges through their addresses.
	AwaitPodCIDR bool
	// NodeIP is the node's InternalIP, where other nodes reach it and its
	// pods; zero: the bridge's address (a node alone).
	NodeIP netip.Addr
	// NoMasquerade leaves traffic from pods to outside addresses as it is.
	NoMasquerade bool
	// Runtime overrides the runtime RuntimeMode picks (tests).
	Runtime hwruntime.Runtime
	// RuntimeMode is auto (CRI when root and containerd, its runc shim and
	// runc are installed, else process), cri, process or none.
	RuntimeMode string
	// CRIEndpoint is an existing CRI runtime's socket (containerd, CRI-O);
	// empty with the CRI runtime starts a managed containerd.
	CRIEndpoint string
	// OCIRuntime is what the managed containerd runs containers with:
	// auto (also when empty), crun or runc.
	OCIRuntime string
	// CleanupOnStop stops and removes every pod when the agent stops, also
	// with a runtime whose pods otherwise outlive it (CRI).
	CleanupOnStop bool
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
	// StreamingClients are the common names of the client certificates
	// the streaming server serves (the API server's); any the TLS config
	// verifies when empty.
	StreamingClients []string
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
	recorder record.EventRecorder
	objects  objectSource
	pods     corelisters.PodLister
	// services are every Service, for the pods' Service variables.
	services corelisters.ServiceLister

	// containerd is the managed containerd (nil without one).
	containerd *containerd.Containerd
	// podsTmpfs: the pods' directory is a tmpfs the agent may unmount
	// when it stops (podsdir.go).
	podsTmpfs bool
	// cniOwner answers the CNI plugin (set once the CRI runtime runs).
	cniOwner atomic.Pointer[network.CNIOwner]

	// notReady is why the node cannot run pods ("" when it can).
	notReady string
	hostIP   netip.Addr
	// podCIDR is the node's pod range (ClusterCIDR unless AwaitPodCIDR)
	// and gateway the bridge's address in it.
	podCIDR netip.Prefix
	gateway netip.Addr
	// streamPort is the streaming server's port, published in the node status.
	streamPort int

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
	// Making the pod network needs its names.
	if cfg.Runtime == nil && cfg.ClusterDomain == "" {
		return nil, errors.New("agent: no cluster domain")
	}
	if cfg.Runtime == nil && cfg.Bridge == "" {
		return nil, errors.New("agent: no bridge name")
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
	return &Agent{cfg: cfg, log: cfg.Log.With("node", cfg.NodeName), workers: map[string]*worker{},
		objects: clientSource{cfg.Client}}, nil
}

// NodeName is the node the agent registers.
func (a *Agent) NodeName() string { return a.cfg.NodeName }

// Runtime is the container runtime in use (nil when the node cannot run
// pods).
func (a *Agent) Runtime() hwruntime.Runtime { return a.rt }

// setupRuntime makes the pod network and the runtime; where that is
// impossible it records why, and the node reports it.
func (a *Agent) setupRuntime(ctx, rtCtx context.Context) error {
	if a.cfg.Runtime != nil {
		a.rt = a.cfg.Runtime
		a.hostIP = netip.MustParseAddr("127.0.0.1")
		return nil
	}
	mode, why, err := a.chooseRuntime()
	if err != nil {
		return err
	}
	a.hostIP = netip.MustParseAddr("127.0.0.1")
	if mode == "none" {
		a.notReady = "no container runtime: headway runs with --runtime none"
		a.log.Info("the node runs no pods", "runtime", mode, "why", why)
		return nil
	}
	n, err := network.Open(network.Config{
		StateDir: filepath.Join(a.cfg.DataDir, "network"), Bridge: a.cfg.Bridge, Gateway: a.gateway,
		ClusterCIDR: a.cfg.ClusterCIDR, PodCIDR: a.podCIDR, ServiceCIDR: a.cfg.ServiceCIDR, DNSIP: a.cfg.DNSIP,
		Masquerade: !a.cfg.NoMasquerade, PodDNS: a.cfg.PodDNS, Log: a.log,
	})
	if err == nil {
		if err = n.Setup(); err != nil {
			n.Teardown()
		}
	}
	if err != nil {
		a.notReady = fmt.Sprintf("cannot run pods: %v", err)
		a.log.Error("the node cannot run pods; it registers as NotReady", "err", err)
		return nil
	}
	a.net = n
	a.hostIP = n.Gateway()
	if a.cfg.NodeIP.IsValid() {
		a.hostIP = a.cfg.NodeIP
	}
	dns := network.DNSSettings{ClusterDNS: a.cfg.DNSIP, ClusterDomain: a.cfg.ClusterDomain, HostResolvConf: "/etc/resolv.conf"}
	a.log.Info("container runtime chosen", "runtime", mode, "why", why)
	a.podsTmpfs = mountPodsTmpfs(a.podsDir(), a.log)
	if mode == "cri" {
		rt, err := a.startCRI(ctx, rtCtx, n, dns)
		if err != nil {
			n.Teardown()
			a.net = nil
			return err
		}
		a.rt = rt
		return nil
	}
	p, err := process.New(process.Config{
		PodsDir: a.podsDir(), DataDir: a.cfg.DataDir, Network: n, Log: a.log, DNS: dns,
		// hostNetwork pods have the node's address as their pod IP.
		HostIP: a.hostIP,
	})
	if err != nil {
		return err
	}
	if err := p.Cleanup(); err != nil {
		a.log.Warn("cleaning up after the previous run", "err", err)
	}
	a.rt = p
	return nil
}

// chooseRuntime resolves --runtime: auto is CRI where containerd can run
// (or an endpoint is given), else the process runtime; why says which and
// why, for the log.
func (a *Agent) chooseRuntime() (mode, why string, err error) {
	switch m := a.cfg.RuntimeMode; m {
	case "", "auto":
		if a.cfg.CRIEndpoint != "" {
			return "cri", "--container-runtime-endpoint " + a.cfg.CRIEndpoint + " is given", nil
		}
		if ok, missing := containerd.Available(); !ok {
			return "process", "containerd cannot run here (" + missing + "); pods run as processes from the host's file system", nil
		}
		return "cri", "running as root with containerd, containerd-shim-runc-v2 and runc installed", nil
	case "cri":
		if a.cfg.CRIEndpoint == "" {
			if ok, missing := containerd.Available(); !ok {
				return "", "", fmt.Errorf("--runtime cri: %s (or give --container-runtime-endpoint)", missing)
			}
		}
		return "cri", "--runtime cri", nil
	case "process", "none":
		return m, "--runtime " + m, nil
	default:
		return "", "", fmt.Errorf("--runtime %q: want auto, cri, process or none", m)
	}
}

// shortSocketPath is path, or a path under /run/headway when path is too
// long for a unix socket.
func shortSocketPath(path string) string {
	if len(path) < 100 {
		return path
	}
	sum := sha256.Sum256([]byte(path))
	dir := filepath.Join("/run/headway", hex.EncodeToString(sum[:6]))
	os.MkdirAll(dir, 0o700)
	return filepath.Join(dir, filepath.Base(path))
}

// installCNIPlugin makes path the headway-cni plugin: a shell relay with
// curl where curl is installed (light: a plugin runs per pod), else a link
// to this binary, which is the plugin by that name.
func installCNIPlugin(path, self, sock string) error {
	os.Remove(path)
	if _, err := exec.LookPath("curl"); err == nil {
		return os.WriteFile(path, network.CNIRelayScript(sock), 0o755)
	}
	return os.Symlink(self, path)
}

// startCRI writes the CNI configuration, serves the headway-cni plugin,
// starts the managed containerd (unless an endpoint is given) and connects
// to it.
// ctx bounds the start; rtCtx is the life of containerd and the CNI socket.
func (a *Agent) startCRI(ctx, rtCtx context.Context, n *network.Network, dns network.DNSSettings) (*cri.Runtime, error) {
	cniDir := filepath.Join(a.cfg.DataDir, "cni")
	binDir, confDir := filepath.Join(cniDir, "bin"), filepath.Join(cniDir, "net.d")
	for _, d := range []string{binDir, confDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	sock := shortSocketPath(filepath.Join(cniDir, "agent.sock"))
	owner := func(ns, name, uid string) (string, bool) {
		if f := a.cniOwner.Load(); f != nil {
			return (*f)(ns, name, uid)
		}
		return "", false
	}
	plugin := filepath.Join(binDir, network.CNIPluginName)
	if bash, err := exec.LookPath("bash"); err == nil && a.cfg.CRIEndpoint == "" {
		// The managed containerd runs its plugins in this network
		// namespace: the lightest relay, bash alone, reaches the agent
		// over loopback TCP.
		addr, token, err := n.ServeCNILoopback(rtCtx, owner)
		if err != nil {
			return nil, err
		}
		os.Remove(plugin)
		script := network.CNIRelayBashScript(addr, token)
		script = bytes.Replace(script, []byte("#!/bin/bash"), []byte("#!"+bash), 1)
		if err := os.WriteFile(plugin, script, 0o700); err != nil {
			return nil, fmt.Errorf("installing the CNI plugin: %w", err)
		}
	} else if err := installCNIPlugin(plugin, self, sock); err != nil {
		return nil, fmt.Errorf("installing the CNI plugin: %w", err)
	}
	lo := filepath.Join(binDir, "loopback")
	os.Remove(lo) // a link to /usr/lib/cni's, from an earlier version
	if err := os.WriteFile(lo, []byte(network.LoopbackPluginScript), 0o755); err != nil {
		return nil, fmt.Errorf("installing the loopback CNI plugin: %w", err)
	}
	if err := os.WriteFile(filepath.Join(confDir, "10-headway.conflist"), network.ConflistJSON(sock), 0o644); err != nil {
		return nil, err
	}
	if err := n.ServeCNI(rtCtx, sock, owner); err != nil {
		return nil, err
	}
	endpoint := a.cfg.CRIEndpoint
	if endpoint == "" {
		cd, err := containerd.Start(rtCtx, containerd.Config{
			Dir: filepath.Join(a.cfg.DataDir, "containerd"), ImagesDir: filepath.Join(a.cfg.DataDir, "images"),
			RegistryConfigDir: filepath.Join(a.cfg.DataDir, "registries"),
			CNIBinDirs:        []string{binDir, "/usr/lib/cni", "/opt/cni/bin"}, CNIConfDir: confDir, OCIRuntime: a.cfg.OCIRuntime, Log: a.log,
		})
		if err != nil {
			return nil, fmt.Errorf("starting containerd: %w", err)
		}
		a.containerd = cd
		endpoint = cd.Endpoint()
	}
	rctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	rt, err := cri.New(rctx, cri.Config{Endpoint: endpoint, PodsDir: a.podsDir(),
		LogsDir: filepath.Join(a.cfg.DataDir, "logs"), Network: n, DNS: dns, NodeName: a.cfg.NodeName, Log: a.log})
	if err != nil {
		if a.containerd != nil {
			a.containerd.Stop()
			a.containerd = nil
		}
		return nil, err
	}
	var o network.CNIOwner = rt.Owner
	a.cniOwner.Store(&o)
	return rt, nil
}

// podsDir is where each pod's own files are (<data-dir>/pods).
func (a *Agent) podsDir() string { return filepath.Join(a.cfg.DataDir, "pods") }

// emptyDirDir is where the pod's emptyDir volumes are: on the disk, beside
// the pods' tmpfs (podsdir.go).
func (a *Agent) emptyDirDir(uid string) string { return filepath.Join(a.cfg.DataDir, "emptydir", uid) }

// Run registers the node and runs its pods until ctx ends; then it stops
// every container, removes the pod networks and the bridge, and returns.
func (a *Agent) Run(ctx context.Context) error {
	// The runtime (containerd, the CNI socket) outlives ctx: the workers
	// still stop and remove pods through it after ctx ends (--cleanup).
	rtCtx, stopRuntime := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRuntime()
	a.podCIDR, a.gateway = a.cfg.ClusterCIDR, a.cfg.Gateway
	if a.cfg.AwaitPodCIDR {
		p, err := a.awaitPodCIDR(ctx)
		if err != nil || ctx.Err() != nil {
			return err
		}
		a.podCIDR, a.gateway = p, p.Addr().Next()
	}
	if err := a.setupRuntime(ctx, rtCtx); err != nil {
		return err
	}
	defer func() {
		stopRuntime()
		if c, ok := a.rt.(interface{ Close() error }); ok {
			c.Close()
		}
		if a.containerd != nil {
			if err := a.containerd.Stop(); err != nil {
				a.log.Warn("stopping containerd", "err", err)
			}
		}
		if ad, ok := a.rt.(hwruntime.Adopter); ok && ad.KeepOnStop() && !a.cfg.CleanupOnStop {
			a.log.Info("pods keep running; the pod network stays for the next start to adopt them (--cleanup removes everything)")
		} else {
			if a.net != nil {
				if err := a.net.Teardown(); err != nil {
					a.log.Warn("removing the pod network", "err", err)
				}
			}
			// No pod outlives this stop: their files go with the tmpfs.
			if a.podsTmpfs {
				if err := unmountPodsTmpfs(a.podsDir()); err != nil {
					a.log.Warn("unmounting the pods' tmpfs", "dir", a.podsDir(), "err", err)
				}
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
			a.log.Error("pods cannot reach the cluster DNS", "addr", a.cfg.DNSIP, "err", err,
				"fix", "another process (another headway server?) holds this address: give this server its own --service-cidr")
		} else {
			relayWG.Add(1)
			go func() { defer relayWG.Done(); relay.Run(ctx) }()
		}
	}
	defer relayWG.Wait()
	if a.net != nil && a.cfg.AwaitPodCIDR {
		var routesWG sync.WaitGroup
		routesWG.Add(1)
		go func() { defer routesWG.Done(); a.routeNodes(ctx) }()
		defer routesWG.Wait()
	}

	factory := informers.NewSharedInformerFactoryWithOptions(a.cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", a.cfg.NodeName).String()
		}))
	// Containers get the Service variables of the Services that exist when
	// they start, as with the kubelet: know them before the first pod.
	svcFactory := informers.NewSharedInformerFactory(a.cfg.Client, 0)
	svcInf := svcFactory.Core().V1().Services()
	a.services = svcInf.Lister()
	svcInf.Informer()
	svcFactory.Start(ctx.Done())
	defer svcFactory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.Informer().HasSynced) {
		return ctx.Err()
	}
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
	if cl, ok := a.rt.(hwruntime.Cleaner); ok && cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		keep := map[string]bool{}
		pods, _ := a.pods.List(labelsEverything())
		for _, p := range pods {
			keep[string(p.UID)] = true
		}
		cl.ForgetPods(ctx, keep)
		entries, _ := os.ReadDir(filepath.Join(a.cfg.DataDir, "emptydir"))
		for _, e := range entries {
			if !keep[e.Name()] {
				os.RemoveAll(a.emptyDirDir(e.Name()))
			}
		}
	}
	a.log.Info("node agent running", "runtime", a.runtimeName(), "pod-cidr", a.podCIDR, "bridge", a.cfg.Bridge, "node-ip", a.hostIP)
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

// serviceEnv is the Service environment of the pod's containers (see
// ServiceEnv).
func (a *Agent) serviceEnv(pod *corev1.Pod) []corev1.EnvVar {
	if a.services == nil {
		return nil
	}
	svcs, err := a.services.List(labelsEverything())
	if err != nil {
		return nil
	}
	links := pod.Spec.EnableServiceLinks == nil || *pod.Spec.EnableServiceLinks
	return ServiceEnv(svcs, pod.Namespace, links)
}
