// Package validatingwebhookconfiguration is the registry entry of
// admissionregistration.k8s.io/v1 ValidatingWebhookConfigurations, and the
// defaults and validation webhooks of both kinds share. They are stored and
// served; calling the webhooks is admission's.
package validatingwebhookconfiguration

import (
	"fmt"
	"net/url"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Columns are the table of both webhook configuration kinds.
var Columns = []metav1.TableColumnDefinition{
	registry.NameColumn,
	registry.Column("Webhooks", "integer", 0, "Webhooks indicates the number of webhooks registered in this configuration"),
	registry.AgeColumn,
}

// Resource returns the validatingwebhookconfigurations registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: admissionregistrationv1.SchemeGroupVersion,
		Kind:         "ValidatingWebhookConfiguration", ListKind: "ValidatingWebhookConfigurationList",
		AllowUnconditionalUpdate: false,
		Plural:                   "validatingwebhookconfigurations", Singular: "validatingwebhookconfiguration",
		Categories: []string{"api-extensions"},
		New:        func() runtime.Object { return &admissionregistrationv1.ValidatingWebhookConfiguration{} },
		NewList:    func() runtime.Object { return &admissionregistrationv1.ValidatingWebhookConfigurationList{} },
		Generation: true,
		Default: func(obj runtime.Object) {
			c := obj.(*admissionregistrationv1.ValidatingWebhookConfiguration)
			for i := range c.Webhooks {
				w := &c.Webhooks[i]
				DefaultCommon(&Common{&w.FailurePolicy, &w.MatchPolicy, &w.NamespaceSelector, &w.ObjectSelector, &w.TimeoutSeconds}, w.Rules, &w.ClientConfig)
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList {
			return Validate(obj.(*admissionregistrationv1.ValidatingWebhookConfiguration))
		},
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList {
			return Validate(obj.(*admissionregistrationv1.ValidatingWebhookConfiguration))
		},
		Columns: Columns,
		Row: func(obj runtime.Object) ([]interface{}, error) {
			c := obj.(*admissionregistrationv1.ValidatingWebhookConfiguration)
			return []interface{}{c.Name, int64(len(c.Webhooks)), registry.Age(c.CreationTimestamp)}, nil
		},
	}
}

// Common points at the fields validating and mutating webhooks share.
type Common struct {
	FailurePolicy     **admissionregistrationv1.FailurePolicyType
	MatchPolicy       **admissionregistrationv1.MatchPolicyType
	NamespaceSelector **metav1.LabelSelector
	ObjectSelector    **metav1.LabelSelector
	TimeoutSeconds    **int32
}

// DefaultCommon sets what kube-apiserver defaults on a webhook: failure
// policy Fail, match policy Equivalent, empty selectors, a 10 s timeout,
// rule scope "*" and service port 443.
func DefaultCommon(c *Common, rules []admissionregistrationv1.RuleWithOperations, cc *admissionregistrationv1.WebhookClientConfig) {
	if *c.FailurePolicy == nil {
		p := admissionregistrationv1.Fail
		*c.FailurePolicy = &p
	}
	if *c.MatchPolicy == nil {
		p := admissionregistrationv1.Equivalent
		*c.MatchPolicy = &p
	}
	if *c.NamespaceSelector == nil {
		*c.NamespaceSelector = &metav1.LabelSelector{}
	}
	if *c.ObjectSelector == nil {
		*c.ObjectSelector = &metav1.LabelSelector{}
	}
	if *c.TimeoutSeconds == nil {
		t := int32(10)
		*c.TimeoutSeconds = &t
	}
	for i := range rules {
		if rules[i].Scope == nil {
			s := admissionregistrationv1.AllScopes
			rules[i].Scope = &s
		}
	}
	if cc.Service != nil && cc.Service.Port == nil {
		p := int32(443)
		cc.Service.Port = &p
	}
}

// Validate checks a ValidatingWebhookConfiguration as kube-apiserver does.
func Validate(c *admissionregistrationv1.ValidatingWebhookConfiguration) field.ErrorList {
	var errs field.ErrorList
	names := map[string]bool{}
	for i, w := range c.Webhooks {
		p := field.NewPath("webhooks").Index(i)
		errs = append(errs, ValidateWebhook(w.Name, names, w.AdmissionReviewVersions, w.SideEffects,
			&Common{&w.FailurePolicy, &w.MatchPolicy, &w.NamespaceSelector, &w.ObjectSelector, &w.TimeoutSeconds}, w.Rules, &w.ClientConfig, p)...)
	}
	return errs
}

// ValidateWebhook checks one webhook of either kind at path.
func ValidateWebhook(name string, seen map[string]bool, versions []string, sideEffects *admissionregistrationv1.SideEffectClass,
	c *Common, rules []admissionregistrationv1.RuleWithOperations, cc *admissionregistrationv1.WebhookClientConfig, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if name == "" {
		errs = append(errs, field.Required(p.Child("name"), ""))
	} else {
		errs = append(errs, validation.IsFullyQualifiedName(p.Child("name"), name)...)
		if seen[name] {
			errs = append(errs, field.Duplicate(p.Child("name"), name))
		}
		seen[name] = true
	}
	vp := p.Child("admissionReviewVersions")
	if len(versions) == 0 {
		errs = append(errs, field.Required(vp, "must specify one of v1, v1beta1"))
	} else {
		ok := false
		for _, v := range versions {
			ok = ok || v == "v1" || v == "v1beta1"
		}
		if !ok {
			errs = append(errs, field.Invalid(vp, versions, "must include at least one of v1, v1beta1"))
		}
	}
	sp := p.Child("sideEffects")
	switch {
	case sideEffects == nil:
		errs = append(errs, field.Required(sp, "must specify one of None, NoneOnDryRun"))
	case *sideEffects != admissionregistrationv1.SideEffectClassNone && *sideEffects != admissionregistrationv1.SideEffectClassNoneOnDryRun:
		errs = append(errs, field.NotSupported(sp, *sideEffects, []string{"None", "NoneOnDryRun"}))
	}
	if fp := *c.FailurePolicy; fp != nil && *fp != admissionregistrationv1.Fail && *fp != admissionregistrationv1.Ignore {
		errs = append(errs, field.NotSupported(p.Child("failurePolicy"), *fp, []string{"Fail", "Ignore"}))
	}
	if mp := *c.MatchPolicy; mp != nil && *mp != admissionregistrationv1.Exact && *mp != admissionregistrationv1.Equivalent {
		errs = append(errs, field.NotSupported(p.Child("matchPolicy"), *mp, []string{"Equivalent", "Exact"}))
	}
	if t := *c.TimeoutSeconds; t != nil && (*t < 1 || *t > 30) {
		errs = append(errs, field.Invalid(p.Child("timeoutSeconds"), *t, "the timeout value must be between 1 and 30 seconds"))
	}
	opts := metav1validation.LabelSelectorValidationOptions{}
	if s := *c.NamespaceSelector; s != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(s, opts, p.Child("namespaceSelector"))...)
	}
	if s := *c.ObjectSelector; s != nil {
		errs = append(errs, metav1validation.ValidateLabelSelector(s, opts, p.Child("objectSelector"))...)
	}
	for i, r := range rules {
		errs = append(errs, validateRule(r, p.Child("rules").Index(i))...)
	}
	return append(errs, validateClientConfig(cc, p.Child("clientConfig"))...)
}

