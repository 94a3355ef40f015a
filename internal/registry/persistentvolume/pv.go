// Package persistentvolume is the registry entry of core/v1 PersistentVolumes.
package persistentvolume

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/persistentvolumeclaim"
)

// Resource returns the persistentvolumes registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Kind:         "PersistentVolume", ListKind: "PersistentVolumeList",
		Plural: "persistentvolumes", Singular: "persistentvolume",
		ShortNames: []string{"pv"},
		New:        func() runtime.Object { return &corev1.PersistentVolume{} },
		NewList:    func() runtime.Object { return &corev1.PersistentVolumeList{} },

		// As in kube-apiserver's strategy for the kind, a PUT without a
		// resourceVersion overwrites the current object.
		AllowUnconditionalUpdate: true,

		HasStatus: true,
		Default: func(obj runtime.Object) {
			pv := obj.(*corev1.PersistentVolume)
			if pv.Spec.PersistentVolumeReclaimPolicy == "" {
				pv.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimRetain
			}
			if pv.Spec.VolumeMode == nil {
				m := corev1.PersistentVolumeFilesystem
				pv.Spec.VolumeMode = &m
			}
		},
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			obj.(*corev1.PersistentVolume).Status = corev1.PersistentVolumeStatus{Phase: corev1.VolumePending}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			pv := obj.(*corev1.PersistentVolume)
			var errs field.ErrorList
			if len(pv.Spec.AccessModes) == 0 {
				errs = append(errs, field.Required(field.NewPath("spec", "accessModes"), ""))
			}
			if _, ok := pv.Spec.Capacity[corev1.ResourceStorage]; !ok {
				errs = append(errs, field.Required(field.NewPath("spec", "capacity").Key("storage"), ""))
			}
			if pv.Spec.HostPath == nil && pv.Spec.Local == nil && pv.Spec.CSI == nil && pv.Spec.NFS == nil {
				errs = append(errs, field.Required(field.NewPath("spec"), "must specify a volume type"))
			}
			return errs
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Capacity", "string", 0, corev1.PersistentVolumeSpec{}.SwaggerDoc()["capacity"]),
			registry.Column("Access Modes", "string", 0, corev1.PersistentVolumeSpec{}.SwaggerDoc()["accessModes"]),
			registry.Column("Reclaim Policy", "string", 0, corev1.PersistentVolumeSpec{}.SwaggerDoc()["persistentVolumeReclaimPolicy"]),
			registry.Column("Status", "string", 0, corev1.PersistentVolumeStatus{}.SwaggerDoc()["phase"]),
			registry.Column("Claim", "string", 0, corev1.PersistentVolumeSpec{}.SwaggerDoc()["claimRef"]),
			registry.Column("StorageClass", "string", 0, "StorageClass of the pv"),
			registry.Column("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pv"),
			registry.Column("Reason", "string", 0, corev1.PersistentVolumeStatus{}.SwaggerDoc()["reason"]),
			registry.AgeColumn,
			registry.Column("VolumeMode", "string", 1, corev1.PersistentVolumeSpec{}.SwaggerDoc()["volumeMode"]),
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			pv := obj.(*corev1.PersistentVolume)
			claim := ""
			if pv.Spec.ClaimRef != nil {
				claim = pv.Spec.ClaimRef.Namespace + "/" + pv.Spec.ClaimRef.Name
			}
			capacity := ""
			if q, ok := pv.Spec.Capacity[corev1.ResourceStorage]; ok {
				capacity = q.String()
			}
			phase := string(pv.Status.Phase)
			if pv.DeletionTimestamp != nil {
				phase = "Terminating"
			}
			vac := "<unset>"
			if pv.Spec.VolumeAttributesClassName != nil {
				vac = *pv.Spec.VolumeAttributesClassName
			}
			mode := "<unset>"
			if pv.Spec.VolumeMode != nil {
				mode = string(*pv.Spec.VolumeMode)
			}
			return []interface{}{pv.Name, capacity, persistentvolumeclaim.AccessModes(pv.Spec.AccessModes), string(pv.Spec.PersistentVolumeReclaimPolicy),
				phase, claim, pv.Spec.StorageClassName, vac, pv.Status.Reason, registry.Age(pv.CreationTimestamp), mode}, nil
		},
	}
}
