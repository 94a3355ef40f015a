// Package scheduler is a minimal scheduler: a pod without a node is bound to
// the Ready, schedulable node that runs the fewest pods (first fit by count).
package scheduler

import (
	"context"
	"fmt"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
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
	client   kubernetes.Interface
	pods     corelisters.PodLister
	nodes    corelisters.NodeLister
	synced   []cache.InformerSynced
	queue    *workloop.Loop[string]
	recorder record.EventRecorder
	log      *slog.Logger
}

// New builds the scheduler on a shared informer factory.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, recorder record.EventRecorder, log *slog.Logger) *Controller {
	podInf := factory.Core().V1().Pods()
	nodeInf := factory.Core().V1().Nodes()
	c := &Controller{
		client:   client,
		pods:     podInf.Lister(),
		nodes:    nodeInf.Lister(),
		synced:   []cache.InformerSynced{podInf.Informer().HasSynced, nodeInf.Informer().HasSynced},
		recorder: recorder,
		log:      log.With("controller", "scheduler"),
	}
	c.queue = workloop.New("scheduler", c.log, c.schedule)
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueuePod,
		UpdateFunc: func(_, obj any) { c.enqueuePod(obj) },
	})
	requeueAll := func(any) {
		pods, _ := c.pods.List(labels.Everything())
		for _, p := range pods {
			c.enqueuePod(p)
		}
	}
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

// Pick is the decision: the Ready, schedulable node with the fewest pods
// (ties broken by name), or "" when there is none.
func Pick(nodes []*corev1.Node, pods []*corev1.Pod) string {
	count := map[string]int{}
	for _, p := range pods {
		if p.Spec.NodeName != "" && p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
			count[p.Spec.NodeName]++
		}
	}
	best := ""
	for _, n := range nodes {
		if n.Spec.Unschedulable || !ready(n) {
			continue
		}
		if best == "" || count[n.Name] < count[best] || (count[n.Name] == count[best] && n.Name < best) {
			best = n.Name
		}
	}
	return best
}

func ready(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
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
	nodes, _ := c.nodes.List(labels.Everything())
	pods, _ := c.pods.List(labels.Everything())
	target := Pick(nodes, pods)
	if target == "" {
		return c.unschedulable(ctx, pod, len(nodes))
	}
	binding := &corev1.Binding{ObjectMeta: metav1.ObjectMeta{Name: pod.Name, Namespace: pod.Namespace, UID: pod.UID}, Target: corev1.ObjectReference{Kind: "Node", Name: target}}
	if err := c.client.CoreV1().Pods(ns).Bind(ctx, binding, metav1.CreateOptions{}); err != nil {
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			return nil
		}
		return err
	}
	c.recorder.Eventf(pod, corev1.EventTypeNormal, "Scheduled", "Successfully assigned %s/%s to %s", pod.Namespace, pod.Name, target)
	c.log.Debug("pod scheduled", "pod", key, "node", target)
	return nil
}

// unschedulable records why a pod waits; the pod is retried when nodes change.
func (c *Controller) unschedulable(ctx context.Context, pod *corev1.Pod, nodes int) error {
	msg := fmt.Sprintf("0/%d nodes are available: no Ready node to run the pod. Start headway server with --runtime process (the default) to run pods.", nodes)
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
