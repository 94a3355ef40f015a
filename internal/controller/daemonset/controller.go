// Package daemonset is the DaemonSet controller: one pod per eligible node
// (Ready, matching the template's nodeName, nodeSelector and required node
// affinity, its taints tolerated), placed by setting spec.nodeName, updated
// by RollingUpdate (maxUnavailable, maxSurge) or OnDelete, with revisions
// kept as ControllerRevisions so kubectl rollout status/history/undo work.
//
// controller.go is the queue loop, decide.go the policy (a pure function),
// revision.go the revisions, seam.go the writes.
package daemonset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/headway/headway/internal/controller/history"
	"github.com/headway/headway/internal/controller/workloop"
)

// PendingTTL is how long a sync waits for the informer to show the pods
// it created or deleted before it decides again anyway.
const PendingTTL = 30 * time.Second

// Controller runs DaemonSets.
type Controller struct {
	writer Writer
	sets   appslisters.DaemonSetLister
	pods   corelisters.PodLister
	nodes  corelisters.NodeLister
	revs   appslisters.ControllerRevisionLister
	synced []cache.InformerSynced
	queue  *workloop.Loop[string]
	log    *slog.Logger

	// Workers is the number of sets synced at once.
	Workers int
	now     func() time.Time

	mu      sync.Mutex
	pending map[string]*pending // by set key
}

// pending are a sync's writes the informer has not shown yet.
type pending struct {
	created map[string]bool    // pod names
	deleted map[types.UID]bool // pod UIDs
	at      time.Time
}

// New builds the controller on a shared informer factory.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, recorder record.EventRecorder, log *slog.Logger) *Controller {
	return NewWithWriter(&ClientWriter{Client: history.Client{Interface: client}, Recorder: recorder}, factory, log)
}

// NewWithWriter builds the controller with another seam (tests).
func NewWithWriter(w Writer, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	setInf := factory.Apps().V1().DaemonSets()
	podInf := factory.Core().V1().Pods()
	nodeInf := factory.Core().V1().Nodes()
	revInf := factory.Apps().V1().ControllerRevisions()
	c := &Controller{
		writer: w,
		sets:   setInf.Lister(),
		pods:   podInf.Lister(),
		nodes:  nodeInf.Lister(),
		revs:   revInf.Lister(),
		synced: []cache.InformerSynced{setInf.Informer().HasSynced, podInf.Informer().HasSynced,
			nodeInf.Informer().HasSynced, revInf.Informer().HasSynced},
		log:     log.With("controller", "daemonset"),
		Workers: 2,
		now:     time.Now,
		pending: map[string]*pending{},
	}
	c.queue = workloop.NewAfter("daemonset", c.log, c.Sync)
	setInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.enqueue,
	})
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueOwner,
		UpdateFunc: func(old, obj any) { c.enqueueOwner(old); c.enqueueOwner(obj) },
		DeleteFunc: c.enqueueOwner,
	})
	all := func(any) { c.enqueueAll() }
	nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    all,
		UpdateFunc: func(old, obj any) { c.nodeChanged(old, obj) },
		DeleteFunc: all,
	})
	revInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueOwner,
		DeleteFunc: c.enqueueOwner,
	})
	return c
}

