package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/headway/headway/internal/dns"
)

// dnsConfig is the DNS server's configuration.
func (c DNSConfig) dnsConfig(log *slog.Logger) (dns.Config, error) {
	cfg := dns.Config{Zone: c.ClusterDomain, TTL: c.TTL, PodMode: c.PodRecords, Logger: log}
	for _, p := range []netip.Prefix{c.ServiceCIDR, c.ClusterCIDR} {
		if p.IsValid() {
			cfg.ReverseCIDRs = append(cfg.ReverseCIDRs, p)
			cfg.RecursionFrom = append(cfg.RecursionFrom, p)
		}
	}
	up, err := dns.ParseUpstreams(c.Upstream)
	if err != nil {
		return cfg, fmt.Errorf("--dns-upstream %q: %w", c.Upstream, err)
	}
	cfg.Upstreams = up
	return cfg, nil
}

// DNS is a cluster DNS server bound to its address, not yet serving.
type DNS struct {
	h   *dns.Handler
	srv *dns.Server
	// service serves the DNS Service address (nil: not bound), where pods
	// send their queries.
	service *dns.Server
	client  kubernetes.Interface
	log     *slog.Logger

	// pods are the servers of pods' own sockets (ServePod), each with
	// its stop; nil once Run has returned.
	podsMu sync.Mutex
	pods   map[*dns.Server]func()
}

// ServePod implements network.PodDNSServer: the server answers on a pod's own
// sockets (bound to the DNS Service address in the pod's network
// namespace) with the same handler, until stop.
func (d *DNS) ServePod(pod string, udp *net.UDPConn, tcp *net.TCPListener) (func(), error) {
	srv := d.h.ServerOn(udp, tcp)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			<-done
			d.podsMu.Lock()
			delete(d.pods, srv)
			d.podsMu.Unlock()
		})
	}
	d.podsMu.Lock()
	defer d.podsMu.Unlock()
	if d.pods == nil {
		cancel()
		return nil, errors.New("the cluster DNS server has stopped")
	}
	d.pods[srv] = stop
	go func() { defer close(done); srv.Serve(ctx) }()
	d.log.Debug("answering in the pod's network namespace", "pod", pod, "addr", srv.Addr().String())
	return stop, nil
}

// stopPods stops serving every pod's sockets, and any handed later.
func (d *DNS) stopPods() {
	d.podsMu.Lock()
	stops := make([]func(), 0, len(d.pods))
	for _, stop := range d.pods {
		stops = append(stops, stop)
	}
	d.pods = nil
	d.podsMu.Unlock()
	for _, stop := range stops {
		stop()
	}
}

// ListenServiceIP binds ip:53 too (UDP and TCP, before the node agent puts
// ip on lo), so that pods' queries reach the server directly, with their
// own source addresses.
func (d *DNS) ListenServiceIP(ip netip.Addr) error {
	srv, err := d.h.ListenNonLocal(netip.AddrPortFrom(ip, 53).String())
	if err != nil {
		return err
	}
	d.service = srv
	return nil
}

// ListenDNS binds the DNS server's UDP and TCP sockets.
func ListenDNS(c DNSConfig, client kubernetes.Interface, log *slog.Logger) (*DNS, error) {
	cfg, err := c.dnsConfig(log)
	if err != nil {
		return nil, err
	}
	h, err := dns.New(cfg)
	if err != nil {
		return nil, err
	}
	srv, err := h.Listen(c.Listen)
	if err != nil {
		return nil, err
	}
	return &DNS{h: h, srv: srv, client: client, log: log, pods: map[*dns.Server]func(){}}, nil
}

// Addr is the bound ip:port.
func (d *DNS) Addr() string { return d.srv.Addr().String() }

// Synced is closed once the server has listed the cluster (it answers
// SERVFAIL in its zones before).
func (d *DNS) Synced() <-chan struct{} { return d.h.Synced() }

// Run serves and follows the API until ctx ends.
func (d *DNS) Run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer d.stopPods()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		connect(ctx, d.client)
		if err := d.h.Run(ctx, d.client); err != nil {
			d.log.Error("cluster DNS stopped following the API", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		d.srv.Serve(ctx)
	}()
	if d.service != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.service.Serve(ctx)
		}()
		d.log.Info("cluster DNS listening", "addr", d.Addr(), "service", d.service.Addr().String())
	} else {
		d.log.Info("cluster DNS listening", "addr", d.Addr())
	}
	wg.Wait()
}

// listenDNS is the DNS server of `headway server` (its kube-dns Service
// is kept by the systemservices controller). An address it cannot bind is
// an error that names it: a server whose cluster DNS cannot answer is not
// a working cluster.
func listenDNS(cfg Config, client kubernetes.Interface, log *slog.Logger) (*DNS, error) {
	d, err := ListenDNS(cfg.DNSConfig, client, log)
	if err != nil {
		return nil, fmt.Errorf("cluster DNS cannot listen on %s: %w (pick a free address with --dns-listen)", cfg.DNSConfig.Listen, err)
	}
	if cfg.DNSServiceIPError != nil {
		log.Error("no kube-dns Service", "err", cfg.DNSServiceIPError)
	}
	return d, nil
}

// Ready is the /readyz check "dns": the server answers a query for its
// zone's SOA over UDP (SERVFAIL until it has listed the cluster).
func (d *DNS) Ready(r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	return d.srv.Probe(ctx)
}

// RunDNS is `headway dns`: the cluster DNS server alone, against the API
// server of kubeconfig (empty: $KUBECONFIG, ~/.kube/config, or in-cluster),
// with /metrics on metricsListen when set. It runs until ctx ends; synced
// (when not nil) is called once, when the server has listed the cluster.
func RunDNS(ctx context.Context, o DNSOptions, kubeconfig, metricsListen string, log *slog.Logger, synced func()) error {
	c, err := o.Config()
	if err != nil {
		return err
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if kubeconfig != "" {
		rules.ExplicitPath = kubeconfig
	}
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return fmt.Errorf("loading the kubeconfig: %w", err)
	}
	cfg.UserAgent = "headway-dns"
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	d, err := ListenDNS(c, client, log)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	if metricsListen != "" {
		ln, err := net.Listen("tcp", metricsListen)
		if err != nil {
			return fmt.Errorf("metrics on %s: %w", metricsListen, err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.Handler())
		hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		wg.Add(1)
		go func() { defer wg.Done(); hs.Serve(ln) }()
		defer hs.Close()
		log.Info("serving metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	}
	if synced != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-d.Synced():
				synced()
			case <-ctx.Done():
			}
		}()
	}
	d.Run(ctx)
	return nil
}
