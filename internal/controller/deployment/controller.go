package deployment

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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

// Controller runs Deployments.
type Controller struct {
	writer      Writer
	deployments appslisters.DeploymentLister
	sets        appslisters.ReplicaSetLister
	pods        corelisters.PodLister
	synced      []cache.InformerSynced
	queue       *workloop.Loop[string]
	log         *slog.Logger

	// Workers is the number of Deployments synced at once.
	Workers int
	now     func() time.Time
}

// New builds the controller on a shared informer factory.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, recorder record.EventRecorder, log *slog.Logger) *Controller {
	return NewWithWriter(&ClientWriter{Client: client, Recorder: recorder}, factory, log)
}

// NewWithWriter builds the controller with another seam (tests).
func NewWithWriter(w Writer, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	dInf := factory.Apps().V1().Deployments()
	rsInf := factory.Apps().V1().ReplicaSets()
	podInf := factory.Core().V1().Pods()
	c := &Controller{
		writer:      w,
		deployments: dInf.Lister(),
		sets:        rsInf.Lister(),
		pods:        podInf.Lister(),
		synced:      []cache.InformerSynced{dInf.Informer().HasSynced, rsInf.Informer().HasSynced, podInf.Informer().HasSynced},
		log:         log.With("controller", "deployment"),
		Workers:     5,
		now:         time.Now,
	}
	c.queue = workloop.NewAfter("deployment", c.log, c.Sync)
	dInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.enqueue,
	})
	rsInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.addSet,
		UpdateFunc: c.updateSet,
		DeleteFunc: c.deleteSet,
	})
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: c.deletePod,
	})
	return c
}

func (c *Controller) enqueue(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

// owner returns the Deployment a controller reference points at, if it is
// in the cache with that UID.
func (c *Controller) owner(ns string, ref *metav1.OwnerReference) *appsv1.Deployment {
	if ref == nil || ref.Kind != controllerKind.Kind || ref.APIVersion != controllerKind.GroupVersion().String() {
		return nil
	}
	d, err := c.deployments.Deployments(ns).Get(ref.Name)
	if err != nil || d.UID != ref.UID {
		return nil
	}
	return d
}

// selecting queues the Deployments whose selector matches an orphan set.
func (c *Controller) selecting(rs *appsv1.ReplicaSet) {
	ds, err := c.deployments.Deployments(rs.Namespace).List(labels.Everything())
	if err != nil {
		return
	}
	for _, d := range ds {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err == nil && !sel.Empty() && sel.Matches(labels.Set(rs.Labels)) {
			c.queue.Add(d.Namespace + "/" + d.Name)
		}
	}
}

func (c *Controller) addSet(obj any) {
	rs := obj.(*appsv1.ReplicaSet)
	if rs.DeletionTimestamp != nil {
		c.deleteSet(rs)
		return
	}
	if ref := metav1.GetControllerOf(rs); ref != nil {
		if d := c.owner(rs.Namespace, ref); d != nil {
			c.queue.Add(d.Namespace + "/" + d.Name)
		}
		return
	}
	c.selecting(rs)
}

func (c *Controller) updateSet(oldObj, obj any) {
	old, cur := oldObj.(*appsv1.ReplicaSet), obj.(*appsv1.ReplicaSet)
	if old.ResourceVersion == cur.ResourceVersion {
		return
	}
	oldRef, curRef := metav1.GetControllerOf(old), metav1.GetControllerOf(cur)
	refChanged := !apiequality.Semantic.DeepEqual(oldRef, curRef)
	if refChanged && oldRef != nil {
		if d := c.owner(old.Namespace, oldRef); d != nil {
			c.queue.Add(d.Namespace + "/" + d.Name)
		}
	}
	if curRef != nil {
		if d := c.owner(cur.Namespace, curRef); d != nil {
			c.queue.Add(d.Namespace + "/" + d.Name)
		}
		return
	}
	if refChanged || !apiequality.Semantic.DeepEqual(old.Labels, cur.Labels) {
		c.selecting(cur)
	}
}

func (c *Controller) deleteSet(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	rs, ok := obj.(*appsv1.ReplicaSet)
	if !ok {
		return
	}
	if d := c.owner(rs.Namespace, metav1.GetControllerOf(rs)); d != nil {
		c.queue.Add(d.Namespace + "/" + d.Name)
	}
}

// deletePod wakes a Recreate Deployment waiting for its old pods to go.
func (c *Controller) deletePod(obj any) {
	if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = t.Obj
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return
	}
	ref := metav1.GetControllerOf(pod)
	if ref == nil || ref.Kind != "ReplicaSet" {
		return
	}
	rs, err := c.sets.ReplicaSets(pod.Namespace).Get(ref.Name)
	if err != nil || rs.UID != ref.UID {
		return
	}
	if d := c.owner(rs.Namespace, metav1.GetControllerOf(rs)); d != nil && d.Spec.Strategy.Type == appsv1.RecreateDeploymentStrategyType {
		c.queue.Add(d.Namespace + "/" + d.Name)
	}
}

