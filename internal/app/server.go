// Package app turns flags into a running Headway: it opens the store, loads
// the PKI, starts the API server and the controllers, and writes the
// kubeconfig. It is the only package that knows every component.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilnet "k8s.io/apimachinery/pkg/util/net"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/headway/headway/internal/agent"
	"github.com/headway/headway/internal/apiserver"
	"github.com/headway/headway/internal/apiserver/openapi"
	"github.com/headway/headway/internal/atomicfile"
	"github.com/headway/headway/internal/controller/endpointslice"
	"github.com/headway/headway/internal/controller/gc"
	"github.com/headway/headway/internal/controller/localpath"
	"github.com/headway/headway/internal/controller/namespace"
	"github.com/headway/headway/internal/controller/scheduler"
	"github.com/headway/headway/internal/controller/statefulset"
	"github.com/headway/headway/internal/pki"
	"github.com/headway/headway/internal/proxy"
	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/builtin"
	"github.com/headway/headway/internal/registry/service"
	"github.com/headway/headway/internal/registry/storageclass"
	"github.com/headway/headway/internal/storage"
	"github.com/headway/headway/internal/storage/bolt"
	"github.com/headway/headway/internal/storage/memory"
	"github.com/headway/headway/internal/version"
)

// Options are the flags of `headway server`.
type Options struct {
	DataDir       string
	Listen        string
	Store         string
	Runtime       string
	DNSListen     string
	DNSUpstream   string
	DNSTTL        time.Duration
	DNSPodRecords string
	ClusterDomain string
	ServiceCIDR   string
	ClusterCIDR   string
	LogLevel      string
	// ProxyMode is the Service proxy: auto, nftables, userspace or none.
	ProxyMode string

	// Logger overrides the logger built from LogLevel (tests).
	Logger *slog.Logger
	// NoControllers leaves the controllers out (API-only tests).
	NoControllers bool
	// NoDNS leaves the cluster DNS server out.
	NoDNS bool
	// Agent configures the node agent (unless --runtime none).
	Agent AgentOptions
}

// DefaultDataDir is $HEADWAY_DATA_DIR, else $XDG_DATA_HOME/headway, else
// ~/.local/share/headway.
func DefaultDataDir() string {
	if d := os.Getenv("HEADWAY_DATA_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "headway")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "headway")
	}
	return filepath.Join(home, ".local", "share", "headway")
}

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	return Options{
		DataDir:       DefaultDataDir(),
		Listen:        "127.0.0.1:6443",
		Store:         "bolt",
		Runtime:       "auto",
		DNSListen:     "127.0.0.1:10053",
		DNSUpstream:   "/etc/resolv.conf",
		DNSTTL:        5 * time.Second,
		DNSPodRecords: "verified",
		ClusterDomain: "cluster.local",
		ServiceCIDR:   "198.19.0.0/16",
		ClusterCIDR:   "198.18.0.0/16",
		LogLevel:      "info",
		ProxyMode:     "auto",
		Agent:         DefaultAgentOptions(),
	}
}

