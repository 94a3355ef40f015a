// Package networkpolicy tells users that Headway stores NetworkPolicies
// without enforcing them: each policy gets one Warning Event (reason
// NotEnforced) naming it, shown by `kubectl events --for
// networkpolicy/<name>` and `kubectl get events`.
package networkpolicy

import (
	"context"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	networkinglisters "k8s.io/client-go/listers/networking/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/headway/headway/internal/controller/workloop"
)

// Reason is the Event reason.
const Reason = "NotEnforced"

// Message is what the Event says.
const Message = "Headway does not enforce NetworkPolicy yet: this policy is stored and served, but traffic is not filtered by it"

// Controller records the NotEnforced Event of each NetworkPolicy.
type Controller struct {
	writer   Writer
	policies networkinglisters.NetworkPolicyLister
	synced   cache.InformerSynced
	queue    *workloop.Loop[string]
}

// New builds the controller on a shared informer factory.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	return NewWithWriter(&ClientWriter{Client: client}, factory, log)
}

// NewWithWriter builds the controller with another seam (tests).
func NewWithWriter(w Writer, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	inf := factory.Networking().V1().NetworkPolicies()
	c := &Controller{writer: w, policies: inf.Lister(), synced: inf.Informer().HasSynced}
	c.queue = workloop.New("networkpolicy", log.With("controller", "networkpolicy"), c.Sync)
	inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) {
			if key, err := cache.MetaNamespaceKeyFunc(obj); err == nil {
				c.queue.Add(key)
			}
		},
	})
	return c
}

// Run records Events until ctx ends.
func (c *Controller) Run(ctx context.Context) { c.queue.Run(ctx, 1, c.synced) }

// Sync records the policy's Event unless it has one.
func (c *Controller) Sync(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	np, err := c.policies.NetworkPolicies(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	events, err := c.writer.Events(ctx, np)
	if err != nil {
		return err
	}
	if !NeedsNotice(np, events) {
		return nil
	}
	return c.writer.Notice(ctx, np)
}

// NeedsNotice reports whether the policy has no NotEnforced Event yet.
func NeedsNotice(np *networkingv1.NetworkPolicy, events []corev1.Event) bool {
	for _, e := range events {
		if e.InvolvedObject.UID == np.UID && e.Reason == Reason {
			return false
		}
	}
	return true
}
