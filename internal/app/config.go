package app

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/apimachinery/pkg/util/validation"
	netutils "k8s.io/utils/net"

	"github.com/headway/headway/internal/apiserver"
	"github.com/headway/headway/internal/apiserver/admission/tolerationseconds"
	"github.com/headway/headway/internal/controller/nodelifecycle"
	"github.com/headway/headway/internal/dns"
	"github.com/headway/headway/internal/proxy"
)

// The defaults of the cluster's names: the only place they are written.
// Components receive the values and do not default them.
const (
	// DefaultClusterDomain is --cluster-domain's default.
	DefaultClusterDomain = "cluster.local"
	// DefaultBridge is --bridge's default.
	DefaultBridge = "headway0"
)

// Options are the flags of `headway server`, as strings; Config parses them.
type Options struct {
	DataDir string
	// PKIDir holds the CA, the admin token and the service-account key
	// (default <data-dir>/pki). Servers sharing one etcd need the same
	// contents: a copy of the first server's.
	PKIDir  string
	Listen  string
	Store   string
	Runtime string
	// DNSOptions are the cluster DNS flags and the cluster's ranges and
	// domain, the same as `headway dns` has.
	DNSOptions
	LogLevel string
	// ProxyMode is the Service proxy: auto, nftables, userspace or none.
	ProxyMode string
	// BackupInterval is how often the bolt store is copied into
	// <data-dir>/backups (0: never); BackupKeep how many copies stay.
	BackupInterval time.Duration
	BackupKeep     int
	// NodeMonitorGracePeriod is how long a node's agent may go without
	// renewing its Lease before the node is marked Unknown and tainted
	// unreachable (--node-monitor-grace-period).
	NodeMonitorGracePeriod time.Duration
	// DefaultNotReadyTolerationSeconds and DefaultUnreachableTolerationSeconds
	// are how long a new pod tolerates its node being not ready or
	// unreachable, unless it says otherwise (kube-apiserver's flags).
	DefaultNotReadyTolerationSeconds    int64
	DefaultUnreachableTolerationSeconds int64
	// Etcd configures --store etcd.
	Etcd EtcdOptions
	// AuthorizationMode is RBAC (the default) or AlwaysAllow.
	AuthorizationMode string
	// AllocateNodeCIDRs gives each Node a /24 of --cluster-cidr (this
	// server's own node too) instead of all of it to this server's node:
	// what agents on other machines need.
	AllocateNodeCIDRs bool

	// Logger overrides the logger built from LogLevel (tests).
	Logger *slog.Logger
	// NoControllers leaves the controllers out (API-only tests).
	NoControllers bool
	// NoDNS leaves the cluster DNS server out.
	NoDNS bool
	// NoSync writes the data dir's files (certificates, token, kubeconfig)
	// without syncing them to disk: for throwaway data dirs
	// (pkg/headwaytest), never for a server's own.
	NoSync bool
	// Agent configures the node agent (unless --runtime none).
	Agent AgentOptions
	// Serving bounds the API server's connections, requests in flight and
	// timeouts (zero fields: apiserver.DefaultServingLimits).
	Serving apiserver.ServingLimits
}

// EtcdOptions are the flags of --store etcd.
type EtcdOptions struct {
	Endpoints []string
	CAFile    string
	CertFile  string
	KeyFile   string
	Prefix    string
}

// DNSOptions are the flags of the cluster DNS server, shared by `headway
// server` and `headway dns`.
type DNSOptions struct {
	DNSListen     string
	DNSUpstream   string
	DNSTTL        time.Duration
	DNSPodRecords string
	ClusterDomain string
	ServiceCIDR   string
	ClusterCIDR   string
}

