// Package proxy is Headway's Service proxy. Like kube-proxy it is an
// ordinary API client: it watches Services and EndpointSlices and programs
// the node so that a ClusterIP (and node port) reaches the Service's ready
// endpoints. Headless and ExternalName Services get nothing: clients reach
// their pods directly.
//
// Two mechanisms, one file each: nftables (a table of our own, "ip
// headway", programmed incrementally through netlink) when the process may
// and the kernel can, and a userspace TCP/UDP forwarder otherwise. The
// choice is made at start and logged.
//
// The proxy owns the node's Service state: its table and the local route of
// the service range (route.go), which it keeps even in mode none.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Modes.
const (
	ModeAuto      = "auto"
	ModeNFTables  = "nftables"
	ModeUserspace = "userspace"
	ModeNone      = "none"
)

// Config configures a proxy.
type Config struct {
	// Mode is auto (nftables when possible, else userspace), nftables,
	// userspace, or none: no Service rules (Services are another proxy's
	// job), only the service range routed locally.
	Mode string
	// ServiceCIDR is routed locally, and traffic to it that no rule
	// translated does not leave the node.
	ServiceCIDR netip.Prefix
	// PodCIDR: traffic from outside it to a service is masqueraded.
	PodCIDR netip.Prefix
	// Bridge is the pods' bridge; pod→service→pod traffic through it is
	// masqueraded.
	Bridge string
	// Table is the nftables table the proxy owns (family ip); empty:
	// TableName. Nodes with different bridges on one machine (tests)
	// need different tables.
	Table string
	// NetNS is where to program (tests); zero: the process's namespace.
	NetNS NetNS
	// LeaveRulesOnExit keeps the rules when the proxy stops, for a restart
	// to adopt without a gap. By default they are removed.
	LeaveRulesOnExit bool
	Log              *slog.Logger
}

// backend is a mechanism.
type backend interface {
	name() string
	// Apply programs the changed Services (nil ports: remove).
	Apply(changes map[string][]ServicePort) error
	// Cleanup removes everything the backend programmed.
	Cleanup() error
	// Close stops it and leaves its rules.
	Close()
}

// Proxy follows the API and keeps the node's rules current.
type Proxy struct {
	client kubernetes.Interface
	cfg    Config
	log    *slog.Logger
	be     backend // used by the loop goroutine only; nil in mode none
	mode   atomic.Pointer[string]
	route  *localRoute
	// firstOK: a sync has succeeded (auto mode falls back only before).
	firstOK bool

	mu      sync.Mutex
	pending map[string]change
	notify  chan struct{}

	appliedMu sync.Mutex
	applied   map[string][]ServicePort
	changed   chan struct{} // closed and replaced after every sync
}

// change is when a Service's pending change was first seen.
type change struct {
	seen    time.Time // zero: part of the initial list, not timed
	trigger time.Time // an EndpointSlice's last-change-trigger-time
}

// New picks the mechanism. ModeAuto tries nftables and falls back to the
// userspace forwarder, saying why.
func New(client kubernetes.Interface, cfg Config) (*Proxy, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Mode == "" {
		cfg.Mode = ModeAuto
	}
	p := &Proxy{
		client: client, cfg: cfg, log: cfg.Log,
		pending: map[string]change{}, notify: make(chan struct{}, 1),
		applied: map[string][]ServicePort{}, changed: make(chan struct{}),
	}
	rules := RulesConfig{PodCIDR: cfg.PodCIDR, ServiceCIDR: cfg.ServiceCIDR, Bridge: cfg.Bridge, Table: cfg.Table}
	switch cfg.Mode {
	case ModeNFTables, ModeAuto:
		be, err := p.openNFT(rules)
		if err == nil {
			p.be = be
			break
		}
		if cfg.Mode == ModeNFTables {
			return nil, err
		}
		p.log.Warn("nftables is not available; the proxy uses the userspace forwarder (slower, TCP and UDP only)", "reason", err)
		fallthrough
	case ModeUserspace:
		p.be = newUserspace(cfg.NetNS, p.log)
	case ModeNone:
		mode := ModeNone
		p.mode.Store(&mode)
		return p, nil
	default:
		return nil, fmt.Errorf("proxy mode %q: want auto, nftables, userspace or none", cfg.Mode)
	}
	p.setBackend(p.be)
	return p, nil
}

