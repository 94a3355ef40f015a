// Package gc is the garbage collector: it deletes objects whose owners
// (ownerReferences) are gone, and carries out Foreground and Orphan
// deletion for owners that carry the foregroundDeletion or orphan finalizer.
// It is an ordinary API client on metadata informers, like kube's.
package gc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"

	"github.com/headway/headway/internal/controller/workloop"
)

// node is one object in the ownership graph.
type node struct {
	gvr        schema.GroupVersionResource
	namespace  string
	name       string
	uid        types.UID
	owners     []metav1.OwnerReference
	deleting   bool
	deletedAt  time.Time // when the collector first saw the object deleting
	finalizers []string
}

// settle is how long an orphaning or foreground-deleted owner keeps its
// finalizer after its deletion began, so that dependents created just
// before (and not yet seen by the informers) are released or deleted too.
// Components now reach the API over connections of their own, so the
// informers' view can trail a client's writes by a little.
const settle = time.Second

// Controller is the garbage collector.
type Controller struct {
	md        metadata.Interface
	discovery discovery.DiscoveryInterface
	log       *slog.Logger
	queue     *workloop.Loop[types.UID]
	// rediscover is signalled when the served resources may have changed
	// (a CustomResourceDefinition changed).
	rediscover chan struct{}

	mu         sync.Mutex
	nodes      map[types.UID]*node
	dependents map[types.UID]map[types.UID]bool
	mapper     meta.RESTMapper
	// monitors are the running informers, by resource.
	monitors  map[schema.GroupVersionResource]*monitor
	informers sync.WaitGroup
}

// monitor is the informer of one resource.
type monitor struct {
	stop       context.CancelFunc
	namespaced bool
}

// ResyncPeriod is how often the collector looks for resources that
// appeared or went without being told. A changed CustomResourceDefinition
// makes it look at once, and Headway serves no other API that comes and
// goes (no aggregated APIs), so this is only a backstop: kube's garbage
// collector looks every 30 s, which here kept an idle server running the
// whole discovery path (and faulting its code back in) twice a minute.
const ResyncPeriod = 5 * time.Minute

// The waits between the first discovery's tries (see Run).
const (
	discoveryRetry    = 100 * time.Millisecond
	discoveryRetryMax = 5 * time.Second
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// New builds a garbage collector.
func New(md metadata.Interface, disc discovery.DiscoveryInterface, log *slog.Logger) *Controller {
	c := &Controller{
		md:         md,
		discovery:  disc,
		log:        log.With("controller", "garbage-collector"),
		nodes:      map[types.UID]*node{},
		dependents: map[types.UID]map[types.UID]bool{},
		monitors:   map[schema.GroupVersionResource]*monitor{},
		rediscover: make(chan struct{}, 1),
	}
	c.queue = workloop.New("gc", c.log, c.process).LogRetriesAt(slog.LevelInfo)
	return c
}

// Run watches every deletable resource and collects garbage until ctx ends.
// The resources are discovered again every ResyncPeriod and whenever a
// CustomResourceDefinition changes, so custom resources are collected too.
//
// Until the first discovery succeeds it tries again, waiting from
// discoveryRetry up to discoveryRetryMax between tries: a collector that
// gave up on one failed request at start never collected anything (the
// dependents of every deleted owner stayed).
func (c *Controller) Run(ctx context.Context) {
	defer c.queue.ShutDown() // when ctx ends before the loop runs
	var synced []cache.InformerSynced
	for wait := discoveryRetry; ; wait = min(2*wait, discoveryRetryMax) {
		var err error
		if synced, err = c.resync(ctx); err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		c.log.Warn("discovering resources failed; the collector tries again", append(errAttrs(err), "retryIn", wait)...)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
	var wg sync.WaitGroup
	defer func() {
		c.mu.Lock()
		for _, m := range c.monitors {
			m.stop()
		}
		c.mu.Unlock()
		wg.Wait()
		c.informers.Wait()
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(ResyncPeriod)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			case <-c.rediscover:
			}
			if _, err := c.resync(ctx); err != nil && ctx.Err() == nil {
				c.log.Warn("discovering resources failed; the collector keeps the resources it watches", errAttrs(err)...)
			}
		}
	}()
	c.queue.Run(ctx, 2, synced...)
}

