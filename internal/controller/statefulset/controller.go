// Package statefulset is the StatefulSet controller: pods with stable names,
// hostnames and claims, created, deleted and updated in the order the set's
// policies ask for, with revisions kept as ControllerRevisions.
//
// controller.go is the queue loop, decide.go the policy (a pure function),
// seam.go the writes.
package statefulset

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/headway/headway/internal/controller/history"
	"github.com/headway/headway/internal/controller/workloop"
)

// Controller runs StatefulSets.
type Controller struct {
	writer Writer
	sets   appslisters.StatefulSetLister
	pods   corelisters.PodLister
	revs   appslisters.ControllerRevisionLister
	claims corelisters.PersistentVolumeClaimLister
	synced []cache.InformerSynced
	queue  *workloop.Loop[string]
	log    *slog.Logger

	// Workers is the number of sets synced at once; Burst the number of
	// writes one sync makes at once under Parallel.
	Workers, Burst int
	now            func() time.Time

	// The controller's own writes the informers have not shown yet (what
	// kube's ReplicaSet controller calls expectations): a sync that runs
	// before the pod informer has caught up with the previous sync's
	// creates would otherwise create those pods again (each an
	// AlreadyExists), and one that runs before the set's informer shows
	// the previous status write would write the status again from the
	// old resourceVersion (a Conflict, retried with backoff).
	mu      sync.Mutex
	pending map[string]map[string]time.Time // set key → pod name → when its create was sent
	wrote   map[string]wroteStatus          // set key → its last status write
}

// wroteStatus is a run of status writes: the resourceVersions the set had
// before each of them (the informer may show any of them until it shows
// the last) and the set as the API returned it after the last.
type wroteStatus struct {
	before []string
	after  *appsv1.StatefulSet
}

// maxBefore bounds wroteStatus.before.
const maxBefore = 16

// pendingTTL bounds how long a create the pod informer never showed (a
// watch that relisted past a pod created and deleted meanwhile) keeps the
// controller from creating that pod again.
const pendingTTL = 30 * time.Second

// New builds the controller on a shared informer factory.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, recorder record.EventRecorder, log *slog.Logger) *Controller {
	return NewWithWriter(&ClientWriter{Client: history.Client{Interface: client}, Recorder: recorder}, factory, log)
}

// NewWithWriter builds the controller with another seam (tests).
func NewWithWriter(w Writer, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	setInf := factory.Apps().V1().StatefulSets()
	podInf := factory.Core().V1().Pods()
	revInf := factory.Apps().V1().ControllerRevisions()
	claimInf := factory.Core().V1().PersistentVolumeClaims()
	c := &Controller{
		writer: w,
		sets:   setInf.Lister(),
		pods:   podInf.Lister(),
		revs:   revInf.Lister(),
		claims: claimInf.Lister(),
		synced: []cache.InformerSynced{setInf.Informer().HasSynced, podInf.Informer().HasSynced,
			revInf.Informer().HasSynced, claimInf.Informer().HasSynced},
		log:     log.With("controller", "statefulset"),
		Workers: 4,
		Burst:   32,
		now:     time.Now,
		pending: map[string]map[string]time.Time{},
		wrote:   map[string]wroteStatus{},
	}
	c.queue = workloop.NewAfter("statefulset", c.log, c.Sync)
	setInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.enqueue,
	})
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.observed(obj); c.enqueueOwner(obj) },
		UpdateFunc: func(old, obj any) { c.observed(obj); c.enqueueOwner(old); c.enqueueOwner(obj) },
		DeleteFunc: func(obj any) { c.observed(obj); c.enqueueOwner(obj) },
	})
	revInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueOwner,
		DeleteFunc: c.enqueueOwner,
	})
	claimInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueueSelecting,
		UpdateFunc: func(_, obj any) { c.enqueueSelecting(obj) },
		DeleteFunc: c.enqueueSelecting,
	})
	return c
}

func (c *Controller) enqueue(obj any) {
	key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj)
	if err == nil {
		c.queue.Add(key)
	}
}

