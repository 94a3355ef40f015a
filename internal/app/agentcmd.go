package app

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"

	"github.com/headway/headway/internal/agent"
	"github.com/headway/headway/internal/agent/network"
	"github.com/headway/headway/internal/atomicfile"
	"github.com/headway/headway/internal/proxy"
)

// AgentCommandOptions are the flags of `headway agent`: a node of a
// cluster whose API server runs on another machine.
type AgentCommandOptions struct {
	// Server is the API server's URL (https://host:port).
	Server string
	// Token is a join token (`headway token create`).
	Token string
	// CAFile is the cluster CA certificate (the server's
	// <data-dir>/pki/ca.crt): the agent sends its token only to a server
	// whose certificate it signed.
	CAFile    string
	DataDir   string
	Runtime   string
	ProxyMode string
	// DNSListen is where this node's cluster DNS server listens besides
	// the DNS Service address.
	DNSListen   string
	DNSUpstream string
	LogLevel    string
	Agent       AgentOptions
	// Logger overrides the logger built from LogLevel (tests).
	Logger *slog.Logger
}

// DefaultAgentCommandOptions are the documented defaults.
func DefaultAgentCommandOptions() AgentCommandOptions {
	d := DefaultDNSOptions()
	return AgentCommandOptions{DataDir: DefaultDataDir(), Runtime: "auto", ProxyMode: proxy.ModeAuto,
		DNSListen: d.DNSListen, DNSUpstream: d.DNSUpstream, LogLevel: "info", Agent: DefaultAgentOptions()}
}

// AddFlags registers the flags of `headway agent`.
func (o *AgentCommandOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.Server, "server", o.Server, "the API server's URL, e.g. https://198.18.254.1:6443 (the server's --listen address); several servers of one cluster separated by commas: the agent uses one and moves to the next when it stops answering")
	fs.StringVar(&o.Token, "token", o.Token, "a join token from `headway token create` on the server")
	fs.StringVar(&o.CAFile, "ca-file", o.CAFile, "the cluster CA certificate, a copy of the server's <data-dir>/pki/ca.crt: the token is only sent to a server it vouches for")
	fs.StringVar(&o.DataDir, "data-dir", o.DataDir, "directory for pods, logs, volumes, the pod network state and this node's credentials")
	fs.StringVar(&o.Runtime, "runtime", o.Runtime, "how pods run: auto (cri when root and containerd is installed, else process), cri or process")
	fs.StringVar(&o.ProxyMode, "proxy-mode", o.ProxyMode, "Service proxy on this node: auto, nftables, userspace or none")
	fs.StringVar(&o.DNSListen, "dns-listen", o.DNSListen, "address this node's cluster DNS server listens on besides the DNS Service address")
	fs.StringVar(&o.DNSUpstream, "dns-upstream", o.DNSUpstream, "where queries for names outside the cluster domain go: a resolv.conf path, a comma-separated ip[:port] list, or none")
	fs.StringVar(&o.LogLevel, "log-level", o.LogLevel, "debug, info, warn or error")
	o.Agent.AddFlags(fs)
}

// joinedFile keeps the node's credentials in the data dir: a restarted
// agent does not need its (maybe expired) token again.
func joinedFile(dataDir string) string { return filepath.Join(dataDir, "node-credentials.json") }

