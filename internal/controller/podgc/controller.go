// Package podgc is kube-controller-manager's pod garbage collector, for the
// cases a cluster of several nodes meets:
//
//   - a pod bound to a Node that no longer exists (`kubectl delete node`,
//     a machine removed) is marked Failed with the condition DisruptionTarget
//     (reason DeletionByPodGC) and force-deleted, once the Node has been
//     missing for Quarantine (40 s) and a live read confirms it is gone, so
//     that its controller re-creates it elsewhere (a StatefulSet under the
//     same name);
//   - a pod being deleted that was never scheduled has no agent to finish
//     its deletion: it is force-deleted at once.
//
// It checks every Period (20 s), as the upstream controller does. The
// terminated-pod threshold (--terminated-pod-gc-threshold) is not
// implemented: finished pods stay until deleted.
package podgc

import (
	"context"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
)

// Upstream's check period and node quarantine.
const (
	DefaultPeriod     = 20 * time.Second
	DefaultQuarantine = 40 * time.Second
)

// Controller collects orphaned and unscheduled terminating pods.
type Controller struct {
	client kubernetes.Interface
	pods   corelisters.PodLister
	nodes  corelisters.NodeLister
	synced []cache.InformerSynced
	log    *slog.Logger

	// Period is how often it checks; Quarantine how long a Node must be
	// missing before its pods are collected. Set them before Run.
	Period, Quarantine time.Duration

	// missing is when each missing node was first seen missing (only
	// Run's goroutine uses it).
	missing map[string]time.Time
}

// New returns the collector.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	pods, nodes := factory.Core().V1().Pods(), factory.Core().V1().Nodes()
	return &Controller{client: client, pods: pods.Lister(), nodes: nodes.Lister(),
		synced: []cache.InformerSynced{pods.Informer().HasSynced, nodes.Informer().HasSynced},
		log:    log.With("controller", "podgc"), Period: DefaultPeriod, Quarantine: DefaultQuarantine,
		missing: map[string]time.Time{}}
}

// Run checks every Period until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	if !cache.WaitForCacheSync(ctx.Done(), c.synced...) {
		return
	}
	t := time.NewTicker(c.Period)
	defer t.Stop()
	for {
		c.check(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// check is one pass.
func (c *Controller) check(ctx context.Context, now time.Time) {
	pods, err := c.pods.List(labels.Everything())
	if err != nil {
		return
	}
	byNode := map[string][]*corev1.Pod{}
	for _, p := range pods {
		if p.Spec.NodeName == "" {
			if p.DeletionTimestamp != nil {
				c.forceDelete(ctx, p, "unscheduled and being deleted")
			}
			continue
		}
		if _, err := c.nodes.Get(p.Spec.NodeName); apierrors.IsNotFound(err) {
			byNode[p.Spec.NodeName] = append(byNode[p.Spec.NodeName], p)
		}
	}
	for node := range c.missing {
		if byNode[node] == nil {
			delete(c.missing, node)
		}
	}
	var due []string
	for node := range byNode {
		first, seen := c.missing[node]
		if !seen {
			c.missing[node] = now
			first = now
		}
		if now.Sub(first) >= c.Quarantine {
			due = append(due, node)
		}
	}
	for _, node := range due {
		delete(c.missing, node) // collected now, or not missing after all
		// The informer may lag: a live read decides.
		if _, err := c.client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			continue
		}
		for _, p := range byNode[node] {
			c.collectOrphan(ctx, p)
		}
	}
}

// collectOrphan marks a pod of a deleted node Failed and force-deletes it.
func (c *Controller) collectOrphan(ctx context.Context, p *corev1.Pod) {
	if p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed {
		q := p.DeepCopy()
		now := metav1.Now()
		q.Status.Phase = corev1.PodFailed
		setCondition(&q.Status, corev1.PodCondition{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
			Reason: "DeletionByPodGC", Message: "PodGC: node no longer exists", LastTransitionTime: now})
		if _, err := c.client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, q, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			c.log.Warn("marking a pod of a deleted node failed", "pod", p.Namespace+"/"+p.Name, "node", p.Spec.NodeName, "err", err)
		}
	}
	c.forceDelete(ctx, p, "its node "+p.Spec.NodeName+" no longer exists")
}

func (c *Controller) forceDelete(ctx context.Context, p *corev1.Pod, why string) {
	zero := int64(0)
	err := c.client.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero,
		Preconditions: &metav1.Preconditions{UID: &p.UID}})
	switch {
	case err == nil:
		c.log.Info("force-deleted pod", "pod", p.Namespace+"/"+p.Name, "reason", why)
	case apierrors.IsNotFound(err) || apierrors.IsConflict(err):
	default:
		c.log.Warn("force-deleting pod", "pod", p.Namespace+"/"+p.Name, "reason", why, "err", err)
	}
}

func setCondition(s *corev1.PodStatus, cond corev1.PodCondition) {
	for i := range s.Conditions {
		if s.Conditions[i].Type == cond.Type {
			s.Conditions[i] = cond
			return
		}
	}
	s.Conditions = append(s.Conditions, cond)
}