// AgentOptions are the node agent's flags of `headway server`.
type AgentOptions struct {
	NodeName string
	// NodeIP is the node's InternalIP (default: the bridge's address).
	NodeIP     string
	Bridge     string
	Masquerade bool
	// BackoffBase is the first crash-loop back-off (tests; 0 is 10s).
	BackoffBase time.Duration
	// CRIEndpoint is an existing CRI runtime's socket.
	CRIEndpoint string
	// OCIRuntime is what the managed containerd's shims run: auto, crun
	// or runc.
	OCIRuntime string
	// Cleanup stops and removes every pod when the server stops.
	Cleanup bool
	// NodeLeaseDurationSeconds is the node Lease's duration; the agent
	// renews it every quarter of that (the kubelet's nodeLeaseDurationSeconds).
	NodeLeaseDurationSeconds int
}

// NodeCIDRBits is the size of each Node's pod range under
// --allocate-node-cidrs (kube-controller-manager's --node-cidr-mask-size
// default): a /24, 253 pod addresses, more than MaxPods.
const NodeCIDRBits = 24

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

// Authorization modes (--authorization-mode).
const (
	AuthorizationRBAC        = "RBAC"
	AuthorizationAlwaysAllow = "AlwaysAllow"
)

// DefaultOptions returns the documented defaults.
func DefaultOptions() Options {
	return Options{
		DataDir:    DefaultDataDir(),
		Listen:     "127.0.0.1:6443",
		Store:      "bolt",
		Runtime:    "auto",
		DNSOptions: DefaultDNSOptions(),
		LogLevel:   "info",
		ProxyMode:  proxy.ModeAuto,
		Agent:      DefaultAgentOptions(),
		Serving:    apiserver.DefaultServingLimits(),

		BackupInterval:    10 * time.Minute,
		BackupKeep:        6,
		Etcd:              EtcdOptions{Prefix: "/headway"},
		AuthorizationMode: AuthorizationRBAC,

		NodeMonitorGracePeriod: nodelifecycle.DefaultGracePeriod,

		DefaultNotReadyTolerationSeconds:    tolerationseconds.Default,
		DefaultUnreachableTolerationSeconds: tolerationseconds.Default,
	}
}

// DefaultDNSOptions are the DNS defaults, of `headway server` and `headway
// dns` alike.
func DefaultDNSOptions() DNSOptions {
	return DNSOptions{
		DNSListen:     "127.0.0.1:10053",
		DNSUpstream:   "/etc/resolv.conf",
		DNSTTL:        5 * time.Second,
		DNSPodRecords: dns.PodsVerified,
		ClusterDomain: DefaultClusterDomain,
		ServiceCIDR:   "198.19.0.0/16",
		ClusterCIDR:   "198.18.0.0/16",
	}
}

// DefaultAgentOptions are the documented defaults.
func DefaultAgentOptions() AgentOptions {
	return AgentOptions{Bridge: DefaultBridge, Masquerade: true, NodeLeaseDurationSeconds: 40, OCIRuntime: "auto"}
}

