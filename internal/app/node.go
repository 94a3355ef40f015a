package app

import (
	"time"

	"context"
	"fmt"
	"log/slog"

	"k8s.io/client-go/kubernetes"

	"github.com/headway/headway/internal/agent"
	"github.com/headway/headway/internal/agent/network"
	"github.com/headway/headway/internal/apiserver"
	"github.com/headway/headway/internal/auth/rbac"
	"github.com/headway/headway/internal/pki"
	"github.com/headway/headway/internal/proxy"
)

// node is what runs beside the API on this machine: the Service proxy, the
// cluster DNS server and the node agent, each as a background function.
type node struct {
	run []func(context.Context)
	// dnsAddr is where the cluster DNS answers ("" when it does not run).
	dnsAddr string
	// dnsSynced is the DNS server's Synced (nil when it does not run).
	dnsSynced <-chan struct{}
	agent     *agent.Agent
}

// startNode builds the node's components (as cfg asks) and binds the DNS
// server's sockets; they work once their functions run.
func startNode(cfg Config, a *api, log *slog.Logger) (*node, error) {
	n := &node{}
	// Each component authenticates as itself (see internal/auth/rbac for
	// what its roles allow): the proxy as system:kube-proxy, the DNS as
	// system:headway:dns, the agent as the node system:node:<name>.
	// (A client is made only for a component that runs: each is a new
	// certificate.)
	// The Service proxy is a node component: it runs where pods run. It
	// owns the Service state of the node, the local route of the service
	// range included, which it keeps with --proxy-mode none too.
	if cfg.Runtime != "none" {
		proxyClient, _, err := a.clientFor(rbac.ProxyUser)
		if err != nil {
			return nil, err
		}
		px, err := proxy.New(proxyClient, proxy.Config{Mode: cfg.ProxyMode, ServiceCIDR: cfg.ServiceCIDR, PodCIDR: cfg.ClusterCIDR,
			Bridge: cfg.Bridge, Table: proxyTable(cfg.Bridge), Log: log.With("component", "proxy")})
		if err != nil {
			return nil, fmt.Errorf("--proxy-mode: %w", err)
		}
		n.run = append(n.run, func(ctx context.Context) {
			if err := px.Run(ctx); err != nil {
				log.Error("service proxy stopped", "err", err)
			}
		})
	}
	relayTo := "" // where the agent relays the DNS Service address
	var podDNS network.PodDNSServer
	if !cfg.NoDNS {
		// A DNS port already in use stops the server with an error that
		// names the address; once listening, /readyz checks it answers.
		dnsClient, _, err := a.clientFor(rbac.DNSUser)
		if err != nil {
			return nil, err
		}
		d, err := listenDNS(cfg, dnsClient, log.With("component", "dns"))
		if err != nil {
			return nil, err
		}
		n.dnsAddr, n.dnsSynced = d.Addr(), d.Synced()
		relayTo = n.dnsAddr
		n.run = append(n.run, d.Run)
		a.srv.AddReadyCheck(apiserver.ReadyCheck{Name: "dns", Check: d.Ready})
		// Pods query the DNS Service address; the server answers there
		// itself (the agent puts the address on lo), else the agent
		// relays it.
		if cfg.Runtime != "none" && cfg.DNSServiceIP.IsValid() {
			if err := d.ListenServiceIP(cfg.DNSServiceIP); err != nil {
				log.Warn("cluster DNS cannot answer on the DNS Service address itself; the node agent relays it", "addr", cfg.DNSServiceIP, "err", err)
			} else {
				relayTo, podDNS = "", d
			}
		}
	}
	if cfg.Runtime != "none" {
		nodeClient, _, err := a.clientFor(rbac.NodeUserPrefix+cfg.Agent.NodeName, rbac.NodesGroup)
		if err != nil {
			return nil, err
		}
		ag, err := newAgent(cfg, nodeClient, relayTo, podDNS, a.bundle, log.With("component", "agent"))
		if err != nil {
			return nil, err
		}
		n.agent = ag
		n.run = append(n.run, func(ctx context.Context) {
			if err := ag.Run(ctx); err != nil {
				log.Error("node agent stopped", "err", err)
			}
		})
	}
	return n, nil
}

// newAgent builds the node agent of `headway server`; dnsAddr is where it
// relays the DNS Service address to ("" when the cluster DNS answers there
// itself or does not run), podDNS the cluster DNS when it answers there
// itself (and so in pods' namespaces too).
func newAgent(cfg Config, client kubernetes.Interface, dnsAddr string, podDNS network.PodDNSServer, bundle *pki.Bundle, log *slog.Logger) (*agent.Agent, error) {
	// The streaming server listens on the node address: the bridge's
	// gateway as root, else loopback.
	hosts := []string{cfg.Gateway.String(), "127.0.0.1", "localhost"}
	if cfg.NodeIP.IsValid() {
		hosts = append(hosts, cfg.NodeIP.String())
	}
	streamTLS, err := bundle.AgentServerTLS(hosts)
	if err != nil {
		return nil, fmt.Errorf("issuing the agent's serving certificate: %w", err)
	}
	return agent.New(agent.Config{
		StreamingTLS: streamTLS, StreamingClients: []string{apiServerKubeletClient},
		Client: client, NodeName: cfg.Agent.NodeName, DataDir: cfg.DataDir,
		ClusterCIDR: cfg.ClusterCIDR, ServiceCIDR: cfg.ServiceCIDR, ClusterDomain: cfg.ClusterDomain,
		DNSIP: cfg.DNSServiceIP, DNSServer: dnsAddr, PodDNS: podDNS,
		Bridge: cfg.Bridge, Gateway: cfg.Gateway, NoMasquerade: !cfg.Agent.Masquerade, BackoffBase: cfg.Agent.BackoffBase, Log: log,
		RuntimeMode: cfg.Runtime, CRIEndpoint: cfg.Agent.CRIEndpoint, OCIRuntime: cfg.Agent.OCIRuntime, CleanupOnStop: cfg.Agent.Cleanup, LeaseDuration: time.Duration(cfg.Agent.NodeLeaseDurationSeconds) * time.Second,
		AwaitPodCIDR: cfg.AllocateNodeCIDRs, NodeIP: cfg.NodeIP,
	})
}
