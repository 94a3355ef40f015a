// Package resourcequota is the quota controller: it keeps each
// ResourceQuota's status (hard from spec, used from the namespace's
// objects). Admission charges status.used as objects are created; this
// controller fills it for new quotas and spec changes, gives back what
// deletions (and finished pods) free, and recounts everything
// periodically, as kube-controller-manager's resource quota controller.
package resourcequota

import (
	"context"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"

	"github.com/headway/headway/internal/controller/workloop"
	"github.com/headway/headway/internal/quota"
)

// DefaultResync is how often every quota is recounted
// (kube-controller-manager's --resource-quota-sync-period).
const DefaultResync = 5 * time.Minute

// Controller keeps ResourceQuota statuses.
type Controller struct {
	writer   Writer
	quotas   corelisters.ResourceQuotaLister
	pods     corelisters.PodLister
	services corelisters.ServiceLister
	claims   corelisters.PersistentVolumeClaimLister
	counts   *objectCounts
	synced   []cache.InformerSynced
	queue    *workloop.Loop[string]
	log      *slog.Logger

	// Workers is the number of quotas synced at once; Resync how often
	// each is recounted whatever happens.
	Workers int
	Resync  time.Duration
	now     func() time.Time
}

// New builds the controller on a shared informer factory; md and disc
// count the objects of other resources.
func New(client kubernetes.Interface, md metadata.Interface, disc discovery.DiscoveryInterface, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	return NewWithWriter(&ClientWriter{Client: client}, md, disc, factory, log)
}

// NewWithWriter builds the controller with another seam (tests).
func NewWithWriter(w Writer, md metadata.Interface, disc discovery.DiscoveryInterface, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	qInf := factory.Core().V1().ResourceQuotas()
	podInf := factory.Core().V1().Pods()
	svcInf := factory.Core().V1().Services()
	pvcInf := factory.Core().V1().PersistentVolumeClaims()
	c := &Controller{
		writer:   w,
		quotas:   qInf.Lister(),
		pods:     podInf.Lister(),
		services: svcInf.Lister(),
		claims:   pvcInf.Lister(),
		synced:   []cache.InformerSynced{qInf.Informer().HasSynced, podInf.Informer().HasSynced, svcInf.Informer().HasSynced, pvcInf.Informer().HasSynced},
		log:      log.With("controller", "resourcequota"),
		Workers:  2,
		Resync:   DefaultResync,
		now:      time.Now,
	}
	c.counts = newObjectCounts(md, disc, c.namespaceChanged, c.log)
	c.queue = workloop.NewAfter("resourcequota", c.log, c.Sync)
	qInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.enqueue,
		UpdateFunc: func(old, cur any) {
			o, n := old.(*corev1.ResourceQuota), cur.(*corev1.ResourceQuota)
			// Admission's charges change only status.used: those need no
			// recount. A new spec, or a status that lost track, does.
			if !quota.Equal(o.Spec.Hard, n.Spec.Hard) || !quota.Equal(n.Spec.Hard, n.Status.Hard) || missingUsage(n) {
				c.enqueue(cur)
			}
		},
	})
	// Deletions free quota; so do pods that finish and Services and claims
	// that shrink.
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(old, cur any) {
			o, n := old.(*corev1.Pod), cur.(*corev1.Pod)
			if quota.PodTerminal(o) != quota.PodTerminal(n) || (o.DeletionTimestamp == nil) != (n.DeletionTimestamp == nil) {
				c.namespaceChanged(n.Namespace)
			}
		},
		DeleteFunc: c.objectDeleted,
	})
	changed := func(old, cur any) {
		if !quota.Equal(quota.Usage(schema.GroupResource{}, old), quota.Usage(schema.GroupResource{}, cur)) {
			c.objectDeleted(cur)
		}
	}
	svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: changed, DeleteFunc: c.objectDeleted})
	pvcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: changed, DeleteFunc: c.objectDeleted})
	return c
}

func missingUsage(q *corev1.ResourceQuota) bool {
	for n := range q.Spec.Hard {
		if _, ok := q.Status.Used[n]; !ok {
			return true
		}
	}
	return false
}