func objectMeta(obj any) metav1.Object {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, _ := obj.(metav1.Object)
	return m
}

// setOf returns the key of the set controlling m, if a set controls it.
func setOf(m metav1.Object) (string, bool) {
	ref := metav1.GetControllerOf(m)
	if ref == nil || ref.Kind != controllerKind.Kind || ref.APIVersion != controllerKind.GroupVersion().String() {
		return "", false
	}
	return m.GetNamespace() + "/" + ref.Name, true
}

// observed ends the wait for a pod the controller created: the informer
// shows it (or its deletion) now.
func (c *Controller) observed(obj any) {
	if m := objectMeta(obj); m != nil {
		if key, ok := setOf(m); ok {
			c.forgetCreate(key, m.GetName())
		}
	}
}

// expectCreate records a pod create about to be sent; a failed create is
// forgotten again.
func (c *Controller) expectCreate(key, pod string) {
	c.mu.Lock()
	if c.pending[key] == nil {
		c.pending[key] = map[string]time.Time{}
	}
	c.pending[key][pod] = c.now()
	c.mu.Unlock()
}

func (c *Controller) forgetCreate(key, pod string) {
	c.mu.Lock()
	if names := c.pending[key]; names != nil {
		delete(names, pod)
		if len(names) == 0 {
			delete(c.pending, key)
		}
	}
	c.mu.Unlock()
}

// skipPending drops the plan's creates of pods created by an earlier sync
// that the pod informer does not show yet.
func (c *Controller) skipPending(key string, actions []Action) []Action {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := c.pending[key]
	if len(names) == 0 {
		return actions
	}
	now := c.now()
	out := actions[:0:0]
	for _, a := range actions {
		if a.Type == CreatePod {
			if at, ok := names[a.Pod.Name]; ok {
				if now.Sub(at) < pendingTTL {
					continue
				}
				delete(names, a.Pod.Name)
			}
		}
		out = append(out, a)
	}
	return out
}

// latest returns the set to sync from: the cached one, or the one the
// last status write returned while the informer still shows the set as it
// was before that write or an earlier one of the same run. It also returns
// the run's earlier resourceVersions, for the next write's record.
func (c *Controller) latest(key string, cached *appsv1.StatefulSet) (*appsv1.StatefulSet, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.wrote[key]
	if ok && w.after.UID == cached.UID && slices.Contains(w.before, cached.ResourceVersion) {
		return w.after.DeepCopy(), w.before
	}
	delete(c.wrote, key) // the informer caught up, or someone else wrote
	return cached.DeepCopy(), nil
}

// wroteAfter records a status write that turned the set at
// resourceVersion from into after.
func (c *Controller) wroteAfter(key string, before []string, from string, after *appsv1.StatefulSet) {
	before = append(slices.Clone(before), from)
	if len(before) > maxBefore {
		before = before[len(before)-maxBefore:]
	}
	c.mu.Lock()
	c.wrote[key] = wroteStatus{before: before, after: after.DeepCopy()}
	c.mu.Unlock()
}

// enqueueOwner queues the set controlling obj; an orphan pod queues the
// sets that may adopt it.
func (c *Controller) enqueueOwner(obj any) {
	m := objectMeta(obj)
	if m == nil {
		return
	}
	if key, ok := setOf(m); ok {
		c.queue.Add(key)
		return
	}
	if metav1.GetControllerOf(m) != nil {
		return
	}
	if _, ok := m.(*corev1.Pod); ok {
		c.enqueueSelecting(obj)
	}
}

