// Package persistentvolumeclaim is the registry entry of core/v1 PersistentVolumeClaims.
package persistentvolumeclaim

import (
	"context"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Default sets what kube-apiserver defaults on a claim (also on the claim
// templates of StatefulSets): the spec's, and phase Pending.
func Default(c *corev1.PersistentVolumeClaim) {
	DefaultSpec(&c.Spec)
	if c.Status.Phase == "" {
		c.Status.Phase = corev1.ClaimPending
	}
	registry.RoundResources(c.Status.Capacity)
	registry.RoundResources(c.Status.AllocatedResources)
}

// DefaultSpec sets the defaults of a claim spec (also of a pod's ephemeral
// volume claim template): volumeMode Filesystem, resources rounded.
func DefaultSpec(s *corev1.PersistentVolumeClaimSpec) {
	if s.VolumeMode == nil {
		m := corev1.PersistentVolumeFilesystem
		s.VolumeMode = &m
	}
	registry.RoundResources(s.Resources.Limits)
	registry.RoundResources(s.Resources.Requests)
}

// Resource returns the persistentvolumeclaims registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Kind:         "PersistentVolumeClaim", ListKind: "PersistentVolumeClaimList",
		Plural: "persistentvolumeclaims", Singular: "persistentvolumeclaim",
		ShortNames: []string{"pvc"},
		Namespaced: true,
		New:        func() runtime.Object { return &corev1.PersistentVolumeClaim{} },
		NewList:    func() runtime.Object { return &corev1.PersistentVolumeClaimList{} },

		// As in kube-apiserver's strategy for the kind, a PUT without a
		// resourceVersion overwrites the current object.
		AllowUnconditionalUpdate: true,

		HasStatus: true,
		Default:   func(obj runtime.Object) { Default(obj.(*corev1.PersistentVolumeClaim)) },
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			obj.(*corev1.PersistentVolumeClaim).Status = corev1.PersistentVolumeClaimStatus{Phase: corev1.ClaimPending}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return Validate(obj.(*corev1.PersistentVolumeClaim)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			n, o := obj.(*corev1.PersistentVolumeClaim), old.(*corev1.PersistentVolumeClaim)
			errs := Validate(n)
			ns, os := n.Spec.DeepCopy(), o.Spec.DeepCopy()
			ns.Resources, os.Resources = corev1.VolumeResourceRequirements{}, corev1.VolumeResourceRequirements{}
			if os.VolumeName == "" {
				ns.VolumeName = ""
			}
			if os.StorageClassName == nil {
				ns.StorageClassName = nil
			}
			if !apiequality.Semantic.DeepEqual(ns, os) {
				errs = append(errs, field.Forbidden(field.NewPath("spec"), "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"))
			}
			return errs
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Status", "string", 0, corev1.PersistentVolumeClaimStatus{}.SwaggerDoc()["phase"]),
			registry.Column("Volume", "string", 0, corev1.PersistentVolumeClaimSpec{}.SwaggerDoc()["volumeName"]),
			registry.Column("Capacity", "string", 0, corev1.PersistentVolumeClaimStatus{}.SwaggerDoc()["capacity"]),
			registry.Column("Access Modes", "string", 0, corev1.PersistentVolumeClaimStatus{}.SwaggerDoc()["accessModes"]),
			registry.Column("StorageClass", "string", 0, "StorageClass of the pvc"),
			registry.Column("VolumeAttributesClass", "string", 0, "VolumeAttributesClass of the pvc"),
			registry.AgeColumn,
			registry.Column("VolumeMode", "string", 1, corev1.PersistentVolumeClaimSpec{}.SwaggerDoc()["volumeMode"]),
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			c := obj.(*corev1.PersistentVolumeClaim)
			phase := string(c.Status.Phase)
			if c.DeletionTimestamp != nil {
				phase = "Terminating"
			}
			capacity, modes := "", ""
			if c.Spec.VolumeName != "" {
				if q, ok := c.Status.Capacity[corev1.ResourceStorage]; ok {
					capacity = q.String()
				}
				modes = AccessModes(c.Status.AccessModes)
			}
			class := ""
			if c.Spec.StorageClassName != nil {
				class = *c.Spec.StorageClassName
			}
			vac := "<unset>"
			if c.Spec.VolumeAttributesClassName != nil {
				vac = *c.Spec.VolumeAttributesClassName
			}
			mode := "<unset>"
			if c.Spec.VolumeMode != nil {
				mode = string(*c.Spec.VolumeMode)
			}
			return []interface{}{c.Name, phase, c.Spec.VolumeName, capacity, modes, class, vac, registry.Age(c.CreationTimestamp), mode}, nil
		},
	}
}

// AccessModes renders access modes as kubectl does (RWO, ROX, RWX, RWOP).
func AccessModes(modes []corev1.PersistentVolumeAccessMode) string {
	var out []string
	for _, m := range modes {
		switch m {
		case corev1.ReadWriteOnce:
			out = append(out, "RWO")
		case corev1.ReadOnlyMany:
			out = append(out, "ROX")
		case corev1.ReadWriteMany:
			out = append(out, "RWX")
		case corev1.ReadWriteOncePod:
			out = append(out, "RWOP")
		}
	}
	return strings.Join(out, ",")
}

// Validate checks a claim.
func Validate(c *corev1.PersistentVolumeClaim) field.ErrorList {
	var errs field.ErrorList
	spec := field.NewPath("spec")
	if len(c.Spec.AccessModes) == 0 {
		errs = append(errs, field.Required(spec.Child("accessModes"), "at least 1 access mode is required"))
	}
	for i, m := range c.Spec.AccessModes {
		switch m {
		case corev1.ReadWriteOnce, corev1.ReadOnlyMany, corev1.ReadWriteMany, corev1.ReadWriteOncePod:
		default:
			errs = append(errs, field.NotSupported(spec.Child("accessModes").Index(i), m, []string{"ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"}))
		}
	}
	q, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]
	if !ok {
		errs = append(errs, field.Required(spec.Child("resources").Key("storage"), ""))
	} else if q.Sign() <= 0 {
		errs = append(errs, field.Invalid(spec.Child("resources", "requests").Key("storage"), q.String(), "must be greater than zero"))
	}
	return errs
}
