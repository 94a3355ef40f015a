package registry

import (
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/duration"
)

// Age renders a creation time the way kubectl's AGE column does.
func Age(t metav1.Time) string {
	if t.IsZero() {
		return "<unknown>"
	}
	return duration.HumanDuration(metav1.Now().Sub(t.Time))
}

// NameColumn and AgeColumn are the first and usual last columns of a table.
var (
	NameColumn = metav1.TableColumnDefinition{Name: "Name", Type: "string", Format: "name",
		Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]}
	AgeColumn = metav1.TableColumnDefinition{Name: "Age", Type: "string",
		Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]}
)

// Column is a table column; priority 1 shows only with -o wide.
func Column(name, typ string, priority int32, description string) metav1.TableColumnDefinition {
	return metav1.TableColumnDefinition{Name: name, Type: typ, Priority: priority, Description: description}
}

// NoneIfEmpty renders "<none>" for an empty string, as kubectl does.
func NoneIfEmpty(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}

// Join renders a list joined by commas, or "<none>".
func Join(items []string) string {
	return NoneIfEmpty(strings.Join(items, ","))
}
