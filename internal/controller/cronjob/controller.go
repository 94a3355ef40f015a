package cronjob

import (
	"context"
	"errors"
	"log/slog"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	batchlisters "k8s.io/client-go/listers/batch/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/headway/headway/internal/controller/workloop"
)

// Controller runs CronJobs.
type Controller struct {
	writer   Writer
	cronjobs batchlisters.CronJobLister
	jobs     batchlisters.JobLister
	synced   []cache.InformerSynced
	queue    *workloop.Loop[string]
	log      *slog.Logger

	// Workers is the number of CronJobs synced at once.
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
	cjInf := factory.Batch().V1().CronJobs()
	jobInf := factory.Batch().V1().Jobs()
	c := &Controller{
		writer:   w,
		cronjobs: cjInf.Lister(),
		jobs:     jobInf.Lister(),
		synced:   []cache.InformerSynced{cjInf.Informer().HasSynced, jobInf.Informer().HasSynced},
		log:      log.With("controller", "cronjob"),
		Workers:  5,
		Now:      time.Now,
	}
	c.queue = workloop.NewAfter("cronjob", c.log, c.Sync)
	enqueue := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add(key)
		}
	}
	cjInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
	})
	jobEvent := func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		j, ok := obj.(*batchv1.Job)
		if !ok {
			return
		}
		if ref := metav1.GetControllerOf(j); ref != nil && ref.Kind == controllerKind.Kind && ref.APIVersion == controllerKind.GroupVersion().String() {
			c.queue.Add(j.Namespace + "/" + ref.Name)
		}
	}
	jobInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    jobEvent,
		UpdateFunc: func(_, obj any) { jobEvent(obj) },
		DeleteFunc: jobEvent,
	})
	return c
}

// Run syncs CronJobs until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.queue.Run(ctx, c.Workers, c.synced...)
}

// Sync runs what one CronJob (namespace/name) has due and returns when to
// look at it again.
func (c *Controller) Sync(ctx context.Context, key string) (time.Duration, error) {
	ns, name, err := cache.SplitMetaNamespaceKey(key)
	if err != nil {
		return 0, nil
	}
	cached, err := c.cronjobs.CronJobs(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	cj := cached.DeepCopy()
	all, err := c.jobs.Jobs(ns).List(labels.Everything())
	if err != nil {
		return 0, err
	}
	var jobs []*batchv1.Job
	for _, j := range all {
		if ref := metav1.GetControllerOf(j); ref != nil && ref.UID == cj.UID {
			jobs = append(jobs, j)
		}
	}
	now := c.Now()
	plan := Decide(Input{CronJob: cj, Jobs: jobs, Now: now})
	if plan.Err != nil {
		c.writer.Event(cj, corev1.EventTypeWarning, "InvalidSchedule", plan.Err.Error())
		return 0, nil
	}
	switch plan.Skipped {
	case "JobAlreadyActive":
		c.writer.Event(cj, corev1.EventTypeNormal, "JobAlreadyActive", "Not starting job because prior execution is running and concurrency policy is Forbid")
	case "MissSchedule":
		c.writer.Event(cj, corev1.EventTypeWarning, "MissSchedule", "Missed scheduled time to start a job")
	}
	var errs []error
	for _, j := range plan.Delete {
		if err := c.writer.DeleteJob(ctx, cj, j); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 && plan.Create != nil {
		// Replace: the old Jobs must go first.
		return 0, errors.Join(errs...)
	}
	if plan.Create != nil {
		created, err := c.writer.CreateJob(ctx, cj, plan.Create)
		switch {
		case apierrors.IsAlreadyExists(err):
			// Created by an earlier sync whose status write was lost.
		case err != nil:
			return 0, err
		default:
			plan.Status.Active = append(plan.Status.Active, ref(created))
		}
	}
	if !apiequality.Semantic.DeepEqual(cj.Status, plan.Status) {
		cj.Status = plan.Status
		if _, err := c.writer.UpdateStatus(ctx, cj); err != nil && !apierrors.IsNotFound(err) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return 0, errors.Join(errs...)
	}
	return plan.After, nil
}
