// Package localpath is the local-path provisioner: it gives claims of a
// class whose provisioner it serves a PersistentVolume backed by a
// directory under its root (the data dir's volumes/), binds the two, and
// removes the directory when a Delete-policy volume is released. It also
// assigns the default StorageClass to claims that name none, as kube's
// volume controller does.
//
// controller.go is the queue loop and the writes; decide.go the decisions.
package localpath

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	storagelisters "k8s.io/client-go/listers/storage/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/headway/headway/internal/controller/workloop"
)

// Controller provisions, binds and reclaims local-path volumes.
type Controller struct {
	client      kubernetes.Interface
	provisioner string
	root        string
	claims      corelisters.PersistentVolumeClaimLister
	volumes     corelisters.PersistentVolumeLister
	classes     storagelisters.StorageClassLister
	pods        corelisters.PodLister
	synced      []cache.InformerSynced
	queue       *workloop.Loop[string]
	recorder    record.EventRecorder
	log         *slog.Logger
}

// New builds the provisioner for classes naming provisioner; volumes are
// directories under root.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, recorder record.EventRecorder, log *slog.Logger, provisioner, root string) *Controller {
	claimInf := factory.Core().V1().PersistentVolumeClaims()
	pvInf := factory.Core().V1().PersistentVolumes()
	classInf := factory.Storage().V1().StorageClasses()
	podInf := factory.Core().V1().Pods()
	c := &Controller{
		client: client, provisioner: provisioner, root: root,
		claims: claimInf.Lister(), volumes: pvInf.Lister(), classes: classInf.Lister(), pods: podInf.Lister(),
		synced: []cache.InformerSynced{claimInf.Informer().HasSynced, pvInf.Informer().HasSynced,
			classInf.Informer().HasSynced, podInf.Informer().HasSynced},
		recorder: recorder,
		log:      log.With("controller", "local-path-provisioner"),
	}
	c.queue = workloop.New("local-path", c.log, c.sync)
	claimKey := func(obj any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add("claim:" + k)
		}
		// A deleted claim releases its volume.
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if cl, ok := obj.(*corev1.PersistentVolumeClaim); ok && cl.Spec.VolumeName != "" {
			c.queue.Add("volume:" + cl.Spec.VolumeName)
		}
	}
	claimInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: claimKey, UpdateFunc: func(_, obj any) { claimKey(obj) }, DeleteFunc: claimKey,
	})
	volKey := func(obj any) {
		if k, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			c.queue.Add("volume:" + k)
		}
	}
	pvInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: volKey, UpdateFunc: func(_, obj any) { volKey(obj) },
	})
	allClaims := func(any) {
		cls, _ := c.claims.List(labels.Everything())
		for _, cl := range cls {
			if cl.Spec.VolumeName == "" {
				c.queue.Add("claim:" + cl.Namespace + "/" + cl.Name)
			}
		}
	}
	classInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc: allClaims, UpdateFunc: func(_, obj any) { allClaims(obj) },
	})
	// A pod scheduled onto a node decides where its WaitForFirstConsumer
	// claims live.
	podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    c.podChanged,
		UpdateFunc: func(_, obj any) { c.podChanged(obj) },
	})
	return c
}

func (c *Controller) podChanged(obj any) {
	p, ok := obj.(*corev1.Pod)
	if !ok || p.Spec.NodeName == "" {
		return
	}
	for _, v := range p.Spec.Volumes {
		if v.PersistentVolumeClaim != nil {
			c.queue.Add("claim:" + p.Namespace + "/" + v.PersistentVolumeClaim.ClaimName)
		}
	}
}

// Run provisions until ctx ends.
func (c *Controller) Run(ctx context.Context) {
	c.queue.Run(ctx, 2, c.synced...)
}

// sync handles a key: "claim:namespace/name" or "volume:name".
func (c *Controller) sync(ctx context.Context, key string) error {
	if k, ok := strings.CutPrefix(key, "claim:"); ok {
		return c.syncClaim(ctx, k)
	}
	if k, ok := strings.CutPrefix(key, "volume:"); ok {
		return c.syncVolume(ctx, k)
	}
	return nil
}

func ignoreConflict(err error) error {
	if apierrors.IsConflict(err) || apierrors.IsNotFound(err) {
		return nil // the informer brings the newer object and a new sync
	}
	return err
}

func (c *Controller) syncClaim(ctx context.Context, key string) error {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	cached, err := c.claims.PersistentVolumeClaims(ns).Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || cached.DeletionTimestamp != nil {
		return err
	}
	claim := cached.DeepCopy()
	if claim.Spec.StorageClassName == nil && claim.Spec.VolumeName == "" {
		classes, _ := c.classes.List(labels.Everything())
		def := DefaultClass(classes)
		if def == nil {
			return nil
		}
		claim.Spec.StorageClassName = &def.Name
		_, err := c.client.CoreV1().PersistentVolumeClaims(ns).Update(ctx, claim, metav1.UpdateOptions{})
		return ignoreConflict(err)
	}
	if claim.Spec.StorageClassName == nil || *claim.Spec.StorageClassName == "" {
		return nil
	}
	class, err := c.classes.Get(*claim.Spec.StorageClassName)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || class.Provisioner != c.provisioner {
		return err
	}
	if claim.Spec.VolumeName != "" {
		return c.finishBinding(ctx, claim)
	}
	node := ""
	if class.VolumeBindingMode != nil && *class.VolumeBindingMode == storagev1.VolumeBindingWaitForFirstConsumer {
		pods, _ := c.pods.Pods(ns).List(labels.Everything())
		if node = ConsumerNode(claim, pods); node == "" {
			return nil // provisioned once a pod using it is scheduled
		}
	}
	return c.provision(ctx, claim, class, node)
}