// errAttrs are the log attributes of a failed discovery: the error, and the
// status code and reason of an API error.
func errAttrs(err error) []any {
	attrs := []any{"err", err}
	if status := apierrors.APIStatus(nil); errors.As(err, &status) {
		attrs = append(attrs, "code", status.Status().Code, "reason", status.Status().Reason)
	}
	return attrs
}

// resync discovers the deletable resources, starts an informer for each new
// one and stops those of resources no longer served. It returns the
// HasSynced of the informers it started.
func (c *Controller) resync(ctx context.Context) ([]cache.InformerSynced, error) {
	if cached, ok := c.discovery.(interface{ Invalidate() }); ok {
		cached.Invalidate()
	}
	groups, err := restmapper.GetAPIGroupResources(c.discovery)
	if err != nil {
		return nil, fmt.Errorf("discovering resources: %w", err)
	}
	mapper := restmapper.NewDiscoveryRESTMapper(groups)
	lists, err := c.discovery.ServerPreferredResources()
	if err != nil && len(lists) == 0 {
		return nil, err
	}
	want := map[schema.GroupVersionResource]bool{} // namespaced
	for _, list := range lists {
		gv, err := schema.ParseGroupVersion(list.GroupVersion)
		if err != nil {
			continue
		}
		for _, r := range list.APIResources {
			if !slices.Contains(r.Verbs, "list") || !slices.Contains(r.Verbs, "watch") || !slices.Contains(r.Verbs, "delete") {
				continue
			}
			if r.Name == "events" || (gv.Group == "coordination.k8s.io" && r.Name == "leases") {
				continue // high churn, never owned by anything that matters here
			}
			want[gv.WithResource(r.Name)] = r.Namespaced
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.mapper = mapper
	var synced []cache.InformerSynced
	for gvr, namespaced := range want {
		if c.monitors[gvr] != nil {
			continue
		}
		inf := metadatainformer.NewFilteredMetadataInformer(c.md, gvr, metav1.NamespaceAll, 0, cache.Indexers{}, nil).Informer()
		_, _ = inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { c.observe(gvr, obj) },
			UpdateFunc: func(_, obj any) { c.observe(gvr, obj) },
			DeleteFunc: func(obj any) {
				c.forget(obj)
				c.resourcesChanged(gvr)
			},
		})
		ictx, stop := context.WithCancel(ctx)
		c.monitors[gvr] = &monitor{stop: stop, namespaced: namespaced}
		c.informers.Add(1)
		go func() {
			defer c.informers.Done()
			inf.RunWithContext(ictx)
		}()
		synced = append(synced, inf.HasSynced)
	}
	for gvr, m := range c.monitors {
		if _, ok := want[gvr]; !ok {
			m.stop()
			delete(c.monitors, gvr)
			c.log.Info("no longer watching a resource that is not served", "resource", gvr.String())
		}
	}
	return synced, nil
}

func metaOf(obj any) (*metav1.PartialObjectMetadata, bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, ok := obj.(*metav1.PartialObjectMetadata)
	return m, ok
}

// observe records an object in the graph and queues what may need work.
func (c *Controller) observe(gvr schema.GroupVersionResource, obj any) {
	m, ok := metaOf(obj)
	if !ok {
		return
	}
	c.resourcesChanged(gvr)
	n := &node{gvr: gvr, namespace: m.Namespace, name: m.Name, uid: m.UID, owners: m.OwnerReferences,
		deleting: m.DeletionTimestamp != nil, finalizers: m.Finalizers}
	c.mu.Lock()
	if n.deleting {
		// When this collector first saw the deletion (deletionTimestamp
		// has whole seconds only, so it cannot time the settle period).
		n.deletedAt = time.Now()
		if old := c.nodes[n.uid]; old != nil && old.deleting {
			n.deletedAt = old.deletedAt
		}
	}
	if old := c.nodes[n.uid]; old != nil {
		for _, o := range old.owners {
			delete(c.dependents[o.UID], n.uid)
		}
	}
	c.nodes[n.uid] = n
	for _, o := range n.owners {
		if c.dependents[o.UID] == nil {
			c.dependents[o.UID] = map[types.UID]bool{}
		}
		c.dependents[o.UID][n.uid] = true
	}
	c.mu.Unlock()
	if len(n.owners) > 0 || (n.deleting && (slices.Contains(n.finalizers, metav1.FinalizerOrphanDependents) || slices.Contains(n.finalizers, metav1.FinalizerDeleteDependents))) {
		c.queue.Add(n.uid)
	}
}

