package replicaset

import (
	"context"
	"errors"
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

	"github.com/headway/headway/internal/controller/workloop"
)

// Controller runs ReplicaSets.
type Controller struct {
	writer Writer
	sets   appslisters.ReplicaSetLister
	pods   corelisters.PodLister
	synced []cache.InformerSynced
	queue  *workloop.Loop[string]
	exp    *Expectations
	log    *slog.Logger

	// Workers is the number of sets synced at once.
	Workers int
	now     func() time.Time
}

// New builds the controller on a shared informer factory.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, recorder record.EventRecorder, log *slog.Logger) *Controller {
	return NewWithWriter(&ClientWriter{Client: client, Recorder: recorder}, factory, log)
}

// NewWithWriter builds the controller with another seam (tests).
func NewWithWriter(w Writer, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	setInf := factory.Apps().V1().ReplicaSets()
	podInf := factory.Core().V1().Pods()
	c := &Controller{
		writer:  w,
		sets:    setInf.Lister(),
		pods:    podInf.Lister(),
		synced:  []cache.InformerSynced{setInf.Informer().HasSynced, podInf.Informer().HasSynced},
		exp:     NewExpectations(time.Now),
		log:     log.With("controller", "replicaset"),
		Workers: 5,
		now:     time.Now,
	}
	c.queue = workloop.NewAfter("replicaset", c.log, c.Sync)
	setInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.exp.Forget(key)
				c.queue.Add(key)
			}
		},
	})
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.addPod,
		UpdateFunc: c.updatePod,
		DeleteFunc: c.deletePod,
	})
	return c
}

func (c *Controller) enqueue(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

// owner returns the set a controller reference points at, if it is in the
// cache with that UID.
func (c *Controller) owner(ns string, ref *metav1.OwnerReference) *appsv1.ReplicaSet {
	if ref == nil || ref.Kind != controllerKind.Kind || ref.APIVersion != controllerKind.GroupVersion().String() {
		return nil
	}
	rs, err := c.sets.ReplicaSets(ns).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return nil
	}
	return rs
}

// selecting returns the sets whose selector matches the pod (candidates to
// adopt an orphan).
func (c *Controller) selecting(pod *corev1.Pod) []*appsv1.ReplicaSet {
	sets, err := c.sets.ReplicaSets(pod.Namespace).List(labels.Everything())
	if err != nil {
		return nil
	}
	var out []*appsv1.ReplicaSet
	for _, rs := range sets {
		sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(pod.Labels)) {
			out = append(out, rs)
		}
	}
	return out
}

func key(obj metav1.Object) string { return obj.GetNamespace() + "/" + obj.GetName() }

func (c *Controller) addPod(obj any) {
	pod := obj.(*corev1.Pod)
	if pod.DeletionTimestamp != nil {
		// Already being deleted (seen first after a restart): not a creation.
		c.deletePod(pod)
		return
	}
	if ref := metav1.GetControllerOf(pod); ref != nil {
		if rs := c.owner(pod.Namespace, ref); rs != nil {
			c.exp.CreationObserved(key(rs))
			c.queue.Add(key(rs))
		}
		return
	}
	for _, rs := range c.selecting(pod) {
		c.queue.Add(key(rs))
	}
}

func (c *Controller) updatePod(oldObj, obj any) {
	old, cur := oldObj.(*corev1.Pod), obj.(*corev1.Pod)
	if old.ResourceVersion == cur.ResourceVersion {
		return
	}
	labelsChanged := !apiequality.Semantic.DeepEqual(old.Labels, cur.Labels)
	if cur.DeletionTimestamp != nil {
		// A graceful deletion started: the set replaces the pod now rather
		// than when the kubelet is done with it.
		c.deletePod(cur)
		if labelsChanged {
			c.deletePod(old)
		}
		return
	}
	oldRef, curRef := metav1.GetControllerOf(old), metav1.GetControllerOf(cur)
	refChanged := !apiequality.Semantic.DeepEqual(oldRef, curRef)
	if refChanged && oldRef != nil {
		if rs := c.owner(old.Namespace, oldRef); rs != nil {
			c.queue.Add(key(rs))
		}
	}
	if curRef != nil {
		rs := c.owner(cur.Namespace, curRef)
		if rs == nil {
			return
		}
		c.queue.Add(key(rs))
		if !IsReady(old) && IsReady(cur) && rs.Spec.MinReadySeconds > 0 {
			// The pod becomes available minReadySeconds from now.
			c.queue.AddAfter(key(rs), time.Duration(rs.Spec.MinReadySeconds)*time.Second+time.Second)
		}
		return
	}
	if labelsChanged || refChanged {
		for _, rs := range c.selecting(cur) {
			c.queue.Add(key(rs))
		}
	}
}

