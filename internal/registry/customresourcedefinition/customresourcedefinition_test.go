package customresourcedefinition

import (
	"context"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func validCRD() *apiextensionsv1.CustomResourceDefinition {
	crd := &apiextensionsv1.CustomResourceDefinition{
		ObjectMeta: metav1.ObjectMeta{Name: "widgets.example.com"},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: "example.com", Scope: apiextensionsv1.NamespaceScoped,
			Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "widgets", Kind: "Widget"},
			Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
				Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{Type: "object"}}}},
		},
	}
	r := Resource()
	r.Default(crd)
	r.PrepareForCreate(context.Background(), crd)
	return crd
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*apiextensionsv1.CustomResourceDefinition)
		want   []string
	}{
		{"valid", func(*apiextensionsv1.CustomResourceDefinition) {}, nil},
		{"name is not plural.group", func(c *apiextensionsv1.CustomResourceDefinition) { c.Name = "widget.example.com" },
			[]string{`metadata.name: Invalid value: "widget.example.com": must be spec.names.plural+"."+spec.group`}},
		{"no storage version", func(c *apiextensionsv1.CustomResourceDefinition) { c.Spec.Versions[0].Storage = false },
			[]string{"spec.versions: Invalid value:"}}, // must have exactly one version marked as storage version
		{"webhook conversion is not performed", func(c *apiextensionsv1.CustomResourceDefinition) {
			c.Spec.Conversion = &apiextensionsv1.CustomResourceConversion{Strategy: apiextensionsv1.WebhookConverter,
				Webhook: &apiextensionsv1.WebhookConversion{ConversionReviewVersions: []string{"v1"},
					ClientConfig: &apiextensionsv1.WebhookClientConfig{URL: ptr("https://hook.example.com/convert")}}}
		}, []string{`spec.conversion.strategy: Unsupported value: "Webhook": supported values: "None"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			crd := validCRD()
			tc.change(crd)
			registrytest.Errors(t, Validate(crd), tc.want...)
		})
	}
}

func ptr(s string) *string { return &s }

func TestStoredVersionsAndDeletion(t *testing.T) {
	crd := validCRD()
	if got := crd.Status.StoredVersions; len(got) != 1 || got[0] != "v1" {
		t.Fatalf("storedVersions on create = %v", got)
	}
	// A new storage version is added to storedVersions on update.
	crd.Spec.Versions[0].Storage = false
	crd.Spec.Versions = append(crd.Spec.Versions, apiextensionsv1.CustomResourceDefinitionVersion{Name: "v2", Served: true, Storage: true,
		Schema: crd.Spec.Versions[0].Schema})
	r := Resource()
	r.PrepareForUpdate(context.Background(), crd, validCRD())
	if got := crd.Status.StoredVersions; len(got) != 2 || got[1] != "v2" {
		t.Errorf("storedVersions after a storage version change = %v", got)
	}
	// The first delete keeps the definition, Terminating, with the cleanup finalizer.
	if !r.Finalizing(crd) {
		t.Fatal("a live definition must be held by its cleanup")
	}
	r.PrepareForDelete(crd)
	if len(crd.Finalizers) != 1 || crd.Finalizers[0] != CleanupFinalizer {
		t.Errorf("finalizers = %v", crd.Finalizers)
	}
	now := metav1.Now()
	crd.DeletionTimestamp = &now
	if r.Finalizing(crd) {
		t.Error("a deleted definition must go once its finalizer is removed")
	}
	terminating := false
	for _, c := range crd.Status.Conditions {
		terminating = terminating || (c.Type == apiextensionsv1.Terminating && c.Status == apiextensionsv1.ConditionTrue)
	}
	if !terminating {
		t.Errorf("conditions = %v", crd.Status.Conditions)
	}
}