// AddFlags registers the server flags.
func (o *Options) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.DataDir, "data-dir", o.DataDir, "directory for the store, certificates, token and kubeconfig ($HEADWAY_DATA_DIR, else $XDG_DATA_HOME/headway, else ~/.local/share/headway)")
	fs.StringVar(&o.PKIDir, "pki-dir", o.PKIDir, "directory of the cluster CA, admin token and service-account key (default <data-dir>/pki); a second server on the same etcd starts with a copy of the first one's")
	fs.StringVar(&o.Listen, "listen", o.Listen, "address the Kubernetes API (HTTPS) listens on")
	fs.StringVar(&o.Store, "store", o.Store, "state store: bolt (one durable file in the data dir), etcd (an etcd cluster at --etcd-endpoints) or memory (gone on exit)")
	fs.StringSliceVar(&o.Etcd.Endpoints, "etcd-endpoints", o.Etcd.Endpoints, "etcd client URLs for --store etcd, e.g. https://127.0.0.1:2379 (comma-separated)")
	fs.StringVar(&o.Etcd.CAFile, "etcd-cafile", o.Etcd.CAFile, "CA bundle that signs the etcd servers' certificates (--store etcd over TLS)")
	fs.StringVar(&o.Etcd.CertFile, "etcd-certfile", o.Etcd.CertFile, "client certificate for etcd")
	fs.StringVar(&o.Etcd.KeyFile, "etcd-keyfile", o.Etcd.KeyFile, "client key for etcd")
	fs.StringVar(&o.Etcd.Prefix, "etcd-prefix", o.Etcd.Prefix, "key prefix of this cluster's objects in etcd (several clusters may share one etcd with different prefixes)")
	fs.StringVar(&o.Runtime, "runtime", o.Runtime, "how the node agent runs pods: auto (cri when root and containerd, containerd-shim-runc-v2 and runc are installed, else process), cri (OCI images through containerd), process (namespaced processes from the host's files) or none (API only, no node)")
	o.DNSOptions.AddFlags(fs)
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "debug, info, warn or error")
	fs.StringVar(&o.AuthorizationMode, "authorization-mode", o.AuthorizationMode, "how requests are authorized: RBAC (Roles and bindings; the admin kubeconfig is in system:masters) or AlwaysAllow (any authenticated client may do anything)")
	fs.StringVar(&o.ProxyMode, "proxy-mode", o.ProxyMode, "Service proxy on this node: auto (nftables when root and available, else the userspace forwarder), nftables, userspace or none; it runs unless --runtime none")
	fs.DurationVar(&o.BackupInterval, "backup-interval", o.BackupInterval, "how often the bolt store is copied, while serving, into <data-dir>/backups (0: never); `headway store restore` puts a copy back")
	fs.IntVar(&o.BackupKeep, "backup-keep", o.BackupKeep, "how many store backups to keep (the oldest are removed)")
	fs.DurationVar(&o.NodeMonitorGracePeriod, "node-monitor-grace-period", o.NodeMonitorGracePeriod, "how long a node's agent may go without renewing its Lease before the node is marked Unknown, tainted node.kubernetes.io/unreachable and its pods marked not ready (as kube-controller-manager's flag)")
	fs.Int64Var(&o.DefaultNotReadyTolerationSeconds, "default-not-ready-toleration-seconds", o.DefaultNotReadyTolerationSeconds, "how long a new pod without its own toleration of node.kubernetes.io/not-ready:NoExecute stays on a node that is not ready before it is evicted (as kube-apiserver's flag)")
	fs.Int64Var(&o.DefaultUnreachableTolerationSeconds, "default-unreachable-toleration-seconds", o.DefaultUnreachableTolerationSeconds, "how long a new pod without its own toleration of node.kubernetes.io/unreachable:NoExecute stays on a node that stopped reporting (--node-monitor-grace-period) before it is evicted and, for a StatefulSet, re-created elsewhere (as kube-apiserver's flag)")
	o.Agent.AddFlags(fs)
	fs.BoolVar(&o.AllocateNodeCIDRs, "allocate-node-cidrs", o.AllocateNodeCIDRs, "give each Node a /24 of --cluster-cidr (node.spec.podCIDR; this server's node gets the first) instead of all of it to this server's node; needed for agents on other machines (`headway agent`), with --node-ip and --listen on an address they reach")
	fs.IntVar(&o.Serving.MaxRequestsInFlight, "max-requests-inflight", o.Serving.MaxRequestsInFlight, "the most read requests the API serves at once; past it they are answered 429 with Retry-After (watches and streams are not counted; as kube-apiserver's flag)")
	fs.IntVar(&o.Serving.MaxMutatingRequestsInFlight, "max-mutating-requests-inflight", o.Serving.MaxMutatingRequestsInFlight, "the most write requests the API serves at once; past it they are answered 429 with Retry-After (as kube-apiserver's flag)")
	fs.IntVar(&o.Serving.MaxConnections, "max-connections", o.Serving.MaxConnections, "the most client connections the API holds open; past it a new connection closes the oldest idle one (keep it well below the open-files limit)")
}