// Run syncs Deployments until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.queue.Run(ctx, c.Workers, c.synced...)
}

// Sync takes one Deployment (namespace/name) one step further and returns
// when it wants to be looked at again regardless of events.
func (c *Controller) Sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := c.deployments.Deployments(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	d := cached.DeepCopy()
	var sets []*appsv1.ReplicaSet
	pods := map[types.UID][]*corev1.Pod{}
	if sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector); err == nil && !sel.Empty() {
		if sets, err = c.claim(ctx, d, sel); err != nil {
			return 0, err
		}
		if pods, err = c.podsBySet(d, sel, sets); err != nil {
			return 0, err
		}
	}
	plan := Decide(Input{Deployment: d, ReplicaSets: sets, Pods: pods, Now: c.now()})
	if plan.Create != nil || len(plan.Scales) > 0 || len(plan.Delete) > 0 {
		c.log.Debug("sync", "deployment", key, "step", plan.Step, "create", plan.Create != nil, "scales", len(plan.Scales), "deletes", len(plan.Delete))
	}
	return c.apply(ctx, d, plan)
}

// apply carries out a plan: create, scale, delete, then the Deployment's
// revision and status.
func (c *Controller) apply(ctx context.Context, d *appsv1.Deployment, plan Plan) (time.Duration, error) {
	if plan.Warning[0] != "" {
		c.writer.Warn(d, plan.Warning[0], plan.Warning[1])
	}
	if plan.Create != nil {
		if err := c.create(ctx, d, plan.Create); err != nil {
			return 0, err
		}
	}
	for _, s := range plan.Scales {
		if err := c.writer.UpdateReplicaSet(ctx, d, s.ReplicaSet, s.From, s.To); err != nil {
			return 0, err
		}
	}
	for _, rs := range plan.Delete {
		if err := c.writer.DeleteReplicaSet(ctx, d, rs); err != nil {
			return 0, err
		}
	}
	if plan.Revision != "" && d.Annotations[RevisionAnnotation] != plan.Revision && d.DeletionTimestamp == nil {
		updated, err := c.writer.SetRevision(ctx, d, plan.Revision)
		if apierrors.IsNotFound(err) {
			return 0, nil
		}
		if err != nil {
			return 0, err
		}
		d = updated
	}
	if !apiequality.Semantic.DeepEqual(d.Status, plan.Status) {
		d.Status = plan.Status
		if _, err := c.writer.UpdateStatus(ctx, d); err != nil && !apierrors.IsNotFound(err) {
			return 0, err
		}
	}
	return plan.RequeueAfter, nil
}