func (p *Proxy) openNFT(rules RulesConfig) (backend, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("not root (uid %d): nftables needs CAP_NET_ADMIN", os.Geteuid())
	}
	fd, err := p.cfg.NetNS.open()
	if err != nil {
		return nil, err
	}
	defer closeFd(fd)
	return newNFT(fd, rules, p.log)
}

func (p *Proxy) setBackend(be backend) {
	p.be = be
	name := be.name()
	p.mode.Store(&name)
}

// Mode is the mechanism in use: nftables, userspace or none.
func (p *Proxy) Mode() string { return *p.mode.Load() }

// Run follows the API and programs the node until ctx ends, then removes
// what it programmed (unless LeaveRulesOnExit). In mode none it only keeps
// the service range routed locally.
func (p *Proxy) Run(ctx context.Context) error {
	if p.be == nil {
		p.log.Info("service proxy off (mode none): Services get no rules here", "serviceCIDR", p.cfg.ServiceCIDR)
		if os.Geteuid() == 0 { // else there is no pod network either: nothing to say
			p.routeServiceRange()
		}
		<-ctx.Done()
		p.unrouteServiceRange(!p.cfg.LeaveRulesOnExit)
		return nil
	}
	modeGauge.WithLabelValues(p.Mode()).Set(1)
	defer func() { modeGauge.WithLabelValues(p.Mode()).Set(0) }()
	p.log.Info("service proxy starting", "mode", p.Mode(), "serviceCIDR", p.cfg.ServiceCIDR)
	p.routeServiceRange()
	defer p.stop()

	factory := informers.NewSharedInformerFactory(p.client, 0)
	svcInf := factory.Core().V1().Services()
	sliceInf := factory.Discovery().V1().EndpointSlices().Informer()
	if err := sliceInf.AddIndexers(cache.Indexers{"service": func(obj any) ([]string, error) {
		s, ok := obj.(*discoveryv1.EndpointSlice)
		if !ok || s.Labels[ServiceNameLabel] == "" {
			return nil, nil
		}
		return []string{ServiceKey(s.Namespace, s.Labels[ServiceNameLabel])}, nil
	}}); err != nil {
		return err
	}
	var synced bool
	var syncedMu sync.Mutex
	now := func() time.Time {
		syncedMu.Lock()
		defer syncedMu.Unlock()
		if !synced {
			return time.Time{}
		}
		return time.Now()
	}
	if _, err := svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { p.serviceEvent(obj, now()) },
		UpdateFunc: func(_, obj any) { p.serviceEvent(obj, now()) },
		DeleteFunc: func(obj any) { p.serviceEvent(obj, now()) },
	}); err != nil {
		return err
	}
	if _, err := sliceInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { p.sliceEvent(obj, now()) },
		UpdateFunc: func(_, obj any) { p.sliceEvent(obj, now()) },
		DeleteFunc: func(obj any) { p.sliceEvent(obj, now()) },
	}); err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.Informer().HasSynced, sliceInf.HasSynced) {
		return ctx.Err()
	}
	syncedMu.Lock()
	synced = true
	syncedMu.Unlock()
	p.kick()
	return p.loop(ctx, svcInf.Lister(), sliceInf.GetIndexer())
}

