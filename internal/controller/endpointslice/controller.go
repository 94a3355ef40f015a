// Package endpointslice is the EndpointSlice controller: for every Service
// with a selector it keeps EndpointSlices (and the legacy Endpoints object)
// listing the selected pods, with the conditions, hostnames and trigger
// times cluster DNS relies on.
//
// controller.go is the queue loop, desired.go and reconcile.go the pure
// decisions, seam.go the writes.
package endpointslice

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/headway/headway/internal/controller/workloop"
)

// Controller keeps EndpointSlices and Endpoints for Services.
type Controller struct {
	writer    Writer
	services  corelisters.ServiceLister
	pods      corelisters.PodLister
	slices    discoverylisters.EndpointSliceLister
	endpoints corelisters.EndpointsLister
	synced    []cache.InformerSynced
	queue     *workloop.Loop[string]
	log       *slog.Logger

	// Workers is the number of services synced at once; MaxPerSlice the
	// endpoints per slice.
	Workers, MaxPerSlice int

	mu sync.Mutex
	// triggers is, per service, the time of the oldest change not yet
	// written, kept apart for the slices and the legacy Endpoints: a sync
	// that wrote the slices but not the Endpoints must not stamp its old
	// time again on the slices' next write.
	triggers map[string]pendingTrigger
	// written is, per service, what the controller wrote and the informer
	// may not show yet: slice name → generation (-1: deleted, with uid).
	written map[string]map[string]expectation
	// endpointsWritten is, per service, the legacy Endpoints the controller
	// last wrote, until the Endpoints informer shows a version other than
	// the ones those writes replaced (syncEndpoints).
	endpointsWritten map[string]endpointsWrite
}

// endpointsWrite is a run of Endpoints writes the informer may not show
// yet: the resourceVersions they replaced ("" for a create) and what the
// last one returned.
type endpointsWrite struct {
	before map[string]bool
	obj    *corev1.Endpoints
}

// pendingTrigger holds the oldest unwritten change for each kind of
// object; a zero time is none.
type pendingTrigger struct{ slices, endpoints time.Time }

func earlier(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

type expectation struct {
	generation int64
	uid        types.UID
	deleted    bool
}

// New builds the controller on a shared informer factory.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	return NewWithWriter(ClientWriter{Client: client}, factory, log)
}

// NewWithWriter builds the controller with another seam.
func NewWithWriter(w Writer, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	svcInf := factory.Core().V1().Services()
	podInf := factory.Core().V1().Pods()
	sliceInf := factory.Discovery().V1().EndpointSlices()
	epInf := factory.Core().V1().Endpoints()
	c := &Controller{
		writer:    w,
		services:  svcInf.Lister(),
		pods:      podInf.Lister(),
		slices:    sliceInf.Lister(),
		endpoints: epInf.Lister(),
		synced: []cache.InformerSynced{svcInf.Informer().HasSynced, podInf.Informer().HasSynced,
			sliceInf.Informer().HasSynced, epInf.Informer().HasSynced},
		log:         log.With("controller", "endpointslice"),
		Workers:     4,
		MaxPerSlice: MaxEndpointsPerSlice,
		triggers:    map[string]pendingTrigger{},
		written:     map[string]map[string]expectation{},

		endpointsWritten: map[string]endpointsWrite{},
	}
	c.queue = workloop.New("endpointslice", c.log, c.sync)
	svcInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.serviceChanged,
		UpdateFunc: func(_, obj any) { c.serviceChanged(obj) },
		DeleteFunc: c.serviceChanged,
	})
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: func(obj any) { c.podChanged(nil, obj) },
		UpdateFunc: func(old, obj any) {
			if old.(*corev1.Pod).ResourceVersion != obj.(*corev1.Pod).ResourceVersion {
				c.podChanged(old, obj)
			}
		},
		DeleteFunc: func(obj any) { c.podChanged(nil, obj) },
	})
	sliceInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.sliceChanged,
		UpdateFunc: func(_, obj any) { c.sliceChanged(obj) },
		DeleteFunc: c.sliceChanged,
	})
	epInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.enqueue,
	})
	return c
}