func (c *Controller) deletePod(obj any) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	rs := c.owner(pod.Namespace, metav1.GetControllerOf(pod))
	if rs == nil {
		return
	}
	c.exp.DeletionObserved(key(rs), key(pod))
	c.queue.Add(key(rs))
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
	cached, err := c.sets.ReplicaSets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.exp.Forget(key)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	// Read before listing pods: a pod seen after this has been counted.
	resize := c.exp.Satisfied(key)
	rs := cached.DeepCopy()
	sel, err := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	if err != nil {
		return 0, nil // validation keeps these out
	}
	all, err := c.pods.Pods(ns).List(labels.Everything())
	if err != nil {
		return 0, err
	}
	var active []*corev1.Pod
	for _, p := range all {
		if IsActive(p) {
			active = append(active, p)
		}
	}
	pods, err := c.claim(ctx, rs, sel, active)
	if err != nil {
		return 0, err
	}

	var manageErr error
	if resize && rs.DeletionTimestamp == nil {
		manageErr = c.manage(ctx, key, rs, pods)
	}

	now := c.now()
	st := Status(rs, pods, manageErr, now)
	if !apiequality.Semantic.DeepEqual(rs.Status, st) {
		rs.Status = st
		updated, err := c.writer.UpdateStatus(ctx, rs)
		if err != nil && !apierrors.IsNotFound(err) {
			return 0, errors.Join(manageErr, err)
		}
		if updated != nil {
			rs = updated
		}
	}
	if manageErr != nil {
		return 0, manageErr
	}
	want := int32(1)
	if rs.Spec.Replicas != nil {
		want = *rs.Spec.Replicas
	}
	// Last line of defence against missed events and clock skew: look again
	// once the ready pods should have become available.
	if rs.Spec.MinReadySeconds > 0 && st.ReadyReplicas == want && st.AvailableReplicas != want {
		return time.Duration(rs.Spec.MinReadySeconds) * time.Second, nil
	}
	return 0, nil
}

// claim returns the active pods the set owns after adopting the matching
// orphans and releasing its pods that stopped matching.
func (c *Controller) claim(ctx context.Context, rs *appsv1.ReplicaSet, sel labels.Selector, active []*corev1.Pod) ([]*corev1.Pod, error) {
	owned, adopt, release := Claim(rs, sel, active)
	var errs []error
	for _, p := range release {
		if err := c.writer.ReleasePod(ctx, rs, p); err != nil {
			errs = append(errs, err)
		}
	}
	if len(adopt) > 0 {
		// Adopt only for a set that the API says exists and is not being
		// deleted: the cache may not show a deletion with orphaning yet.
		fresh, err := c.writer.GetReplicaSet(ctx, rs.Namespace, rs.Name)
		switch {
		case err != nil && !apierrors.IsNotFound(err):
			errs = append(errs, err)
		case err == nil && fresh.UID == rs.UID && fresh.DeletionTimestamp == nil:
			for _, p := range adopt {
				if err := c.writer.AdoptPod(ctx, rs, p); err != nil {
					errs = append(errs, err)
					continue
				}
				owned = append(owned, p)
			}
		}
	}
	return owned, errors.Join(errs...)
}

// related returns the active pods of the set and of the sets with the same
// controller (the ReplicaSets of one Deployment).
func (c *Controller) related(rs *appsv1.ReplicaSet) []*corev1.Pod {
	sets := []*appsv1.ReplicaSet{rs}
	if ref := metav1.GetControllerOf(rs); ref != nil {
		all, _ := c.sets.ReplicaSets(rs.Namespace).List(labels.Everything())
		sets = nil
		for _, o := range all {
			if r := metav1.GetControllerOf(o); r != nil && r.UID == ref.UID {
				sets = append(sets, o)
			}
		}
	}
	seen := map[types.UID]bool{}
	var out []*corev1.Pod
	for _, s := range sets {
		sel, err := metav1.LabelSelectorAsSelector(s.Spec.Selector)
		if err != nil {
			continue
		}
		pods, _ := c.pods.Pods(s.Namespace).List(sel)
		for _, p := range pods {
			if !seen[p.UID] {
				seen[p.UID] = true
				out = append(out, p)
			}
		}
	}
	return out
}

// manage creates or deletes pods as Decide says, recording what the
// informer should show before the set is resized again.
func (c *Controller) manage(ctx context.Context, key string, rs *appsv1.ReplicaSet, pods []*corev1.Pod) error {
	plan := Decide(Input{ReplicaSet: rs, Pods: pods, Related: c.related(rs), Now: c.now()})
	switch {
	case plan.Create > 0:
		c.log.Debug("too few replicas", "replicaset", key, "creating", plan.Create)
		c.exp.ExpectCreations(key, plan.Create)
		done, err := SlowStart(plan.Create, SlowStartInitialBatchSize, func() error {
			err := c.writer.CreatePod(ctx, rs, NewPod(rs))
			if apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
				return nil // every create fails until the namespace is gone
			}
			return err
		})
		// The creations never attempted or failed will not be seen.
		for i := done; i < plan.Create; i++ {
			c.exp.CreationObserved(key)
		}
		return err
	case len(plan.Delete) > 0:
		c.log.Debug("too many replicas", "replicaset", key, "deleting", len(plan.Delete))
		keys := make([]string, len(plan.Delete))
		for i, p := range plan.Delete {
			keys[i] = p.Namespace + "/" + p.Name
		}
		c.exp.ExpectDeletions(key, keys)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
		)
		for i, p := range plan.Delete {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.writer.DeletePod(ctx, rs, p); err != nil {
					c.exp.DeletionObserved(key, keys[i])
					if !apierrors.IsNotFound(err) {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		if len(errs) > 0 {
			return errs[0]
		}
	}
	return nil
}

// SlowStart calls fn count times in batches that start at initial and
// double after each batch without error; it stops after the first batch
// with an error and returns how many calls succeeded. Many creations that
// would all fail the same way (a quota, say) fail once, not count times.
func SlowStart(count, initial int, fn func() error) (int, error) {
	remaining, successes := count, 0
	for batch := min(remaining, initial); batch > 0; batch = min(2*batch, remaining) {
		errs := make(chan error, batch)
		var wg sync.WaitGroup
		for i := 0; i < batch; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := fn(); err != nil {
					errs <- err
				}
			}()
		}
		wg.Wait()
		successes += batch - len(errs)
		if len(errs) > 0 {
			return successes, <-errs
		}
		remaining -= batch
	}
	return successes, nil
}