// resourcesChanged asks for discovery when a CustomResourceDefinition
// changed (the resources it serves may have).
func (c *Controller) resourcesChanged(gvr schema.GroupVersionResource) {
	if gvr != crdResource {
		return
	}
	select {
	case c.rediscover <- struct{}{}:
	default:
	}
}

// forget removes a deleted object and queues its dependents and owners.
func (c *Controller) forget(obj any) {
	m, ok := metaOf(obj)
	if !ok {
		return
	}
	c.mu.Lock()
	n := c.nodes[m.UID]
	delete(c.nodes, m.UID)
	var deps []types.UID
	for d := range c.dependents[m.UID] {
		deps = append(deps, d)
	}
	if n != nil {
		for _, o := range n.owners {
			delete(c.dependents[o.UID], m.UID)
		}
	}
	c.mu.Unlock()
	for _, d := range deps {
		c.queue.Add(d)
	}
	if n != nil {
		for _, o := range n.owners {
			c.queue.Add(o.UID)
		}
	}
}

func (c *Controller) snapshot(uid types.UID) (*node, []*node) {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.nodes[uid]
	if n == nil {
		return nil, nil
	}
	cp := *n
	var deps []*node
	for d := range c.dependents[uid] {
		if dn := c.nodes[d]; dn != nil {
			dcp := *dn
			deps = append(deps, &dcp)
		}
	}
	return &cp, deps
}

// process decides and acts for one object.
func (c *Controller) process(ctx context.Context, uid types.UID) error {
	n, deps := c.snapshot(uid)
	if n == nil {
		return nil
	}
	if n.deleting && slices.Contains(n.finalizers, metav1.FinalizerOrphanDependents) {
		for _, d := range deps {
			if err := c.removeOwner(ctx, d, uid); err != nil {
				return err
			}
		}
		if wait := time.Until(n.deletedAt.Add(settle)); wait > 0 {
			c.queue.AddAfter(uid, wait)
			return nil
		}
		// Dependents created just before the deletion may not have reached
		// the informers yet (under load, longer than the settle period):
		// release them from a live read before the owner goes, or they
		// would be collected as the dependents of an absent owner.
		if err := c.releaseLive(ctx, n); err != nil {
			return err
		}
		return c.removeFinalizer(ctx, n, metav1.FinalizerOrphanDependents)
	}
	if n.deleting && slices.Contains(n.finalizers, metav1.FinalizerDeleteDependents) {
		if len(deps) == 0 {
			// As for orphaning: dependents created just before the
			// owner's delete may not have reached the informers yet.
			if wait := time.Until(n.deletedAt.Add(settle)); wait > 0 {
				c.queue.AddAfter(uid, wait)
				return nil
			}
			return c.removeFinalizer(ctx, n, metav1.FinalizerDeleteDependents)
		}
		fg := metav1.DeletePropagationForeground
		for _, d := range deps {
			if d.deleting {
				continue
			}
			if err := c.delete(ctx, d, fg); err != nil {
				return err
			}
		}
		return fmt.Errorf("%d dependents of %s/%s still exist", len(deps), n.gvr.Resource, n.name)
	}
	if len(n.owners) == 0 || n.deleting {
		return nil
	}
	var absent []types.UID
	foreground := false
	for _, ref := range n.owners {
		exists, ownerDeletingForeground, err := c.ownerState(ctx, n, ref)
		if err != nil {
			return err
		}
		if !exists {
			absent = append(absent, ref.UID)
		} else if ownerDeletingForeground && ref.BlockOwnerDeletion != nil && *ref.BlockOwnerDeletion {
			foreground = true
		}
	}
	switch {
	case len(absent) == len(n.owners):
		policy := metav1.DeletePropagationBackground
		c.log.Info("deleting an object whose owners are gone", "resource", n.gvr.Resource, "namespace", n.namespace, "name", n.name)
		return c.delete(ctx, n, policy)
	case foreground && len(absent) == 0:
		return c.delete(ctx, n, metav1.DeletePropagationForeground)
	case len(absent) > 0:
		for _, a := range absent {
			if err := c.removeOwner(ctx, n, a); err != nil {
				return err
			}
		}
	}
	return nil
}

