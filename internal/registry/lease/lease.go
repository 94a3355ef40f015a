// Package lease is the registry entry of coordination.k8s.io/v1 Leases.
package lease

import (
	coordinationv1 "k8s.io/api/coordination/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/headway/headway/internal/registry"
)

// Resource returns the leases registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: coordinationv1.SchemeGroupVersion,
		Kind:         "Lease", ListKind: "LeaseList",
		Plural: "leases", Singular: "lease",
		Namespaced: true,
		New:        func() runtime.Object { return &coordinationv1.Lease{} },
		NewList:    func() runtime.Object { return &coordinationv1.LeaseList{} },

		// kube-apiserver's lease strategy answers an update without a
		// resourceVersion 422: a holder must not overwrite a newer renewal.
		AllowUnconditionalUpdate: false,

		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Holder", "string", 0, coordinationv1.LeaseSpec{}.SwaggerDoc()["holderIdentity"]),
			registry.AgeColumn,
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			l := obj.(*coordinationv1.Lease)
			holder := ""
			if l.Spec.HolderIdentity != nil {
				holder = *l.Spec.HolderIdentity
			}
			return []interface{}{l.Name, holder, registry.Age(l.CreationTimestamp)}, nil
		},
	}
}
