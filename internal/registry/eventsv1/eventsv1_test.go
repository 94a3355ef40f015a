package eventsv1

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func event() *eventsv1.Event {
	now := metav1.NewMicroTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	return &eventsv1.Event{ObjectMeta: metav1.ObjectMeta{Name: "web.1", Namespace: "default"},
		EventTime: now, ReportingController: "example.com/ctl", ReportingInstance: "ctl-1", Action: "Scale", Reason: "Scaled",
		Regarding: corev1.ObjectReference{Kind: "StatefulSet", Name: "web", Namespace: "default"}, Note: "scaled to 3", Type: corev1.EventTypeNormal,
		Series: &eventsv1.EventSeries{Count: 2, LastObservedTime: now}}
}

func TestValidate(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name string
		mod  func(*eventsv1.Event)
		want []string
	}{
		{"good", func(*eventsv1.Event) {}, nil},
		{"Warning", func(e *eventsv1.Event) { e.Type = corev1.EventTypeWarning }, nil},
		{"no eventTime", func(e *eventsv1.Event) { e.EventTime = metav1.MicroTime{} }, []string{"eventTime: Required value"}},
		{"no reportingController", func(e *eventsv1.Event) { e.ReportingController = "" }, []string{"reportingController: Required value"}},
		{"unknown type", func(e *eventsv1.Event) { e.Type = "Info" }, []string{"type: Unsupported value"}},
		{"everything missing", func(e *eventsv1.Event) { *e = eventsv1.Event{} },
			[]string{"eventTime: Required value", "reportingController: Required value", "type: Unsupported value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := event()
			tc.mod(e)
			registrytest.Errors(t, r.Validate(e), tc.want...)
		})
	}
}

// The two Event types share storage: what one writes the other reads back.
func TestConversion(t *testing.T) {
	e := event()
	e.DeprecatedCount = 4
	back := FromCore(ToCore(e))
	if !apiequality.Semantic.DeepEqual(e, back) {
		t.Fatalf("events.k8s.io/v1 → core/v1 → events.k8s.io/v1 changed the event:\n%+v\n%+v", e, back)
	}
	c := ToCore(e)
	if c.InvolvedObject.Name != "web" || c.Message != "scaled to 3" || c.Series.Count != 2 || c.ReportingController != "example.com/ctl" {
		t.Errorf("core event %+v", c)
	}
	// A core event written by an old client names its reporter in source.
	old := &corev1.Event{ObjectMeta: metav1.ObjectMeta{Name: "x"}, Source: corev1.EventSource{Component: "kubelet", Host: "node-1"}, Type: corev1.EventTypeWarning}
	v1 := FromCore(old)
	if v1.ReportingController != "kubelet" || v1.ReportingInstance != "node-1" || v1.DeprecatedSource.Component != "kubelet" || v1.Series != nil {
		t.Errorf("from an old core event: %+v", v1)
	}
	if r := Resource(); r.SharedStorage == nil || r.SharedStorage.Plural != "events" || r.SharedStorage.Group != "" {
		t.Errorf("events.k8s.io/v1 events not stored as core events: %+v", r.SharedStorage)
	}
}
