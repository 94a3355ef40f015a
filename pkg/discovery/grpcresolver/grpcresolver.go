// Package grpcresolver is a gRPC name resolver for Kubernetes Services,
// registered for the scheme "headway":
//
//	conn, err := grpc.NewClient("headway:///greeter.default:grpc",
//		grpc.WithResolvers(grpcresolver.NewBuilder(client)),
//		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
//		grpc.WithTransportCredentials(insecure.NewCredentials()))
//
// The target names a Service, its namespace and a port:
// headway:///<service>.<namespace>:<port>, the port by its name in the
// Service (as the EndpointSlices carry it) or by number; the namespace
// defaults to "default".
//
// With an API client, the resolver follows the Service's EndpointSlices
// (package discovery) and pushes the address list to gRPC the moment a
// slice changes: pods that become ready are added, pods that turn
// terminating are removed at once, so round_robin or any other balancer
// follows scale-up and scale-down without re-resolving. The list holds the
// ready endpoints; when none is ready, the ones still serving while they
// terminate (as kube-proxy does).
//
// Without a client (NewBuilder(nil)), the resolver falls back to DNS: an
// SRV lookup of _<port>._tcp.<service>.<namespace>.svc.<domain> (A/AAAA of
// <service>.<namespace>.svc.<domain> for a numeric port), repeated every
// DNSRefresh and when gRPC asks. DNS answers are what the cluster DNS
// prepared, so changes arrive no sooner than the next lookup.
//
// Importing the package registers a builder for the scheme that uses the
// in-cluster API credentials (a pod's service account) when there are
// some, and DNS otherwise. Register replaces it; grpc.WithResolvers
// chooses a builder for one connection.
package grpcresolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/resolver"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/headway/headway/pkg/discovery"
)

// Scheme is the target scheme the builders serve.
const Scheme = "headway"

// DefaultDNSRefresh is how often the DNS fallback looks the name up again:
// the cluster DNS's default TTL.
const DefaultDNSRefresh = 5 * time.Second

func init() { resolver.Register(&Builder{inCluster: true}) }

// Register makes b the process-wide builder of the scheme (for targets
// dialled without grpc.WithResolvers). Call it at start-up, before dialling.
func Register(b *Builder) { resolver.Register(b) }

// Builder builds resolvers for headway:/// targets. Set its fields before
// the first dial.
type Builder struct {
	// Client reads EndpointSlices; nil resolves through DNS.
	Client kubernetes.Interface
	// ClusterDomain is the cluster's DNS domain (default cluster.local).
	ClusterDomain string
	// DNS answers the fallback's lookups (default net.DefaultResolver).
	DNS *net.Resolver
	// DNSRefresh is how often the fallback looks up again (default
	// DefaultDNSRefresh).
	DNSRefresh time.Duration
	// Logger receives the resolvers' log lines (default: none).
	Logger *slog.Logger
	// OnUpdate, when set, is called after each address list the resolver
	// gave gRPC, with the target and the list (tests and benchmarks).
	OnUpdate func(target string, addrs []string)

	inCluster bool
	once      sync.Once
	client    kubernetes.Interface
}

// NewBuilder returns a builder that follows EndpointSlices with client, or
// resolves through DNS when client is nil.
func NewBuilder(client kubernetes.Interface) *Builder { return &Builder{Client: client} }

// Scheme returns "headway".
func (b *Builder) Scheme() string { return Scheme }

// Target is a parsed headway:/// target.
type Target struct {
	Service, Namespace string
	// Port is the port's name, or its number as text.
	Port string
}

