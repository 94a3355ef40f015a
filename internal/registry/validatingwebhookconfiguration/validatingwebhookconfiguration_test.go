package validatingwebhookconfiguration

import (
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func hook() admissionregistrationv1.ValidatingWebhook {
	none := admissionregistrationv1.SideEffectClassNone
	return admissionregistrationv1.ValidatingWebhook{
		Name:                    "policy.example.com",
		AdmissionReviewVersions: []string{"v1"},
		SideEffects:             &none,
		ClientConfig:            admissionregistrationv1.WebhookClientConfig{Service: &admissionregistrationv1.ServiceReference{Namespace: "infra", Name: "policy"}},
		Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
			Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}},
	}
}

func TestDefaults(t *testing.T) {
	c := &admissionregistrationv1.ValidatingWebhookConfiguration{Webhooks: []admissionregistrationv1.ValidatingWebhook{hook()}}
	Resource().Default(c)
	w := c.Webhooks[0]
	if *w.FailurePolicy != admissionregistrationv1.Fail || *w.MatchPolicy != admissionregistrationv1.Equivalent || *w.TimeoutSeconds != 10 ||
		w.NamespaceSelector == nil || w.ObjectSelector == nil || *w.Rules[0].Scope != admissionregistrationv1.AllScopes || *w.ClientConfig.Service.Port != 443 {
		t.Errorf("webhook %+v", w)
	}
}

func TestValidation(t *testing.T) {
	str := func(s string) *string { return &s }
	for _, tc := range []struct {
		name string
		mod  func(*admissionregistrationv1.ValidatingWebhook)
		want []string
	}{
		{"seed", func(*admissionregistrationv1.ValidatingWebhook) {}, nil},
		{"url", func(w *admissionregistrationv1.ValidatingWebhook) {
			w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: str("https://policy.example.com:8443/validate")}
		}, nil},
		{"short name", func(w *admissionregistrationv1.ValidatingWebhook) { w.Name = "policy" }, []string{"webhooks[0].name: Invalid value"}},
		{"no versions", func(w *admissionregistrationv1.ValidatingWebhook) { w.AdmissionReviewVersions = nil },
			[]string{"webhooks[0].admissionReviewVersions: Required value"}},
		{"no side effects", func(w *admissionregistrationv1.ValidatingWebhook) { w.SideEffects = nil },
			[]string{"webhooks[0].sideEffects: Required value: must specify one of None, NoneOnDryRun"}},
		{"long timeout", func(w *admissionregistrationv1.ValidatingWebhook) { t := int32(60); w.TimeoutSeconds = &t },
			[]string{"webhooks[0].timeoutSeconds: Invalid value: 60: the timeout value must be between 1 and 30 seconds"}},
		{"http url", func(w *admissionregistrationv1.ValidatingWebhook) {
			w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: str("http://policy.example.com/")}
		}, []string{"webhooks[0].clientConfig.url: Invalid value: \"http\": 'https' is the only allowed URL scheme"}},
		{"both url and service", func(w *admissionregistrationv1.ValidatingWebhook) { w.ClientConfig.URL = str("https://x.example.com") },
			[]string{"webhooks[0].clientConfig: Required value: exactly one of url or service is required"}},
		{"bad operation", func(w *admissionregistrationv1.ValidatingWebhook) {
			w.Rules[0].Operations = []admissionregistrationv1.OperationType{"PATCH"}
		}, []string{"webhooks[0].rules[0].operations[0]: Unsupported value"}},
		{"bad failure policy", func(w *admissionregistrationv1.ValidatingWebhook) {
			p := admissionregistrationv1.FailurePolicyType("Retry")
			w.FailurePolicy = &p
		}, []string{"webhooks[0].failurePolicy: Unsupported value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := hook()
			tc.mod(&w)
			c := &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: "policy"}, Webhooks: []admissionregistrationv1.ValidatingWebhook{w}}
			Resource().Default(c)
			registrytest.Errors(t, Validate(c), tc.want...)
		})
	}
	dup := &admissionregistrationv1.ValidatingWebhookConfiguration{Webhooks: []admissionregistrationv1.ValidatingWebhook{hook(), hook()}}
	registrytest.Errors(t, Validate(dup), "webhooks[1].name: Duplicate value")
}