// enqueueSelecting queues the sets whose selector matches obj's labels.
func (c *Controller) enqueueSelecting(obj any) {
	m := objectMeta(obj)
	if m == nil {
		return
	}
	sets, err := c.sets.StatefulSets(m.GetNamespace()).List(labels.Everything())
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

// Sync brings one set (namespace/name) a step closer to its spec and
// returns when it wants to be looked at again regardless of events.
func (c *Controller) Sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := c.sets.StatefulSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.mu.Lock()
		delete(c.pending, key)
		delete(c.wrote, key)
		c.mu.Unlock()
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	set, before := c.latest(key, cached)
	from := set.ResourceVersion
	sel, err := metav1.LabelSelectorAsSelector(set.Spec.Selector)
	if err != nil || sel.Empty() {
		return 0, nil // validation keeps these out; nothing sensible to do
	}

	pods, err := c.ownedPods(ctx, set, sel)
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
	history.Sort(owned)
	current, update, collisions, err := c.revisions(ctx, set, owned)
	if err != nil {
		return 0, err
	}
	currentSet, err := ApplyRevision(set, current)
	if err != nil {
		return 0, err
	}
	updateSet, err := ApplyRevision(set, update)
	if err != nil {
		return 0, err
	}
	claims := map[string]*corev1.PersistentVolumeClaim{}
	if len(set.Spec.VolumeClaimTemplates) > 0 {
		ordinals := map[int]bool{}
		for i := 0; i < replicaCount(set); i++ {
			ordinals[startOrdinal(set)+i] = true
		}
		for _, p := range pods {
			ordinals[ordinalOf(set, p)] = true
		}
		for ord := range ordinals {
			for i := range set.Spec.VolumeClaimTemplates {
				cn := ClaimName(set, &set.Spec.VolumeClaimTemplates[i], ord)
				if cl, err := c.claims.PersistentVolumeClaims(ns).Get(cn); err == nil {
					claims[cn] = cl
				}
			}
		}
	}

	plan := Decide(Input{
		Set: set, CurrentSet: currentSet, UpdateSet: updateSet,
		CurrentRevision: current.Name, UpdateRevision: update.Name, CollisionCount: collisions,
		Pods: pods, Claims: claims, Now: c.now(),
	})
	if len(plan.Actions) > 0 || plan.Waiting != "" {
		c.log.Debug("sync", "statefulset", key, "actions", len(plan.Actions), "waiting", plan.Waiting)
	}
	plan.Actions = c.skipPending(key, plan.Actions)
	actErr := c.apply(ctx, key, set, plan)

	if !apiequality.Semantic.DeepEqual(set.Status, plan.Status) {
		set.Status = plan.Status
		if err := c.writer.UpdateStatus(ctx, set); err != nil {
			return 0, errors.Join(actErr, err)
		}
		// A writer that returns the written set (ClientWriter) lets the
		// next sync start from it before the informer shows it.
		if set.ResourceVersion != from {
			c.wroteAfter(key, before, from, set)
		}
	}
	if actErr != nil {
		return 0, actErr
	}
	c.truncateHistory(ctx, set, pods, owned, current, update)
	return plan.RequeueAfter, nil
}

// ownedPods returns the set's pods, adopting orphans with the set's name
// pattern that match its selector.
func (c *Controller) ownedPods(ctx context.Context, set *appsv1.StatefulSet, sel labels.Selector) ([]*corev1.Pod, error) {
	all, err := c.pods.Pods(set.Namespace).List(sel)
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for _, p := range all {
		if ordinalOf(set, p) < 0 {
			continue
		}
		if isControlledBy(p, set.UID) {
			out = append(out, p)
			continue
		}
		if metav1.GetControllerOf(p) == nil && p.DeletionTimestamp == nil && set.DeletionTimestamp == nil {
			if err := c.writer.AdoptPod(ctx, set, p); err != nil {
				return nil, err
			}
			// The adopted pod shows up through the informer.
		}
	}
	return out, nil
}