// AddFlags registers the DNS flags: the same ones, with the same help, in
// `headway server` and `headway dns`.
func (o *DNSOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.DNSListen, "dns-listen", o.DNSListen, "address the cluster DNS server listens on (UDP and TCP)")
	fs.StringVar(&o.DNSUpstream, "dns-upstream", o.DNSUpstream, "where queries for names outside the cluster domain go: a resolv.conf path, a comma-separated ip[:port] list, or none (such queries are REFUSED)")
	fs.DurationVar(&o.DNSTTL, "dns-ttl", o.DNSTTL, "TTL of cluster DNS records, and the SOA minimum of negative answers")
	fs.StringVar(&o.DNSPodRecords, "dns-pod-records", o.DNSPodRecords, "pod records a-b-c-d.<ns>.pod.<zone>: disabled, insecure (any address) or verified (addresses of existing pods only)")
	fs.StringVar(&o.ClusterDomain, "cluster-domain", o.ClusterDomain, "the cluster's DNS domain")
	fs.StringVar(&o.ServiceCIDR, "service-cidr", o.ServiceCIDR, "the cluster's Service range: Service cluster IPs come from it (the kubernetes Service has the first, kube-dns the tenth); the DNS server answers its reverse zone and lets clients in it recurse")
	fs.StringVar(&o.ClusterCIDR, "cluster-cidr", o.ClusterCIDR, "the cluster's pod range: pod IPs come from it (the bridge has the first); the DNS server answers its reverse zone and lets clients in it recurse")
}

// AddFlags registers the agent flags.
func (o *AgentOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "name of this machine's Node (default: the host name)")
	fs.StringVar(&o.NodeIP, "node-ip", o.NodeIP, "this node's address (its InternalIP), where other nodes reach it and its pods (default: the --listen address under --allocate-node-cidrs when it is one, else the bridge's address, enough for a node alone)")
	fs.StringVar(&o.Bridge, "bridge", o.Bridge, "name of the pod bridge; its address is the first of this node's pod range (all of --cluster-cidr, or the node's /24 of it with the server's --allocate-node-cidrs and on `headway agent` nodes)")
	fs.BoolVar(&o.Masquerade, "masquerade", o.Masquerade, "masquerade traffic from pods to addresses outside the cluster ranges (nftables)")
	fs.StringVar(&o.CRIEndpoint, "container-runtime-endpoint", o.CRIEndpoint, "an existing CRI runtime's socket (e.g. unix:///run/containerd/containerd.sock) instead of the containerd headway starts itself; implies --runtime cri under auto")
	fs.StringVar(&o.OCIRuntime, "oci-runtime", o.OCIRuntime, "what the containerd headway starts runs containers with: auto (crun when installed and usable, else runc), crun or runc")
	fs.IntVar(&o.NodeLeaseDurationSeconds, "node-lease-duration-seconds", o.NodeLeaseDurationSeconds, "the duration of this node's Lease, which the agent renews every quarter of it; keep the server's --node-monitor-grace-period above it (as the kubelet's nodeLeaseDurationSeconds)")
	fs.BoolVar(&o.Cleanup, "cleanup", o.Cleanup, "on exit, stop and remove every pod (with the CRI runtime pods otherwise keep running and the next start adopts them)")
}

// DNSConfig is DNSOptions parsed.
type DNSConfig struct {
	// Listen is where the DNS server listens (host:port).
	Listen string
	// Upstream is the --dns-upstream value; the DNS server reads it
	// (a resolv.conf, or a list) when it starts.
	Upstream   string
	TTL        time.Duration
	PodRecords string
	// ClusterDomain is normalised (normalizeDomain): cluster.local.
	ClusterDomain string
	// ServiceCIDR and ClusterCIDR are masked; not valid when the flag is
	// empty (`headway dns` without a range).
	ServiceCIDR netip.Prefix
	ClusterCIDR netip.Prefix
}