// RunAgent is `headway agent`: join the cluster at o.Server (or use the
// credentials of an earlier join), then run this node's agent, Service
// proxy and cluster DNS until ctx ends.
func RunAgent(ctx context.Context, o AgentCommandOptions) error {
	log := o.Logger
	if log == nil {
		log = NewLogger(o.LogLevel)
	}
	servers, err := parseServers(o.Server, log.With("component", "agent"))
	if err != nil {
		return err
	}
	switch o.Runtime {
	case "auto", "cri", "process":
	default:
		return fmt.Errorf("--runtime %q: want auto, cri or process", o.Runtime)
	}
	if n := len(o.Agent.Bridge); n == 0 || n > 15 {
		return fmt.Errorf("--bridge %q: want an interface name of 1 to 15 characters", o.Agent.Bridge)
	}
	if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir %s: %w", o.DataDir, err)
	}
	nodeName := o.Agent.NodeName
	if nodeName == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("no --node-name and no host name: %w", err)
		}
		nodeName = h
	}
	var nodeIP netip.Addr
	if o.Agent.NodeIP != "" {
		if nodeIP, err = netip.ParseAddr(o.Agent.NodeIP); err != nil || !nodeIP.Is4() {
			return fmt.Errorf("--node-ip %q: want an IPv4 address of this machine", o.Agent.NodeIP)
		}
	} else if nodeIP, err = sourceAddrTo(servers.hosts[0]); err != nil {
		return fmt.Errorf("finding this machine's address towards %s (give --node-ip): %w", servers.hosts[0], err)
	}
	j, err := join(ctx, o, servers, nodeName, nodeIP, log)
	if err != nil {
		return err
	}
	cfg, err := agentConfig(o, j, nodeName, nodeIP, log)
	if err != nil {
		return err
	}
	clientFor := func(c Credential) (kubernetes.Interface, error) {
		return kubernetes.NewForConfig(&rest.Config{Host: servers.first(), QPS: -1, Dial: servers.dial,
			TLSClientConfig: rest.TLSClientConfig{CAData: j.CA, CertData: c.Cert, KeyData: c.Key, ServerName: servers.serverName()}})
	}
	var runs []func(context.Context)
	proxyClient, err := clientFor(j.Proxy)
	if err != nil {
		return err
	}
	px, err := proxy.New(proxyClient, proxy.Config{Mode: cfg.ProxyMode, ServiceCIDR: cfg.ServiceCIDR, PodCIDR: cfg.ClusterCIDR,
		Bridge: cfg.Bridge, Table: proxyTable(cfg.Bridge), Log: log.With("component", "proxy")})
	if err != nil {
		return fmt.Errorf("--proxy-mode: %w", err)
	}
	runs = append(runs, func(ctx context.Context) {
		if err := px.Run(ctx); err != nil {
			log.Error("service proxy stopped", "err", err)
		}
	})
	relayTo := ""
	var podDNS network.PodDNSServer
	if cfg.DNSServiceIP.IsValid() {
		dnsClient, err := clientFor(j.DNS)
		if err != nil {
			return err
		}
		d, err := listenDNS(cfg, dnsClient, log.With("component", "dns"))
		if err != nil {
			return err
		}
		relayTo = d.Addr()
		if err := d.ListenServiceIP(cfg.DNSServiceIP); err != nil {
			log.Warn("cluster DNS cannot answer on the DNS Service address itself; the node agent relays it", "addr", cfg.DNSServiceIP, "err", err)
		} else {
			relayTo, podDNS = "", d
		}
		runs = append(runs, d.Run)
	}
	nodeClient, err := clientFor(j.Node)
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(j.CA)
	pair, err := tls.X509KeyPair(j.Serving.Cert, j.Serving.Key)
	if err != nil {
		return fmt.Errorf("this node's serving certificate: %w", err)
	}
	ag, err := agent.New(agent.Config{
		StreamingTLS:     &tls.Config{Certificates: []tls.Certificate{pair}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12},
		StreamingClients: []string{apiServerKubeletClient},
		Client:           nodeClient, NodeName: nodeName, DataDir: cfg.DataDir,
		ClusterCIDR: cfg.ClusterCIDR, ServiceCIDR: cfg.ServiceCIDR, ClusterDomain: cfg.ClusterDomain,
		DNSIP: cfg.DNSServiceIP, DNSServer: relayTo, PodDNS: podDNS, Bridge: cfg.Bridge, NoMasquerade: !cfg.Agent.Masquerade,
		Log: log.With("component", "agent"), RuntimeMode: cfg.Runtime, CRIEndpoint: cfg.Agent.CRIEndpoint, OCIRuntime: cfg.Agent.OCIRuntime, CleanupOnStop: cfg.Agent.Cleanup, LeaseDuration: time.Duration(cfg.Agent.NodeLeaseDurationSeconds) * time.Second,
		AwaitPodCIDR: true, NodeIP: nodeIP,
	})
	if err != nil {
		return err
	}
	runs = append(runs, func(ctx context.Context) {
		if err := ag.Run(ctx); err != nil {
			log.Error("node agent stopped", "err", err)
		}
	})
	log.Info("headway agent is running", "node", nodeName, "node-ip", nodeIP, "server", o.Server)
	var wg sync.WaitGroup
	for _, run := range runs {
		wg.Add(1)
		go func() { defer wg.Done(); run(ctx) }()
	}
	wg.Wait()
	return nil
}

