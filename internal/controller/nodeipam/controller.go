// Package nodeipam gives each Node a pod range of its own out of the
// cluster's (node.spec.podCIDR and podCIDRs), as kube-controller-manager's
// node IPAM controller does with --allocate-node-cidrs: the lowest free
// block of the configured size that overlaps no other Node's range. A
// range once given stays the Node's (the field is immutable); it is free
// again when the Node is deleted.
package nodeipam

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/headway/headway/internal/controller/workloop"
)

// Next is the lowest block of size bits in cluster that overlaps none of
// used; false when every block is taken (or bits does not fit cluster).
func Next(cluster netip.Prefix, bits int, used []netip.Prefix) (netip.Prefix, bool) {
	cluster = cluster.Masked()
	if !cluster.Addr().Is4() || bits < cluster.Bits() || bits > 32 {
		return netip.Prefix{}, false
	}
	step := uint64(1) << (32 - bits)
	base := uint64(be32(cluster.Addr()))
	end := base + uint64(1)<<(32-cluster.Bits())
	for a := base; a < end; a += step {
		p := netip.PrefixFrom(addr4(uint32(a)), bits)
		free := true
		for _, u := range used {
			if u.Overlaps(p) {
				free = false
				break
			}
		}
		if free {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func be32(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func addr4(v uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
}

// ranges are a Node's pod ranges.
func ranges(n *corev1.Node) []netip.Prefix {
	cidrs := n.Spec.PodCIDRs
	if len(cidrs) == 0 && n.Spec.PodCIDR != "" {
		cidrs = []string{n.Spec.PodCIDR}
	}
	var out []netip.Prefix
	for _, c := range cidrs {
		if p, err := netip.ParsePrefix(c); err == nil {
			out = append(out, p.Masked())
		}
	}
	return out
}

// Controller assigns pod ranges to Nodes without one.
type Controller struct {
	client   kubernetes.Interface
	nodes    corelisters.NodeLister
	synced   cache.InformerSynced
	cluster  netip.Prefix
	bits     int
	recorder record.EventRecorder
	log      *slog.Logger
	queue    *workloop.Loop[string]

	mu sync.Mutex
	// given are ranges patched onto Nodes that the informer may not show
	// yet, by node name.
	given map[string]netip.Prefix
}

// New returns a controller giving each Node a /bits of cluster.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, cluster netip.Prefix, bits int, recorder record.EventRecorder, log *slog.Logger) *Controller {
	inf := factory.Core().V1().Nodes()
	c := &Controller{client: client, nodes: inf.Lister(), synced: inf.Informer().HasSynced, cluster: cluster.Masked(), bits: bits,
		recorder: recorder, log: log.With("controller", "nodeipam"), given: map[string]netip.Prefix{}}
	c.queue = workloop.New("nodeipam", c.log, c.sync)
	inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, o any) { c.enqueue(o) },
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if n, ok := o.(*corev1.Node); ok {
				c.mu.Lock()
				delete(c.given, n.Name)
				c.mu.Unlock()
			}
		},
	})
	return c
}

func (c *Controller) enqueue(o any) {
	if n, ok := o.(*corev1.Node); ok && n.Spec.PodCIDR == "" && len(n.Spec.PodCIDRs) == 0 {
		c.queue.Add(n.Name)
	}
}

// Run assigns ranges until ctx ends (one worker: assignments never race
// each other).
func (c *Controller) Run(ctx context.Context) { c.queue.Run(ctx, 1, c.synced) }

func (c *Controller) sync(ctx context.Context, name string) error {
	node, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(ranges(node)) > 0 {
		return nil
	}
	all, err := c.nodes.List(labels.Everything())
	if err != nil {
		return err
	}
	c.mu.Lock()
	var used []netip.Prefix
	for _, n := range all {
		used = append(used, ranges(n)...)
	}
	for _, p := range c.given {
		used = append(used, p)
	}
	p, ok := c.given[name]
	c.mu.Unlock()
	if !ok {
		if p, ok = Next(c.cluster, c.bits, used); !ok {
			msg := fmt.Sprintf("no free /%d left in the cluster's pod range %s for node %s: remove Nodes that are gone, or start the server with a larger --cluster-cidr", c.bits, c.cluster, name)
			c.recorder.Event(&corev1.ObjectReference{Kind: "Node", Name: name, UID: node.UID}, corev1.EventTypeWarning, "CIDRNotAvailable", msg)
			return fmt.Errorf("%s", msg)
		}
	}
	patch, _ := json.Marshal(map[string]any{"spec": map[string]any{"podCIDR": p.String(), "podCIDRs": []string{p.String()}}})
	if _, err := c.client.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{FieldManager: "nodeipam-controller"}); err != nil {
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("giving node %s the pod range %s: %w", name, p, err)
	}
	c.mu.Lock()
	c.given[name] = p
	c.mu.Unlock()
	c.log.Info("node pod range assigned", "node", name, "pod-cidr", p)
	return nil
}
