package disruption

import (
	"context"
	"log/slog"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	appslisters "k8s.io/client-go/listers/apps/v1"
	corelisters "k8s.io/client-go/listers/core/v1"
	policylisters "k8s.io/client-go/listers/policy/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/headway/headway/internal/controller/workloop"
)

// Controller keeps PodDisruptionBudget statuses.
type Controller struct {
	writer      Writer
	pdbs        policylisters.PodDisruptionBudgetLister
	pods        corelisters.PodLister
	sets        appslisters.ReplicaSetLister
	deployments appslisters.DeploymentLister
	statefuls   appslisters.StatefulSetLister
	rcs         corelisters.ReplicationControllerLister
	synced      []cache.InformerSynced
	queue       *workloop.Loop[string]
	log         *slog.Logger

	// Workers is the number of budgets synced at once.
	Workers int
	now     func() time.Time
}

// New builds the controller on a shared informer factory.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, recorder record.EventRecorder, log *slog.Logger) *Controller {
	return NewWithWriter(&ClientWriter{Client: client, Recorder: recorder}, factory, log)
}

// NewWithWriter builds the controller with another seam (tests).
func NewWithWriter(w Writer, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	pdbInf := factory.Policy().V1().PodDisruptionBudgets()
	podInf := factory.Core().V1().Pods()
	rsInf := factory.Apps().V1().ReplicaSets()
	dInf := factory.Apps().V1().Deployments()
	ssInf := factory.Apps().V1().StatefulSets()
	rcInf := factory.Core().V1().ReplicationControllers()
	c := &Controller{
		writer:      w,
		pdbs:        pdbInf.Lister(),
		pods:        podInf.Lister(),
		sets:        rsInf.Lister(),
		deployments: dInf.Lister(),
		statefuls:   ssInf.Lister(),
		rcs:         rcInf.Lister(),
		synced: []cache.InformerSynced{pdbInf.Informer().HasSynced, podInf.Informer().HasSynced, rsInf.Informer().HasSynced,
			dInf.Informer().HasSynced, ssInf.Informer().HasSynced, rcInf.Informer().HasSynced},
		log:     log.With("controller", "disruption"),
		Workers: 2,
		now:     time.Now,
	}
	c.queue = workloop.NewAfter("disruption", c.log, c.Sync)
	pdbInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.enqueue,
		UpdateFunc: func(_, obj any) { c.enqueue(obj) },
		DeleteFunc: c.enqueue,
	})
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: c.podChanged,
		UpdateFunc: func(old, cur any) {
			c.podChanged(old)
			c.podChanged(cur)
		},
		DeleteFunc: c.podChanged,
	})
	// A scale change moves expectedPods before any pod changes.
	scaled := cache.ResourceEventHandlerFuncs{
		AddFunc:    c.namespaceChanged,
		UpdateFunc: func(_, cur any) { c.namespaceChanged(cur) },
		DeleteFunc: c.namespaceChanged,
	}
	for _, inf := range []cache.SharedIndexInformer{rsInf.Informer(), dInf.Informer(), ssInf.Informer(), rcInf.Informer()} {
		inf.AddEventHandler(scaled)
	}
	return c
}

func (c *Controller) enqueue(obj any) {
	if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
		c.queue.Add(key)
	}
}

func metaOf(obj any) metav1.Object {
	if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = d.Obj
	}
	m, err := apimeta.Accessor(obj)
	if err != nil {
		return nil
	}
	return m
}

// podChanged queues the budgets whose selector matches the pod.
func (c *Controller) podChanged(obj any) {
	m := metaOf(obj)
	if m == nil {
		return
	}
	pdbs, err := c.pdbs.PodDisruptionBudgets(m.GetNamespace()).List(labels.Everything())
	if err != nil {
		return
	}
	for _, pdb := range pdbs {
		if sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err == nil && sel.Matches(labels.Set(m.GetLabels())) {
			c.queue.Add(pdb.Namespace + "/" + pdb.Name)
		}
	}
}