// agentConfig is the Config of this node's components: the cluster's
// ranges and domain as the server gave them, the rest from the flags.
func agentConfig(o AgentCommandOptions, j *JoinResponse, nodeName string, nodeIP netip.Addr, log *slog.Logger) (Config, error) {
	so := DefaultOptions()
	so.DataDir, so.Runtime, so.ProxyMode, so.Logger = o.DataDir, o.Runtime, o.ProxyMode, log
	so.DNSListen, so.DNSUpstream = o.DNSListen, o.DNSUpstream
	so.ClusterCIDR, so.ServiceCIDR, so.ClusterDomain = j.ClusterCIDR, j.ServiceCIDR, j.ClusterDomain
	so.Agent = o.Agent
	so.Agent.NodeName, so.Agent.NodeIP = nodeName, nodeIP.String()
	cfg, err := so.Config()
	if err != nil {
		return cfg, err
	}
	cfg.DNSServiceIP = netip.Addr{}
	if j.DNSServiceIP != "" {
		if cfg.DNSServiceIP, err = netip.ParseAddr(j.DNSServiceIP); err != nil {
			return cfg, fmt.Errorf("the server's DNS Service address %q: %w", j.DNSServiceIP, err)
		}
	}
	return cfg, nil
}

// join returns this node's credentials: those of an earlier join kept in
// the data dir, else new ones from the server (which the token gets).
func join(ctx context.Context, o AgentCommandOptions, servers *apiServers, nodeName string, nodeIP netip.Addr, log *slog.Logger) (*JoinResponse, error) {
	path := joinedFile(o.DataDir)
	if data, err := os.ReadFile(path); err == nil {
		var j JoinResponse
		if err := json.Unmarshal(data, &j); err == nil && certCN(j.Node.Cert) == "system:node:"+nodeName {
			log.Info("using this node's credentials from an earlier join", "file", path)
			return &j, nil
		}
	}
	if o.Token == "" || o.CAFile == "" {
		return nil, errors.New("joining needs --token (from `headway token create` on the server) and --ca-file (a copy of the server's <data-dir>/pki/ca.crt)")
	}
	caPEM, err := os.ReadFile(o.CAFile)
	if err != nil {
		return nil, fmt.Errorf("--ca-file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", o.CAFile)
	}
	body, _ := json.Marshal(JoinRequest{NodeName: nodeName, NodeIP: nodeIP.String()})
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DialContext: servers.dial,
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12, ServerName: servers.serverName()}}}
	defer hc.CloseIdleConnections()
	var lastErr error
	for attempt := 0; attempt < 30; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(time.Second):
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, servers.first()+JoinPath, bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+o.Token)
		req.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(req)
		if err != nil {
			var uerr x509.UnknownAuthorityError
			if errors.As(err, &uerr) {
				return nil, fmt.Errorf("joining %s: its certificate is not signed by --ca-file %s: %w", o.Server, o.CAFile, err)
			}
			lastErr = err // the server may be starting
			continue
		}
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("joining %s as node %s: %s: %s", o.Server, nodeName, resp.Status, bytes.TrimSpace(data))
		}
		var j JoinResponse
		if err := json.Unmarshal(data, &j); err != nil {
			return nil, fmt.Errorf("joining %s: the answer is not a join response: %w", o.Server, err)
		}
		if err := atomicfile.Write(path, data, 0o600); err != nil {
			return nil, fmt.Errorf("keeping this node's credentials: %w", err)
		}
		log.Info("joined the cluster", "server", o.Server, "node", nodeName)
		return &j, nil
	}
	return nil, fmt.Errorf("joining %s: %w", o.Server, lastErr)
}

func certCN(certPEM []byte) string {
	certs, err := certutil.ParseCertsPEM(certPEM)
	if err != nil || len(certs) == 0 {
		return ""
	}
	return certs[0].Subject.CommonName
}

// sourceAddrTo is this machine's address on the way to hostport.
func sourceAddrTo(hostport string) (netip.Addr, error) {
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		host, port = hostport, "443"
	}
	c, err := net.Dial("udp4", net.JoinHostPort(host, port))
	if err != nil {
		return netip.Addr{}, err
	}
	defer c.Close()
	a := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	return a, nil
}
