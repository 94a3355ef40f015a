// Package controllerrevision is the registry entry of apps/v1 ControllerRevisions.
package controllerrevision

import (
	"strconv"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Resource returns the controllerrevisions registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: appsv1.SchemeGroupVersion,
		Kind:         "ControllerRevision", ListKind: "ControllerRevisionList",
		Plural: "controllerrevisions", Singular: "controllerrevision",
		Namespaced: true,
		New:        func() runtime.Object { return &appsv1.ControllerRevision{} },
		NewList:    func() runtime.Object { return &appsv1.ControllerRevisionList{} },

		// As in kube-apiserver's strategy for the kind, a PUT without a
		// resourceVersion overwrites the current object.
		AllowUnconditionalUpdate: true,

		Validate: func(obj runtime.Object) field.ErrorList {
			if r := obj.(*appsv1.ControllerRevision).Revision; r < 0 {
				return field.ErrorList{field.Invalid(field.NewPath("revision"), r, "must be greater than or equal to 0")}
			}
			return nil
		},
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			n, o := obj.(*appsv1.ControllerRevision), old.(*appsv1.ControllerRevision)
			if string(n.Data.Raw) != string(o.Data.Raw) {
				return field.ErrorList{field.Invalid(field.NewPath("data"), "", "field is immutable")}
			}
			return nil
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Controller", "string", 0, "Controller of the object"),
			registry.Column("Revision", "string", 0, appsv1.ControllerRevision{}.SwaggerDoc()["revision"]),
			registry.AgeColumn,
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			r := obj.(*appsv1.ControllerRevision)
			ctrl := "<none>"
			if ref := metav1.GetControllerOf(r); ref != nil {
				ctrl = strings.ToLower(ref.Kind) + "/" + ref.Name
				if g := group(ref.APIVersion); g != "" {
					ctrl = strings.ToLower(ref.Kind) + "." + g + "/" + ref.Name
				}
			}
			return []interface{}{r.Name, ctrl, strconv.FormatInt(r.Revision, 10), registry.Age(r.CreationTimestamp)}, nil
		},
	}
}

func group(apiVersion string) string {
	if i := strings.Index(apiVersion, "/"); i >= 0 {
		return apiVersion[:i]
	}
	return ""
}