func (c *Controller) enqueue(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

func (c *Controller) enqueueAll() {
	sets, err := c.sets.List(labels.Everything())
	if err != nil {
		return
	}
	for _, s := range sets {
		c.queue.Add(s.Namespace + "/" + s.Name)
	}
}

// nodeChanged queues every set when what placement depends on changed
// (heartbeats alone change nothing).
func (c *Controller) nodeChanged(old, obj any) {
	o, ok1 := old.(*corev1.Node)
	n, ok2 := obj.(*corev1.Node)
	if ok1 && ok2 && nodeReady(o) == nodeReady(n) && apiequality.Semantic.DeepEqual(o.Labels, n.Labels) &&
		apiequality.Semantic.DeepEqual(o.Spec.Taints, n.Spec.Taints) && o.Spec.Unschedulable == n.Spec.Unschedulable {
		return
	}
	c.enqueueAll()
}

func objectMeta(obj any) metav1.Object {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, _ := obj.(metav1.Object)
	return m
}

// enqueueOwner queues the set controlling obj; an orphan pod queues the
// sets whose selector matches it.
func (c *Controller) enqueueOwner(obj any) {
	m := objectMeta(obj)
	if m == nil {
		return
	}
	if ref := metav1.GetControllerOf(m); ref != nil {
		if ref.Kind == controllerKind.Kind && ref.APIVersion == controllerKind.GroupVersion().String() {
			c.queue.Add(m.GetNamespace() + "/" + ref.Name)
		}
		return
	}
	if _, ok := m.(*corev1.Pod); !ok {
		return
	}
	sets, err := c.sets.DaemonSets(m.GetNamespace()).List(labels.Everything())
	if err != nil {
		return
	}
	for _, s := range sets {
		sel, err := metav1.LabelSelectorAsSelector(s.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(m.GetLabels())) {
			c.queue.Add(s.Namespace + "/" + s.Name)
		}
	}
}

// Run syncs sets until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.queue.Run(ctx, c.Workers, c.synced...)
}

func isControlledBy(obj metav1.Object, uid types.UID) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && ref.UID == uid
}

// Sync brings one set (namespace/name) a step closer to its spec and
// returns when it wants to be looked at again regardless of events.
func (c *Controller) Sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := c.sets.DaemonSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		delete(c.pending, key)
		c.mu.Unlock()
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	set := cached.DeepCopy()
	sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	if err != nil || sel.Empty() {
		return 0, nil // validation keeps these out
	}
	pods, err := c.ownedPods(ctx, set, sel)
	if err != nil {
		return 0, err
	}
	nodes, err := c.nodes.List(labels.Everything())
	if err != nil {
		return 0, err
	}
	revs, err := c.revs.ControllerRevisions(ns).List(labels.Everything())
	if err != nil {
		return 0, err
	}
	var owned []*appsv1.ControllerRevision
	for _, r := range revs {
		if isControlledBy(r, set.UID) {
			owned = append(owned, r)
		}
	}
	update, err := c.revision(ctx, set, owned)
	if err != nil {
		return 0, err
	}
	hash := RevisionHash(update)

	plan := Decide(Input{Set: set, Hash: hash, Nodes: nodes, Pods: pods, Now: c.now()})
	var actErr error
	if set.DeletionTimestamp == nil {
		if c.caughtUp(key, pods) {
			actErr = c.apply(ctx, key, set, hash, plan)
		} else if plan.RequeueAfter == 0 || plan.RequeueAfter > time.Second {
			plan.RequeueAfter = time.Second
		}
	}
	if !apiequality.Semantic.DeepEqual(set.Status, plan.Status) {
		set.Status = plan.Status
		if err := c.writer.UpdateStatus(ctx, set); err != nil {
			return 0, errors.Join(actErr, err)
		}
	}
	if actErr != nil {
		return 0, actErr
	}
	c.truncateHistory(ctx, set, pods, owned, update)
	return plan.RequeueAfter, nil
}

// caughtUp reports whether the cache shows the set's last writes (or they
// are older than PendingTTL).
func (c *Controller) caughtUp(key string, pods []*corev1.Pod) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending[key]
	if p == nil {
		return true
	}
	if c.now().Sub(p.at) > PendingTTL {
		delete(c.pending, key)
		return true
	}
	seen := map[string]*corev1.Pod{}
	byUID := map[types.UID]*corev1.Pod{}
	for _, pod := range pods {
		seen[pod.Name] = pod
		byUID[pod.UID] = pod
	}
	for n := range p.created {
		if seen[n] == nil {
			return false
		}
	}
	for uid := range p.deleted {
		if pod := byUID[uid]; pod != nil && pod.DeletionTimestamp == nil {
			return false
		}
	}
	delete(c.pending, key)
	return true
}

