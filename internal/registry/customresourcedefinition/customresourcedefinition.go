// Package customresourcedefinition is the registry entry of
// apiextensions.k8s.io/v1 CustomResourceDefinitions. Defaults and validation
// are k8s.io/apiextensions-apiserver's own (the v1 defaulters and
// apis/apiextensions/validation, run on the internal form of the object).
// Serving the resources a definition describes is the API server's job.
package customresourcedefinition

import (
	"context"
	"slices"

	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/install"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// CleanupFinalizer holds a deleted definition until its custom resources
// are gone.
const CleanupFinalizer = apiextensionsv1.CustomResourceCleanupFinalizer

// internalScheme converts v1 objects to the internal form the validation
// package takes.
var internalScheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	install.Install(s)
	return s
}()

// Resource returns the customresourcedefinitions registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: apiextensionsv1.SchemeGroupVersion,
		Kind:         "CustomResourceDefinition", ListKind: "CustomResourceDefinitionList",
		Plural: "customresourcedefinitions", Singular: "customresourcedefinition",
		ShortNames: []string{"crd", "crds"},
		Categories: []string{"api-extensions"},
		New:        func() runtime.Object { return &apiextensionsv1.CustomResourceDefinition{} },
		NewList:    func() runtime.Object { return &apiextensionsv1.CustomResourceDefinitionList{} },
		HasStatus:  true,
		Generation: true,
		Default: func(obj runtime.Object) {
			apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(obj.(*apiextensionsv1.CustomResourceDefinition))
		},
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			crd := obj.(*apiextensionsv1.CustomResourceDefinition)
			crd.Status = apiextensionsv1.CustomResourceDefinitionStatus{}
			recordStorageVersion(crd)
		},
		PrepareForUpdate: func(_ context.Context, obj, _ runtime.Object) {
			recordStorageVersion(obj.(*apiextensionsv1.CustomResourceDefinition))
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return Validate(obj.(*apiextensionsv1.CustomResourceDefinition))
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return ValidateUpdate(obj.(*apiextensionsv1.CustomResourceDefinition), old.(*apiextensionsv1.CustomResourceDefinition))
		},
		ValidateStatusUpdate: func(obj, old runtime.Object) field.ErrorList {
			n, o, errs := toInternal(obj.(*apiextensionsv1.CustomResourceDefinition), old.(*apiextensionsv1.CustomResourceDefinition))
			if errs != nil {
				return errs
			}
			return validation.ValidateUpdateCustomResourceDefinitionStatus(context.Background(), n, o)
		},
		// A definition is never removed at once: the first delete marks it
		// Terminating and adds the cleanup finalizer; the API server removes
		// its custom resources, then the finalizer.
		Finalizing: func(obj runtime.Object) bool {
			return obj.(*apiextensionsv1.CustomResourceDefinition).DeletionTimestamp == nil
		},
		PrepareForDelete: func(obj runtime.Object) {
			crd := obj.(*apiextensionsv1.CustomResourceDefinition)
			if !slices.Contains(crd.Finalizers, CleanupFinalizer) {
				crd.Finalizers = append(crd.Finalizers, CleanupFinalizer)
			}
			apihelpers.SetCRDCondition(crd, apiextensionsv1.CustomResourceDefinitionCondition{
				Type: apiextensionsv1.Terminating, Status: apiextensionsv1.ConditionTrue,
				Reason:  "InstanceDeletionPending",
				Message: "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
			})
		},
	}
}

// recordStorageVersion adds the storage version to status.storedVersions,
// which lists every version objects may be stored in.
func recordStorageVersion(crd *apiextensionsv1.CustomResourceDefinition) {
	for _, v := range crd.Spec.Versions {
		if v.Storage {
			if !slices.Contains(crd.Status.StoredVersions, v.Name) {
				crd.Status.StoredVersions = append(crd.Status.StoredVersions, v.Name)
			}
			return
		}
	}
}

// Validate checks a new definition as kube-apiserver does, and refuses
// webhook conversion, which this server does not perform.
func Validate(crd *apiextensionsv1.CustomResourceDefinition) field.ErrorList {
	in, _, errs := toInternal(crd, nil)
	if errs != nil {
		return errs
	}
	return append(validation.ValidateCustomResourceDefinition(context.Background(), in), conversionSupported(crd)...)
}

// ValidateUpdate checks an update of a definition.
func ValidateUpdate(crd, old *apiextensionsv1.CustomResourceDefinition) field.ErrorList {
	n, o, errs := toInternal(crd, old)
	if errs != nil {
		return errs
	}
	return append(validation.ValidateCustomResourceDefinitionUpdate(context.Background(), n, o), conversionSupported(crd)...)
}

func conversionSupported(crd *apiextensionsv1.CustomResourceDefinition) field.ErrorList {
	c := crd.Spec.Conversion
	if c == nil || c.Strategy == apiextensionsv1.NoneConverter || c.Strategy == "" {
		return nil
	}
	return field.ErrorList{field.NotSupported(field.NewPath("spec", "conversion", "strategy"), c.Strategy,
		[]string{string(apiextensionsv1.NoneConverter)})}
}

// toInternal converts obj (and old, when set) to the internal form.
func toInternal(obj, old *apiextensionsv1.CustomResourceDefinition) (*apiextensions.CustomResourceDefinition, *apiextensions.CustomResourceDefinition, field.ErrorList) {
	n, err := ToInternal(obj)
	if err != nil {
		return nil, nil, field.ErrorList{field.InternalError(field.NewPath(""), err)}
	}
	if old == nil {
		return n, nil, nil
	}
	o, err := ToInternal(old)
	if err != nil {
		return nil, nil, field.ErrorList{field.InternalError(field.NewPath(""), err)}
	}
	return n, o, nil
}

// ToInternal converts a v1 definition to the internal form the
// apiextensions-apiserver libraries take.
func ToInternal(crd *apiextensionsv1.CustomResourceDefinition) (*apiextensions.CustomResourceDefinition, error) {
	out := &apiextensions.CustomResourceDefinition{}
	if err := internalScheme.Convert(crd.DeepCopy(), out, nil); err != nil {
		return nil, err
	}
	return out, nil
}