func (p *Proxy) stop() {
	if p.cfg.LeaveRulesOnExit {
		p.be.Close()
		p.unrouteServiceRange(false)
		p.log.Info("service proxy stopped; rules left in place", "mode", p.Mode())
		return
	}
	if err := p.be.Cleanup(); err != nil {
		p.log.Error("removing the proxy rules", "err", err)
	}
	p.unrouteServiceRange(true)
	servicePortsGauge.WithLabelValues(p.Mode()).Set(0)
	p.log.Info("service proxy stopped; rules removed", "mode", p.Mode())
}

// routeServiceRange makes the service range local to the node (route.go).
func (p *Proxy) routeServiceRange() {
	if !p.cfg.ServiceCIDR.IsValid() {
		return
	}
	if os.Geteuid() != 0 {
		p.log.Warn("not root: the service range is not routed locally, cluster IPs work only where something else routes them", "cidr", p.cfg.ServiceCIDR)
		return
	}
	rt, err := newLocalRoute(p.cfg.NetNS, p.cfg.ServiceCIDR)
	if err == nil {
		var added bool
		if added, err = rt.Ensure(); err == nil {
			p.route = rt
			if added {
				p.log.Info("routed the service range locally", "cidr", p.cfg.ServiceCIDR)
			}
		} else {
			rt.Close()
		}
	}
	if err != nil {
		p.log.Warn("the service range is not routed locally: traffic to a cluster IP without rules may leave the node", "err", err)
	}
}

// unrouteServiceRange removes the route routeServiceRange made or adopted
// (with remove; else it is left for the next run to adopt).
func (p *Proxy) unrouteServiceRange(remove bool) {
	if p.route == nil {
		return
	}
	if remove {
		if err := p.route.Remove(); err != nil {
			p.log.Error("removing the service route", "err", err)
		}
	}
	p.route.Close()
	p.route = nil
}

func (p *Proxy) kick() {
	select {
	case p.notify <- struct{}{}:
	default:
	}
}

func (p *Proxy) mark(key string, c change) {
	p.mu.Lock()
	old, ok := p.pending[key]
	if ok {
		if !old.seen.IsZero() && (c.seen.IsZero() || old.seen.Before(c.seen)) {
			c.seen = old.seen
		}
		if !old.trigger.IsZero() && (c.trigger.IsZero() || old.trigger.Before(c.trigger)) {
			c.trigger = old.trigger
		}
	}
	p.pending[key] = c
	p.mu.Unlock()
	p.kick()
}

func (p *Proxy) serviceEvent(obj any, at time.Time) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	svc, ok := obj.(*corev1.Service)
	if !ok {
		return
	}
	p.mark(ServiceKey(svc.Namespace, svc.Name), change{seen: at})
}

func (p *Proxy) sliceEvent(obj any, at time.Time) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || s.Labels[ServiceNameLabel] == "" {
		return
	}
	c := change{seen: at}
	if !at.IsZero() {
		// The time of the change the slice reflects: network programming
		// latency counts from it when present.
		if v := s.Annotations[corev1.EndpointsLastChangeTriggerTime]; v != "" {
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				c.trigger = t
			}
		}
	}
	p.mark(ServiceKey(s.Namespace, s.Labels[ServiceNameLabel]), c)
}