func (c *Controller) enqueue(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

func (c *Controller) trigger(key string, at time.Time) {
	c.restoreTrigger(key, pendingTrigger{slices: at, endpoints: at})
	c.queue.Add(key)
}

func (c *Controller) serviceChanged(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err == nil {
		c.trigger(key, time.Now())
	}
}

func podOf(obj any) *corev1.Pod {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	p, _ := obj.(*corev1.Pod)
	return p
}

// podChanged queues the services selecting the pod before or after.
func (c *Controller) podChanged(old, obj any) {
	now := time.Now()
	pod := podOf(obj)
	if pod == nil {
		return
	}
	var oldLabels labels.Set
	if op := podOf(old); op != nil {
		oldLabels = op.Labels
	}
	services, err := c.services.Services(pod.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, svc := range services {
		if svc.Spec.Selector == nil {
			continue
		}
		sel := labels.SelectorFromValidatedSet(svc.Spec.Selector)
		if sel.Matches(labels.Set(pod.Labels)) || (oldLabels != nil && sel.Matches(oldLabels)) {
			c.trigger(svc.Namespace+"/"+svc.Name, now)
		}
	}
}

func (c *Controller) sliceChanged(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok || s.Labels[ManagedByLabel] != ManagedBy {
		return
	}
	if name := s.Labels[ServiceNameLabel]; name != "" {
		c.queue.Add(s.Namespace + "/" + name)
	}
}

// Run syncs services until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.queue.Run(ctx, c.Workers, c.synced...)
}

var errStale = errors.New("the slice cache is behind this controller's writes")

// sync is Sync as the queue runs it: a cache behind our writes is not a
// failure to back off from but a short wait (the slice informer's event for
// our write queues the key again too).
func (c *Controller) sync(ctx context.Context, key string) error {
	err := c.Sync(ctx, key)
	if errors.Is(err, errStale) {
		c.queue.AddAfter(key, 200*time.Millisecond)
		return nil
	}
	return err
}

// takeTrigger returns and clears the service's pending trigger times.
func (c *Controller) takeTrigger(key string) pendingTrigger {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.triggers[key]
	delete(c.triggers, key)
	return t
}

// restoreTrigger merges times back into the service's pending ones,
// keeping the earliest of each.
func (c *Controller) restoreTrigger(key string, t pendingTrigger) {
	if t.slices.IsZero() && t.endpoints.IsZero() {
		return
	}
	c.mu.Lock()
	cur := c.triggers[key]
	c.triggers[key] = pendingTrigger{slices: earlier(cur.slices, t.slices), endpoints: earlier(cur.endpoints, t.endpoints)}
	c.mu.Unlock()
}

func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// fresh reports whether the slice cache reflects every write made for the
// service, forgetting the expectations it meets.
func (c *Controller) fresh(key string, ns string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	exp := c.written[key]
	for name, e := range exp {
		s, err := c.slices.EndpointSlices(ns).Get(name)
		switch {
		case e.deleted && (apierrors.IsNotFound(err) || (err == nil && s.UID != e.uid)):
			delete(exp, name)
		case !e.deleted && err == nil && (s.UID != e.uid || s.Generation >= e.generation):
			delete(exp, name)
		}
	}
	if len(exp) == 0 {
		delete(c.written, key)
		return true
	}
	return false
}

func (c *Controller) expect(key, name string, e expectation) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.written[key] == nil {
		c.written[key] = map[string]expectation{}
	}
	c.written[key][name] = e
}

// Sync brings one service's slices and Endpoints up to date.
func (c *Controller) Sync(ctx context.Context, key string) (err error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	// What this sync has not written goes back when it fails: both times
	// until the slices are written, then the Endpoints' alone.
	trig := c.takeTrigger(key)
	// A change with no time recorded yet: the informer's cache is updated
	// before its handlers run, so this sync can see a pod's change before
	// podChanged noted when it happened. The change happened by now.
	now := time.Now()
	if trig.slices.IsZero() {
		trig.slices = now
	}
	if trig.endpoints.IsZero() {
		trig.endpoints = now
	}
	unwritten := trig
	defer func() {
		if err != nil {
			c.restoreTrigger(key, unwritten)
		}
	}()
	svc, err := c.services.Services(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		delete(c.written, key)
		delete(c.endpointsWritten, key)
		c.mu.Unlock()
		// Slices go with their owner (garbage collector); Endpoints have none.
		if _, err := c.endpoints.Endpoints(ns).Get(name); err == nil {
			return c.writer.DeleteEndpoints(ctx, ns, name)
		}
		return nil
	}
	if err != nil {
		return err
	}
	if svc.Spec.Selector == nil || svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil // endpoints of selector-less services are the user's
	}
	if !c.fresh(key, ns) {
		return errStale
	}
	pods, err := c.pods.Pods(ns).List(labels.SelectorFromValidatedSet(svc.Spec.Selector))
	if err != nil {
		return err
	}
	existing, err := c.slices.EndpointSlices(ns).List(labels.SelectorFromSet(labels.Set{ServiceNameLabel: name, ManagedByLabel: ManagedBy}))
	if err != nil {
		return err
	}
	var owned []*discoveryv1.EndpointSlice
	for _, s := range existing {
		if ref := metav1.GetControllerOf(s); ref == nil || ref.UID == svc.UID {
			owned = append(owned, s)
		}
	}
	changes := Reconcile(svc, pods, owned, c.MaxPerSlice, stamp(trig.slices))
	if err := c.applySlices(ctx, key, changes); err != nil {
		return err
	}
	unwritten.slices = time.Time{}
	return c.syncEndpoints(ctx, key, svc, pods, stamp(trig.endpoints))
}

