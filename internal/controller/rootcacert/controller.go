// Package rootcacert is the root CA certificate publisher: every active
// namespace has the ConfigMap kube-root-ca.crt whose ca.crt is the cluster
// CA that signs the API server's certificate, made again if deleted and
// put back if changed, as kube-controller-manager's root-ca-cert-publisher
// keeps it. Pods read it from their service-account volume.
package rootcacert

import (
	"context"
	"log/slog"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/headway/headway/internal/controller/workloop"
)

// Name of the ConfigMap, and its key.
const (
	Name = "kube-root-ca.crt"
	Key  = "ca.crt"
)

// DescriptionAnnotation is the note on the ConfigMap.
const DescriptionAnnotation = "kubernetes.io/description"

const description = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters."

// Controller publishes the CA into every namespace.
type Controller struct {
	client     kubernetes.Interface
	ca         []byte
	namespaces corelisters.NamespaceLister
	configMaps corelisters.ConfigMapLister
	cmInformer cache.SharedIndexInformer
	synced     []cache.InformerSynced
	queue      *workloop.Loop[string]
	log        *slog.Logger
}

// New builds the controller: namespaces from the shared factory, and a
// watch of the ConfigMaps named kube-root-ca.crt only. caPEM is the CA.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, caPEM []byte, log *slog.Logger) *Controller {
	nsInf := factory.Core().V1().Namespaces()
	cmInf := coreinformers.NewFilteredConfigMapInformer(client, metav1.NamespaceAll, 0, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc},
		func(o *metav1.ListOptions) {
			o.FieldSelector = fields.OneTermEqualSelector("metadata.name", Name).String()
		})
	c := &Controller{
		client:     client,
		ca:         caPEM,
		namespaces: nsInf.Lister(),
		configMaps: corelisters.NewConfigMapLister(cmInf.GetIndexer()),
		cmInformer: cmInf,
		synced:     []cache.InformerSynced{nsInf.Informer().HasSynced, cmInf.HasSynced},
		log:        log.With("controller", "root-ca-cert-publisher"),
	}
	c.queue = workloop.New("root_ca_cert_publisher", c.log, c.sync)
	nsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.enqueue(obj) },
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
	})
	cmInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: func(obj any) {
			if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = d.Obj
			}
			c.enqueue(obj)
		},
	})
	return c
}

func (c *Controller) enqueue(obj any) {
	switch o := obj.(type) {
	case *corev1.Namespace:
		c.queue.Add(o.Name)
	case *corev1.ConfigMap:
		if o.Name == Name {
			c.queue.Add(o.Namespace)
		}
	}
}

// Run publishes until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	go c.cmInformer.Run(ctx.Done())
	c.queue.Run(ctx, 2, c.synced...)
}

// Action is what a namespace's ConfigMap needs.
type Action int

// The actions.
const (
	Nothing Action = iota
	Create
	Update
)

// Decide is the decision: nothing in a namespace being deleted; create a
// missing ConfigMap; update one whose ca.crt or description differs.
func Decide(ns *corev1.Namespace, cm *corev1.ConfigMap, ca []byte) Action {
	if ns == nil || ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating {
		return Nothing
	}
	if cm == nil {
		return Create
	}
	if cm.Data[Key] != string(ca) || cm.Annotations[DescriptionAnnotation] != description || len(cm.BinaryData) > 0 || len(cm.Data) != 1 {
		return Update
	}
	return Nothing
}

// Want is the ConfigMap as it should be in ns.
func Want(ns string, ca []byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: Name, Namespace: ns, Annotations: map[string]string{DescriptionAnnotation: description}},
		Data:       map[string]string{Key: string(ca)},
	}
}

func (c *Controller) sync(ctx context.Context, ns string) error {
	nsObj, err := c.namespaces.Get(ns)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	cm, err := c.configMaps.ConfigMaps(ns).Get(Name)
	if apierrors.IsNotFound(err) {
		cm, err = nil, nil
	}
	if err != nil {
		return err
	}
	cms := c.client.CoreV1().ConfigMaps(ns)
	switch Decide(nsObj, cm, c.ca) {
	case Create:
		_, err = cms.Create(ctx, Want(ns, c.ca), metav1.CreateOptions{FieldManager: "root-ca-cert-publisher"})
		if apierrors.IsAlreadyExists(err) {
			// The watch lags a ConfigMap made meanwhile: look again soon.
			c.queue.AddAfter(ns, time.Second)
			return nil
		}
	case Update:
		upd := cm.DeepCopy()
		want := Want(ns, c.ca)
		upd.Data, upd.BinaryData = want.Data, nil
		if upd.Annotations == nil {
			upd.Annotations = map[string]string{}
		}
		upd.Annotations[DescriptionAnnotation] = description
		_, err = cms.Update(ctx, upd, metav1.UpdateOptions{FieldManager: "root-ca-cert-publisher"})
		if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
			c.queue.AddAfter(ns, time.Second)
			return nil
		}
	}
	if apierrors.IsForbidden(err) || apierrors.IsNotFound(err) {
		return nil // the namespace is going
	}
	return err
}
