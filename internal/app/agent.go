package app

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"

	"github.com/spf13/pflag"
	"k8s.io/client-go/kubernetes"

	"github.com/headway/headway/internal/agent"
	"github.com/headway/headway/internal/pki"
)

// AgentOptions are the node agent's flags of `headway server`.
type AgentOptions struct {
	NodeName   string
	Bridge     string
	Masquerade bool
	// BackoffBase is the first crash-loop back-off (tests; 0 is 10s).
	BackoffBase time.Duration
	// CRIEndpoint is an existing CRI runtime's socket.
	CRIEndpoint string
	// Cleanup stops and removes every pod when the server stops.
	Cleanup bool
}

// DefaultAgentOptions are the documented defaults.
func DefaultAgentOptions() AgentOptions {
	return AgentOptions{Bridge: "headway0", Masquerade: true}
}

// AddFlags registers the agent flags.
func (o *AgentOptions) AddFlags(fs *pflag.FlagSet) {
	fs.StringVar(&o.NodeName, "node-name", o.NodeName, "name of this machine's Node (default: the host name)")
	fs.StringVar(&o.Bridge, "bridge", o.Bridge, "name of the pod bridge; its address is the first of --cluster-cidr")
	fs.BoolVar(&o.Masquerade, "masquerade", o.Masquerade, "masquerade traffic from pods to addresses outside the cluster ranges (nftables)")
	fs.StringVar(&o.CRIEndpoint, "container-runtime-endpoint", o.CRIEndpoint, "an existing CRI runtime's socket (e.g. unix:///run/containerd/containerd.sock) instead of the containerd headway starts itself; implies --runtime cri under auto")
	fs.BoolVar(&o.Cleanup, "cleanup", o.Cleanup, "on exit, stop and remove every pod (with the CRI runtime pods otherwise keep running and the next start adopts them)")
}

// clusterDNSIP is the cluster DNS service address: the tenth of the
// service range (198.19.0.10 by default).
func clusterDNSIP(serviceCIDR netip.Prefix) netip.Addr {
	a := serviceCIDR.Masked().Addr()
	for range 10 {
		a = a.Next()
	}
	if !serviceCIDR.Contains(a) {
		return netip.Addr{}
	}
	return a
}

// newAgent builds the node agent of `headway server`; dnsAddr is where the
// cluster DNS server listens ("" when it does not run).
func newAgent(o Options, client kubernetes.Interface, dnsAddr string, bundle *pki.Bundle, log *slog.Logger) (*agent.Agent, error) {
	cluster, err := netip.ParsePrefix(o.ClusterCIDR)
	if err != nil {
		return nil, fmt.Errorf("--cluster-cidr: %w", err)
	}
	svc, err := netip.ParsePrefix(o.ServiceCIDR)
	if err != nil {
		return nil, fmt.Errorf("--service-cidr: %w", err)
	}
	// The streaming server listens on the node address: the bridge's
	// gateway as root, else loopback.
	streamTLS, err := bundle.AgentServerTLS([]string{cluster.Masked().Addr().Next().String(), "127.0.0.1", "localhost"})
	if err != nil {
		return nil, fmt.Errorf("issuing the agent's serving certificate: %w", err)
	}
	return agent.New(agent.Config{
		StreamingTLS: streamTLS,
		Client:       client, NodeName: o.Agent.NodeName, DataDir: o.DataDir,
		ClusterCIDR: cluster.Masked(), ServiceCIDR: svc.Masked(), ClusterDomain: o.ClusterDomain,
		DNSIP: clusterDNSIP(svc), DNSServer: dnsAddr,
		Bridge: o.Agent.Bridge, NoMasquerade: !o.Agent.Masquerade, BackoffBase: o.Agent.BackoffBase, Log: log,
		RuntimeMode: o.Runtime, CRIEndpoint: o.Agent.CRIEndpoint, CleanupOnStop: o.Agent.Cleanup,
	})
}