// AddFlags registers the server flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.DataDir, "data-dir", o.DataDir, "directory for the store, certificates, token and kubeconfig ($HEADWAY_DATA_DIR, else $XDG_DATA_HOME/headway, else ~/.local/share/headway)")
	fs.StringVar(&o.Listen, "listen", o.Listen, "address the Kubernetes API (HTTPS) listens on")
	fs.StringVar(&o.Store, "store", o.Store, "state store: bolt (one durable file in the data dir) or memory (gone on exit)")
	fs.StringVar(&o.Runtime, "runtime", o.Runtime, "how the node agent runs pods: auto (cri when root and containerd, containerd-shim-runc-v2 and runc are installed, else process), cri (OCI images through containerd), process (namespaced processes from the host's files) or none (API only, no node)")
	fs.StringVar(&o.DNSListen, "dns-listen", o.DNSListen, "address the cluster DNS server listens on (UDP and TCP)")
	fs.StringVar(&o.DNSUpstream, "dns-upstream", o.DNSUpstream, "where DNS queries outside the cluster domain go: a resolv.conf path or host:port list")
	fs.DurationVar(&o.DNSTTL, "dns-ttl", o.DNSTTL, "TTL of cluster DNS records, and the SOA minimum of negative answers")
	fs.StringVar(&o.DNSPodRecords, "dns-pod-records", o.DNSPodRecords, "pod records a-b-c-d.<ns>.pod.<zone>: disabled, insecure (any address) or verified (addresses of existing pods only)")
	fs.StringVar(&o.ClusterDomain, "cluster-domain", o.ClusterDomain, "the cluster's DNS domain")
	fs.StringVar(&o.ServiceCIDR, "service-cidr", o.ServiceCIDR, "range Service cluster IPs are allocated from")
	fs.StringVar(&o.ClusterCIDR, "cluster-cidr", o.ClusterCIDR, "range pod IPs are allocated from")
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "debug, info, warn or error")
	fs.StringVar(&o.ProxyMode, "proxy-mode", o.ProxyMode, "Service proxy on this node: auto (nftables when root and available, else the userspace forwarder), nftables, userspace or none; it runs unless --runtime none")
	o.Agent.AddFlags(fs)
}

// Validate checks the options and says what to fix.
func (o *Options) Validate() error {
	var errs []error
	if o.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	if _, _, err := net.SplitHostPort(o.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: want host:port, e.g. 127.0.0.1:6443", o.Listen))
	}
	switch o.Store {
	case "bolt", "memory":
	default:
		errs = append(errs, fmt.Errorf("--store %q: want bolt or memory", o.Store))
	}
	switch o.Runtime {
	case "auto", "cri", "process", "none":
	default:
		errs = append(errs, fmt.Errorf("--runtime %q: want auto, cri, process or none", o.Runtime))
	}
	if _, err := netip.ParseAddrPort(o.DNSListen); err != nil {
		errs = append(errs, fmt.Errorf("--dns-listen %q: want ip:port, e.g. 127.0.0.1:10053", o.DNSListen))
	}
	for name, v := range map[string]string{"--service-cidr": o.ServiceCIDR, "--cluster-cidr": o.ClusterCIDR} {
		if _, err := netip.ParsePrefix(v); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want a CIDR such as 198.19.0.0/16", name, v))
		}
	}
	if o.ClusterDomain == "" || strings.HasPrefix(o.ClusterDomain, ".") {
		errs = append(errs, fmt.Errorf("--cluster-domain %q: want a domain such as cluster.local", o.ClusterDomain))
	}
	return errors.Join(errs...)
}

// NewLogger builds the slog logger for a level name.
func NewLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// Running is a started server.
type Running struct {
	APIServer  *apiserver.Server
	Store      storage.Interface
	PKI        *pki.Bundle
	URL        string
	Kubeconfig string
	// RestConfig authenticates as the admin.
	RestConfig *rest.Config
	// StartedIn is the time from Start to ready.
	StartedIn time.Duration
	// DNSAddr is where the cluster DNS answers (UDP and TCP, ip:port);
	// empty when it is not running.
	DNSAddr string
	// Agent is the node agent (nil with --runtime none).
	Agent *agent.Agent

	done chan error
}

// Wait blocks until the server has stopped (its context ended) and returns
// why it stopped.
func (r *Running) Wait() error { return <-r.done }

// KubernetesHosts are the names the serving certificate covers besides the
// listen address.
func kubernetesHosts(o Options, listenHost string) []string {
	hosts := []string{"127.0.0.1", "::1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc." + o.ClusterDomain}
	if listenHost != "" && listenHost != "0.0.0.0" && listenHost != "::" {
		hosts = append(hosts, listenHost)
	} else if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	if p, err := netip.ParsePrefix(o.ServiceCIDR); err == nil {
		hosts = append(hosts, p.Masked().Addr().Next().String())
	}
	return hosts
}

// NodePortBase and NodePortSize are the node port range, 30000-32767.
const (
	NodePortBase = 30000
	NodePortSize = 2768
)

