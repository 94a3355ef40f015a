// Package nodelifecycle is the node lifecycle controller: it watches each
// node's Lease (namespace kube-node-lease, renewed by the node's agent) and
// acts as kube-controller-manager's node lifecycle controller and taint
// manager do:
//
//   - a node whose Lease is not renewed (and whose status is not posted)
//     for GracePeriod (--node-monitor-grace-period, 40s as in Kubernetes)
//     gets its Ready, MemoryPressure, DiskPressure and PIDPressure
//     conditions set Unknown (reason NodeStatusUnknown, "Kubelet stopped
//     posting node status."), the taints node.kubernetes.io/unreachable
//     NoSchedule and NoExecute, and its pods' Ready condition set False,
//     so the EndpointSlice controller marks them not ready and the cluster
//     DNS drops them (unless the Service publishes not-ready addresses);
//   - a node whose agent reports Ready=False gets the not-ready taints;
//   - when the Lease is renewed again the unreachable taints go at once
//     (the agent sets the node's Ready itself when it next posts its
//     status), and the pods this controller marked not ready get Ready
//     back from their ContainersReady condition (Headway's agent rewrites
//     a pod's status only when its own view changes);
//   - taint-based eviction: a pod on a node with a NoExecute taint it does
//     not tolerate is deleted; one tolerating it for tolerationSeconds
//     (pods get 300s for not-ready and unreachable by default, see the pod
//     registry's defaults) is deleted that long after the taint was added.
//
// What Headway does differently: in Kubernetes a pod deleted from an
// unreachable node stays Terminating until the kubelet confirms or an
// administrator force-deletes it, so a StatefulSet pod there is not
// re-created until then. Headway's nodes are usually machines that went
// away with their agent, so the eviction of a pod from an unreachable node
// is a forced deletion (grace period 0), and a pod already terminating
// there is force-deleted once its grace period is over. The StatefulSet
// controller then re-creates it, with the same name and claims, on a node
// that is Ready. The cost is Kubernetes' at-most-one guarantee: if the node
// was only cut off and its agent still runs the pod, two pods with one
// identity run until the agent reconnects (and, seeing its pod deleted,
// stops it). Tolerate node.kubernetes.io/unreachable without
// tolerationSeconds to keep a pod on its node for ever instead.
//
// controller.go is the queue loop (one key per node), decide.go the pure
// decisions, seam.go the writes.
package nodelifecycle

import (
	"context"
	"log/slog"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	coordlisters "k8s.io/client-go/listers/coordination/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/headway/headway/internal/controller/workloop"
)

// podsByNode is the name of the pod informer's index by spec.nodeName.
const podsByNode = "nodelifecycle.spec.nodeName"

// DefaultGracePeriod is kube-controller-manager's --node-monitor-grace-period.
const DefaultGracePeriod = 40 * time.Second

// Controller keeps nodes' health conditions and taints, and evicts pods.
type Controller struct {
	writer Writer
	nodes  corelisters.NodeLister
	leases coordlisters.LeaseLister
	pods   corelisters.PodLister
	// byNode indexes the pods by spec.nodeName (nil: list them all).
	byNode cache.Indexer
	synced []cache.InformerSynced
	queue  *workloop.Loop[string]
	log    *slog.Logger

	// GracePeriod is how long a node's agent may go unseen before the
	// node is marked Unknown (DefaultGracePeriod when 0). Set it before Run.
	GracePeriod time.Duration
	now         func() time.Time

	mu   sync.Mutex
	seen map[string]*liveness
}

// liveness is when a node's agent was last seen, and the marks of life it
// was seen by.
type liveness struct {
	at        time.Time
	renew     time.Time
	heartbeat time.Time
}

// New builds the controller on a shared informer factory.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, recorder record.EventRecorder, log *slog.Logger) *Controller {
	return NewWithWriter(&ClientWriter{Client: client, Recorder: recorder}, factory, log)
}

// NewWithWriter builds the controller with another seam (tests).
func NewWithWriter(w Writer, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	nodeInf := factory.Core().V1().Nodes()
	leaseInf := factory.Coordination().V1().Leases()
	podInf := factory.Core().V1().Pods()
	c := &Controller{
		writer: w,
		nodes:  nodeInf.Lister(),
		leases: leaseInf.Lister(),
		pods:   podInf.Lister(),
		synced: []cache.InformerSynced{nodeInf.Informer().HasSynced, leaseInf.Informer().HasSynced, podInf.Informer().HasSynced},
		log:    log.With("controller", "nodelifecycle"),
		now:    time.Now,
		seen:   map[string]*liveness{},
	}
	c.queue = workloop.NewAfter("nodelifecycle", c.log, c.Sync)
	if err := podInf.Informer().AddIndexers(cache.Indexers{podsByNode: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}}); err == nil {
		c.byNode = podInf.Informer().GetIndexer()
	}
	nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.observeNode(obj) },
		UpdateFunc: func(_, obj any) { c.observeNode(obj) },
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.queue.Add(key)
			}
		},
	})
	leaseInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.observeLease(obj) },
		UpdateFunc: func(_, obj any) { c.observeLease(obj) },
	})
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueuePodNode,
		UpdateFunc: func(_, obj any) { c.enqueuePodNode(obj) },
	})
	return c
}