// Config is Options parsed once: the typed values Start hands the
// components.
type Config struct {
	DNSConfig
	DataDir string
	// PKIDir is --pki-dir, <data-dir>/pki by default.
	PKIDir    string
	Listen    string
	Store     string
	Runtime   string
	ProxyMode string
	// BackupInterval and BackupKeep are --backup-interval, --backup-keep.
	BackupInterval time.Duration
	BackupKeep     int
	// NodeMonitorGracePeriod is --node-monitor-grace-period.
	NodeMonitorGracePeriod time.Duration
	// DefaultNotReadyTolerationSeconds and
	// DefaultUnreachableTolerationSeconds are the --default-*-toleration-seconds.
	DefaultNotReadyTolerationSeconds    int64
	DefaultUnreachableTolerationSeconds int64
	// Etcd is --store etcd's connection.
	Etcd EtcdOptions
	// AuthorizationMode is AuthorizationRBAC or AuthorizationAlwaysAllow.
	AuthorizationMode string
	// KubernetesIP is the kubernetes Service's ClusterIP: the first
	// address of ServiceCIDR (198.19.0.1).
	KubernetesIP netip.Addr
	// DNSServiceIP is the kube-dns Service's ClusterIP, which pods use:
	// the tenth address of ServiceCIDR (198.19.0.10), as kubeadm picks it.
	// Not valid when the range is too small; DNSServiceIPError says why.
	DNSServiceIP      netip.Addr
	DNSServiceIPError error
	// Gateway is the bridge's address, the pods' default route: the first
	// address of ClusterCIDR (198.18.0.1).
	Gateway netip.Addr
	// Bridge is the pod bridge's name.
	Bridge string
	// Agent are the node agent's other flags.
	Agent AgentOptions
	// NodeIP is --node-ip parsed (not valid when not given).
	NodeIP netip.Addr
	// AllocateNodeCIDRs is --allocate-node-cidrs.
	AllocateNodeCIDRs bool

	Logger        *slog.Logger
	NoControllers bool
	NoDNS         bool
	NoSync        bool
	// Serving bounds the API server's connections, requests and timeouts.
	Serving apiserver.ServingLimits
}

// Validate checks the options and says what to fix.
func (o *Options) Validate() error {
	_, err := o.Config()
	return err
}