// Resources is the resource table for the options.
func Resources(o Options) ([]*registry.Resource, *service.IPAllocator, error) {
	cidr, err := netip.ParsePrefix(o.ServiceCIDR)
	if err != nil {
		return nil, nil, fmt.Errorf("--service-cidr: %w", err)
	}
	ips, err := service.NewIPAllocator(cidr)
	if err != nil {
		return nil, nil, fmt.Errorf("--service-cidr: %w", err)
	}
	alloc := service.Allocators{IPs: ips, Ports: service.NewPortAllocator(NodePortBase, NodePortSize)}
	return builtin.Resources(builtin.Options{Services: alloc}), ips, nil
}

// Start starts the server and returns once it is ready. It runs until ctx ends.
func Start(ctx context.Context, o Options) (*Running, error) {
	start := time.Now()
	if err := o.Validate(); err != nil {
		return nil, err
	}
	log := o.Logger
	if log == nil {
		log = NewLogger(o.LogLevel)
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir %s: %w", o.DataDir, err)
	}
	var store storage.Interface
	switch o.Store {
	case "memory":
		store = memory.New()
	default:
		path := filepath.Join(o.DataDir, "headway.db")
		b, err := bolt.Open(path, bolt.Options{Timeout: 2 * time.Second})
		if err != nil {
			return nil, fmt.Errorf("opening the store: %w", err)
		}
		store = b
	}
	closeStore := true
	defer func() {
		if closeStore {
			store.Close()
		}
	}()

	listenHost, _, _ := net.SplitHostPort(o.Listen)
	bundle, err := pki.LoadOrCreate(filepath.Join(o.DataDir, "pki"), kubernetesHosts(o, listenHost))
	if err != nil {
		return nil, fmt.Errorf("loading certificates: %w", err)
	}
	resources, ips, err := Resources(o)
	if err != nil {
		return nil, err
	}
	scheme := builtin.Scheme()
	docs, err := openapi.Build(openAPIResources(resources), version.Kubernetes)
	if err != nil {
		return nil, fmt.Errorf("building OpenAPI documents: %w", err)
	}
	agentTLS, err := bundle.ClientTLS("kube-apiserver-kubelet-client", []string{"system:masters"})
	if err != nil {
		return nil, fmt.Errorf("issuing the API server's client certificate: %w", err)
	}
	srv, err := apiserver.New(apiserver.Config{
		AgentTransport: &http.Transport{TLSClientConfig: agentTLS, ForceAttemptHTTP2: false},
		Store:          store,
		Scheme:         scheme,
		Resources:      resources,
		Version:        version.Info(),
		Token:          bundle.Token,
		OpenAPI:        docs,
		Logger:         log.With("component", "apiserver"),
	})
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.Listen)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w (is another server running? pick another address with --listen)", o.Listen, err)
	}
	tlsConfig := apiserver.TLSConfig(bundle.Serving, bundle.CAPool)
	serveCtx, stopServe := context.WithCancel(context.WithoutCancel(ctx))
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(serveCtx, ln, tlsConfig) }()

	addr := ln.Addr().(*net.TCPAddr)
	host := listenHost
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	url := "https://" + net.JoinHostPort(host, fmt.Sprint(addr.Port))
	restConfig := &rest.Config{
		Host:            url,
		BearerToken:     bundle.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: bundle.CAPEM},
		QPS:             -1,
	}
	fail := func(err error) (*Running, error) {
		stopServe()
		<-serveErr
		return nil, err
	}
	client, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		return fail(err)
	}
	if err := bootstrap(ctx, client, ips.KubernetesIP().String(), addr.Port); err != nil {
		return fail(fmt.Errorf("creating the built-in objects: %w", err))
	}
	kubeconfig := filepath.Join(o.DataDir, "kubeconfig")
	if err := writeKubeconfig(kubeconfig, url, bundle); err != nil {
		return fail(err)
	}
	srv.SetReady(true)

	var background []func(context.Context)
	background = append(background, func(ctx context.Context) {
		storage.RunCompactor(ctx, store, 5*time.Minute, 100000)
	})
	if !o.NoControllers {
		md, err := metadata.NewForConfig(restConfig)
		if err != nil {
			return fail(err)
		}
		factory := informers.NewSharedInformerFactory(client, 0)
		broadcaster := record.NewBroadcaster(record.WithContext(ctx))
		broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
		recorder := func(component string) record.EventRecorder {
			return broadcaster.NewRecorder(builtin.Scheme(), corev1.EventSource{Component: component})
		}
		nsc := namespace.New(client, md, factory, log)
		sched := scheduler.New(client, factory, recorder("default-scheduler"), log)
		collector := gc.New(md, client.Discovery(), log)
		sts := statefulset.New(client, factory, recorder("statefulset-controller"), log)
		slices := endpointslice.New(client, factory, log)
		volumes := localpath.New(client, factory, recorder(LocalPathProvisioner), log, LocalPathProvisioner, filepath.Join(o.DataDir, "volumes"))
		background = append(background, func(ctx context.Context) {
			factory.Start(ctx.Done())
			var wg sync.WaitGroup
			for _, run := range []func(context.Context){
				nsc.Run,
				sched.Run,
				sts.Run,
				slices.Run,
				volumes.Run,
				func(ctx context.Context) {
					if err := collector.Run(ctx); err != nil {
						log.Error("garbage collector stopped", "err", err)
					}
				},
			} {
				wg.Add(1)
				go func() { defer wg.Done(); run(ctx) }()
			}
			wg.Wait()
			broadcaster.Shutdown()
			factory.Shutdown()
		})
	}
	// The Service proxy is a node component: it runs where pods run. It
	// owns the Service state of the node, the local route of the service
	// range included, which it keeps with --proxy-mode none too.
	if o.Runtime != "none" {
		svcCIDR, _ := netip.ParsePrefix(o.ServiceCIDR)
		podCIDR, _ := netip.ParsePrefix(o.ClusterCIDR)
		px, err := proxy.New(client, proxy.Config{Mode: o.ProxyMode, ServiceCIDR: svcCIDR, PodCIDR: podCIDR,
			Bridge: o.Agent.Bridge, Log: log.With("component", "proxy")})
		if err != nil {
			return fail(fmt.Errorf("--proxy-mode: %w", err))
		}
		background = append(background, func(ctx context.Context) {
			if err := px.Run(ctx); err != nil {
				log.Error("service proxy stopped", "err", err)
			}
		})
	}
	var dnsAddr string
	if !o.NoDNS {
		// A DNS port already in use leaves the API up, with a clear error.
		if d, err := listenDNS(o, client, log.With("component", "dns")); err != nil {
			log.Error("cluster DNS is not running", "err", err, "fix", "pick a free address with --dns-listen")
		} else {
			dnsAddr = d.Addr()
			background = append(background, d.Run)
		}
	}
	var nodeAgent *agent.Agent
	if o.Runtime != "none" {
		ag, err := newAgent(o, client, dnsAddr, bundle, log.With("component", "agent"))
		if err != nil {
			return fail(err)
		}
		nodeAgent = ag
		background = append(background, func(ctx context.Context) {
			if err := ag.Run(ctx); err != nil {
				log.Error("node agent stopped", "err", err)
			}
		})
	}
	r := &Running{
		Agent:     nodeAgent,
		DNSAddr:   dnsAddr,
		APIServer: srv, Store: store, PKI: bundle, URL: url, Kubeconfig: kubeconfig,
		RestConfig: restConfig, StartedIn: time.Since(start), done: make(chan error, 1),
	}
	closeStore = false
	bgDone := make(chan struct{})
	bgCtx, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		defer close(bgDone)
		done := make(chan struct{}, len(background))
		for _, fn := range background {
			go func() { fn(bgCtx); done <- struct{}{} }()
		}
		for range background {
			<-done
		}
	}()
	go func() {
		var err error
		select {
		case <-ctx.Done():
		case err = <-serveErr:
		}
		stopBG()
		<-bgDone
		// Close our own idle client connections first, or the HTTP/2 server
		// waits for them to go away before it can stop.
		if rt, err := rest.TransportFor(restConfig); err == nil {
			utilnet.CloseIdleConnectionsFor(rt)
		}
		stopServe()
		if e := <-serveErr; err == nil {
			err = e
		}
		if e := store.Close(); err == nil {
			err = e
		}
		r.done <- err
	}()
	log.Info("headway is ready", "api", url, "kubeconfig", kubeconfig, "startup", r.StartedIn.Round(time.Millisecond),
		"try", "headway kubectl get namespaces (or: export KUBECONFIG="+kubeconfig+")")
	return r, nil
}

