// Package event is the registry entry of core/v1 Events.
package event

import (
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Resource returns the core/v1 events registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Kind:         "Event", ListKind: "EventList",
		Plural: "events", Singular: "event",
		ShortNames: []string{"ev"},
		Namespaced: true,
		New:        func() runtime.Object { return &corev1.Event{} },
		NewList:    func() runtime.Object { return &corev1.EventList{} },

		// As in kube-apiserver's strategy for the kind, a PUT without a
		// resourceVersion overwrites the current object.
		AllowUnconditionalUpdate: true,

		Validate: func(obj runtime.Object) field.ErrorList {
			e := obj.(*corev1.Event)
			var errs field.ErrorList
			if e.InvolvedObject.Namespace != "" && e.InvolvedObject.Namespace != e.Namespace {
				errs = append(errs, field.Invalid(field.NewPath("involvedObject", "namespace"), e.InvolvedObject.Namespace, "does not match event.namespace"))
			}
			return errs
		},
		Columns: []metav1.TableColumnDefinition{
			registry.Column("Last Seen", "string", 0, corev1.Event{}.SwaggerDoc()["lastTimestamp"]),
			registry.Column("Type", "string", 0, corev1.Event{}.SwaggerDoc()["type"]),
			registry.Column("Reason", "string", 0, corev1.Event{}.SwaggerDoc()["reason"]),
			registry.Column("Object", "string", 0, corev1.Event{}.SwaggerDoc()["involvedObject"]),
			registry.Column("Message", "string", 0, corev1.Event{}.SwaggerDoc()["message"]),
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			e := obj.(*corev1.Event)
			last := e.LastTimestamp
			if last.IsZero() {
				last = metav1.Time{Time: e.EventTime.Time}
			}
			if last.IsZero() {
				last = e.CreationTimestamp
			}
			return []interface{}{registry.Age(last), e.Type, e.Reason, strings.ToLower(e.InvolvedObject.Kind) + "/" + e.InvolvedObject.Name, e.Message}, nil
		},
		Fields: func(obj runtime.Object) fields.Set {
			e := obj.(*corev1.Event)
			return fields.Set{
				"involvedObject.kind":            e.InvolvedObject.Kind,
				"involvedObject.namespace":       e.InvolvedObject.Namespace,
				"involvedObject.name":            e.InvolvedObject.Name,
				"involvedObject.uid":             string(e.InvolvedObject.UID),
				"involvedObject.apiVersion":      e.InvolvedObject.APIVersion,
				"involvedObject.resourceVersion": e.InvolvedObject.ResourceVersion,
				"involvedObject.fieldPath":       e.InvolvedObject.FieldPath,
				"reason":                         e.Reason,
				"reportingComponent":             e.ReportingController,
				"source":                         e.Source.Component,
				"type":                           e.Type,
				"count":                          strconv.Itoa(int(e.Count)),
			}
		},
	}
}