// Config parses the options; every error names its flag.
func (o *Options) Config() (Config, error) {
	var errs []error
	dc, err := o.DNSOptions.config(true)
	if err != nil {
		errs = append(errs, err)
	}
	c := Config{
		DNSConfig: dc, DataDir: o.DataDir, PKIDir: o.PKIDir, Listen: o.Listen, Store: o.Store, Runtime: o.Runtime, ProxyMode: o.ProxyMode,
		Bridge: o.Agent.Bridge, Agent: o.Agent, Logger: o.Logger, NoControllers: o.NoControllers, NoDNS: o.NoDNS, NoSync: o.NoSync,
		BackupInterval: o.BackupInterval, BackupKeep: o.BackupKeep, Etcd: o.Etcd,
		Serving:                o.Serving,
		AuthorizationMode:      o.AuthorizationMode,
		NodeMonitorGracePeriod: o.NodeMonitorGracePeriod,
		AllocateNodeCIDRs:      o.AllocateNodeCIDRs,

		DefaultNotReadyTolerationSeconds:    o.DefaultNotReadyTolerationSeconds,
		DefaultUnreachableTolerationSeconds: o.DefaultUnreachableTolerationSeconds,
	}
	if o.Agent.NodeIP != "" {
		if c.NodeIP, err = netip.ParseAddr(o.Agent.NodeIP); err != nil || !c.NodeIP.Is4() {
			errs = append(errs, fmt.Errorf("--node-ip %q: want an IPv4 address of this machine, e.g. 198.18.254.2", o.Agent.NodeIP))
		}
	}
	if c.AllocateNodeCIDRs && !c.NodeIP.IsValid() {
		// Other nodes reach this one where its API listens, when that is
		// one address.
		if host, _, err := net.SplitHostPort(c.Listen); err == nil {
			if ip, err := netip.ParseAddr(host); err == nil && ip.Is4() && !ip.IsLoopback() && !ip.IsUnspecified() {
				c.NodeIP = ip
			}
		}
	}
	if c.AllocateNodeCIDRs && dc.ClusterCIDR.IsValid() && dc.ClusterCIDR.Bits() > NodeCIDRBits {
		errs = append(errs, fmt.Errorf("--cluster-cidr %s with --allocate-node-cidrs: want a range larger than a /%d (each node gets a /%d)", dc.ClusterCIDR, NodeCIDRBits, NodeCIDRBits))
	}
	if c.BackupInterval < 0 || (c.BackupInterval > 0 && c.BackupKeep < 1) {
		errs = append(errs, fmt.Errorf("--backup-interval %v with --backup-keep %d: want an interval ≥ 0 and at least one copy kept", c.BackupInterval, c.BackupKeep))
	}
	if c.NodeMonitorGracePeriod < 0 {
		errs = append(errs, fmt.Errorf("--node-monitor-grace-period %v: want a positive duration such as 40s", c.NodeMonitorGracePeriod))
	}
	if o.Agent.NodeLeaseDurationSeconds < 1 {
		errs = append(errs, fmt.Errorf("--node-lease-duration-seconds %d: want 1 or more seconds (the default is 40)", o.Agent.NodeLeaseDurationSeconds))
	}
	if c.DefaultNotReadyTolerationSeconds < 0 {
		errs = append(errs, fmt.Errorf("--default-not-ready-toleration-seconds %d: want 0 or more seconds", c.DefaultNotReadyTolerationSeconds))
	}
	if c.DefaultUnreachableTolerationSeconds < 0 {
		errs = append(errs, fmt.Errorf("--default-unreachable-toleration-seconds %d: want 0 or more seconds", c.DefaultUnreachableTolerationSeconds))
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("--data-dir must not be empty"))
	}
	if c.PKIDir == "" {
		c.PKIDir = filepath.Join(c.DataDir, "pki")
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: want host:port, e.g. 127.0.0.1:6443", c.Listen))
	}
	switch c.Store {
	case "bolt", "memory":
	case "etcd":
		if len(c.Etcd.Endpoints) == 0 {
			errs = append(errs, errors.New("--store etcd needs --etcd-endpoints (e.g. http://127.0.0.1:2379)"))
		}
	default:
		errs = append(errs, fmt.Errorf("--store %q: want bolt, etcd or memory", c.Store))
	}
	switch c.Runtime {
	case "auto", "cri", "process", "none":
	default:
		errs = append(errs, fmt.Errorf("--runtime %q: want auto, cri, process or none", c.Runtime))
	}
	switch c.Agent.OCIRuntime {
	case "auto", "crun", "runc":
	default:
		errs = append(errs, fmt.Errorf("--oci-runtime %q: want auto, crun or runc", c.Agent.OCIRuntime))
	}
	switch c.ProxyMode {
	case proxy.ModeAuto, proxy.ModeNFTables, proxy.ModeUserspace, proxy.ModeNone:
	default:
		errs = append(errs, fmt.Errorf("--proxy-mode %q: want auto, nftables, userspace or none", c.ProxyMode))
	}
	switch c.AuthorizationMode {
	case AuthorizationRBAC, AuthorizationAlwaysAllow:
	default:
		errs = append(errs, fmt.Errorf("--authorization-mode %q: want %s or %s", c.AuthorizationMode, AuthorizationRBAC, AuthorizationAlwaysAllow))
	}
	if n := len(c.Bridge); n == 0 || n > 15 || strings.ContainsAny(c.Bridge, "/ \t\n") {
		errs = append(errs, fmt.Errorf("--bridge %q: want an interface name of 1 to 15 characters, e.g. %s", c.Bridge, DefaultBridge))
	}
	if c.ServiceCIDR.IsValid() {
		if c.KubernetesIP, err = indexedAddr(c.ServiceCIDR, 1); err != nil {
			errs = append(errs, fmt.Errorf("--service-cidr %s: %w", c.ServiceCIDR, err))
		}
		if c.DNSServiceIP, err = indexedAddr(c.ServiceCIDR, 10); err != nil {
			c.DNSServiceIPError = fmt.Errorf("--service-cidr %s is too small for the DNS Service address (its tenth)", c.ServiceCIDR)
		}
	}
	if c.ClusterCIDR.IsValid() {
		if c.Gateway, err = indexedAddr(c.ClusterCIDR, 1); err != nil {
			errs = append(errs, fmt.Errorf("--cluster-cidr %s: %w", c.ClusterCIDR, err))
		}
	}
	if c.Logger == nil {
		c.Logger = NewLogger(o.LogLevel)
	}
	return c, errors.Join(errs...)
}

