// Package limitrange is the registry entry of core/v1 LimitRanges (stored,
// defaulted and validated; applying them to pods is admission's).
package limitrange

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Resource returns the limitranges registry entry. kubectl shows it with
// the default NAME and CREATED AT columns, as for kube-apiserver.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Kind:         "LimitRange", ListKind: "LimitRangeList",
		AllowUnconditionalUpdate: true,
		Plural:                   "limitranges", Singular: "limitrange",
		ShortNames: []string{"limits"},
		Namespaced: true,
		New:        func() runtime.Object { return &corev1.LimitRange{} },
		NewList:    func() runtime.Object { return &corev1.LimitRangeList{} },
		Default:    func(obj runtime.Object) { Default(obj.(*corev1.LimitRange)) },
		Validate:   func(obj runtime.Object) field.ErrorList { return Validate(obj.(*corev1.LimitRange)) },
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList {
			return Validate(obj.(*corev1.LimitRange))
		},
	}
}

// Default fills a Container limit's default limit from its max, and its
// default request from its default limit or else its min.
func Default(lr *corev1.LimitRange) {
	for i := range lr.Spec.Limits {
		l := &lr.Spec.Limits[i]
		if l.Type != corev1.LimitTypeContainer {
			continue
		}
		if l.Default == nil {
			l.Default = corev1.ResourceList{}
		}
		if l.DefaultRequest == nil {
			l.DefaultRequest = corev1.ResourceList{}
		}
		for k, v := range l.Max {
			if _, ok := l.Default[k]; !ok {
				l.Default[k] = v.DeepCopy()
			}
		}
		for k, v := range l.Default {
			if _, ok := l.DefaultRequest[k]; !ok {
				l.DefaultRequest[k] = v.DeepCopy()
			}
		}
		for k, v := range l.Min {
			if _, ok := l.DefaultRequest[k]; !ok {
				l.DefaultRequest[k] = v.DeepCopy()
			}
		}
	}
}

// Validate checks a LimitRange as kube-apiserver does: known types, no
// defaults for Pod limits, and min <= default request <= default <= max.
func Validate(lr *corev1.LimitRange) field.ErrorList {
	var errs field.ErrorList
	limits := field.NewPath("spec", "limits")
	for i, l := range lr.Spec.Limits {
		p := limits.Index(i)
		switch l.Type {
		case corev1.LimitTypePod, corev1.LimitTypeContainer, corev1.LimitTypePersistentVolumeClaim:
		case "":
			errs = append(errs, field.Required(p.Child("type"), ""))
		default:
			errs = append(errs, field.NotSupported(p.Child("type"), l.Type, []string{"Container", "Pod", "PersistentVolumeClaim"}))
		}
		if l.Type == corev1.LimitTypePod {
			if len(l.Default) > 0 {
				errs = append(errs, field.Forbidden(p.Child("default"), "may not be specified when `type` is 'Pod'"))
			}
			if len(l.DefaultRequest) > 0 {
				errs = append(errs, field.Forbidden(p.Child("defaultRequest"), "may not be specified when `type` is 'Pod'"))
			}
		}
		for _, f := range []struct {
			name string
			list corev1.ResourceList
		}{{"max", l.Max}, {"min", l.Min}, {"default", l.Default}, {"defaultRequest", l.DefaultRequest}, {"maxLimitRequestRatio", l.MaxLimitRequestRatio}} {
			name := f.name
			for k, q := range f.list {
				if q.Sign() < 0 {
					errs = append(errs, field.Invalid(p.Child(name).Key(string(k)), q.String(), "must be greater than or equal to 0"))
				}
			}
		}
		greater := func(a, b resource.Quantity) bool { return a.Cmp(b) > 0 }
		for k, mn := range l.Min {
			if mx, ok := l.Max[k]; ok && greater(mn, mx) {
				errs = append(errs, field.Invalid(p.Child("min").Key(string(k)), mn.String(), fmt.Sprintf("min value %s is greater than max value %s", mn.String(), mx.String())))
			}
			if dr, ok := l.DefaultRequest[k]; ok && greater(mn, dr) {
				errs = append(errs, field.Invalid(p.Child("defaultRequest").Key(string(k)), dr.String(), fmt.Sprintf("min value %s is greater than default request value %s", mn.String(), dr.String())))
			}
			if d, ok := l.Default[k]; ok && greater(mn, d) {
				errs = append(errs, field.Invalid(p.Child("default").Key(string(k)), d.String(), fmt.Sprintf("min value %s is greater than default value %s", mn.String(), d.String())))
			}
		}
		for k, dr := range l.DefaultRequest {
			if d, ok := l.Default[k]; ok && greater(dr, d) {
				errs = append(errs, field.Invalid(p.Child("defaultRequest").Key(string(k)), dr.String(), fmt.Sprintf("default request value %s is greater than default limit value %s", dr.String(), d.String())))
			}
			if mx, ok := l.Max[k]; ok && greater(dr, mx) {
				errs = append(errs, field.Invalid(p.Child("defaultRequest").Key(string(k)), dr.String(), fmt.Sprintf("default request value %s is greater than max value %s", dr.String(), mx.String())))
			}
		}
		for k, d := range l.Default {
			if mx, ok := l.Max[k]; ok && greater(d, mx) {
				errs = append(errs, field.Invalid(p.Child("default").Key(string(k)), d.String(), fmt.Sprintf("default value %s is greater than max value %s", d.String(), mx.String())))
			}
		}
		for k, r := range l.MaxLimitRequestRatio {
			if r.Cmp(resource.MustParse("1")) < 0 {
				errs = append(errs, field.Invalid(p.Child("maxLimitRequestRatio").Key(string(k)), r.String(), fmt.Sprintf("ratio %s is less than 1", r.String())))
			}
		}
	}
	return errs
}