// revisions carries out ChooseRevisions: it stores the update revision
// and returns it with the current one and the collision count to report.
func (c *Controller) revisions(ctx context.Context, set *appsv1.StatefulSet, owned []*appsv1.ControllerRevision) (current, update *appsv1.ControllerRevision, collisions int32, err error) {
	ch, err := ChooseRevisions(set, owned)
	if err != nil {
		return nil, nil, 0, err
	}
	collisions = ch.CollisionCount
	update = ch.Update
	switch ch.Write {
	case RevisionRenumber:
		if update, err = c.writer.UpdateRevision(ctx, ch.Update); err != nil {
			return nil, nil, 0, err
		}
	case RevisionCreate:
		update, err = c.writer.CreateRevision(ctx, ch.Update)
		if apierrors.IsAlreadyExists(err) {
			existing, gerr := c.writer.GetRevision(ctx, ch.Update.Namespace, ch.Update.Name)
			if gerr != nil {
				return nil, nil, 0, gerr
			}
			if !SameRevision(set, ch.Update, existing) {
				// A hash collision: count it and try again under a new name.
				next := collisions + 1
				st := set.DeepCopy()
				st.Status.CollisionCount = &next
				if uerr := c.writer.UpdateStatus(ctx, st); uerr != nil {
					return nil, nil, 0, uerr
				}
				return nil, nil, 0, fmt.Errorf("revision name %s collides; collision count now %d", ch.Update.Name, next)
			}
			update, err = existing, nil
		}
		if err != nil {
			return nil, nil, 0, err
		}
	}
	current = ch.Current
	if current == nil {
		current = update
	}
	return current, update, collisions, nil
}

// apply carries out a plan: claims first, then pods. Under Parallel the
// writes of each group run Burst at a time; under OrderedReady one by one.
func (c *Controller) apply(ctx context.Context, key string, set *appsv1.StatefulSet, plan Plan) error {
	var claims, pods []Action
	for _, a := range plan.Actions {
		if a.Type == CreateClaim || a.Type == UpdateClaim {
			claims = append(claims, a)
		} else {
			pods = append(pods, a)
		}
	}
	burst := 1
	if set.Spec.PodManagementPolicy == appsv1.ParallelPodManagement && c.Burst > 1 {
		burst = c.Burst
	}
	if err := c.runAll(ctx, key, set, claims, burst); err != nil {
		return err
	}
	return c.runAll(ctx, key, set, pods, burst)
}

func (c *Controller) runAll(ctx context.Context, key string, set *appsv1.StatefulSet, actions []Action, burst int) error {
	if burst <= 1 {
		for _, a := range actions {
			if err := c.do(ctx, key, set, a); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
		sem  = make(chan struct{}, burst)
	)
	for _, a := range actions {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := c.do(ctx, key, set, a); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Controller) do(ctx context.Context, key string, set *appsv1.StatefulSet, a Action) error {
	switch a.Type {
	case CreateClaim:
		pod := ""
		if a.Pod != nil {
			pod = a.Pod.Name
		}
		return c.writer.CreateClaim(ctx, set, a.Claim, pod)
	case UpdateClaim:
		return c.writer.UpdateClaim(ctx, set, a.Claim)
	case CreatePod:
		c.log.Debug("creating pod", "statefulset", set.Name, "pod", a.Pod.Name, "revision", a.Pod.Labels[RevisionLabel])
		c.expectCreate(key, a.Pod.Name)
		err := c.writer.CreatePod(ctx, set, a.Pod)
		if err != nil {
			c.forgetCreate(key, a.Pod.Name)
		}
		return err
	case DeletePod:
		c.log.Debug("deleting pod", "statefulset", set.Name, "pod", a.Pod.Name, "why", a.Why)
		return c.writer.DeletePod(ctx, set, a.Pod)
	case UpdatePod:
		return c.writer.UpdatePod(ctx, set, a.Pod)
	}
	return fmt.Errorf("unknown action %q", a.Type)
}

// truncateHistory deletes revisions beyond revisionHistoryLimit that no
// pod uses.
func (c *Controller) truncateHistory(ctx context.Context, set *appsv1.StatefulSet, pods []*corev1.Pod, owned []*appsv1.ControllerRevision, current, update *appsv1.ControllerRevision) {
	limit := 10
	if set.Spec.RevisionHistoryLimit != nil {
		limit = int(*set.Spec.RevisionHistoryLimit)
	}
	live := map[string]bool{current.Name: true, update.Name: true}
	for _, p := range pods {
		live[revisionOf(p)] = true
	}
	for _, r := range RevisionsToDelete(owned, limit, live) {
		if err := c.writer.DeleteRevision(ctx, r); err != nil {
			c.log.Debug("deleting revision", "revision", r.Name, "err", err)
		}
	}
}
