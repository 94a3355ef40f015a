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
	"github.com/spf13/pflag"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/headway/headway/internal/dns"
)

// DNSOptions are what the cluster DNS server needs, shared by `headway
// server` and `headway dns`.
type DNSOptions struct {
	Listen        string
	Upstream      string
	TTL           time.Duration
	PodRecords    string
	ClusterDomain string
	ServiceCIDR   string
	ClusterCIDR   string
}

// dnsOptions picks the DNS options out of the server's.
func (o Options) dnsOptions() DNSOptions {
	return DNSOptions{
		Listen: o.DNSListen, Upstream: o.DNSUpstream, TTL: o.DNSTTL, PodRecords: o.DNSPodRecords,
		ClusterDomain: o.ClusterDomain, ServiceCIDR: o.ServiceCIDR, ClusterCIDR: o.ClusterCIDR,
	}
}

// DNSConfig turns the options into the DNS server's configuration.
func (o DNSOptions) DNSConfig(log *slog.Logger) (dns.Config, error) {
	cfg := dns.Config{Zone: o.ClusterDomain, TTL: o.TTL, PodMode: o.PodRecords, Logger: log}
	for _, c := range []string{o.ServiceCIDR, o.ClusterCIDR} {
		if c == "" {
			continue
		}
		p, err := netip.ParsePrefix(c)
		if err != nil {
			return cfg, fmt.Errorf("CIDR %q: %w", c, err)
		}
		cfg.ReverseCIDRs = append(cfg.ReverseCIDRs, p.Masked())
		cfg.RecursionFrom = append(cfg.RecursionFrom, p.Masked())
	}
	up, err := dns.ParseUpstreams(o.Upstream)
	if err != nil {
		return cfg, err
	}
	cfg.Upstreams = up
	return cfg, nil
}

// DNSServiceIP is the cluster DNS Service's address: the tenth of the
// service range (198.19.0.10 by default), as kubeadm picks it.
func DNSServiceIP(serviceCIDR string) (netip.Addr, error) {
	p, err := netip.ParsePrefix(serviceCIDR)
	if err != nil {
		return netip.Addr{}, err
	}
	a := p.Masked().Addr()
	for range 10 {
		a = a.Next()
	}
	if !p.Contains(a) {
		return netip.Addr{}, fmt.Errorf("service CIDR %s is too small for a DNS service address", serviceCIDR)
	}
	return a, nil
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
func ListenDNS(o DNSOptions, client kubernetes.Interface, log *slog.Logger) (*DNS, error) {
	cfg, err := o.DNSConfig(log)
	if err != nil {
		return nil, err
	}
	h, err := dns.New(cfg)
	if err != nil {
		return nil, err
	}
	srv, err := h.Listen(o.Listen)
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
func listenDNS(o Options, client kubernetes.Interface, log *slog.Logger) (*DNS, error) {
	d, err := ListenDNS(o.dnsOptions(), client, log)
	if err != nil {
		return nil, err
	}
	if ip, err := DNSServiceIP(o.ServiceCIDR); err == nil {
		d.ServiceIP = ip
	} else {
		log.Error("no kube-dns Service", "err", err)
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

// DefaultDNSOptions are the defaults of `headway dns`.
func DefaultDNSOptions() DNSOptions {
	o := DefaultOptions()
	return o.dnsOptions()
}

// AddFlags registers the flags of `headway dns`.
func (o *DNSOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Listen, "dns-listen", o.Listen, "address the cluster DNS server listens on (UDP and TCP)")
	fs.StringVar(&o.Upstream, "dns-upstream", o.Upstream, "where queries outside the cluster domain go: a resolv.conf path, a host:port list, or none (REFUSED)")
	fs.DurationVar(&o.TTL, "dns-ttl", o.TTL, "TTL of cluster DNS records, and the SOA minimum of negative answers")
	fs.StringVar(&o.PodRecords, "dns-pod-records", o.PodRecords, "pod records a-b-c-d.<ns>.pod.<zone>: disabled, insecure or verified")
	fs.StringVar(&o.ClusterDomain, "cluster-domain", o.ClusterDomain, "the cluster's DNS domain")
	fs.StringVar(&o.ServiceCIDR, "service-cidr", o.ServiceCIDR, "the cluster's service range (reverse zone; clients allowed to recurse)")
	fs.StringVar(&o.ClusterCIDR, "cluster-cidr", o.ClusterCIDR, "the cluster's pod range (reverse zone; clients allowed to recurse)")
}

// RunDNS is `headway dns`: the cluster DNS server alone, against the API
// server of kubeconfig (empty: $KUBECONFIG, ~/.kube/config, or in-cluster),
// with /metrics on metricsListen when set. It runs until ctx ends.
func RunDNS(ctx context.Context, o DNSOptions, kubeconfig, metricsListen string, log *slog.Logger) error {
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
	d, err := ListenDNS(o, client, log)
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
