// Package registrytest holds what the registry packages' table tests share.
package registrytest

import (
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Errors fails t unless errs are, in order, errors starting with want
// (e.g. "spec.replicas: Invalid value").
func Errors(t *testing.T, errs field.ErrorList, want ...string) {
	t.Helper()
	if len(errs) != len(want) {
		t.Fatalf("got %d errors %v, want %d %q", len(errs), errs, len(want), want)
	}
	for i, e := range errs {
		if !strings.HasPrefix(e.Error(), want[i]) {
			t.Errorf("error %d = %q, want prefix %q", i, e.Error(), want[i])
		}
	}
}
