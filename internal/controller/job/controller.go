package job

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/headway/headway/internal/controller/workloop"
)

// Controller runs Jobs.
type Controller struct {
	writer Writer
	jobs   batchlisters.JobLister
	pods   corelisters.PodLister
	synced []cache.InformerSynced
	queue  *workloop.Loop[string]
	exp    *expectations
	log    *slog.Logger

	// Workers is the number of Jobs synced at once.
	Workers int
	// Now is the controller's clock (tests).
	Now func() time.Time
}

// New builds the controller on a shared informer factory.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, recorder record.EventRecorder, log *slog.Logger) *Controller {
	return NewWithWriter(&ClientWriter{Client: client, Recorder: recorder}, factory, log)
}

// NewWithWriter builds the controller with another seam (tests).
func NewWithWriter(w Writer, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	jobInf := factory.Batch().V1().Jobs()
	podInf := factory.Core().V1().Pods()
	c := &Controller{
		writer:  w,
		jobs:    jobInf.Lister(),
		pods:    podInf.Lister(),
		synced:  []cache.InformerSynced{jobInf.Informer().HasSynced, podInf.Informer().HasSynced},
		exp:     newExpectations(),
		log:     log.With("controller", "job"),
		Workers: 5,
		Now:     time.Now,
	}
	c.queue = workloop.NewAfter("job", c.log, c.Sync)
	jobInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: func(obj any) {
			if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
				c.exp.forget(key)
			}
		},
	})
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { c.podEvent(obj, true) },
		UpdateFunc: func(_, obj any) { c.podEvent(obj, false) },
		DeleteFunc: func(obj any) { c.podEvent(obj, false) },
	})
	return c
}

func (c *Controller) enqueue(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

func (c *Controller) podEvent(obj any, added bool) {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	ref := metav1.GetControllerOf(pod)
	if ref == nil {
		if HasTracking(pod.Finalizers) {
			// Orphaned (its Job deleted with --cascade=orphan).
			c.queue.Add(orphanPrefix + pod.Namespace + "/" + pod.Name)
		}
		return
	}
	if ref.Kind != controllerKind.Kind || ref.APIVersion != controllerKind.GroupVersion().String() {
		return
	}
	j, err := c.jobs.Jobs(pod.Namespace).Get(ref.Name)
	if err != nil || j.UID != ref.UID {
		if HasTracking(pod.Finalizers) {
			// Its Job is gone: nothing will count it, let it go.
			c.queue.Add(orphanPrefix + pod.Namespace + "/" + pod.Name)
		}
		return
	}
	key := j.Namespace + "/" + j.Name
	if added {
		c.exp.observed(key)
	}
	c.queue.Add(key)
}

// Run syncs Jobs until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.queue.Run(ctx, c.Workers, c.synced...)
}

