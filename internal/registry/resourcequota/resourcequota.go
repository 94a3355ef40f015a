// Package resourcequota is the registry entry of core/v1 ResourceQuotas
// (stored and validated; counting and enforcement are admission's).
package resourcequota

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Resource returns the resourcequotas registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Kind:         "ResourceQuota", ListKind: "ResourceQuotaList",
		AllowUnconditionalUpdate: true,
		Plural:                   "resourcequotas", Singular: "resourcequota",
		ShortNames: []string{"quota"},
		Namespaced: true,
		New:        func() runtime.Object { return &corev1.ResourceQuota{} },
		NewList:    func() runtime.Object { return &corev1.ResourceQuotaList{} },
		HasStatus:  true,
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			registry.ResetStatus(obj)
		},
		Validate: func(obj runtime.Object) field.ErrorList { return Validate(obj.(*corev1.ResourceQuota)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			n, o := obj.(*corev1.ResourceQuota), old.(*corev1.ResourceQuota)
			errs := Validate(n)
			errs = append(errs, registry.Immutable(n.Spec.Scopes, o.Spec.Scopes, field.NewPath("spec", "scopes"))...)
			return append(errs, registry.Immutable(n.Spec.ScopeSelector, o.Spec.ScopeSelector, field.NewPath("spec", "scopeSelector"))...)
		},
		ValidateStatusUpdate: func(obj, _ runtime.Object) field.ErrorList {
			q := obj.(*corev1.ResourceQuota)
			st := field.NewPath("status")
			return append(validateList(q.Status.Hard, st.Child("hard")), validateList(q.Status.Used, st.Child("used"))...)
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Request", "string", 0, "Request represents a minimum amount of cpu/memory that a container may consume."),
			registry.Column("Limit", "string", 0, "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node."),
			registry.AgeColumn,
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			q := obj.(*corev1.ResourceQuota)
			req, lim := Usage(q)
			return []interface{}{q.Name, req, lim, registry.Age(q.CreationTimestamp)}, nil
		},
	}
}

// Usage renders the REQUEST and LIMIT cells: "used/hard" per resource of
// the status, limits.* in the second.
func Usage(q *corev1.ResourceQuota) (request, limit string) {
	names := make([]string, 0, len(q.Status.Hard))
	for n := range q.Status.Hard {
		names = append(names, string(n))
	}
	sort.Strings(names)
	var req, lim bytes.Buffer
	for _, n := range names {
		w := &req
		if strings.HasPrefix(n, "limits.") {
			w = &lim
		}
		used, hard := q.Status.Used[corev1.ResourceName(n)], q.Status.Hard[corev1.ResourceName(n)]
		fmt.Fprintf(w, "%s: %s/%s, ", n, used.String(), hard.String())
	}
	return strings.TrimSuffix(req.String(), ", "), strings.TrimSuffix(lim.String(), ", ")
}

// standard are the resource names a quota may name without a domain.
var standard = map[string]bool{
	"pods": true, "services": true, "replicationcontrollers": true, "resourcequotas": true, "secrets": true,
	"configmaps": true, "persistentvolumeclaims": true, "services.nodeports": true, "services.loadbalancers": true,
	"cpu": true, "memory": true, "ephemeral-storage": true, "storage": true,
	"requests.cpu": true, "requests.memory": true, "requests.storage": true, "requests.ephemeral-storage": true,
	"limits.cpu": true, "limits.memory": true, "limits.ephemeral-storage": true,
}

// integers are the quota resources counted in whole objects.
var integers = map[string]bool{
	"pods": true, "services": true, "replicationcontrollers": true, "resourcequotas": true, "secrets": true,
	"configmaps": true, "persistentvolumeclaims": true, "services.nodeports": true, "services.loadbalancers": true,
}

func validateList(list corev1.ResourceList, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	for name, q := range list {
		n, p := string(name), path.Key(string(name))
		for _, msg := range validation.IsQualifiedName(strings.TrimPrefix(n, "count/")) {
			errs = append(errs, field.Invalid(p, n, msg))
		}
		if !strings.Contains(n, "/") && !standard[n] && !strings.HasPrefix(n, "hugepages-") && !strings.HasPrefix(n, "requests.hugepages-") {
			errs = append(errs, field.Invalid(p, n, "must be a standard resource for quota"))
		}
		if q.Sign() < 0 {
			errs = append(errs, field.Invalid(p, q.String(), "must be greater than or equal to 0"))
		}
		if (integers[n] || strings.HasPrefix(n, "count/")) && q.MilliValue()%1000 != 0 {
			errs = append(errs, field.Invalid(p, q.String(), "must be an integer"))
		}
	}
	return errs
}

// Validate checks a ResourceQuota as kube-apiserver does.
func Validate(q *corev1.ResourceQuota) field.ErrorList {
	spec := field.NewPath("spec")
	errs := validateList(q.Spec.Hard, spec.Child("hard"))
	scopes := []string{"Terminating", "NotTerminating", "BestEffort", "NotBestEffort", "PriorityClass", "CrossNamespacePodAffinity", "VolumeAttributesClass"}
	valid := func(s corev1.ResourceQuotaScope) bool {
		for _, v := range scopes {
			if string(s) == v {
				return true
			}
		}
		return false
	}
	for i, s := range q.Spec.Scopes {
		if !valid(s) {
			errs = append(errs, field.NotSupported(spec.Child("scopes").Index(i), s, scopes))
		}
	}
	if q.Spec.ScopeSelector != nil {
		for i, e := range q.Spec.ScopeSelector.MatchExpressions {
			ep := spec.Child("scopeSelector", "matchExpressions").Index(i)
			if !valid(e.ScopeName) {
				errs = append(errs, field.NotSupported(ep.Child("scopeName"), e.ScopeName, scopes))
			}
			switch e.Operator {
			case corev1.ScopeSelectorOpIn, corev1.ScopeSelectorOpNotIn:
				if len(e.Values) == 0 {
					errs = append(errs, field.Required(ep.Child("values"), "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector"))
				}
			case corev1.ScopeSelectorOpExists, corev1.ScopeSelectorOpDoesNotExist:
				if len(e.Values) != 0 {
					errs = append(errs, field.Invalid(ep.Child("values"), e.Values, "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector"))
				}
			default:
				errs = append(errs, field.NotSupported(ep.Child("operator"), e.Operator, []string{"In", "NotIn", "Exists", "DoesNotExist"}))
			}
		}
	}
	return errs
}
