// Package discovery gives a Go program a live view of a Kubernetes Service's
// endpoints, read from its EndpointSlices through the API rather than from
// DNS: every replica with its address, hostname and per-pod DNS name, its
// ready/serving/terminating conditions, zone, node and ports, updated the
// moment a slice changes.
//
// It is for clients that balance over a Service's pods themselves (the
// "custom load balancing" use of headless Services): DNS answers are cached
// for their TTL, missing names are cached as missing (negative caching), and
// gRPC resolves a name once and keeps the addresses, so such clients learn of
// new and departed pods late. A Watcher sees the change as soon as the
// EndpointSlice controller writes it. The package works against Headway or
// any Kubernetes cluster; it needs get, list and watch on
// discovery.k8s.io/endpointslices in the Service's namespace.
//
// Package grpcresolver (pkg/discovery/grpcresolver) feeds a Watcher into a
// gRPC client connection.
//
// A Watcher follows the slices with a client-go informer, filtered by the
// kubernetes.io/service-name label; when the watch breaks (an API server
// restart, a connection reset) the informer lists again and the view
// catches up, reporting what changed meanwhile.
package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// DefaultClusterDomain is the cluster domain per-pod DNS names use unless
// Options say otherwise.
const DefaultClusterDomain = "cluster.local"

// Options change how Watch follows a Service.
type Options struct {
	// ClusterDomain is the cluster's DNS domain, for the per-pod DNS names
	// (default cluster.local).
	ClusterDomain string
	// OnChange, when set, is called with each new snapshot, one call at a
	// time and in order, from a goroutine of its own: a slow callback
	// never holds up the informer, but sees only the newest snapshot when
	// several changes happened during one call.
	OnChange func(Snapshot)
	// NoWait makes Watch return at once instead of after the first list;
	// Snapshot().Synced says when the view is complete.
	NoWait bool
	// Logger receives the watcher's few log lines (default: none).
	Logger *slog.Logger
}

// Port is one port of an endpoint, as the EndpointSlice gives it.
type Port struct {
	Name        string
	Port        int32
	Protocol    corev1.Protocol
	AppProtocol string
}

// Endpoint is one backend of the Service: a pod, usually.
type Endpoint struct {
	// Address is the endpoint's address (the first of Addresses), an IP
	// for IPv4 and IPv6 slices, a name for FQDN slices.
	Address   string
	Addresses []string
	// AddressType is IPv4, IPv6 or FQDN.
	AddressType discoveryv1.AddressType
	// Hostname is the endpoint's hostname (a StatefulSet pod's name, or a
	// pod's spec.hostname under a subdomain); empty when it has none.
	Hostname string
	// DNSName is the per-pod name <hostname>.<service>.<namespace>.svc.<domain>,
	// without a trailing dot; empty when the endpoint has no hostname.
	DNSName string
	// Ready, Serving and Terminating are the EndpointSlice conditions
	// (Ready: serving and not terminating). An absent ready or serving
	// condition counts as true, as the API documents it.
	Ready, Serving, Terminating bool
	// Zone and NodeName locate the endpoint (empty when unknown).
	Zone     string
	NodeName string
	// Pod names the pod behind the endpoint (empty when not a pod).
	Pod string
	// Ports are the endpoint's ports by name ("" for an unnamed port).
	Ports map[string]Port
}

// Port returns the endpoint's port called name, and whether it has one.
// A number given as name ("8080") matches a port with that number.
func (e Endpoint) Port(name string) (Port, bool) {
	if p, ok := e.Ports[name]; ok {
		return p, true
	}
	for _, p := range e.Ports {
		if fmt.Sprint(p.Port) == name {
			return p, true
		}
	}
	return Port{}, false
}

// Snapshot is a consistent view of the Service's endpoints at one moment.
type Snapshot struct {
	Service, Namespace string
	// Endpoints are all endpoints of every slice of the Service, sorted by
	// address; an address listed by several slices appears once.
	Endpoints []Endpoint
	// Version increases by one with each change the watcher reports.
	Version uint64
	// Synced is false until the first list of slices has been read.
	Synced bool
	// At is when the watcher made the snapshot.
	At time.Time
}

// Ready returns the endpoints that are ready (serving, not terminating).
func (s Snapshot) Ready() []Endpoint {
	var out []Endpoint
	for _, e := range s.Endpoints {
		if e.Ready && !e.Terminating {
			out = append(out, e)
		}
	}
	return out
}

