package localpath

import (
	"path/filepath"
	"sort"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Annotations the provisioner reads and writes, as kube's volume
// controllers do.
const (
	DefaultClassAnnotation  = "storageclass.kubernetes.io/is-default-class"
	SelectedNodeAnnotation  = "volume.kubernetes.io/selected-node"
	StorageProvisionerAnnot = "volume.kubernetes.io/storage-provisioner"
	BetaStorageProvisioner  = "volume.beta.kubernetes.io/storage-provisioner"
	ProvisionedByAnnotation = "pv.kubernetes.io/provisioned-by"
	BindCompletedAnnotation = "pv.kubernetes.io/bind-completed"
	BoundByControllerAnnot  = "pv.kubernetes.io/bound-by-controller"
	defaultCapacity         = "1Gi"
)

// DefaultClass is the default StorageClass: the newest of those annotated
// as default (kube's rule when there are several), or nil.
func DefaultClass(classes []*storagev1.StorageClass) *storagev1.StorageClass {
	var defaults []*storagev1.StorageClass
	for _, c := range classes {
		if c.Annotations[DefaultClassAnnotation] == "true" || c.Annotations["storageclass.beta.kubernetes.io/is-default-class"] == "true" {
			defaults = append(defaults, c)
		}
	}
	if len(defaults) == 0 {
		return nil
	}
	sort.Slice(defaults, func(i, j int) bool {
		a, b := defaults[i], defaults[j]
		if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
			return b.CreationTimestamp.Before(&a.CreationTimestamp)
		}
		return a.Name < b.Name
	})
	return defaults[0]
}

// VolumeName is the name of the volume provisioned for a claim.
func VolumeName(claim *corev1.PersistentVolumeClaim) string { return "pvc-" + string(claim.UID) }

// VolumePath is the directory backing the claim's volume.
func VolumePath(root string, claim *corev1.PersistentVolumeClaim) string {
	return filepath.Join(root, VolumeName(claim)+"_"+claim.Namespace+"_"+claim.Name)
}

// NewVolume is the PersistentVolume provisioned for a claim of the class,
// backed by dir and, when node is known, pinned to that node.
func NewVolume(claim *corev1.PersistentVolumeClaim, class *storagev1.StorageClass, provisioner, node, dir string) *corev1.PersistentVolume {
	capacity, ok := claim.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		capacity = resource.MustParse(defaultCapacity)
	}
	reclaim := corev1.PersistentVolumeReclaimDelete
	if class.ReclaimPolicy != nil {
		reclaim = *class.ReclaimPolicy
	}
	modes := claim.Spec.AccessModes
	if len(modes) == 0 {
		modes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{
			Name:        VolumeName(claim),
			Annotations: map[string]string{ProvisionedByAnnotation: provisioner},
		},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: capacity},
			AccessModes:                   modes,
			PersistentVolumeReclaimPolicy: reclaim,
			StorageClassName:              class.Name,
			VolumeMode:                    claim.Spec.VolumeMode,
			MountOptions:                  class.MountOptions,
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
				Namespace: claim.Namespace, Name: claim.Name, UID: claim.UID, ResourceVersion: claim.ResourceVersion},
		},
	}
	if node != "" {
		pv.Spec.PersistentVolumeSource = corev1.PersistentVolumeSource{Local: &corev1.LocalVolumeSource{Path: dir}}
		pv.Spec.NodeAffinity = &corev1.VolumeNodeAffinity{Required: &corev1.NodeSelector{NodeSelectorTerms: []corev1.NodeSelectorTerm{{
			MatchExpressions: []corev1.NodeSelectorRequirement{{Key: corev1.LabelHostname, Operator: corev1.NodeSelectorOpIn, Values: []string{node}}},
		}}}}
	} else {
		t := corev1.HostPathDirectoryOrCreate
		pv.Spec.PersistentVolumeSource = corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &t}}
	}
	return pv
}

// ConsumerNode is the node that decides where a WaitForFirstConsumer claim
// is provisioned: the selected-node annotation, else the node of a
// scheduled pod that mounts the claim; "" when there is none yet.
func ConsumerNode(claim *corev1.PersistentVolumeClaim, pods []*corev1.Pod) string {
	if n := claim.Annotations[SelectedNodeAnnotation]; n != "" {
		return n
	}
	for _, p := range pods {
		if p.Spec.NodeName == "" || p.DeletionTimestamp != nil {
			continue
		}
		for _, v := range p.Spec.Volumes {
			if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == claim.Name {
				return p.Spec.NodeName
			}
		}
	}
	return ""
}

// volumePath returns the directory of a volume this provisioner made.
func volumePath(pv *corev1.PersistentVolume) string {
	switch {
	case pv.Spec.Local != nil:
		return pv.Spec.Local.Path
	case pv.Spec.HostPath != nil:
		return pv.Spec.HostPath.Path
	}
	return ""
}
