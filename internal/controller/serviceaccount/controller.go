// Package serviceaccount is the service-account controller: every active
// namespace has a ServiceAccount named default, made again if deleted, as
// kube-controller-manager's serviceaccount controller keeps it.
package serviceaccount

import (
	"context"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/headway/headway/internal/controller/workloop"
)

// DefaultName is the ServiceAccount every namespace has.
const DefaultName = "default"

// Controller keeps the default ServiceAccount of every namespace.
type Controller struct {
	client     kubernetes.Interface
	namespaces corelisters.NamespaceLister
	accounts   corelisters.ServiceAccountLister
	synced     []cache.InformerSynced
	queue      *workloop.Loop[string]
	log        *slog.Logger
}

// New builds the controller on a shared informer factory.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	nsInf := factory.Core().V1().Namespaces()
	saInf := factory.Core().V1().ServiceAccounts()
	c := &Controller{
		client:     client,
		namespaces: nsInf.Lister(),
		accounts:   saInf.Lister(),
		synced:     []cache.InformerSynced{nsInf.Informer().HasSynced, saInf.Informer().HasSynced},
		log:        log.With("controller", "serviceaccount"),
	}
	c.queue = workloop.New("serviceaccount", c.log, c.sync)
	nsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.enqueueNamespace(obj) },
		UpdateFunc: func(_, obj any) { c.enqueueNamespace(obj) },
	})
	saInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			if sa, ok := obj.(*corev1.ServiceAccount); ok && sa.Name == DefaultName {
				c.queue.Add(sa.Namespace)
			}
		},
	})
	return c
}

func (c *Controller) enqueueNamespace(obj any) {
	if ns, ok := obj.(*corev1.Namespace); ok {
		c.queue.Add(ns.Name)
	}
}

// Run keeps the accounts until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.queue.Run(ctx, 2, c.synced...)
}

// Missing is the decision: the accounts ns should have and does not
// (none while it is being deleted).
func Missing(ns *corev1.Namespace, exists func(name string) bool) []string {
	if ns == nil || ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating {
		return nil
	}
	if exists(DefaultName) {
		return nil
	}
	return []string{DefaultName}
}

func (c *Controller) sync(ctx context.Context, name string) error {
	ns, err := c.namespaces.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	exists := func(sa string) bool {
		_, err := c.accounts.ServiceAccounts(name).Get(sa)
		return err == nil
	}
	for _, sa := range Missing(ns, exists) {
		_, err := c.client.CoreV1().ServiceAccounts(name).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sa}},
			metav1.CreateOptions{FieldManager: "serviceaccount-controller"})
		switch {
		case err == nil:
			c.log.Debug("service account created", "namespace", name, "name", sa)
		case apierrors.IsAlreadyExists(err):
		case apierrors.IsForbidden(err) || apierrors.IsNotFound(err):
			// The namespace is going (or gone): nothing to make.
		default:
			return err
		}
	}
	return nil
}
