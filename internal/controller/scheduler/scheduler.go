// Package scheduler binds pods without a node to nodes, as kube-scheduler
// does with its default plugins for the constraints Headway has (see
// Decide): cordons, taints and tolerations, nodeSelector and required node
// affinity, node readiness, required pod affinity and anti-affinity; of the
// nodes that fit, pods of one controller are spread over the nodes.
//
// Placement decisions are made one pod at a time (a mutex around the
// decision) against the informers' view plus the bindings this scheduler
// has made and not yet seen come back (kube-scheduler's "assumed" pods), so
// that pods created together (a Parallel StatefulSet, a ReplicaSet) spread
// and honour anti-affinity among themselves. A pod that fits nowhere gets
// PodScheduled=False (reason Unschedulable) and a FailedScheduling event
// worded as kube-scheduler words them; it is tried again whenever a node
// changes or a pod goes away.
package scheduler

import (
	"context"
	"log/slog"
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

// Workers is how many pods are bound at once.
const Workers = 8

// Name is the schedulerName this scheduler serves.
const Name = corev1.DefaultSchedulerName

// Controller binds pods to nodes.
type Controller struct {
	client kubernetes.Interface
	pods   corelisters.PodLister
	nodes  corelisters.NodeLister
	nss    corelisters.NamespaceLister
	synced []cache.InformerSynced

	// mu serialises decisions; assumed are the pods bound by this
	// scheduler that the pod informer still shows without a node.
	mu       sync.Mutex
	assumed  map[types.UID]string
	queue    *workloop.Loop[string]
	recorder record.EventRecorder
	log      *slog.Logger
}

// New builds the scheduler on a shared informer factory.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, recorder record.EventRecorder, log *slog.Logger) *Controller {
	podInf := factory.Core().V1().Pods()
	nodeInf := factory.Core().V1().Nodes()
	nsInf := factory.Core().V1().Namespaces()
	c := &Controller{
		client:   client,
		pods:     podInf.Lister(),
		nodes:    nodeInf.Lister(),
		nss:      nsInf.Lister(),
		synced:   []cache.InformerSynced{podInf.Informer().HasSynced, nodeInf.Informer().HasSynced, nsInf.Informer().HasSynced},
		assumed:  map[types.UID]string{},
		recorder: recorder,
		log:      log.With("controller", "scheduler"),
	}
	c.queue = workloop.New("scheduler", c.log, c.schedule)
	requeueAll := func(any) {
		pods, _ := c.pods.List(labels.Everything())
		for _, p := range pods {
			c.enqueuePod(p)
		}
	}
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueuePod,
		UpdateFunc: func(_, obj any) {
			if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
				c.forget(p.UID)
			}
			c.enqueuePod(obj)
		},
		// A pod going away may free a node for pods waiting on
		// anti-affinity.
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if p, ok := obj.(*corev1.Pod); ok {
				c.forget(p.UID)
				if p.Spec.NodeName != "" {
					requeueAll(nil)
				}
			}
		},
	})
	nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    requeueAll,
		UpdateFunc: func(_, obj any) { requeueAll(obj) },
	})
	return c
}

func needsNode(p *corev1.Pod) bool {
	return p.Spec.NodeName == "" && p.DeletionTimestamp == nil && p.Spec.SchedulerName == Name &&
		p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed
}

func (c *Controller) enqueuePod(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok || !needsNode(p) {
		return
	}
	key, _ := cache.MetaNamespaceKeyFunc(p)
	c.queue.Add(key)
}

// Run schedules until ctx ends. Several workers, so that bindings of many
// pods commit together.
func (c *Controller) Run(ctx context.Context) {
	c.queue.Run(ctx, Workers, c.synced...)
}

func (c *Controller) schedule(ctx context.Context, key string) error {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	pod, err := c.pods.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || !needsNode(pod) {
		return err
	}
	d := c.decide(pod)
	if d.Node == "" {
		return c.unschedulable(ctx, pod, d.Message)
	}
	target := d.Node
	binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID}, Target: corev1.ObjectReference{Kind: "Node", Name: target}}
	if err := c.client.CoreV1().Pods(ns).Bind(ctx, binding, metav1.CreateOptions{}); err != nil {
		c.forget(pod.UID)
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	c.recorder.Eventf(pod, corev1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, target)
	c.log.Debug("pod scheduled", "pod", key, "node", target)
	return nil
}

// decide runs Decide on the informers' view with the assumed bindings
// applied, and assumes the pod bound where it decided.
func (c *Controller) decide(pod *corev1.Pod) Decision {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := State{Namespaces: map[string]labels.Set{}}
	s.Nodes, _ = c.nodes.List(labels.Everything())
	pods, _ := c.pods.List(labels.Everything())
	for _, p := range pods {
		if p.Spec.NodeName == "" {
			node, ok := c.assumed[p.UID]
			if !ok {
				continue
			}
			p = p.DeepCopy()
			p.Spec.NodeName = node
		}
		s.Pods = append(s.Pods, p)
	}
	nss, _ := c.nss.List(labels.Everything())
	for _, ns := range nss {
		s.Namespaces[ns.Name] = labels.Set(ns.Labels)
	}
	d := Decide(pod, s)
	if d.Node != "" {
		c.assumed[pod.UID] = d.Node
	}
	return d
}

func (c *Controller) forget(uid types.UID) {
	c.mu.Lock()
	delete(c.assumed, uid)
	c.mu.Unlock()
}

// unschedulable records why a pod waits; the pod is retried when nodes
// change or a bound pod goes away.
func (c *Controller) unschedulable(ctx context.Context, pod *corev1.Pod, msg string) error {
	for _, cond := range pod.Status.Conditions {
		if cond.Type == corev1.PodScheduled && cond.Status == corev1.ConditionFalse && cond.Message == msg {
			return nil
		}
	}
	p := pod.DeepCopy()
	cond := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionFalse, Reason: corev1.PodReasonUnschedulable, Message: msg, LastTransitionTime: metav1.Now()}
	replaced := false
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodScheduled {
			p.Status.Conditions[i] = cond
			replaced = true
		}
	}
	if !replaced {
		p.Status.Conditions = append(p.Status.Conditions, cond)
	}
	if _, err := c.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return err
	}
	c.recorder.Event(pod, corev1.EventTypeWarning, "FailedScheduling", msg)
	return nil
}
