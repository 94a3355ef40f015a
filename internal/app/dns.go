package app

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	h      *dns.Handler
	srv    *dns.Server
	client kubernetes.Interface
	log    *slog.Logger
	// ServiceIP, when valid, is the ClusterIP of the kube-system/kube-dns
	// Service Run makes sure exists.
	ServiceIP netip.Addr
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
	return &DNS{h: h, srv: srv, client: client, log: log}, nil
}

// Addr is the bound ip:port.
func (d *DNS) Addr() string { return d.srv.Addr().String() }

// Run serves and follows the API until ctx ends.
func (d *DNS) Run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		if err := d.h.Run(ctx, d.client); err != nil {
			d.log.Error("cluster DNS stopped following the API", "err", err)
		}
	}()
	go func() {
		defer wg.Done()
		d.srv.Serve(ctx)
	}()
	if d.ServiceIP.IsValid() {
		wg.Add(1)
		go func() { defer wg.Done(); ensureKubeDNS(ctx, d.client, d.ServiceIP, d.log) }()
	}
	d.log.Info("cluster DNS listening", "addr", d.Addr())
	wg.Wait()
}

// listenDNS is the DNS server of `headway server`: it also keeps the
// kube-dns Service in kube-system, as Kubernetes clusters have it.
func listenDNS(cfg Config, client kubernetes.Interface, log *slog.Logger) (*DNS, error) {
	d, err := ListenDNS(cfg.DNSConfig, client, log)
	if err != nil {
		return nil, err
	}
	d.ServiceIP = cfg.DNSServiceIP
	if cfg.DNSServiceIPError != nil {
		log.Error("no kube-dns Service", "err", cfg.DNSServiceIPError)
	}
	return d, nil
}

// ensureKubeDNS creates kube-system/kube-dns with ip as its ClusterIP when
// it does not exist, retrying while the API is not ready for it.
func ensureKubeDNS(ctx context.Context, client kubernetes.Interface, ip netip.Addr, log *slog.Logger) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: "kube-dns", Namespace: metav1.NamespaceSystem,
			Labels: map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "Headway", "kubernetes.io/cluster-service": "true"},
		},
		Spec: corev1.ServiceSpec{
			ClusterIP:  ip.String(),
			ClusterIPs: []string{ip.String()},
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP},
			},
		},
	}
	backoff := 100 * time.Millisecond
	for {
		got, err := client.CoreV1().Services(metav1.NamespaceSystem).Get(ctx, "kube-dns", metav1.GetOptions{})
		if err == nil {
			if got.Spec.ClusterIP != ip.String() {
				log.Warn("kube-system/kube-dns exists with another ClusterIP; pods are told to use "+ip.String(),
					"clusterIP", got.Spec.ClusterIP)
			}
			return
		}
		if apierrors.IsNotFound(err) {
			_, err = client.CoreV1().Services(metav1.NamespaceSystem).Create(ctx, svc, metav1.CreateOptions{FieldManager: "headway-dns"})
			switch {
			case err == nil:
				log.Info("created the kube-dns Service", "clusterIP", ip)
				return
			case apierrors.IsAlreadyExists(err):
				continue
			case apierrors.IsInvalid(err) || apierrors.IsBadRequest(err) || apierrors.IsForbidden(err):
				log.Error("cannot create kube-system/kube-dns with ClusterIP "+ip.String()+
					"; cluster DNS still answers on its listen address", "err", err)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// RunDNS is `headway dns`: the cluster DNS server alone, against the API
// server of kubeconfig (empty: $KUBECONFIG, ~/.kube/config, or in-cluster),
// with /metrics on metricsListen when set. It runs until ctx ends.
func RunDNS(ctx context.Context, o DNSOptions, kubeconfig, metricsListen string, log *slog.Logger) error {
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
	d.Run(ctx)
	return nil
}
