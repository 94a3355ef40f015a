package builtin

import (
	"net/netip"
	"reflect"
	"testing"

	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/service"
	"github.com/headway/headway/internal/storage/memory"
)

func resources(t *testing.T) []*registry.Resource {
	t.Helper()
	store := memory.New()
	t.Cleanup(func() { store.Close() })
	ip, err := service.NewIPAllocator(netip.MustParsePrefix("198.19.0.0/16"), store)
	if err != nil {
		t.Fatal(err)
	}
	return Resources(Options{Services: service.Allocators{IPs: ip, Ports: service.NewPortAllocator(30000, 2768, store)}})
}

// The table is consistent with the scheme and with itself: what discovery
// and the REST machinery rely on.
func TestResourceTable(t *testing.T) {
	scheme := Scheme()
	seen := map[string]bool{}
	for _, r := range resources(t) {
		gvr := r.GroupVersionResource().String()
		if seen[gvr] {
			t.Errorf("%s listed twice", gvr)
		}
		seen[gvr] = true
		obj, list := r.New(), r.NewList()
		kinds, _, err := scheme.ObjectKinds(obj)
		if err != nil {
			t.Errorf("%s: %T not in the scheme: %v", gvr, obj, err)
			continue
		}
		if r.SharedStorage == nil && kinds[0] != r.GroupVersionKind() {
			t.Errorf("%s: New() is a %v, want %v", gvr, kinds[0], r.GroupVersionKind())
		}
		if reflect.TypeOf(obj).Elem().Name() != r.Kind || reflect.TypeOf(list).Elem().Name() != r.ListKind {
			t.Errorf("%s: types %T %T, want %s %s", gvr, obj, list, r.Kind, r.ListKind)
		}
		if _, _, err := scheme.ObjectKinds(list); err != nil {
			t.Errorf("%s: %T not in the scheme", gvr, list)
		}
		if r.Plural == "" || r.Singular == "" {
			t.Errorf("%s: plural %q singular %q", gvr, r.Plural, r.Singular)
		}
		if (r.Columns == nil) != (r.Row == nil) {
			t.Errorf("%s: columns and row go together", gvr)
		}
		if r.Validate == nil && r.ValidateUpdate != nil {
			t.Errorf("%s: update validated but not create", gvr)
		}
	}
	for _, want := range []string{"/v1, Resource=pods", "/v1, Resource=namespaces", "apps/v1, Resource=statefulsets",
		"discovery.k8s.io/v1, Resource=endpointslices", "events.k8s.io/v1, Resource=events", "/v1, Resource=events"} {
		if !seen[want] {
			t.Errorf("%s not served", want)
		}
	}
}