func (c *Controller) enqueue(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

func (c *Controller) objectDeleted(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	if m, err := meta.Accessor(obj); err == nil {
		c.namespaceChanged(m.GetNamespace())
	}
}

// namespaceChanged queues every quota of the namespace.
func (c *Controller) namespaceChanged(ns string) {
	qs, err := c.quotas.ResourceQuotas(ns).List(labels.Everything())
	if err != nil {
		return
	}
	for _, q := range qs {
		c.queue.Add(q.Namespace + "/" + q.Name)
	}
}

// Run syncs quotas until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.counts.start(ctx)
	defer c.counts.stop()
	c.queue.Run(ctx, c.Workers, c.synced...)
}

// Sync computes one quota's (namespace/name) status and writes it when it
// changed.
func (c *Controller) Sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := c.quotas.ResourceQuotas(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	q := cached.DeepCopy()
	in := Input{Quota: q, Counts: map[schema.GroupResource]int64{}, Now: c.now()}
	if in.Pods, err = c.pods.Pods(ns).List(labels.Everything()); err != nil {
		return 0, err
	}
	if in.Services, err = c.services.Services(ns).List(labels.Everything()); err != nil {
		return 0, err
	}
	if in.Claims, err = c.claims.PersistentVolumeClaims(ns).List(labels.Everything()); err != nil {
		return 0, err
	}
	pending := false
	for _, gr := range Counted(q) {
		n, ok := c.counts.count(gr, ns)
		if !ok {
			pending = true
			continue
		}
		in.Counts[gr] = n
	}
	st := Status(in)
	if !Equal(q.Status, st) {
		q.Status = st
		if err := c.writer.UpdateStatus(ctx, q); err != nil && !apierrors.IsNotFound(err) {
			return 0, err
		}
	}
	if pending {
		// A count's informer is still filling: look again shortly.
		return 200 * time.Millisecond, nil
	}
	return c.Resync, nil
}

// objectCounts counts the objects of any resource per namespace, from
// metadata informers started the first time a quota names the resource.
type objectCounts struct {
	md       metadata.Interface
	mapper   *restmapper.DeferredDiscoveryRESTMapper
	onChange func(ns string)
	log      *slog.Logger

	mu        sync.Mutex
	ctx       context.Context
	factory   metadatainformer.SharedInformerFactory
	informers map[schema.GroupResource]cache.SharedIndexInformer
	unserved  map[schema.GroupResource]time.Time
}

func newObjectCounts(md metadata.Interface, disc discovery.DiscoveryInterface, onChange func(string), log *slog.Logger) *objectCounts {
	return &objectCounts{
		md:        md,
		mapper:    restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc)),
		onChange:  onChange,
		log:       log,
		factory:   metadatainformer.NewSharedInformerFactory(md, 0),
		informers: map[schema.GroupResource]cache.SharedIndexInformer{},
		unserved:  map[schema.GroupResource]time.Time{},
	}
}

func (o *objectCounts) start(ctx context.Context) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.ctx = ctx
	o.factory.Start(ctx.Done())
}

func (o *objectCounts) stop() { o.factory.Shutdown() }

// count is the number of gr's objects in ns; ok is false while its
// informer has not synced. A resource the server does not serve counts 0.
func (o *objectCounts) count(gr schema.GroupResource, ns string) (int64, bool) {
	o.mu.Lock()
	inf, ok := o.informers[gr]
	if !ok {
		if t, seen := o.unserved[gr]; seen && time.Since(t) < 10*time.Second {
			o.mu.Unlock()
			return 0, true
		}
		gvr, err := o.mapper.ResourceFor(gr.WithVersion(""))
		if err != nil {
			o.mapper.Reset()
			o.unserved[gr] = time.Now()
			o.mu.Unlock()
			return 0, true
		}
		delete(o.unserved, gr)
		inf = o.factory.ForResource(gvr).Informer()
		inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			DeleteFunc: func(obj any) {
				if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = d.Obj
				}
				if m, ok := obj.(*metav1.PartialObjectMetadata); ok {
					o.onChange(m.Namespace)
				}
			},
		})
		o.informers[gr] = inf
		if o.ctx != nil {
			o.factory.Start(o.ctx.Done())
		}
		o.log.Debug("counting objects for quota", "resource", gvr.String())
	}
	o.mu.Unlock()
	if !inf.HasSynced() {
		return 0, false
	}
	items, err := inf.GetIndexer().ByIndex(cache.NamespaceIndex, ns)
	if err != nil {
		return 0, false
	}
	return int64(len(items)), true
}