func validateRule(r admissionregistrationv1.RuleWithOperations, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(r.Operations) == 0 {
		errs = append(errs, field.Required(p.Child("operations"), ""))
	}
	for i, op := range r.Operations {
		switch op {
		case admissionregistrationv1.OperationAll, admissionregistrationv1.Create, admissionregistrationv1.Update,
			admissionregistrationv1.Delete, admissionregistrationv1.Connect:
		default:
			errs = append(errs, field.NotSupported(p.Child("operations").Index(i), op, []string{"*", "CONNECT", "CREATE", "DELETE", "UPDATE"}))
		}
	}
	for _, f := range []struct {
		name   string
		values []string
	}{{"apiGroups", r.APIGroups}, {"apiVersions", r.APIVersions}, {"resources", r.Resources}} {
		if len(f.values) == 0 {
			errs = append(errs, field.Required(p.Child(f.name), ""))
		}
	}
	if s := r.Scope; s != nil {
		switch *s {
		case admissionregistrationv1.AllScopes, admissionregistrationv1.ClusterScope, admissionregistrationv1.NamespacedScope:
		default:
			errs = append(errs, field.NotSupported(p.Child("scope"), *s, []string{"*", "Cluster", "Namespaced"}))
		}
	}
	return errs
}

func validateClientConfig(cc *admissionregistrationv1.WebhookClientConfig, p *field.Path) field.ErrorList {
	switch {
	case (cc.URL == nil) == (cc.Service == nil):
		return field.ErrorList{field.Required(p, "exactly one of url or service is required")}
	case cc.URL != nil:
		u, err := url.Parse(*cc.URL)
		up := p.Child("url")
		switch {
		case err != nil:
			return field.ErrorList{field.Invalid(up, *cc.URL, fmt.Sprintf("url must be a valid URL: %v", err))}
		case u.Scheme != "https":
			return field.ErrorList{field.Invalid(up, u.Scheme, "'https' is the only allowed URL scheme")}
		case u.Host == "":
			return field.ErrorList{field.Invalid(up, u.Host, "host must be specified")}
		case u.User != nil:
			return field.ErrorList{field.Invalid(up, u.User.String(), "user information is not permitted in the URL")}
		case u.Fragment != "" || u.RawQuery != "":
			return field.ErrorList{field.Invalid(up, *cc.URL, "fragments and query parameters are not permitted in the URL")}
		}
		return nil
	}
	var errs field.ErrorList
	s, sp := cc.Service, p.Child("service")
	if s.Name == "" {
		errs = append(errs, field.Required(sp.Child("name"), "service name is required"))
	}
	if s.Namespace == "" {
		errs = append(errs, field.Required(sp.Child("namespace"), "service namespace is required"))
	}
	if s.Path != nil && !strings.HasPrefix(*s.Path, "/") {
		errs = append(errs, field.Invalid(sp.Child("path"), *s.Path, "must start with a '/'"))
	}
	if s.Port != nil {
		for _, msg := range validation.IsValidPortNum(int(*s.Port)) {
			errs = append(errs, field.Invalid(sp.Child("port"), *s.Port, msg))
		}
	}
	return errs
}