// ParseTarget parses "<service>.<namespace>:<port>" (the part after
// headway:///); the namespace defaults to "default".
func ParseTarget(endpoint string) (Target, error) {
	want := "want headway:///<service>.<namespace>:<port name or number>, e.g. headway:///web.default:http"
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil || host == "" || port == "" {
		return Target{}, fmt.Errorf("grpcresolver: target %q: %s", endpoint, want)
	}
	t := Target{Service: host, Namespace: "default", Port: port}
	if svc, ns, ok := strings.Cut(host, "."); ok {
		t.Service, t.Namespace = svc, ns
	}
	if msgs := validation.IsDNS1035Label(t.Service); len(msgs) > 0 {
		return Target{}, fmt.Errorf("grpcresolver: target %q: Service name %q: %s; %s", endpoint, t.Service, strings.Join(msgs, "; "), want)
	}
	if msgs := validation.IsDNS1123Label(t.Namespace); len(msgs) > 0 {
		return Target{}, fmt.Errorf("grpcresolver: target %q: namespace %q: %s; %s", endpoint, t.Namespace, strings.Join(msgs, "; "), want)
	}
	if n, err := strconv.Atoi(port); err == nil {
		if n < 1 || n > 65535 {
			return Target{}, fmt.Errorf("grpcresolver: target %q: port %d is out of range 1-65535", endpoint, n)
		}
	} else if msgs := validation.IsValidPortName(port); len(msgs) > 0 {
		return Target{}, fmt.Errorf("grpcresolver: target %q: port name %q: %s", endpoint, port, strings.Join(msgs, "; "))
	}
	return t, nil
}

func (b *Builder) domain() string {
	if d := strings.TrimSuffix(b.ClusterDomain, "."); d != "" {
		return d
	}
	return discovery.DefaultClusterDomain
}

func (b *Builder) log() *slog.Logger {
	if b.Logger != nil {
		return b.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// apiClient is the client resolvers use: Client, or for the registered
// default the in-cluster one when the process has its credentials.
func (b *Builder) apiClient() kubernetes.Interface {
	if b.Client != nil || !b.inCluster {
		return b.Client
	}
	b.once.Do(func() {
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return
		}
		cfg.UserAgent = "headway-grpcresolver"
		if c, err := kubernetes.NewForConfig(cfg); err == nil {
			b.client = c
		}
	})
	return b.client
}

// Build starts a resolver for target.
func (b *Builder) Build(target resolver.Target, cc resolver.ClientConn, _ resolver.BuildOptions) (resolver.Resolver, error) {
	t, err := ParseTarget(target.Endpoint())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	u := &updater{cc: cc, target: target.String(), onUpdate: b.OnUpdate}
	if client := b.apiClient(); client != nil {
		r := &watchResolver{cancel: cancel, port: t.Port, u: u}
		_, err := discovery.Watch(ctx, client, t.Service, t.Namespace, discovery.Options{
			ClusterDomain: b.domain(), NoWait: true, OnChange: r.push, Logger: b.log(),
		})
		if err != nil {
			cancel()
			return nil, err
		}
		return r, nil
	}
	r := &dnsResolver{
		cancel: cancel, t: t, u: u, domain: b.domain(), dns: b.DNS, refresh: b.DNSRefresh, log: b.log(),
		now: make(chan struct{}, 1), done: make(chan struct{}),
	}
	if r.dns == nil {
		r.dns = net.DefaultResolver
	}
	if r.refresh <= 0 {
		r.refresh = DefaultDNSRefresh
	}
	go r.run(ctx)
	return r, nil
}

// updater hands address lists to gRPC, skipping repeats.
type updater struct {
	cc       resolver.ClientConn
	target   string
	onUpdate func(string, []string)

	mu   sync.Mutex
	last []string
	sent bool
}

func (u *updater) update(addrs []string) {
	slices.Sort(addrs)
	addrs = slices.Compact(addrs)
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.sent && slices.Equal(addrs, u.last) {
		return
	}
	u.last, u.sent = addrs, true
	st := resolver.State{}
	for _, a := range addrs {
		st.Addresses = append(st.Addresses, resolver.Address{Addr: a})
		st.Endpoints = append(st.Endpoints, resolver.Endpoint{Addresses: []resolver.Address{{Addr: a}}})
	}
	// An error means the balancer rejected the list (an empty one, for
	// most); the next change sends another, so there is nothing to retry.
	_ = u.cc.UpdateState(st)
	if u.onUpdate != nil {
		u.onUpdate(u.target, slices.Clone(addrs))
	}
}

// watchResolver follows the Service's EndpointSlices.
type watchResolver struct {
	cancel context.CancelFunc
	port   string
	u      *updater
}

// Addresses are the host:port addresses of the endpoints to send traffic
// to in s, on the port called port (a name, or a number).
func Addresses(s discovery.Snapshot, port string) []string {
	var out []string
	_, numErr := strconv.Atoi(port)
	for _, e := range s.Serving() {
		p, ok := e.Port(port)
		switch {
		case ok:
			out = append(out, net.JoinHostPort(e.Address, strconv.Itoa(int(p.Port))))
		case numErr == nil:
			out = append(out, net.JoinHostPort(e.Address, port))
		}
	}
	return out
}

func (r *watchResolver) push(s discovery.Snapshot) {
	if !s.Synced {
		return
	}
	r.u.update(Addresses(s, r.port))
}

// ResolveNow does nothing: the watch pushes every change.
func (r *watchResolver) ResolveNow(resolver.ResolveNowOptions) {}

// Close stops following the Service.
func (r *watchResolver) Close() { r.cancel() }

// dnsResolver looks the Service up in DNS.
type dnsResolver struct {
	cancel  context.CancelFunc
	t       Target
	u       *updater
	domain  string
	dns     *net.Resolver
	refresh time.Duration
	log     *slog.Logger
	now     chan struct{}
	done    chan struct{}
}

// minResolveInterval spaces lookups that gRPC asks for (after connection
// failures) so a broken backend cannot turn into a query storm.
const minResolveInterval = 200 * time.Millisecond

func (r *dnsResolver) run(ctx context.Context) {
	defer close(r.done)
	timer := time.NewTimer(0)
	defer timer.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-r.now:
			if wait := minResolveInterval - time.Since(last); wait > 0 {
				select {
				case <-ctx.Done():
					return
				case <-time.After(wait):
				}
			}
		}
		last = time.Now()
		addrs, err := r.lookup(ctx)
		if err != nil && ctx.Err() == nil {
			r.log.Debug("DNS lookup failed", "target", r.u.target, "err", err)
			r.u.cc.ReportError(err)
		} else if err == nil {
			r.u.update(addrs)
		}
		timer.Reset(r.refresh)
	}
}