// ownerState looks an owner up, in the graph first, then with a live read.
func (c *Controller) ownerState(ctx context.Context, n *node, ref metav1.OwnerReference) (exists, deletingForeground bool, err error) {
	c.mu.Lock()
	o := c.nodes[ref.UID]
	mapper := c.mapper
	c.mu.Unlock()
	if o != nil {
		return true, o.deleting && slices.Contains(o.finalizers, metav1.FinalizerDeleteDependents), nil
	}
	gv, err := schema.ParseGroupVersion(ref.APIVersion)
	if err != nil {
		return false, false, nil
	}
	mapping, err := mapper.RESTMapping(gv.WithKind(ref.Kind).GroupKind(), gv.Version)
	if err != nil {
		return false, false, nil // an owner of a kind the server does not serve is absent
	}
	ns := n.namespace
	if mapping.Scope.Name() != meta.RESTScopeNameNamespace {
		ns = ""
	}
	live, err := c.md.Resource(mapping.Resource).Namespace(ns).Get(ctx, ref.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false, false, nil
	}
	if err != nil {
		return false, false, err
	}
	if live.UID != ref.UID {
		return false, false, nil
	}
	return true, live.DeletionTimestamp != nil && slices.Contains(live.Finalizers, metav1.FinalizerDeleteDependents), nil
}

func (c *Controller) delete(ctx context.Context, n *node, policy metav1.DeletionPropagation) error {
	uid := n.uid
	err := c.md.Resource(n.gvr).Namespace(n.namespace).Delete(ctx, n.name, metav1.DeleteOptions{
		PropagationPolicy: &policy,
		Preconditions:     &metav1.Preconditions{UID: &uid},
	})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// removeOwner drops the owner reference to owner from n.
func (c *Controller) removeOwner(ctx context.Context, n *node, owner types.UID) error {
	var refs []metav1.OwnerReference
	for _, r := range n.owners {
		if r.UID != owner {
			refs = append(refs, r)
		}
	}
	return c.patchMeta(ctx, n, map[string]any{"ownerReferences": refs, "uid": n.uid})
}

// releaseLive removes the owner reference to n from every object that
// still has one, as the API server has them now.
func (c *Controller) releaseLive(ctx context.Context, n *node) error {
	type monitored struct {
		gvr        schema.GroupVersionResource
		namespaced bool
	}
	var resources []monitored
	c.mu.Lock()
	for gvr, m := range c.monitors {
		resources = append(resources, monitored{gvr, m.namespaced})
	}
	c.mu.Unlock()
	for _, m := range resources {
		ns := ""
		if m.namespaced && n.namespace != "" {
			ns = n.namespace
		} else if !m.namespaced && n.namespace != "" {
			continue // a cluster-scoped object cannot have a namespaced owner
		}
		list, err := c.md.Resource(m.gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
				continue
			}
			return fmt.Errorf("listing %s to release the dependents of %s/%s: %w", m.gvr.Resource, n.gvr.Resource, n.name, err)
		}
		for i := range list.Items {
			item := &list.Items[i]
			if !slices.ContainsFunc(item.OwnerReferences, func(r metav1.OwnerReference) bool { return r.UID == n.uid }) {
				continue
			}
			d := &node{gvr: m.gvr, namespace: item.Namespace, name: item.Name, uid: item.UID, owners: item.OwnerReferences}
			c.log.Info("releasing a dependent the informers had not shown yet", "owner", n.name, "resource", m.gvr.Resource, "namespace", d.namespace, "name", d.name)
			if err := c.removeOwner(ctx, d, n.uid); err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *Controller) removeFinalizer(ctx context.Context, n *node, f string) error {
	var fs []string
	for _, x := range n.finalizers {
		if x != f {
			fs = append(fs, x)
		}
	}
	return c.patchMeta(ctx, n, map[string]any{"finalizers": fs, "uid": n.uid})
}

func (c *Controller) patchMeta(ctx context.Context, n *node, metadataPatch map[string]any) error {
	body, err := json.Marshal(map[string]any{"metadata": metadataPatch})
	if err != nil {
		return err
	}
	_, err = c.md.Resource(n.gvr).Namespace(n.namespace).Patch(ctx, n.name, types.MergePatchType, body, metav1.PatchOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}