func (p *Proxy) loop(ctx context.Context, services listerscorev1.ServiceLister, sliceIdx cache.Indexer) error {
	backoff := 100 * time.Millisecond
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.notify:
		case <-retry:
			retry = nil
		}
		p.mu.Lock()
		batch := p.pending
		p.pending = map[string]change{}
		p.mu.Unlock()
		if len(batch) == 0 {
			continue
		}
		start := time.Now()
		changes := make(map[string][]ServicePort, len(batch))
		for key := range batch {
			ns, name := splitKey(key)
			svc, err := services.Services(ns).Get(name)
			if err != nil {
				svc = nil
			}
			objs, _ := sliceIdx.ByIndex("service", key)
			eps := make([]*discoveryv1.EndpointSlice, 0, len(objs))
			for _, o := range objs {
				eps = append(eps, o.(*discoveryv1.EndpointSlice))
			}
			changes[key] = ServicePorts(svc, eps)
		}
		err := p.be.Apply(changes)
		done := time.Now()
		mode := p.Mode()
		syncDuration.WithLabelValues(mode).Observe(done.Sub(start).Seconds())
		if err != nil && !p.firstOK && p.cfg.Mode == ModeAuto && mode == ModeNFTables {
			// The kernel lacks something the rules need (a module, say):
			// the forwarder works everywhere.
			syncsTotal.WithLabelValues(mode, "error").Inc()
			p.log.Warn("nftables rules cannot be programmed here; the proxy switches to the userspace forwarder", "err", err)
			if cerr := p.be.Cleanup(); cerr != nil {
				p.log.Error("removing the partial nftables table", "err", cerr)
			}
			modeGauge.WithLabelValues(mode).Set(0)
			p.setBackend(newUserspace(p.cfg.NetNS, p.log))
			modeGauge.WithLabelValues(p.Mode()).Set(1)
			for k, c := range batch {
				p.mark(k, c)
			}
			continue
		}
		if err != nil {
			syncsTotal.WithLabelValues(mode, "error").Inc()
			p.log.Error("programming the service rules failed; retrying", "mode", mode, "services", len(changes), "err", err, "retryIn", backoff)
			for k, c := range batch {
				p.mark(k, c)
			}
			retry = time.After(backoff)
			backoff = min(2*backoff, 10*time.Second)
			// The next kick must wait for the retry timer.
			select {
			case <-p.notify:
			default:
			}
			continue
		}
		backoff = 100 * time.Millisecond
		if !p.firstOK {
			p.firstOK = true
			p.log.Info("service proxy programmed", "mode", mode, "services", len(changes), "took", done.Sub(start).Round(time.Microsecond))
		}
		syncsTotal.WithLabelValues(mode, "ok").Inc()
		for _, c := range batch {
			if !c.seen.IsZero() {
				programmingLatency.WithLabelValues(mode).Observe(done.Sub(c.seen).Seconds())
			}
			if !c.trigger.IsZero() {
				networkProgramming.WithLabelValues(mode).Observe(max(0, done.Sub(c.trigger).Seconds()))
			}
		}
		p.publish(changes)
		p.log.Debug("service rules programmed", "mode", mode, "services", len(changes), "took", done.Sub(start))
	}
}

func splitKey(key string) (string, string) {
	for i := range len(key) {
		if key[i] == '/' {
			return key[:i], key[i+1:]
		}
	}
	return "", key
}

// publish records what is programmed and wakes WaitFor callers.
func (p *Proxy) publish(changes map[string][]ServicePort) {
	p.appliedMu.Lock()
	defer p.appliedMu.Unlock()
	for k, ports := range changes {
		if len(ports) == 0 {
			delete(p.applied, k)
		} else {
			p.applied[k] = ports
		}
	}
	n := 0
	for _, ports := range p.applied {
		n += len(ports)
	}
	servicePortsGauge.WithLabelValues(p.Mode()).Set(float64(n))
	close(p.changed)
	p.changed = make(chan struct{})
}

// Programmed is what the proxy has programmed, by Service key.
func (p *Proxy) Programmed() map[string][]ServicePort {
	p.appliedMu.Lock()
	defer p.appliedMu.Unlock()
	out := make(map[string][]ServicePort, len(p.applied))
	for k, v := range p.applied {
		out[k] = slices.Clone(v)
	}
	return out
}

// WaitFor returns once cond holds for what is programmed, or ctx ends.
func (p *Proxy) WaitFor(ctx context.Context, cond func(programmed map[string][]ServicePort) bool) error {
	for {
		p.appliedMu.Lock()
		ch := p.changed
		p.appliedMu.Unlock()
		if cond(p.Programmed()) {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), errors.New("the proxy did not reach the expected state"))
		case <-ch:
		}
	}
}