// bootstrap creates what every cluster has: the four namespaces, the
// kubernetes Service and the default local-path StorageClass.
func bootstrap(ctx context.Context, client kubernetes.Interface, kubernetesIP string, apiPort int) error {
	opts := metav1.CreateOptions{FieldManager: "headway"}
	for _, name := range []string{metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic, corev1.NamespaceNodeLease} {
		_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, opts)
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
		Spec: corev1.ServiceSpec{
			ClusterIP: kubernetesIP,
			Ports:     []corev1.ServicePort{{Name: "https", Port: 443, TargetPort: intstr.FromInt32(int32(apiPort))}},
		},
	}
	if _, err := client.CoreV1().Services(metav1.NamespaceDefault).Create(ctx, svc, opts); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("the kubernetes Service: %w", err)
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	binding := storagev1.VolumeBindingWaitForFirstConsumer
	sc := &storagev1.StorageClass{
		ObjectMeta:        metav1.ObjectMeta{Name: LocalPathClass, Annotations: map[string]string{storageclass.DefaultAnnotation: "true"}},
		Provisioner:       LocalPathProvisioner,
		ReclaimPolicy:     &reclaim,
		VolumeBindingMode: &binding,
	}
	if _, err := client.StorageV1().StorageClasses().Create(ctx, sc, opts); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("the %s StorageClass: %w", LocalPathClass, err)
	}
	return nil
}