// namespaceChanged queues every budget of the object's namespace.
func (c *Controller) namespaceChanged(obj any) {
	m := metaOf(obj)
	if m == nil {
		return
	}
	pdbs, _ := c.pdbs.PodDisruptionBudgets(m.GetNamespace()).List(labels.Everything())
	for _, pdb := range pdbs {
		c.queue.Add(pdb.Namespace + "/" + pdb.Name)
	}
}

// Run syncs budgets until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.queue.Run(ctx, c.Workers, c.synced...)
}

// Sync computes one budget's (namespace/name) status and writes it when
// it changed.
func (c *Controller) Sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := c.pdbs.PodDisruptionBudgets(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	pdb := cached.DeepCopy()
	// policy/v1: an empty selector matches every pod of the namespace, a
	// missing one none.
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		return 0, nil // validation keeps these out
	}
	pods, err := c.pods.Pods(ns).List(sel)
	if err != nil {
		return 0, err
	}
	scales := map[string]Scale{}
	for _, p := range pods {
		if s, ok := c.scaleOf(p); ok {
			scales[p.Name] = s
		}
	}
	res := Status(Input{PDB: pdb, Pods: pods, Scales: scales, Now: c.now()})
	for _, name := range res.Expired {
		for _, p := range pods {
			if p.Name == name {
				c.writer.NotDeleted(pdb, p)
			}
		}
	}
	if cond := apimeta.FindStatusCondition(res.Status.Conditions, policyv1.DisruptionAllowedCondition); cond != nil && cond.Reason == ReasonSyncFailed {
		c.writer.SyncFailed(pdb, cond.Message)
	}
	if !apiequality.Semantic.DeepEqual(pdb.Status, res.Status) {
		pdb.Status = res.Status
		if err := c.writer.UpdateStatus(ctx, pdb); err != nil && !apierrors.IsNotFound(err) {
			return 0, err
		}
	}
	if res.Recheck > 0 {
		return res.Recheck + time.Second, nil
	}
	return 0, nil
}

// scaleOf finds the pod's controller (the Deployment above a ReplicaSet)
// in the caches, with the same UID as the references say.
func (c *Controller) scaleOf(p *corev1.Pod) (Scale, bool) {
	ref := metav1.GetControllerOf(p)
	if ref == nil {
		return Scale{}, false
	}
	replicas := func(n *int32) int32 {
		if n == nil {
			return 1
		}
		return *n
	}
	switch {
	case ref.Kind == "ReplicaSet" && ref.APIVersion == appsv1.SchemeGroupVersion.String():
		rs, err := c.sets.ReplicaSets(p.Namespace).Get(ref.Name)
		if err != nil || rs.UID != ref.UID {
			return Scale{}, false
		}
		if dref := metav1.GetControllerOf(rs); dref != nil && dref.Kind == "Deployment" && dref.APIVersion == appsv1.SchemeGroupVersion.String() {
			if d, err := c.deployments.Deployments(p.Namespace).Get(dref.Name); err == nil && d.UID == dref.UID {
				return Scale{UID: d.UID, Replicas: replicas(d.Spec.Replicas)}, true
			}
		}
		return Scale{UID: rs.UID, Replicas: replicas(rs.Spec.Replicas)}, true
	case ref.Kind == "StatefulSet" && ref.APIVersion == appsv1.SchemeGroupVersion.String():
		ss, err := c.statefuls.StatefulSets(p.Namespace).Get(ref.Name)
		if err != nil || ss.UID != ref.UID {
			return Scale{}, false
		}
		return Scale{UID: ss.UID, Replicas: replicas(ss.Spec.Replicas)}, true
	case ref.Kind == "ReplicationController" && ref.APIVersion == "v1":
		rc, err := c.rcs.ReplicationControllers(p.Namespace).Get(ref.Name)
		if err != nil || rc.UID != ref.UID {
			return Scale{}, false
		}
		return Scale{UID: rc.UID, Replicas: replicas(rc.Spec.Replicas)}, true
	}
	return Scale{}, false
}
