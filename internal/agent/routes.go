package agent

import (
	"context"
	"net/netip"
	"slices"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/headway/headway/internal/agent/network"
)

// NodeRoutes are the routes this node needs to the other nodes' pods:
// each other node's pod ranges through its InternalIP. Nodes without
// either are left out, as is this node.
func NodeRoutes(self string, nodes []*corev1.Node) []network.NodeRoute {
	var out []network.NodeRoute
	for _, n := range nodes {
		if n.Name == self {
			continue
		}
		var via netip.Addr
		for _, a := range n.Status.Addresses {
			if ip, err := netip.ParseAddr(a.Address); err == nil && a.Type == corev1.NodeInternalIP && ip.Is4() {
				via = ip
				break
			}
		}
		if !via.IsValid() {
			continue
		}
		cidrs := n.Spec.PodCIDRs
		if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
			cidrs = []string{n.Spec.PodCIDR}
		}
		for _, c := range cidrs {
			if p, err := netip.ParsePrefix(c); err == nil && p.Addr().Is4() {
				out = append(out, network.NodeRoute{PodCIDR: p.Masked(), Via: via})
			}
		}
	}
	slices.SortFunc(out, func(a, b network.NodeRoute) int { return a.PodCIDR.Addr().Compare(b.PodCIDR.Addr()) })
	return out
}

// routeNodes keeps the routes to the other nodes' pod ranges as the Nodes
// say until ctx ends, then removes them.
func (a *Agent) routeNodes(ctx context.Context) {
	factory := informers.NewSharedInformerFactory(a.cfg.Client, 0)
	inf := factory.Core().V1().Nodes()
	changed := make(chan struct{}, 1)
	poke := func(any) {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: poke, UpdateFunc: func(_, o any) { poke(o) }, DeleteFunc: poke,
	})
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	defer func() {
		if err := a.net.RemoveNodeRoutes(); err != nil {
			a.log.Warn("removing the routes to other nodes", "err", err)
		}
	}()
	if !cache.WaitForCacheSync(ctx.Done(), inf.Informer().HasSynced) {
		return
	}
	poke(nil)
	var last []network.NodeRoute
	lastErr := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		nodes, _ := inf.Lister().List(labelsEverything())
		want := NodeRoutes(a.cfg.NodeName, nodes)
		err := a.net.SetNodeRoutes(want)
		if msg := errString(err); !slices.Equal(want, last) || msg != lastErr {
			if err != nil {
				a.log.Warn("routing to other nodes' pods", "err", err)
			}
			a.log.Info("routes to other nodes' pods", "routes", len(want))
			last, lastErr = want, msg
		}
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