// lookup resolves the target: SRV for a named port, A/AAAA for a number.
func (r *dnsResolver) lookup(ctx context.Context) ([]string, error) {
	name := r.t.Service + "." + r.t.Namespace + ".svc." + r.domain + "."
	if _, err := strconv.Atoi(r.t.Port); err == nil {
		ips, err := r.dns.LookupIPAddr(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("grpcresolver: looking up %s: %w", name, err)
		}
		var out []string
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip.IP.String(), r.t.Port))
		}
		return out, nil
	}
	_, srvs, err := r.dns.LookupSRV(ctx, r.t.Port, "tcp", name)
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return nil, nil // no endpoint ready now: an empty list
	}
	if err != nil {
		return nil, fmt.Errorf("grpcresolver: looking up SRV _%s._tcp.%s: %w", r.t.Port, name, err)
	}
	var out []string
	for _, s := range srvs {
		ips, err := r.dns.LookupIPAddr(ctx, s.Target)
		if err != nil {
			r.log.Debug("SRV target does not resolve", "target", s.Target, "err", err)
			continue
		}
		for _, ip := range ips {
			out = append(out, net.JoinHostPort(ip.IP.String(), strconv.Itoa(int(s.Port))))
		}
	}
	return out, nil
}

// ResolveNow looks the name up again soon.
func (r *dnsResolver) ResolveNow(resolver.ResolveNowOptions) {
	select {
	case r.now <- struct{}{}:
	default:
	}
}

// Close stops the lookups.
func (r *dnsResolver) Close() { r.cancel(); <-r.done }