// Sync brings one Job (namespace/name) a step closer to done and returns
// when it wants to be looked at again regardless of events.
func (c *Controller) Sync(ctx context.Context, key string) (time.Duration, error) {
	if podKey, ok := strings.CutPrefix(key, orphanPrefix); ok {
		return 0, c.syncOrphan(ctx, podKey)
	}
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := c.jobs.Jobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		c.exp.forget(key)
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	now := c.Now()
	j := cached.DeepCopy()
	if at, ok := TTLExpiry(j); ok {
		if !now.Before(at) {
			return 0, c.writer.DeleteJob(ctx, j)
		}
		return at.Sub(now) + 100*time.Millisecond, nil
	}
	// Read before listing pods: a pod seen after this has been counted.
	satisfied := c.exp.satisfied(key)
	sel, err := metav1.LabelSelectorAsSelector(j.Spec.Selector)
	if err != nil {
		return 0, nil // validation keeps these out
	}
	all, err := c.pods.Pods(ns).List(sel)
	if err != nil {
		return 0, err
	}
	var pods []*corev1.Pod
	released := false
	for _, p := range all {
		ref := metav1.GetControllerOf(p)
		switch {
		case ref == nil:
			released = true
		case ref.UID == j.UID:
			pods = append(pods, p)
		}
	}
	if j.DeletionTimestamp != nil {
		return 0, c.untrack(ctx, Untrack(j, pods, true))
	}
	plan := Decide(Input{Job: j, Pods: pods, Now: now})
	if !satisfied {
		// Our last creations are not in the cache yet: counting now would
		// create them again.
		plan.Create = nil
	}
	if len(plan.Create) > 0 && released {
		// Pods of this Job that no longer name it: the garbage collector
		// released them because the Job is being deleted with
		// --cascade=orphan, and this cache may not show the deletion yet.
		// Kubernetes rechecks the Job live before it acts on such pods;
		// without it, a replacement pod would outlive the Job.
		deleting, err := c.writer.Deleting(ctx, j)
		if err != nil {
			return 0, err
		}
		if deleting {
			return 0, nil
		}
	}

	var errs []error
	if len(plan.Create) > 0 {
		c.exp.expect(key, len(plan.Create))
		var (
			wg sync.WaitGroup
			mu sync.Mutex
		)
		for _, idx := range plan.Create {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if err := c.writer.CreatePod(ctx, j, NewPod(j, idx)); err != nil {
					c.exp.observed(key)
					if !apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause) {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				}
			}()
		}
		wg.Wait()
		if len(errs) == 0 {
			plan.Status.Active += int32(len(plan.Create))
		}
	}
	for _, p := range plan.Delete {
		if err := c.writer.DeletePod(ctx, j, p); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	if !apiequality.Semantic.DeepEqual(j.Status, plan.Status) {
		wasFinished := Finished(j.Status) != nil
		j.Status = plan.Status
		updated, err := c.writer.UpdateStatus(ctx, j)
		if err != nil && !apierrors.IsNotFound(err) {
			return 0, errors.Join(append(errs, err)...)
		}
		if err == nil && !wasFinished && plan.Finished {
			if plan.FailedReason != "" {
				c.writer.Event(updated, corev1.EventTypeWarning, plan.FailedReason, Finished(updated.Status).Message)
			} else {
				c.writer.Event(updated, corev1.EventTypeNormal, "Completed", "Job completed")
			}
			if at, ok := TTLExpiry(updated); ok {
				return max(at.Sub(now), 0) + 100*time.Millisecond, errors.Join(errs...)
			}
		}
	}
	// The status counting the finished pods is written: they may go.
	if err := c.untrack(ctx, Untrack(j, pods, plan.Finished)); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return 0, errors.Join(errs...)
	}
	if plan.After > 0 {
		return plan.After + 100*time.Millisecond, nil
	}
	return 0, nil
}

// orphanPrefix marks a queue key naming a pod (namespace/name) whose Job
// is gone.
const orphanPrefix = "orphan-pod:"

// untrack removes the job-tracking finalizer from pods.
func (c *Controller) untrack(ctx context.Context, pods []*corev1.Pod) error {
	var errs []error
	for _, p := range pods {
		if err := c.writer.RemoveTracking(ctx, p); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// syncOrphan removes the job-tracking finalizer from a pod whose Job no
// longer exists.
func (c *Controller) syncOrphan(ctx context.Context, key string) error {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return nil
	}
	pod, err := c.pods.Pods(ns).Get(name)
	if err != nil || !HasTracking(pod.Finalizers) {
		return nil
	}
	if ref := metav1.GetControllerOf(pod); ref != nil && ref.Kind == controllerKind.Kind {
		if j, err := c.jobs.Jobs(ns).Get(ref.Name); err == nil && j.UID == ref.UID {
			return nil // its Job is back in the cache: it syncs the pod
		}
	}
	return c.untrack(ctx, []*corev1.Pod{pod})
}

// expectations remember, per Job, pod creations the informer has not shown
// yet; until they are seen (or a minute passed) no more pods are created.
type expectations struct {
	mu sync.Mutex
	m  map[string]*pending
}

type pending struct {
	adds int
	at   time.Time
}

func newExpectations() *expectations { return &expectations{m: map[string]*pending{}} }

func (e *expectations) satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	return !ok || x.adds <= 0 || time.Since(x.at) > time.Minute
}

func (e *expectations) expect(key string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = &pending{adds: n, at: time.Now()}
}

func (e *expectations) observed(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok && x.adds > 0 {
		x.adds--
	}
}

func (e *expectations) forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}
