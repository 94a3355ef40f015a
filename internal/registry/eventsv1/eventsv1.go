// Package eventsv1 is the registry entry of events.k8s.io/v1 Events: the
// same stored objects as core/v1 Events, seen through the newer type.
package eventsv1

import (
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Resource returns the events.k8s.io/v1 events registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: eventsv1.SchemeGroupVersion,
		Kind:         "Event", ListKind: "EventList",
		Plural: "events", Singular: "event",
		ShortNames: []string{"ev"},
		Namespaced: true,
		New:        func() runtime.Object { return &eventsv1.Event{} },
		NewList:    func() runtime.Object { return &eventsv1.EventList{} },

		// As in kube-apiserver's strategy for the kind, a PUT without a
		// resourceVersion overwrites the current object.
		AllowUnconditionalUpdate: true,

		SharedStorage: &registry.SharedStorage{
			Plural:     "events",
			StoredKind: corev1.SchemeGroupVersion.WithKind("Event"),
			NewStored:  func() runtime.Object { return &corev1.Event{} },
			ToStored:   func(obj runtime.Object) runtime.Object { return ToCore(obj.(*eventsv1.Event)) },
			FromStored: func(obj runtime.Object) runtime.Object { return FromCore(obj.(*corev1.Event)) },
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			e := obj.(*eventsv1.Event)
			var errs field.ErrorList
			if e.EventTime.IsZero() {
				errs = append(errs, field.Required(field.NewPath("eventTime"), ""))
			}
			if e.ReportingController == "" {
				errs = append(errs, field.Required(field.NewPath("reportingController"), ""))
			}
			if e.Type != corev1.EventTypeNormal && e.Type != corev1.EventTypeWarning {
				errs = append(errs, field.NotSupported(field.NewPath("type"), e.Type, []string{corev1.EventTypeNormal, corev1.EventTypeWarning}))
			}
			return errs
		},
		Columns: []metav1.TableColumnDefinition{
			registry.Column("Last Seen", "string", 0, ""),
			registry.Column("Type", "string", 0, eventsv1.Event{}.SwaggerDoc()["type"]),
			registry.Column("Reason", "string", 0, eventsv1.Event{}.SwaggerDoc()["reason"]),
			registry.Column("Object", "string", 0, eventsv1.Event{}.SwaggerDoc()["regarding"]),
			registry.Column("Message", "string", 0, eventsv1.Event{}.SwaggerDoc()["note"]),
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			e := obj.(*eventsv1.Event)
			t := e.DeprecatedLastTimestamp
			if t.IsZero() {
				t = metav1.Time{Time: e.EventTime.Time}
			}
			return []interface{}{registry.Age(t), e.Type, e.Reason, e.Regarding.Kind + "/" + e.Regarding.Name, e.Note}, nil
		},
		Fields: func(obj runtime.Object) fields.Set {
			e := obj.(*eventsv1.Event)
			return fields.Set{
				"regarding.kind": e.Regarding.Kind, "regarding.name": e.Regarding.Name, "regarding.namespace": e.Regarding.Namespace,
				"regarding.uid": string(e.Regarding.UID), "reason": e.Reason, "type": e.Type, "reportingController": e.ReportingController,
			}
		},
	}
}

// FromCore converts a core/v1 Event to events.k8s.io/v1.
func FromCore(c *corev1.Event) *eventsv1.Event {
	e := &eventsv1.Event{
		ObjectMeta:               c.ObjectMeta,
		EventTime:                c.EventTime,
		Action:                   c.Action,
		Reason:                   c.Reason,
		Regarding:                c.InvolvedObject,
		Related:                  c.Related,
		Note:                     c.Message,
		Type:                     c.Type,
		ReportingController:      c.ReportingController,
		ReportingInstance:        c.ReportingInstance,
		DeprecatedSource:         c.Source,
		DeprecatedFirstTimestamp: c.FirstTimestamp,
		DeprecatedLastTimestamp:  c.LastTimestamp,
		DeprecatedCount:          c.Count,
	}
	if e.ReportingController == "" {
		e.ReportingController = c.Source.Component
	}
	if e.ReportingInstance == "" {
		e.ReportingInstance = c.Source.Host
	}
	if c.Series != nil {
		e.Series = &eventsv1.EventSeries{Count: c.Series.Count, LastObservedTime: c.Series.LastObservedTime}
	}
	return e
}

// ToCore converts an events.k8s.io/v1 Event to core/v1.
func ToCore(e *eventsv1.Event) *corev1.Event {
	c := &corev1.Event{
		ObjectMeta:          e.ObjectMeta,
		InvolvedObject:      e.Regarding,
		Reason:              e.Reason,
		Message:             e.Note,
		Source:              e.DeprecatedSource,
		FirstTimestamp:      e.DeprecatedFirstTimestamp,
		LastTimestamp:       e.DeprecatedLastTimestamp,
		Count:               e.DeprecatedCount,
		Type:                e.Type,
		EventTime:           e.EventTime,
		Related:             e.Related,
		Action:              e.Action,
		ReportingController: e.ReportingController,
		ReportingInstance:   e.ReportingInstance,
	}
	if e.Series != nil {
		c.Series = &corev1.EventSeries{Count: e.Series.Count, LastObservedTime: e.Series.LastObservedTime}
	}
	return c
}