// create creates the new set. A set of that name that is not the
// Deployment's with the same template is a hash collision: the collision
// count goes up and the next sync tries another name.
func (c *Controller) create(ctx context.Context, d *appsv1.Deployment, rs *appsv1.ReplicaSet) error {
	_, err := c.writer.CreateReplicaSet(ctx, d, rs)
	switch {
	case err == nil:
		return nil
	case apierrors.IsAlreadyExists(err):
		existing, gerr := c.sets.ReplicaSets(rs.Namespace).Get(rs.Name)
		if apierrors.IsNotFound(gerr) {
			existing, gerr = c.writer.GetReplicaSet(ctx, rs.Namespace, rs.Name)
		}
		if gerr != nil {
			return gerr
		}
		if ref := metav1.GetControllerOf(existing); ref != nil && ref.UID == d.UID && EqualIgnoreHash(&d.Spec.Template, &existing.Spec.Template) {
			return nil // ours: the cache had not shown it yet
		}
		st := d.DeepCopy()
		n := int32(0)
		if st.Status.CollisionCount != nil {
			n = *st.Status.CollisionCount
		}
		n++
		st.Status.CollisionCount = &n
		if _, uerr := c.writer.UpdateStatus(ctx, st); uerr != nil {
			return errors.Join(err, uerr)
		}
		c.log.Info("pod template hash collision", "deployment", d.Namespace+"/"+d.Name, "replicaset", rs.Name, "collisionCount", n)
		return err
	case apierrors.HasStatusCause(err, corev1.NamespaceTerminatingCause):
		return err
	default:
		msg := fmt.Sprintf("Failed to create new replica set %q: %v", rs.Name, err)
		if HasProgressDeadline(d) {
			st := d.DeepCopy()
			setCondition(&st.Status, newCondition(appsv1.DeploymentProgressing, corev1.ConditionFalse, ReasonRSCreateError, msg, c.now()))
			_, _ = c.writer.UpdateStatus(ctx, st)
		}
		c.writer.Warn(d, ReasonRSCreateError, msg)
		return err
	}
}

// claim returns the sets the Deployment controls after adopting matching
// orphans and releasing its sets that stopped matching.
func (c *Controller) claim(ctx context.Context, d *appsv1.Deployment, sel labels.Selector) ([]*appsv1.ReplicaSet, error) {
	all, err := c.sets.ReplicaSets(d.Namespace).List(labels.Everything())
	if err != nil {
		return nil, err
	}
	deleting := d.DeletionTimestamp != nil
	var owned, adopt []*appsv1.ReplicaSet
	var errs []error
	for _, rs := range all {
		matches := sel.Matches(labels.Set(rs.Labels))
		ref := metav1.GetControllerOf(rs)
		switch {
		case ref != nil && ref.UID != d.UID:
		case ref != nil && matches:
			owned = append(owned, rs)
		case ref != nil:
			if !deleting {
				if err := c.writer.ReleaseReplicaSet(ctx, d, rs); err != nil {
					errs = append(errs, err)
				}
			}
		case matches && !deleting && rs.DeletionTimestamp == nil:
			adopt = append(adopt, rs)
		}
	}
	if len(adopt) > 0 {
		// Adopt only for a Deployment the API shows alive: the cache may
		// not show a deletion with orphaning yet.
		fresh, err := c.writer.GetDeployment(ctx, d.Namespace, d.Name)
		switch {
		case err != nil && !apierrors.IsNotFound(err):
			errs = append(errs, err)
		case err == nil && fresh.UID == d.UID && fresh.DeletionTimestamp == nil:
			for _, rs := range adopt {
				if err := c.writer.AdoptReplicaSet(ctx, d, rs); err != nil {
					errs = append(errs, err)
					continue
				}
				owned = append(owned, rs)
			}
		}
	}
	return owned, errors.Join(errs...)
}

// podsBySet returns the pods of the Deployment's sets by set UID.
func (c *Controller) podsBySet(d *appsv1.Deployment, sel labels.Selector, sets []*appsv1.ReplicaSet) (map[types.UID][]*corev1.Pod, error) {
	out := map[types.UID][]*corev1.Pod{}
	for _, rs := range sets {
		out[rs.UID] = nil
	}
	pods, err := c.pods.Pods(d.Namespace).List(sel)
	if err != nil {
		return nil, err
	}
	for _, p := range pods {
		if ref := metav1.GetControllerOf(p); ref != nil {
			if _, ok := out[ref.UID]; ok {
				out[ref.UID] = append(out[ref.UID], p)
			}
		}
	}
	return out, nil
}
