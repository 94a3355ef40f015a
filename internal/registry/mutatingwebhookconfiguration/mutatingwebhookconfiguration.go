// Package mutatingwebhookconfiguration is the registry entry of
// admissionregistration.k8s.io/v1 MutatingWebhookConfigurations (stored
// and served; calling the webhooks is admission's).
package mutatingwebhookconfiguration

import (
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
	vwc "github.com/headway/headway/internal/registry/validatingwebhookconfiguration"
)

// Resource returns the mutatingwebhookconfigurations registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: admissionregistrationv1.SchemeGroupVersion,
		Kind:         "MutatingWebhookConfiguration", ListKind: "MutatingWebhookConfigurationList",
		AllowUnconditionalUpdate: false,
		Plural:                   "mutatingwebhookconfigurations", Singular: "mutatingwebhookconfiguration",
		Categories: []string{"api-extensions"},
		New:        func() runtime.Object { return &admissionregistrationv1.MutatingWebhookConfiguration{} },
		NewList:    func() runtime.Object { return &admissionregistrationv1.MutatingWebhookConfigurationList{} },
		Generation: true,
		Default:    func(obj runtime.Object) { Default(obj.(*admissionregistrationv1.MutatingWebhookConfiguration)) },
		Validate: func(obj runtime.Object) field.ErrorList {
			return Validate(obj.(*admissionregistrationv1.MutatingWebhookConfiguration))
		},
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList {
			return Validate(obj.(*admissionregistrationv1.MutatingWebhookConfiguration))
		},
		Columns: vwc.Columns,
		Row: func(obj runtime.Object) ([]interface{}, error) {
			c := obj.(*admissionregistrationv1.MutatingWebhookConfiguration)
			return []interface{}{c.Name, int64(len(c.Webhooks)), registry.Age(c.CreationTimestamp)}, nil
		},
	}
}

func common(w *admissionregistrationv1.MutatingWebhook) *vwc.Common {
	return &vwc.Common{FailurePolicy: &w.FailurePolicy, MatchPolicy: &w.MatchPolicy,
		NamespaceSelector: &w.NamespaceSelector, ObjectSelector: &w.ObjectSelector, TimeoutSeconds: &w.TimeoutSeconds}
}

// Default sets the webhook defaults, and reinvocation policy Never.
func Default(c *admissionregistrationv1.MutatingWebhookConfiguration) {
	for i := range c.Webhooks {
		w := &c.Webhooks[i]
		vwc.DefaultCommon(common(w), w.Rules, &w.ClientConfig)
		if w.ReinvocationPolicy == nil {
			p := admissionregistrationv1.NeverReinvocationPolicy
			w.ReinvocationPolicy = &p
		}
	}
}

// Validate checks a MutatingWebhookConfiguration as kube-apiserver does.
func Validate(c *admissionregistrationv1.MutatingWebhookConfiguration) field.ErrorList {
	var errs field.ErrorList
	names := map[string]bool{}
	for i := range c.Webhooks {
		w := &c.Webhooks[i]
		p := field.NewPath("webhooks").Index(i)
		errs = append(errs, vwc.ValidateWebhook(w.Name, names, w.AdmissionReviewVersions, w.SideEffects, common(w), w.Rules, &w.ClientConfig, p)...)
		if rp := w.ReinvocationPolicy; rp != nil && *rp != admissionregistrationv1.NeverReinvocationPolicy && *rp != admissionregistrationv1.IfNeededReinvocationPolicy {
			errs = append(errs, field.NotSupported(p.Child("reinvocationPolicy"), *rp, []string{"IfNeeded", "Never"}))
		}
	}
	return errs
}