// Serving returns the endpoints to send traffic to, the way kube-proxy
// picks them: the ready ones, or when none is ready the ones still serving
// while terminating (so that a Service whose every pod is shutting down
// keeps answering until they stop).
func (s Snapshot) Serving() []Endpoint {
	if r := s.Ready(); len(r) > 0 {
		return r
	}
	var out []Endpoint
	for _, e := range s.Endpoints {
		if e.Serving && e.Terminating {
			out = append(out, e)
		}
	}
	return out
}

// Watcher is the live view of one Service's endpoints.
type Watcher struct {
	service, namespace, domain string
	onChange                   func(Snapshot)
	log                        *slog.Logger

	factory informers.SharedInformerFactory
	lister  cache.GenericLister
	synced  cache.InformerSynced

	mu      sync.Mutex // serialises recompute
	current atomic.Pointer[Snapshot]
	changes chan Snapshot
	kick    chan struct{} // wakes the OnChange goroutine
	done    chan struct{}
}

// Watch starts following the EndpointSlices of service in namespace and,
// unless opts.NoWait, returns once the first list has been read (or ctx has
// ended, with its error). The watcher runs until ctx ends; Done is closed
// then.
func Watch(ctx context.Context, client kubernetes.Interface, service, namespace string, opts Options) (*Watcher, error) {
	if client == nil {
		return nil, errors.New("discovery.Watch: a nil client; pass a kubernetes.Interface")
	}
	if msgs := validation.IsDNS1035Label(service); len(msgs) > 0 {
		return nil, fmt.Errorf("discovery.Watch: Service name %q: %s", service, strings.Join(msgs, "; "))
	}
	if msgs := validation.IsDNS1123Label(namespace); len(msgs) > 0 {
		return nil, fmt.Errorf("discovery.Watch: namespace %q: %s", namespace, strings.Join(msgs, "; "))
	}
	domain := strings.TrimSuffix(strings.ToLower(opts.ClusterDomain), ".")
	if domain == "" {
		domain = DefaultClusterDomain
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &Watcher{
		service: service, namespace: namespace, domain: domain, onChange: opts.OnChange,
		log:     log.With("service", namespace+"/"+service),
		changes: make(chan Snapshot, 1), kick: make(chan struct{}, 1), done: make(chan struct{}),
	}
	w.current.Store(&Snapshot{Service: service, Namespace: namespace, At: time.Now()})

	selector := labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: service}).String()
	w.factory = informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))
	inf := w.factory.Discovery().V1().EndpointSlices()
	w.lister = cache.NewGenericLister(inf.Informer().GetIndexer(), discoveryv1.Resource("endpointslices"))
	w.synced = inf.Informer().HasSynced
	update := func(any) { w.recompute() }
	if _, err := inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: update, UpdateFunc: func(_, o any) { update(o) }, DeleteFunc: update,
	}); err != nil {
		return nil, fmt.Errorf("discovery.Watch %s/%s: %w", namespace, service, err)
	}
	w.factory.Start(ctx.Done())
	go w.run(ctx)
	if opts.NoWait {
		return w, nil
	}
	if !cache.WaitForCacheSync(ctx.Done(), w.synced) {
		return nil, fmt.Errorf("discovery.Watch %s/%s: the first list of EndpointSlices did not finish: %w", namespace, service, context.Cause(ctx))
	}
	// The informer may report synced before its handler ran for the last
	// object of the list; recompute so that the snapshot is complete now.
	w.recompute()
	return w, nil
}

// run notifies OnChange and stops the informer when ctx ends.
func (w *Watcher) run(ctx context.Context) {
	defer close(w.done)
	defer w.factory.Shutdown()
	// Until the informer has synced, the handler does not know whether it
	// has seen every slice; mark the snapshot synced as soon as it has.
	if cache.WaitForCacheSync(ctx.Done(), w.synced) {
		w.recompute()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-w.kick:
			if w.onChange != nil {
				w.onChange(w.Snapshot())
			}
		}
	}
}

// Snapshot returns the current view. It never blocks on the API.
func (w *Watcher) Snapshot() Snapshot { return *w.current.Load() }

// Changes delivers each new snapshot. The channel holds one: when the
// reader falls behind, the newest snapshot replaces the unread one (the
// informer never waits for the reader). It is never closed; select on Done
// too.
func (w *Watcher) Changes() <-chan Snapshot { return w.changes }

// Done is closed once the watcher has stopped (its context ended).
func (w *Watcher) Done() <-chan struct{} { return w.done }

