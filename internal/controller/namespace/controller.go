// Package namespace is the namespace lifecycle controller: when a namespace
// is deleted it removes every object in it, then drops the "kubernetes"
// finalizer so the API server can remove the namespace itself.
package namespace

import (
	"context"
	"fmt"
	"log/slog"
	"slices"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/cache"

	"github.com/headway/headway/internal/controller/workloop"
)

// Controller finalizes deleted namespaces.
type Controller struct {
	client    kubernetes.Interface
	discovery discovery.DiscoveryInterface
	metadata  metadata.Interface
	informer  cache.SharedIndexInformer
	queue     *workloop.Loop[string]
	log       *slog.Logger
}

// New builds the controller on a shared informer factory.
func New(client kubernetes.Interface, md metadata.Interface, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	c := &Controller{
		client:    client,
		discovery: client.Discovery(),
		metadata:  md,
		informer:  factory.Core().V1().Namespaces().Informer(),
		log:       log.With("controller", "namespace"),
	}
	// A namespace not yet empty is retried; say so where operators look.
	c.queue = workloop.New("namespace", c.log, c.sync).LogRetriesAt(slog.LevelInfo)
	enqueue := func(obj any) {
		if ns, ok := obj.(*corev1.Namespace); ok && ns.DeletionTimestamp != nil {
			c.queue.Add(ns.Name)
		}
	}
	c.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
	return c
}

// Run processes namespaces until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.queue.Run(ctx, 1, c.informer.HasSynced)
}

// remainingFinalizers is the decision: spec finalizers without ours.
func remainingFinalizers(ns *corev1.Namespace) []corev1.FinalizerName {
	var out []corev1.FinalizerName
	for _, f := range ns.Spec.Finalizers {
		if f != corev1.FinalizerKubernetes {
			out = append(out, f)
		}
	}
	return out
}

func (c *Controller) sync(ctx context.Context, name string) error {
	ns, err := c.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ns.DeletionTimestamp == nil || len(ns.Spec.Finalizers) == len(remainingFinalizers(ns)) {
		return nil
	}
	left, err := c.deleteContent(ctx, name)
	if err != nil {
		return err
	}
	if left > 0 {
		return fmt.Errorf("%d objects remain in namespace %s", left, name)
	}
	ns = ns.DeepCopy()
	ns.Spec.Finalizers = remainingFinalizers(ns)
	if _, err := c.client.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	c.log.Info("namespace finalized", "namespace", name)
	return nil
}

// deleteContent deletes every object of every namespaced resource in ns and
// returns how many it found (0: the namespace is empty).
func (c *Controller) deleteContent(ctx context.Context, ns string) (int, error) {
	lists, err := c.discovery.ServerPreferredNamespacedResources()
	if err != nil && len(lists) == 0 {
		return 0, err
	}
	left := 0
	for _, list := range lists {
		gv, err := schema.ParseGroupVersion(list.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range list.APIResources {
			if !slices.Contains(r.Verbs, "list") || !slices.Contains(r.Verbs, "delete") {
				continue
			}
			res := c.metadata.Resource(gv.WithResource(r.Name)).Namespace(ns)
			items, err := res.List(ctx, metav1.ListOptions{})
			if err != nil {
				if apierrors.IsNotFound(err) {
					continue
				}
				return 0, err
			}
			bg := metav1.DeletePropagationBackground
			for _, it := range items.Items {
				left++
				if it.DeletionTimestamp != nil {
					continue
				}
				if err := res.Delete(ctx, it.Name, metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil && !apierrors.IsNotFound(err) {
					return 0, err
				}
			}
		}
	}
	// Objects deleted just now are counted too: the namespace is looked at
	// again (rate-limited) and finalized once a pass finds nothing.
	return left, nil
}
