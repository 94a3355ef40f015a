// Package systemservices keeps the Services every cluster has — default/
// kubernetes and kube-system/kube-dns — in existence: deleted, they are
// created again within a moment, as kube-apiserver's bootstrap controller
// does for the kubernetes Service. Services that exist are left as they
// are (a changed ClusterIP is logged, not reverted).
package systemservices

import (
	"context"
	"log/slog"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	listerscorev1 "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/headway/headway/internal/controller/workloop"
)

// FieldManager is the manager of the Services this controller creates.
const FieldManager = "headway"

// Controller keeps the desired Services.
type Controller struct {
	client   kubernetes.Interface
	informer cache.SharedIndexInformer
	lister   listerscorev1.ServiceLister
	desired  map[string]*corev1.Service // by namespace/name
	queue    *workloop.Loop[string]
	log      *slog.Logger
}

// New builds the controller for the given Services (see KubernetesService
// and KubeDNSService) on a shared informer factory.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger, services ...*corev1.Service) *Controller {
	inf := factory.Core().V1().Services()
	c := &Controller{
		client:   client,
		informer: inf.Informer(),
		lister:   inf.Lister(),
		desired:  map[string]*corev1.Service{},
		log:      log.With("controller", "systemservices"),
	}
	for _, s := range services {
		c.desired[s.Namespace+"/"+s.Name] = s
	}
	c.queue = workloop.New("systemservices", c.log, c.sync)
	enqueue := func(obj any) {
		key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
		if err == nil && c.desired[key] != nil {
			c.queue.Add(key)
		}
	}
	c.informer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	})
	return c
}

// Run keeps the Services until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	for key := range c.desired {
		c.queue.Add(key)
	}
	c.queue.Run(ctx, 1, c.informer.HasSynced)
}

// Action is what sync does for one Service.
type Action int

const (
	// Keep: the Service exists.
	Keep Action = iota
	// Create: it does not; create the desired one.
	Create
)

// Decide is the decision for a desired Service and what the cache holds
// (nil: no such Service).
func Decide(desired, observed *corev1.Service) Action {
	if observed == nil || observed.DeletionTimestamp != nil && len(observed.Finalizers) == 0 {
		return Create
	}
	return Keep
}

func (c *Controller) sync(ctx context.Context, key string) error {
	want := c.desired[key]
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	got, err := c.lister.Services(ns).Get(name)
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if err != nil {
		got = nil
	}
	switch Decide(want, got) {
	case Keep:
		if ip := want.Spec.ClusterIP; ip != "" && got.Spec.ClusterIP != ip {
			c.log.Warn("the Service exists with another ClusterIP; pods are told to use "+ip, "service", key, "clusterIP", got.Spec.ClusterIP)
		}
		return nil
	}
	_, err = c.client.CoreV1().Services(ns).Create(ctx, want.DeepCopy(), metav1.CreateOptions{FieldManager: FieldManager})
	switch {
	case err == nil:
		c.log.Info("created the Service", "service", key, "clusterIP", want.Spec.ClusterIP)
		return nil
	case apierrors.IsAlreadyExists(err):
		return nil // the cache lags; its add event brings us back
	case apierrors.IsInvalid(err) || apierrors.IsForbidden(err):
		// Another Service holds the address, or the namespace is going:
		// retrying at once will not help; the next event will.
		c.log.Error("cannot create the Service "+key, "err", err, "clusterIP", want.Spec.ClusterIP)
		return nil
	}
	return err
}

// KubernetesService is default/kubernetes: the API server at ip, port 443
// to targetPort.
func KubernetesService(ip string, targetPort int32) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "kubernetes", Namespace: metav1.NamespaceDefault,
			Labels: map[string]string{"component": "apiserver", "provider": "kubernetes"}},
		Spec: corev1.ServiceSpec{
			ClusterIP: ip,
			Ports:     []corev1.ServicePort{{Name: "https", Port: 443, Protocol: corev1.ProtocolTCP, TargetPort: intstr.FromInt32(targetPort)}},
		},
	}
}

// KubeDNSService is kube-system/kube-dns, the cluster DNS at ip.
func KubeDNSService(ip string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{
			Name: "kube-dns", Namespace: metav1.NamespaceSystem,
			Labels: map[string]string{"k8s-app": "kube-dns", "kubernetes.io/name": "Headway", "kubernetes.io/cluster-service": "true"},
		},
		Spec: corev1.ServiceSpec{
			ClusterIP:  ip,
			ClusterIPs: []string{ip},
			Ports: []corev1.ServicePort{
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
				{Name: "dns-tcp", Port: 53, Protocol: corev1.ProtocolTCP},
			},
		},
	}
}