// Run keeps nodes until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.queue.Run(ctx, 2, c.synced...)
}

func (c *Controller) grace() time.Duration {
	if c.GracePeriod > 0 {
		return c.GracePeriod
	}
	return DefaultGracePeriod
}

// saw records a sign of life of node: a Lease renewTime or a status
// heartbeat it has not seen before (the first sight of a node counts, so
// that a controller starting gives every node the whole grace period).
func (c *Controller) saw(node string, renew, heartbeat time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := c.seen[node]
	now := c.now()
	if l == nil {
		c.seen[node] = &liveness{at: now, renew: renew, heartbeat: heartbeat}
		return
	}
	if !renew.IsZero() && !renew.Equal(l.renew) {
		l.renew, l.at = renew, now
	}
	if !heartbeat.IsZero() && !heartbeat.Equal(l.heartbeat) {
		l.heartbeat, l.at = heartbeat, now
	}
}

func (c *Controller) lastSeen(node string) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	if l := c.seen[node]; l != nil {
		return l.at
	}
	now := c.now()
	c.seen[node] = &liveness{at: now}
	return now
}

func (c *Controller) observeNode(obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	c.saw(n.Name, time.Time{}, agentHeartbeat(n))
	c.queue.Add(n.Name)
}

// agentHeartbeat is the Ready condition's heartbeat as the agent posted it
// (not when this controller marked it Unknown).
func agentHeartbeat(n *corev1.Node) time.Time {
	for _, cond := range n.Status.Conditions {
		if cond.Type == corev1.NodeReady && cond.Reason != ReasonNodeStatusUnknown && cond.Reason != ReasonNodeStatusNeverUpdated {
			return cond.LastHeartbeatTime.Time
		}
	}
	return time.Time{}
}

func (c *Controller) observeLease(obj any) {
	l, ok := obj.(*coordinationv1.Lease)
	if !ok || l.Namespace != corev1.NamespaceNodeLease {
		return
	}
	var renew time.Time
	if l.Spec.RenewTime != nil {
		renew = l.Spec.RenewTime.Time
	}
	c.saw(l.Name, renew, time.Time{})
	c.queue.Add(l.Name)
}

func (c *Controller) enqueuePodNode(obj any) {
	if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
		c.queue.Add(p.Spec.NodeName)
	}
}

// Sync brings one node's conditions and taints, and its pods, in line with
// its agent's liveness; it returns when to look again.
func (c *Controller) Sync(ctx context.Context, name string) (time.Duration, error) {
	node, err := c.nodes.Get(name)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		delete(c.seen, name)
		c.mu.Unlock()
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	now := c.now()
	obs := Observed{LastSeen: c.lastSeen(name), Now: now, Grace: c.grace()}
	d := DecideNode(node, obs)
	if d.Conditions != nil {
		n := node.DeepCopy()
		n.Status.Conditions = d.Conditions
		if node, err = c.writer.UpdateNodeStatus(ctx, n); err != nil {
			return 0, err
		}
		if d.BecameUnreachable {
			c.log.Info("node stopped renewing its lease", "node", name, "lastSeen", obs.LastSeen.Format(time.RFC3339), "grace", obs.Grace)
			c.writer.NodeNotReady(node)
		}
	}
	if d.TaintsChanged {
		n := node.DeepCopy()
		n.Spec.Taints = d.Taints
		if node, err = c.writer.UpdateNode(ctx, n); err != nil {
			return 0, err
		}
		c.log.Info("node taints changed", "node", name, "taints", len(d.Taints), "unreachable", d.Unreachable)
	}
	// Look again when the grace period would run out unseen.
	after := time.Duration(0)
	if !d.Unreachable {
		after = obs.LastSeen.Add(obs.Grace).Sub(now) + 10*time.Millisecond
	}
	pods, err := c.podsOn(name)
	if err != nil {
		return 0, err
	}
	var errs []error
	for _, p := range pods {
		if p.Spec.NodeName != name {
			continue
		}
		pd := DecidePod(p, node.Spec.Taints, d.Unreachable, now)
		if pd.MarkNotReady {
			if err := c.writer.MarkPodNotReady(ctx, p); err != nil {
				errs = append(errs, err)
			}
		}
		if pd.RestoreReady {
			if err := c.writer.RestorePodReady(ctx, p); err != nil {
				errs = append(errs, err)
			}
		}
		if pd.Delete {
			c.log.Info("evicting pod", "pod", p.Namespace+"/"+p.Name, "node", name, "force", pd.Force)
			if err := c.writer.DeletePod(ctx, p, pd.Force); err != nil {
				errs = append(errs, err)
			}
		} else if pd.After > 0 && (after <= 0 || pd.After < after) {
			after = pd.After
		}
	}
	if len(errs) > 0 {
		return 0, errs[0]
	}
	return after, nil
}

// podsOn lists the pods bound to node.
func (c *Controller) podsOn(node string) ([]*corev1.Pod, error) {
	if c.byNode == nil {
		return c.pods.List(labels.Everything())
	}
	objs, err := c.byNode.ByIndex(podsByNode, node)
	if err != nil {
		return nil, err
	}
	pods := make([]*corev1.Pod, 0, len(objs))
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok {
			pods = append(pods, p)
		}
	}
	return pods, nil
}