// ownedPods returns the set's pods, adopting matching orphans.
func (c *Controller) ownedPods(ctx context.Context, set *appsv1.DaemonSet, sel labels.Selector) ([]*corev1.Pod, error) {
	all, err := c.pods.Pods(set.Namespace).List(sel)
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for _, p := range all {
		if isControlledBy(p, set.UID) {
			out = append(out, p)
			continue
		}
		if metav1.GetControllerOf(p) == nil && p.DeletionTimestamp == nil && set.DeletionTimestamp == nil {
			if err := c.writer.AdoptPod(ctx, set, p); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// revision stores the set's update revision as ChooseRevision decided.
func (c *Controller) revision(ctx context.Context, set *appsv1.DaemonSet, owned []*appsv1.ControllerRevision) (*appsv1.ControllerRevision, error) {
	rev, write, err := ChooseRevision(set, owned)
	if err != nil {
		return nil, err
	}
	switch write {
	case RevisionRenumber:
		return c.writer.UpdateRevision(ctx, rev)
	case RevisionCreate:
		created, err := c.writer.CreateRevision(ctx, rev)
		if !apierrors.IsAlreadyExists(err) {
			return created, err
		}
		existing, gerr := c.writer.GetRevision(ctx, rev.Namespace, rev.Name)
		if gerr != nil {
			return nil, gerr
		}
		if SameRevision(set, rev, existing) {
			return existing, nil
		}
		// A hash collision: count it; the next sync tries another name.
		var next int32 = 1
		if set.Status.CollisionCount != nil {
			next = *set.Status.CollisionCount + 1
		}
		st := set.DeepCopy()
		st.Status.CollisionCount = &next
		if err := c.writer.UpdateStatus(ctx, st); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("DaemonSet %s/%s: revision name %s collides; collision count now %d", set.Namespace, set.Name, rev.Name, next)
	}
	return rev, nil
}

// apply carries out the plan: deletions, then creations.
func (c *Controller) apply(ctx context.Context, key string, set *appsv1.DaemonSet, hash string, plan Plan) error {
	if len(plan.Create) == 0 && len(plan.Delete) == 0 {
		return nil
	}
	p := &pending{created: map[string]bool{}, deleted: map[types.UID]bool{}, at: c.now()}
	defer func() {
		c.mu.Lock()
		c.pending[key] = p
		c.mu.Unlock()
	}()
	var errs []error
	for _, d := range plan.Delete {
		c.log.Debug("deleting pod", "daemonset", key, "pod", d.Pod.Name, "node", d.Pod.Spec.NodeName, "why", d.Why)
		if err := c.writer.DeletePod(ctx, set, d.Pod); err != nil {
			errs = append(errs, err)
			continue
		}
		p.deleted[d.Pod.UID] = true
	}
	for _, node := range plan.Create {
		created, err := c.writer.CreatePod(ctx, set, NewPod(set, hash, node))
		if err != nil {
			errs = append(errs, fmt.Errorf("creating the pod of DaemonSet %s on node %s: %w", key, node, err))
			continue
		}
		c.log.Debug("created pod", "daemonset", key, "pod", created.Name, "node", node)
		p.created[created.Name] = true
	}
	return errors.Join(errs...)
}

// truncateHistory deletes revisions beyond revisionHistoryLimit that no
// pod uses.
func (c *Controller) truncateHistory(ctx context.Context, set *appsv1.DaemonSet, pods []*corev1.Pod, owned []*appsv1.ControllerRevision, update *appsv1.ControllerRevision) {
	limit := 10
	if set.Spec.RevisionHistoryLimit != nil {
		limit = int(*set.Spec.RevisionHistoryLimit)
	}
	live := map[string]bool{RevisionHash(update): true}
	for _, p := range pods {
		live[p.Labels[HashLabel]] = true
	}
	var others []*appsv1.ControllerRevision
	for _, r := range owned {
		if r.Name != update.Name {
			others = append(others, r)
		}
	}
	for _, r := range RevisionsToDelete(others, limit, live) {
		if err := c.writer.DeleteRevision(ctx, r); err != nil {
			c.log.Debug("deleting revision", "revision", r.Name, "err", err)
		}
	}
}