// The default StorageClass: volumes are directories under the data dir.
const (
	LocalPathClass       = "local-path"
	LocalPathProvisioner = "headway.dev/local-path"
)

// writeKubeconfig writes an admin kubeconfig for url.
func writeKubeconfig(path, url string, bundle *pki.Bundle) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["headway"] = &clientcmdapi.Cluster{Server: url, CertificateAuthorityData: bundle.CAPEM}
	cfg.AuthInfos["headway-admin"] = &clientcmdapi.AuthInfo{Token: bundle.Token}
	cfg.Contexts["headway"] = &clientcmdapi.Context{Cluster: "headway", AuthInfo: "headway-admin", Namespace: "default"}
	cfg.CurrentContext = "headway"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, data, 0o600); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

func openAPIResources(resources []*registry.Resource) []openapi.Resource {
	out := make([]openapi.Resource, 0, len(resources))
	for _, r := range resources {
		var subs []string
		if r.HasStatus {
			subs = append(subs, "status")
		}
		if r.Scale != nil {
			subs = append(subs, "scale")
		}
		out = append(out, openapi.Resource{
			Group: r.GroupVersion.Group, Version: r.GroupVersion.Version,
			Kind: r.Kind, ListKind: r.ListKind, Resource: r.Plural, Namespaced: r.Namespaced,
			Object: r.ObjectType(), List: r.ListType(),
			Verbs:        []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"},
			Subresources: subs,
		})
	}
	return out
}

// RouteKlog sends what the Kubernetes libraries log through klog to log, at
// debug level (their errors are about single connections). It is for the
// binary's main: it sets process-wide state and must run before anything logs.
func RouteKlog(log *slog.Logger) {
	klog.SetSlogLogger(slog.New(debugHandler{log.Handler()}).With("component", "k8s"))
}

// debugHandler logs every record at debug level.
type debugHandler struct{ slog.Handler }

func (h debugHandler) Enabled(ctx context.Context, _ slog.Level) bool {
	return h.Handler.Enabled(ctx, slog.LevelDebug)
}

func (h debugHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.Handler.Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	r.Level = slog.LevelDebug
	return h.Handler.Handle(ctx, r)
}

func (h debugHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return debugHandler{h.Handler.WithAttrs(as)}
}
func (h debugHandler) WithGroup(g string) slog.Handler { return debugHandler{h.Handler.WithGroup(g)} }