func (c *Controller) provision(ctx context.Context, claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, node string) error {
	dir := VolumePath(c.root, claim)
	if err := os.MkdirAll(dir, 0o777); err != nil {
		c.recorder.Eventf(claim, corev1.EventTypeWarning, "ProvisioningFailed", "creating %s: %v", dir, err)
		return err
	}
	// The mode is not subject to the umask: pods may run as any user.
	if err := os.Chmod(dir, 0o777); err != nil {
		return err
	}
	pv := NewVolume(claim, class, c.provisioner, node, dir)
	created, err := c.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	switch {
	case apierrors.IsAlreadyExists(err):
		if created, err = c.client.CoreV1().PersistentVolumes().Get(ctx, pv.Name, metav1.GetOptions{}); err != nil {
			return err
		}
	case err != nil:
		c.recorder.Eventf(claim, corev1.EventTypeWarning, "ProvisioningFailed", "creating volume %s: %v", pv.Name, err)
		return err
	default:
		c.recorder.Eventf(claim, corev1.EventTypeNormal, "ProvisioningSucceeded", "Successfully provisioned volume %s", pv.Name)
		c.log.Info("volume provisioned", "claim", claim.Namespace+"/"+claim.Name, "volume", pv.Name, "path", dir, "node", node)
	}
	if err := c.markVolumeBound(ctx, created); err != nil {
		return err
	}
	claim.Spec.VolumeName = created.Name
	if claim.Annotations == nil {
		claim.Annotations = map[string]string{}
	}
	claim.Annotations[BindCompletedAnnotation] = "yes"
	claim.Annotations[BoundByControllerAnnot] = "yes"
	claim.Annotations[StorageProvisionerAnnot] = c.provisioner
	claim.Annotations[BetaStorageProvisioner] = c.provisioner
	updated, err := c.client.CoreV1().PersistentVolumeClaims(claim.Namespace).Update(ctx, claim, metav1.UpdateOptions{})
	if err != nil {
		return ignoreConflict(err)
	}
	return c.finishBinding(ctx, updated)
}

func (c *Controller) markVolumeBound(ctx context.Context, pv *corev1.PersistentVolume) error {
	if pv.Status.Phase == corev1.VolumeBound {
		return nil
	}
	pv = pv.DeepCopy()
	pv.Status.Phase = corev1.VolumeBound
	_, err := c.client.CoreV1().PersistentVolumes().UpdateStatus(ctx, pv, metav1.UpdateOptions{})
	return ignoreConflict(err)
}

// finishBinding sets the claim's status from its volume.
func (c *Controller) finishBinding(ctx context.Context, claim *corev1.PersistentVolumeClaim) error {
	if claim.Status.Phase == corev1.ClaimBound {
		return nil
	}
	pv, err := c.volumes.Get(claim.Spec.VolumeName)
	if apierrors.IsNotFound(err) {
		if pv, err = c.client.CoreV1().PersistentVolumes().Get(ctx, claim.Spec.VolumeName, metav1.GetOptions{}); err != nil {
			return ignoreConflict(err)
		}
	} else if err != nil {
		return err
	}
	if pv.Spec.ClaimRef == nil || pv.Spec.ClaimRef.UID != claim.UID {
		return nil // not ours to finish
	}
	claim = claim.DeepCopy()
	claim.Status.Phase = corev1.ClaimBound
	claim.Status.AccessModes = pv.Spec.AccessModes
	claim.Status.Capacity = pv.Spec.Capacity
	_, err = c.client.CoreV1().PersistentVolumeClaims(claim.Namespace).UpdateStatus(ctx, claim, metav1.UpdateOptions{})
	return ignoreConflict(err)
}

// syncVolume releases a volume whose claim is gone and, under the Delete
// policy, removes its directory and the volume.
func (c *Controller) syncVolume(ctx context.Context, name string) error {
	pv, err := c.volumes.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil || pv.Annotations[ProvisionedByAnnotation] != c.provisioner || pv.Spec.ClaimRef == nil || pv.DeletionTimestamp != nil {
		return err
	}
	ref := pv.Spec.ClaimRef
	claim, err := c.claims.PersistentVolumeClaims(ref.Namespace).Get(ref.Name)
	if err == nil && claim.UID == ref.UID {
		return c.markVolumeBound(ctx, pv)
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	// The informer may lag: ask the API server before reclaiming.
	live, err := c.client.CoreV1().PersistentVolumeClaims(ref.Namespace).Get(ctx, ref.Name, metav1.GetOptions{})
	if err == nil && live.UID == ref.UID {
		return nil
	}
	if err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	if pv.Status.Phase != corev1.VolumeReleased {
		up := pv.DeepCopy()
		up.Status.Phase = corev1.VolumeReleased
		if _, err := c.client.CoreV1().PersistentVolumes().UpdateStatus(ctx, up, metav1.UpdateOptions{}); err != nil {
			return ignoreConflict(err)
		}
	}
	if pv.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete {
		return nil
	}
	dir := volumePath(pv)
	if dir != "" {
		rel, err := filepath.Rel(c.root, dir)
		if err != nil || rel == "." || strings.HasPrefix(rel, "..") {
			return fmt.Errorf("volume %s: refusing to remove %s, outside %s", pv.Name, dir, c.root)
		}
		if err := os.RemoveAll(dir); err != nil {
			return err
		}
	}
	err = c.client.CoreV1().PersistentVolumes().Delete(ctx, pv.Name, metav1.DeleteOptions{})
	if err == nil {
		c.log.Info("volume reclaimed", "volume", pv.Name, "path", dir)
	}
	return ignoreConflict(err)
}