// recompute rebuilds the snapshot from the informer's slices and reports it
// when it differs from the current one.
func (w *Watcher) recompute() {
	w.mu.Lock()
	defer w.mu.Unlock()
	objs, err := w.lister.ByNamespace(w.namespace).List(labels.Everything())
	if err != nil {
		w.log.Warn("listing the cached EndpointSlices", "err", err)
		return
	}
	var sl []*discoveryv1.EndpointSlice
	for _, o := range objs {
		if s, ok := o.(*discoveryv1.EndpointSlice); ok {
			sl = append(sl, s)
		}
	}
	prev := w.current.Load()
	next := &Snapshot{
		Service: w.service, Namespace: w.namespace, Endpoints: Merge(w.service, w.namespace, w.domain, sl),
		Synced: w.synced(), Version: prev.Version, At: time.Now(),
	}
	if next.Synced == prev.Synced && equalEndpoints(next.Endpoints, prev.Endpoints) {
		return
	}
	next.Version++
	w.current.Store(next)
	w.log.Debug("endpoints changed", "version", next.Version, "endpoints", len(next.Endpoints), "ready", len(next.Ready()))
	// Coalesce: replace an unread snapshot with this newer one.
	select {
	case w.changes <- *next:
	default:
		select {
		case <-w.changes:
		default:
		}
		select {
		case w.changes <- *next:
		default:
		}
	}
	select {
	case w.kick <- struct{}{}:
	default:
	}
}

// Merge turns the EndpointSlices of one Service into its endpoints, sorted
// by address. An address that several slices list (slices being rebalanced)
// appears once, with the ports of all of them, ready when any says so.
// Slices of other Services are ignored. domain is the cluster domain of the
// per-pod DNS names.
func Merge(service, namespace, domain string, list []*discoveryv1.EndpointSlice) []Endpoint {
	byAddr := map[string]*Endpoint{}
	var order []string
	for _, s := range list {
		if s == nil || s.Namespace != namespace || s.Labels[discoveryv1.LabelServiceName] != service {
			continue
		}
		ports := map[string]Port{}
		for _, p := range s.Ports {
			port := Port{Name: deref(p.Name), Protocol: corev1.ProtocolTCP, AppProtocol: deref(p.AppProtocol)}
			if p.Port != nil {
				port.Port = *p.Port
			}
			if p.Protocol != nil {
				port.Protocol = *p.Protocol
			}
			ports[port.Name] = port
		}
		for _, ep := range s.Endpoints {
			if len(ep.Addresses) == 0 {
				continue
			}
			e := Endpoint{
				Address: ep.Addresses[0], Addresses: slices.Clone(ep.Addresses), AddressType: s.AddressType,
				Hostname: deref(ep.Hostname), Zone: deref(ep.Zone), NodeName: deref(ep.NodeName),
				Ready:       ep.Conditions.Ready == nil || *ep.Conditions.Ready,
				Serving:     ep.Conditions.Serving == nil || *ep.Conditions.Serving,
				Terminating: ep.Conditions.Terminating != nil && *ep.Conditions.Terminating,
				Ports:       ports,
			}
			if e.Terminating {
				e.Ready = false
			}
			if e.Hostname != "" {
				e.DNSName = e.Hostname + "." + service + "." + namespace + ".svc." + domain
			}
			if ep.TargetRef != nil && ep.TargetRef.Kind == "Pod" {
				e.Pod = ep.TargetRef.Name
			}
			have, ok := byAddr[e.Address]
			if !ok {
				byAddr[e.Address] = &e
				order = append(order, e.Address)
				continue
			}
			merged := map[string]Port{}
			for k, v := range have.Ports {
				merged[k] = v
			}
			for k, v := range e.Ports {
				merged[k] = v
			}
			if e.Ready && !have.Ready {
				e.Ports = merged
				*have = e
			} else {
				have.Ports = merged
			}
		}
	}
	out := make([]Endpoint, 0, len(order))
	for _, a := range order {
		out = append(out, *byAddr[a])
	}
	slices.SortFunc(out, func(a, b Endpoint) int { return cmp.Compare(a.Address, b.Address) })
	return out
}

func equalEndpoints(a, b []Endpoint) bool {
	return slices.EqualFunc(a, b, func(x, y Endpoint) bool {
		return x.Address == y.Address && slices.Equal(x.Addresses, y.Addresses) && x.AddressType == y.AddressType &&
			x.Hostname == y.Hostname && x.DNSName == y.DNSName && x.Ready == y.Ready && x.Serving == y.Serving &&
			x.Terminating == y.Terminating && x.Zone == y.Zone && x.NodeName == y.NodeName && x.Pod == y.Pod &&
			maps.Equal(x.Ports, y.Ports)
	})
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
