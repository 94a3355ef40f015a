// Package storageclass is the registry entry of storage.k8s.io/v1 StorageClasses.
package storageclass

import (
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// DefaultAnnotation marks the default class.
const DefaultAnnotation = "storageclass.kubernetes.io/is-default-class"

// Resource returns the storageclasses registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: storagev1.SchemeGroupVersion,
		Kind:         "StorageClass", ListKind: "StorageClassList",
		Plural: "storageclasses", Singular: "storageclass",
		ShortNames: []string{"sc"},
		New:        func() runtime.Object { return &storagev1.StorageClass{} },
		NewList:    func() runtime.Object { return &storagev1.StorageClassList{} },

		// As in kube-apiserver's strategy for the kind, a PUT without a
		// resourceVersion overwrites the current object.
		AllowUnconditionalUpdate: true,

		Default: func(obj runtime.Object) {
			sc := obj.(*storagev1.StorageClass)
			if sc.ReclaimPolicy == nil {
				p := corev1.PersistentVolumeReclaimDelete
				sc.ReclaimPolicy = &p
			}
			if sc.VolumeBindingMode == nil {
				m := storagev1.VolumeBindingImmediate
				sc.VolumeBindingMode = &m
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			if obj.(*storagev1.StorageClass).Provisioner == "" {
				return field.ErrorList{field.Required(field.NewPath("provisioner"), "")}
			}
			return nil
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			if obj.(*storagev1.StorageClass).Provisioner != old.(*storagev1.StorageClass).Provisioner {
				return field.ErrorList{field.Forbidden(field.NewPath("provisioner"), "updates to provisioner are forbidden.")}
			}
			return nil
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Provisioner", "string", 0, storagev1.StorageClass{}.SwaggerDoc()["provisioner"]),
			registry.Column("ReclaimPolicy", "string", 0, storagev1.StorageClass{}.SwaggerDoc()["reclaimPolicy"]),
			registry.Column("VolumeBindingMode", "string", 0, storagev1.StorageClass{}.SwaggerDoc()["volumeBindingMode"]),
			registry.Column("AllowVolumeExpansion", "string", 0, storagev1.StorageClass{}.SwaggerDoc()["allowVolumeExpansion"]),
			registry.AgeColumn,
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			sc := obj.(*storagev1.StorageClass)
			name := sc.Name
			if sc.Annotations[DefaultAnnotation] == "true" {
				name += " (default)"
			}
			policy, mode := "Delete", "Immediate"
			if sc.ReclaimPolicy != nil {
				policy = string(*sc.ReclaimPolicy)
			}
			if sc.VolumeBindingMode != nil {
				mode = string(*sc.VolumeBindingMode)
			}
			expand := sc.AllowVolumeExpansion != nil && *sc.AllowVolumeExpansion
			return []interface{}{name, sc.Provisioner, policy, mode, expand, registry.Age(sc.CreationTimestamp)}, nil
		},
	}
}
