package proxy

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/google/nftables/expr"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// This file is the pure half of the nftables mechanism: what the table
// should contain for a set of service ports. nftables.go turns it into
// netlink messages and applies the difference to the kernel.
//
// The table (ip headway) follows kube-proxy's nftables mode:
//
//	nat-prerouting, nat-output   → services
//	services                     ip daddr . meta l4proto . th dport vmap @service-ips
//	                             fib daddr type local … meta l4proto . th dport vmap @service-nodeports
//	svc-<ns>/<name>/<proto>/<port>  masquerade marks, affinity lookups,
//	                             numgen random mod N vmap { i : goto ep-… }
//	ep-<svc id>__<ip>/<port>     hairpin mark, affinity update, dnat
//	filter-input/forward/output  ct state new → @no-endpoint-services /
//	                             @no-endpoint-nodeports → reject-chain;
//	                             traffic for the service range that was not
//	                             translated and would leave the node → reject
//	nat-postrouting → masquerading  marked packets, and pod→service→pod
//	                             traffic on the bridge, are masqueraded

// Names of the fixed objects in the table.
const (
	chainServices       = "services"
	chainMarkMasq       = "mark-for-masquerade"
	chainMasquerading   = "masquerading"
	chainReject         = "reject-chain"
	chainSvcEpCheck     = "service-endpoints-check"
	chainNodePortCheck  = "nodeport-endpoints-check"
	chainClusterIPCheck = "cluster-ips-check"

	mapServiceIPs       = "service-ips"
	mapNodePorts        = "service-nodeports"
	mapNoEndpointSvcs   = "no-endpoint-services"
	mapNoEndpointNPorts = "no-endpoint-nodeports"

	svcChainPrefix = "svc-"
	epChainPrefix  = "ep-"
	affinityPrefix = "aff-"

	// masqMark is the packet mark bit meaning "masquerade on the way out".
	masqMark = 0x4000
)

// RulesConfig is what the rules depend on besides the Services.
type RulesConfig struct {
	// PodCIDR: traffic from outside it to a service is masqueraded (the
	// host's own, and node ports from elsewhere).
	PodCIDR netip.Prefix
	// ServiceCIDR: traffic for it that no rule translated must not leave
	// the node.
	ServiceCIDR netip.Prefix
	// Bridge is the pods' bridge: pod→service→pod traffic goes in and out
	// of it and is masqueraded so replies come back through the node.
	// Empty: no such rule.
	Bridge string
	// Table is the nftables table (family ip) holding the rules; empty:
	// TableName.
	Table string
}

func (c RulesConfig) table() string {
	if c.Table == "" {
		return TableName
	}
	return c.Table
}

// rule is one nftables rule in a neutral form: its text (nft syntax, for
// diffs, logs and tests) and the parts nftables.go needs to build it.
type rule struct {
	text  string
	exprs []expr.Any
	// spread, when set, makes the rule "numgen random mod N vmap { i : goto
	// spread[i] }".
	spread []string
}

// svcIPKey is an element key of @service-ips and @no-endpoint-services.
type svcIPKey struct {
	IP    netip.Addr
	Proto corev1.Protocol
	Port  uint16
}

func (k svcIPKey) String() string {
	return fmt.Sprintf("%s . %s . %d", k.IP, strings.ToLower(string(k.Proto)), k.Port)
}

// nodePortKey is an element key of @service-nodeports and
// @no-endpoint-nodeports.
type nodePortKey struct {
	Proto corev1.Protocol
	Port  uint16
}

func (k nodePortKey) String() string {
	return fmt.Sprintf("%s . %d", strings.ToLower(string(k.Proto)), k.Port)
}

// serviceRules is everything one Service contributes to the table.
type serviceRules struct {
	// chains are the svc- and ep- chains with their rules.
	chains map[string][]rule
	// serviceIPs and nodePorts map to the svc- chain to goto.
	serviceIPs map[svcIPKey]string
	nodePorts  map[nodePortKey]string
	// noEndpoints and noEndpointNodePorts are rejected.
	noEndpoints         map[svcIPKey]bool
	noEndpointNodePorts map[nodePortKey]bool
	// affinity are the ClientIP affinity sets and their timeouts.
	affinity map[string]time.Duration
}

