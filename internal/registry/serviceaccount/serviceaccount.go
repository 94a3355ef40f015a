// Package serviceaccount is the registry entry of core/v1 ServiceAccounts.
package serviceaccount

import (
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/headway/headway/internal/registry"
)

// Resource returns the serviceaccounts registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Kind:         "ServiceAccount", ListKind: "ServiceAccountList",
		Plural: "serviceaccounts", Singular: "serviceaccount",
		ShortNames: []string{"sa"},
		Namespaced: true,
		New:        func() runtime.Object { return &corev1.ServiceAccount{} },
		NewList:    func() runtime.Object { return &corev1.ServiceAccountList{} },

		// As in kube-apiserver's strategy for the kind, a PUT without a
		// resourceVersion overwrites the current object.
		AllowUnconditionalUpdate: true,

		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Secrets", "string", 0, corev1.ServiceAccount{}.SwaggerDoc()["secrets"]),
			registry.AgeColumn,
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			sa := obj.(*corev1.ServiceAccount)
			return []interface{}{sa.Name, int64(len(sa.Secrets)), registry.Age(sa.CreationTimestamp)}, nil
		},
	}
}