// Config parses the options of `headway dns`; every error names its flag.
func (o *DNSOptions) Config() (DNSConfig, error) { return o.config(false) }

// config parses the DNS options. The server needs both ranges, and an IP
// to listen on (the node agent relays the DNS Service address to it);
// `headway dns` takes the ranges where given.
func (o *DNSOptions) config(server bool) (DNSConfig, error) {
	var errs []error
	c := DNSConfig{Listen: o.DNSListen, Upstream: o.DNSUpstream, TTL: o.DNSTTL, PodRecords: o.DNSPodRecords}
	if _, err := netip.ParseAddrPort(c.Listen); err != nil && server {
		errs = append(errs, fmt.Errorf("--dns-listen %q: want ip:port, e.g. 127.0.0.1:10053", c.Listen))
	} else if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("--dns-listen %q: want [ip]:port, e.g. 127.0.0.1:10053", c.Listen))
	}
	switch c.PodRecords {
	case dns.PodsDisabled, dns.PodsInsecure, dns.PodsVerified:
	default:
		errs = append(errs, fmt.Errorf("--dns-pod-records %q: want disabled, insecure or verified", c.PodRecords))
	}
	var err error
	if c.ClusterDomain, err = normalizeDomain(o.ClusterDomain); err != nil {
		errs = append(errs, fmt.Errorf("--cluster-domain %q: want a domain such as %s: %w", o.ClusterDomain, DefaultClusterDomain, err))
	}
	for _, r := range []struct {
		flag, value string
		to          *netip.Prefix
	}{{"--service-cidr", o.ServiceCIDR, &c.ServiceCIDR}, {"--cluster-cidr", o.ClusterCIDR, &c.ClusterCIDR}} {
		if r.value == "" && !server {
			continue
		}
		p, err := netip.ParsePrefix(r.value)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s %q: want a CIDR such as 198.19.0.0/16", r.flag, r.value))
			continue
		}
		*r.to = p.Masked()
	}
	return c, errors.Join(errs...)
}

// normalizeDomain is the cluster domain as every component receives it:
// lower case, without a trailing dot ("Cluster.Local." is cluster.local).
// It must be a DNS-1123 subdomain, as the search domains of pods are.
func normalizeDomain(domain string) (string, error) {
	d := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(domain), "."))
	if msgs := validation.IsDNS1123Subdomain(d); len(msgs) > 0 {
		return "", errors.New(strings.Join(msgs, "; "))
	}
	return d, nil
}

// indexedAddr is the index-th address of p (p's own address is the
// zeroth): the first is the kubernetes Service's and the bridge's, the
// tenth the DNS Service's.
func indexedAddr(p netip.Prefix, index int) (netip.Addr, error) {
	p = p.Masked()
	ip, err := netutils.GetIndexedIP(&net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}, index)
	if err != nil {
		return netip.Addr{}, err
	}
	a, _ := netip.AddrFromSlice(ip)
	return a.Unmap(), nil
}

// proxyTable is the Service proxy's nftables table: proxy.TableName on a
// node with the default bridge, "headway-proxy-<bridge>" otherwise, so
// nodes with different bridges on one machine (tests) keep apart.
func proxyTable(bridge string) string {
	if bridge == DefaultBridge {
		return proxy.TableName
	}
	return "headway-proxy-" + bridge
}
