package mutatingwebhookconfiguration

import (
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func TestDefaultsAndValidation(t *testing.T) {
	none := admissionregistrationv1.SideEffectClassNone
	url := "https://inject.example.com/mutate"
	seed := func() *admissionregistrationv1.MutatingWebhookConfiguration {
		return &admissionregistrationv1.MutatingWebhookConfiguration{Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "inject.example.com", AdmissionReviewVersions: []string{"v1", "v1beta1"}, SideEffects: &none,
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &url},
		}}}
	}
	c := seed()
	Default(c)
	w := c.Webhooks[0]
	if *w.ReinvocationPolicy != admissionregistrationv1.NeverReinvocationPolicy || *w.FailurePolicy != admissionregistrationv1.Fail || *w.TimeoutSeconds != 10 {
		t.Errorf("webhook %+v", w)
	}
	registrytest.Errors(t, Validate(c))

	bad := seed()
	p := admissionregistrationv1.ReinvocationPolicyType("Always")
	bad.Webhooks[0].ReinvocationPolicy = &p
	bad.Webhooks[0].AdmissionReviewVersions = []string{"v2"}
	Default(bad)
	registrytest.Errors(t, Validate(bad),
		"webhooks[0].admissionReviewVersions: Invalid value",
		"webhooks[0].reinvocationPolicy: Unsupported value: \"Always\"")
}