func (c *Controller) applySlices(ctx context.Context, key string, ch Changes) error {
	var errs []error
	for _, s := range ch.Create {
		out, err := c.writer.CreateSlice(ctx, s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.expect(key, out.Name, expectation{generation: out.Generation, uid: out.UID})
	}
	for _, s := range ch.Update {
		out, err := c.writer.UpdateSlice(ctx, s)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		c.expect(key, out.Name, expectation{generation: out.Generation, uid: out.UID})
	}
	for _, s := range ch.Delete {
		if err := c.writer.DeleteSlice(ctx, s); err != nil {
			errs = append(errs, err)
			continue
		}
		c.expect(key, s.Name, expectation{uid: s.UID, deleted: true})
	}
	if !ch.Empty() {
		c.log.Debug("slices written", "service", key, "created", len(ch.Create), "updated", len(ch.Update), "deleted", len(ch.Delete))
	}
	return errors.Join(errs...)
}

// currentEndpoints is the service's Endpoints as this controller last
// knew them: the informer's, or, while the informer still shows a version
// the controller's own writes replaced (or none, after its create), what
// the last write returned. Without it a sync right after a write updated
// from the replaced version (a Conflict) or created again (AlreadyExists),
// and waited to retry.
func (c *Controller) currentEndpoints(key string, svc *corev1.Service) (*corev1.Endpoints, error) {
	cur, err := c.endpoints.Endpoints(svc.Namespace).Get(svc.Name)
	if err != nil && !apierrors.IsNotFound(err) {
		return nil, err
	}
	seen := "" // the version the informer shows; none: ""
	if err == nil {
		seen = cur.ResourceVersion
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.endpointsWritten[key]
	switch {
	case ok && w.before[seen]:
		return w.obj, nil
	case ok:
		delete(c.endpointsWritten, key) // the informer caught up, or another writer came after
	}
	return cur, err
}

// wroteEndpoints remembers an Endpoints write that replaced the version
// before ("" for a create) and returned out.
func (c *Controller) wroteEndpoints(key, before string, out *corev1.Endpoints) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.endpointsWritten[key]
	if !ok {
		w.before = map[string]bool{}
	}
	w.before[before] = true
	w.obj = out
	c.endpointsWritten[key] = w
}

// forgetEndpoints drops the memory of the service's Endpoints writes (after
// a write failed: the informer's version is the one to go by).
func (c *Controller) forgetEndpoints(key string) {
	c.mu.Lock()
	delete(c.endpointsWritten, key)
	c.mu.Unlock()
}

func (c *Controller) syncEndpoints(ctx context.Context, key string, svc *corev1.Service, pods []*corev1.Pod, triggerTime string) error {
	want := DesiredEndpoints(svc, pods, triggerTime)
	cur, err := c.currentEndpoints(key, svc)
	var out *corev1.Endpoints
	before := "" // the version the write replaces; none for a create
	switch {
	case apierrors.IsNotFound(err):
		out, err = c.writer.CreateEndpoints(ctx, want)
	case err != nil:
		return err
	case endpointsEqual(cur, want):
		return nil
	default:
		up := cur.DeepCopy()
		up.Labels = want.Labels
		up.Subsets = want.Subsets
		if up.Annotations == nil {
			up.Annotations = map[string]string{}
		}
		delete(up.Annotations, OverCapacityAnnotation)
		for k, v := range want.Annotations {
			up.Annotations[k] = v
		}
		before = cur.ResourceVersion
		out, err = c.writer.UpdateEndpoints(ctx, up)
	}
	if err != nil {
		c.forgetEndpoints(key)
		if apierrors.IsAlreadyExists(err) || apierrors.IsConflict(err) {
			return errStale
		}
		return err
	}
	c.wroteEndpoints(key, before, out)
	return nil
}