func newServiceRules() *serviceRules {
	return &serviceRules{
		chains:     map[string][]rule{},
		serviceIPs: map[svcIPKey]string{}, nodePorts: map[nodePortKey]string{},
		noEndpoints: map[svcIPKey]bool{}, noEndpointNodePorts: map[nodePortKey]bool{},
		affinity: map[string]time.Duration{},
	}
}

func (r *serviceRules) empty() bool {
	return r == nil || len(r.chains)+len(r.serviceIPs)+len(r.nodePorts)+len(r.noEndpoints)+len(r.noEndpointNodePorts)+len(r.affinity) == 0
}

func svcChain(sp ServicePort) string { return svcChainPrefix + sp.ID() }

func epChain(sp ServicePort, ep Endpoint) string {
	return fmt.Sprintf("%s%s__%s/%d", epChainPrefix, sp.ID(), ep.IP, ep.Port)
}

// affinitySet is named after the endpoint chain and the timeout, so a
// changed timeout is a new set.
func affinitySet(sp ServicePort, ep Endpoint) string {
	return fmt.Sprintf("%s%s__%s/%d/%ds", affinityPrefix, sp.ID(), ep.IP, ep.Port, int64(sp.AffinityTimeout/time.Second))
}

// compileService turns one Service's ports into its rules.
func compileService(ports []ServicePort, cfg RulesConfig) *serviceRules {
	r := newServiceRules()
	for _, sp := range ports {
		ipKey := svcIPKey{IP: sp.ClusterIP, Proto: sp.Protocol, Port: sp.Port}
		npKey := nodePortKey{Proto: sp.Protocol, Port: sp.NodePort}
		if len(sp.Endpoints) == 0 {
			r.noEndpoints[ipKey] = true
			if sp.NodePort != 0 {
				r.noEndpointNodePorts[npKey] = true
			}
			continue
		}
		chain := svcChain(sp)
		r.serviceIPs[ipKey] = chain
		if sp.NodePort != 0 {
			r.nodePorts[npKey] = chain
		}
		var svcRules []rule
		if cfg.PodCIDR.IsValid() {
			svcRules = append(svcRules, rSaddrNotIn(cfg.PodCIDR, chainMarkMasq))
		} else {
			svcRules = append(svcRules, rJump(chainMarkMasq))
		}
		targets := make([]string, 0, len(sp.Endpoints))
		for _, ep := range sp.Endpoints {
			ec := epChain(sp, ep)
			targets = append(targets, ec)
			epRules := []rule{rSaddrIs(ep.IP, chainMarkMasq)}
			if sp.AffinityTimeout > 0 {
				set := affinitySet(sp, ep)
				r.affinity[set] = sp.AffinityTimeout
				svcRules = append(svcRules, rAffinityLookup(set, ec))
				epRules = append(epRules, rAffinityUpdate(set))
			}
			epRules = append(epRules, rDNAT(sp.Protocol, ep))
			r.chains[ec] = epRules
		}
		if len(targets) == 1 {
			svcRules = append(svcRules, rGoto(targets[0]))
		} else {
			svcRules = append(svcRules, rSpread(targets))
		}
		r.chains[chain] = svcRules
	}
	return r
}

// baseChain is one of the fixed chains; hook is "" for regular chains.
type baseChain struct {
	name     string
	kind     string // "nat" or "filter"
	hook     string // prerouting, input, forward, output, postrouting
	priority int32
	rules    []rule
}

// baseChains are the fixed chains and their rules, regular chains first
// (the base chains jump to them).
func baseChains(cfg RulesConfig) []baseChain {
	masq := []rule{rMasqMarked()}
	if cfg.Bridge != "" {
		masq = append(masq, rMasqBridgeHairpin(cfg.Bridge))
	}
	var clusterIPCheck []rule
	if cfg.ServiceCIDR.IsValid() {
		// After translation: a service address still the destination was
		// not translated; if it would leave the node, refuse it here.
		clusterIPCheck = append(clusterIPCheck, rUnroutedServiceIP(cfg.ServiceCIDR, chainReject))
	}
	return []baseChain{
		{name: chainMarkMasq, rules: []rule{rMarkMasq()}},
		{name: chainMasquerading, rules: masq},
		{name: chainReject, rules: []rule{rRejectTCP(), rRejectICMP()}},
		{name: chainSvcEpCheck, rules: []rule{rVmapServiceIPs(mapNoEndpointSvcs)}},
		{name: chainNodePortCheck, rules: []rule{rVmapNodePorts(mapNoEndpointNPorts, false)}},
		{name: chainClusterIPCheck, rules: clusterIPCheck},
		{name: chainServices, rules: []rule{rVmapServiceIPs(mapServiceIPs), rVmapNodePorts(mapNodePorts, true)}},
		{name: "nat-prerouting", kind: "nat", hook: "prerouting", priority: -100, rules: []rule{rJump(chainServices)}},
		{name: "nat-output", kind: "nat", hook: "output", priority: -100, rules: []rule{rJump(chainServices)}},
		{name: "nat-postrouting", kind: "nat", hook: "postrouting", priority: 100, rules: []rule{rJump(chainMasquerading)}},
		{name: "filter-input", kind: "filter", hook: "input", priority: -110, rules: []rule{rCtNewJump(chainSvcEpCheck), rCtNewJump(chainNodePortCheck)}},
		{name: "filter-forward", kind: "filter", hook: "forward", priority: -110, rules: []rule{rCtNewJump(chainSvcEpCheck), rCtNewJump(chainClusterIPCheck)}},
		{name: "filter-output", kind: "filter", hook: "output", priority: -110, rules: []rule{rCtNewJump(chainSvcEpCheck), rCtNewJump(chainNodePortCheck)}},
		// After nat-output (-100).
		{name: "filter-output-post-dnat", kind: "filter", hook: "output", priority: -90, rules: []rule{rCtNewJump(chainClusterIPCheck)}},
	}
}

// Ruleset is the whole table's content as text lines, sorted: what tests
// compare and `headway` could print. Lines look like
//
//	chain svc-default/web/tcp/80: goto ep-…
//	map service-ips: 198.19.0.5 . tcp . 80 : goto svc-default/web/tcp/80
//	set aff-…: timeout 10800s
func Ruleset(services []*corev1.Service, slicesList []*discoveryv1.EndpointSlice, cfg RulesConfig) []string {
	bySvc := map[string][]*discoveryv1.EndpointSlice{}
	for _, s := range slicesList {
		if name := s.Labels[ServiceNameLabel]; name != "" {
			k := ServiceKey(s.Namespace, name)
			bySvc[k] = append(bySvc[k], s)
		}
	}
	all := newServiceRules()
	for _, svc := range services {
		r := compileService(ServicePorts(svc, bySvc[ServiceKey(svc.Namespace, svc.Name)]), cfg)
		maps.Copy(all.chains, r.chains)
		maps.Copy(all.serviceIPs, r.serviceIPs)
		maps.Copy(all.nodePorts, r.nodePorts)
		maps.Copy(all.noEndpoints, r.noEndpoints)
		maps.Copy(all.noEndpointNodePorts, r.noEndpointNodePorts)
		maps.Copy(all.affinity, r.affinity)
	}
	return all.lines()
}

// lines renders the rules of services (not the fixed chains) as text.
func (r *serviceRules) lines() []string {
	var out []string
	for name, rules := range r.chains {
		for i, ru := range rules {
			out = append(out, fmt.Sprintf("chain %s #%d: %s", name, i, ru.text))
		}
	}
	for k, c := range r.serviceIPs {
		out = append(out, fmt.Sprintf("map %s: %s : goto %s", mapServiceIPs, k, c))
	}
	for k, c := range r.nodePorts {
		out = append(out, fmt.Sprintf("map %s: %s : goto %s", mapNodePorts, k, c))
	}
	for k := range r.noEndpoints {
		out = append(out, fmt.Sprintf("map %s: %s : goto %s", mapNoEndpointSvcs, k, chainReject))
	}
	for k := range r.noEndpointNodePorts {
		out = append(out, fmt.Sprintf("map %s: %s : goto %s", mapNoEndpointNPorts, k, chainReject))
	}
	for s, t := range r.affinity {
		out = append(out, fmt.Sprintf("set %s: timeout %ds", s, int64(t/time.Second)))
	}
	slices.SortFunc(out, cmp.Compare)
	return out
}
