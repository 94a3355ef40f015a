package apiserver

// The review APIs: authorization.k8s.io/v1 SelfSubjectAccessReview,
// SubjectAccessReview, LocalSubjectAccessReview and SelfSubjectRulesReview,
// and authentication.k8s.io/v1 SelfSubjectReview. They are create-only:
// the answer is computed from the configured authorizer (or the request's
// user) and nothing is stored. `kubectl auth can-i` and `kubectl auth
// whoami` use them.

import (
	"context"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/request"

	"github.com/headway/headway/internal/registry"
)

// reviewResources are the review kinds, answered by s's authorizer.
func (s *Server) reviewResources() []*registry.Resource {
	authz := authorizationv1.SchemeGroupVersion
	return []*registry.Resource{
		{
			GroupVersion: authenticationv1.SchemeGroupVersion, Kind: "SelfSubjectReview", ListKind: "SelfSubjectReviewList",
			Plural: "selfsubjectreviews", Singular: "selfsubjectreview",
			New:        func() runtime.Object { return &authenticationv1.SelfSubjectReview{} },
			NewList:    func() runtime.Object { return &metav1.List{} },
			CreateOnly: s.selfSubjectReview,
		},
		{
			GroupVersion: authz, Kind: "LocalSubjectAccessReview", ListKind: "LocalSubjectAccessReviewList",
			Plural: "localsubjectaccessreviews", Singular: "localsubjectaccessreview", Namespaced: true,
			New:        func() runtime.Object { return &authorizationv1.LocalSubjectAccessReview{} },
			NewList:    func() runtime.Object { return &metav1.List{} },
			CreateOnly: s.localSubjectAccessReview,
		},
		{
			GroupVersion: authz, Kind: "SelfSubjectAccessReview", ListKind: "SelfSubjectAccessReviewList",
			Plural: "selfsubjectaccessreviews", Singular: "selfsubjectaccessreview",
			New:        func() runtime.Object { return &authorizationv1.SelfSubjectAccessReview{} },
			NewList:    func() runtime.Object { return &metav1.List{} },
			CreateOnly: s.selfSubjectAccessReview,
		},
		{
			GroupVersion: authz, Kind: "SelfSubjectRulesReview", ListKind: "SelfSubjectRulesReviewList",
			Plural: "selfsubjectrulesreviews", Singular: "selfsubjectrulesreview",
			New:        func() runtime.Object { return &authorizationv1.SelfSubjectRulesReview{} },
			NewList:    func() runtime.Object { return &metav1.List{} },
			CreateOnly: s.selfSubjectRulesReview,
		},
		{
			GroupVersion: authz, Kind: "SubjectAccessReview", ListKind: "SubjectAccessReviewList",
			Plural: "subjectaccessreviews", Singular: "subjectaccessreview",
			New:        func() runtime.Object { return &authorizationv1.SubjectAccessReview{} },
			NewList:    func() runtime.Object { return &metav1.List{} },
			CreateOnly: s.subjectAccessReview,
		},
	}
}

// decide asks the authorizer (none configured: allowed) and fills status
// as kube-apiserver does.
func (s *Server) decide(ctx context.Context, attrs authorizer.AttributesRecord) authorizationv1.SubjectAccessReviewStatus {
	if s.cfg.Authorizer == nil {
		return authorizationv1.SubjectAccessReviewStatus{Allowed: true}
	}
	d, reason, err := s.cfg.Authorizer.Authorize(ctx, attrs)
	st := authorizationv1.SubjectAccessReviewStatus{Allowed: d == authorizer.DecisionAllow, Denied: d == authorizer.DecisionDeny, Reason: reason}
	if err != nil {
		st.EvaluationError = err.Error()
	}
	return st
}

func reviewAttributes(u user.Info, ra *authorizationv1.ResourceAttributes, nra *authorizationv1.NonResourceAttributes) authorizer.AttributesRecord {
	if ra != nil {
		version := ra.Version
		if version == "" {
			version = "*"
		}
		return authorizer.AttributesRecord{User: u, Verb: ra.Verb, Namespace: ra.Namespace, APIGroup: ra.Group, APIVersion: version,
			Resource: ra.Resource, Subresource: ra.Subresource, Name: ra.Name, ResourceRequest: true}
	}
	return authorizer.AttributesRecord{User: u, Verb: nra.Verb, Path: nra.Path}
}

// validateAttributes: exactly one of resourceAttributes and
// nonResourceAttributes.
func validateAttributes(ra *authorizationv1.ResourceAttributes, nra *authorizationv1.NonResourceAttributes, p *field.Path) field.ErrorList {
	var errs field.ErrorList
	if ra != nil && nra != nil {
		errs = append(errs, field.Invalid(p.Child("nonResourceAttributes"), nra, "cannot be specified in combination with resourceAttributes"))
	}
	if ra == nil && nra == nil {
		errs = append(errs, field.Invalid(p.Child("resourceAttributes"), nra, "exactly one of nonResourceAttributes or resourceAttributes must be specified"))
	}
	return errs
}

// validateEmptyMeta: review objects carry no metadata (a
// LocalSubjectAccessReview its namespace).
func validateEmptyMeta(m metav1.ObjectMeta, keepNamespace bool) field.ErrorList {
	c := m
	if keepNamespace {
		c.Namespace = ""
	}
	if !equality.Semantic.DeepEqual(metav1.ObjectMeta{}, c) {
		return field.ErrorList{field.Invalid(field.NewPath("metadata"), m, "must be empty")}
	}
	return nil
}

// reviewUser is who sent the request in ctx (a review of oneself).
func reviewUser(ctx context.Context) (user.Info, error) {
	u, ok := request.UserFrom(ctx)
	if !ok {
		return nil, apierrors.NewBadRequest("no user present on request")
	}
	return u, nil
}

func (s *Server) subjectAccessReview(ctx context.Context, obj runtime.Object) (runtime.Object, error) {
	sar := obj.(*authorizationv1.SubjectAccessReview)
	spec := field.NewPath("spec")
	errs := validateEmptyMeta(sar.ObjectMeta, false)
	errs = append(errs, validateAttributes(sar.Spec.ResourceAttributes, sar.Spec.NonResourceAttributes, spec)...)
	if sar.Spec.User == "" && len(sar.Spec.Groups) == 0 {
		errs = append(errs, field.Invalid(spec.Child("user"), sar.Spec.User, "at least one of user or group must be specified"))
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(authorizationv1.SchemeGroupVersion.WithKind("SubjectAccessReview").GroupKind(), "", errs)
	}
	u := &user.DefaultInfo{Name: sar.Spec.User, Groups: sar.Spec.Groups, UID: sar.Spec.UID, Extra: extraFrom(sar.Spec.Extra)}
	sar.Status = s.decide(ctx, reviewAttributes(u, sar.Spec.ResourceAttributes, sar.Spec.NonResourceAttributes))
	return sar, nil
}

func (s *Server) localSubjectAccessReview(ctx context.Context, obj runtime.Object) (runtime.Object, error) {
	sar := obj.(*authorizationv1.LocalSubjectAccessReview)
	spec := field.NewPath("spec")
	errs := validateEmptyMeta(sar.ObjectMeta, true)
	errs = append(errs, validateAttributes(sar.Spec.ResourceAttributes, sar.Spec.NonResourceAttributes, spec)...)
	if sar.Spec.User == "" && len(sar.Spec.Groups) == 0 {
		errs = append(errs, field.Invalid(spec.Child("user"), sar.Spec.User, "at least one of user or group must be specified"))
	}
	if ra := sar.Spec.ResourceAttributes; ra != nil && ra.Namespace != sar.Namespace {
		errs = append(errs, field.Invalid(spec.Child("resourceAttributes", "namespace"), ra.Namespace, "must match metadata.namespace"))
	}
	if sar.Spec.NonResourceAttributes != nil {
		errs = append(errs, field.Invalid(spec.Child("nonResourceAttributes"), sar.Spec.NonResourceAttributes, "disallowed on this kind of request"))
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(authorizationv1.SchemeGroupVersion.WithKind("LocalSubjectAccessReview").GroupKind(), "", errs)
	}
	u := &user.DefaultInfo{Name: sar.Spec.User, Groups: sar.Spec.Groups, UID: sar.Spec.UID, Extra: extraFrom(sar.Spec.Extra)}
	sar.Status = s.decide(ctx, reviewAttributes(u, sar.Spec.ResourceAttributes, nil))
	return sar, nil
}

func (s *Server) selfSubjectAccessReview(ctx context.Context, obj runtime.Object) (runtime.Object, error) {
	sar := obj.(*authorizationv1.SelfSubjectAccessReview)
	errs := validateEmptyMeta(sar.ObjectMeta, false)
	errs = append(errs, validateAttributes(sar.Spec.ResourceAttributes, sar.Spec.NonResourceAttributes, field.NewPath("spec"))...)
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(authorizationv1.SchemeGroupVersion.WithKind("SelfSubjectAccessReview").GroupKind(), "", errs)
	}
	u, err := reviewUser(ctx)
	if err != nil {
		return nil, err
	}
	sar.Status = s.decide(ctx, reviewAttributes(u, sar.Spec.ResourceAttributes, sar.Spec.NonResourceAttributes))
	return sar, nil
}

// everything is what a user may do without an authorizer (AlwaysAllow).
var everything = []authorizer.ResourceRuleInfo{&authorizer.DefaultResourceRuleInfo{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}}}

func (s *Server) selfSubjectRulesReview(ctx context.Context, obj runtime.Object) (runtime.Object, error) {
	rr := obj.(*authorizationv1.SelfSubjectRulesReview)
	u, err := reviewUser(ctx)
	if err != nil {
		return nil, err
	}
	if rr.Spec.Namespace == "" {
		return nil, apierrors.NewBadRequest("no namespace on request")
	}
	out := &authorizationv1.SelfSubjectRulesReview{}
	var (
		res    []authorizer.ResourceRuleInfo
		nonRes []authorizer.NonResourceRuleInfo
	)
	switch {
	case s.cfg.RuleResolver != nil:
		res, nonRes, out.Status.Incomplete, err = s.cfg.RuleResolver.RulesFor(ctx, u, rr.Spec.Namespace)
		if err != nil {
			out.Status.EvaluationError = err.Error()
		}
	case s.cfg.Authorizer == nil:
		res = everything
		nonRes = []authorizer.NonResourceRuleInfo{&authorizer.DefaultNonResourceRuleInfo{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}}}
	default:
		out.Status.Incomplete = true
	}
	out.Status.ResourceRules = []authorizationv1.ResourceRule{}
	for _, r := range res {
		out.Status.ResourceRules = append(out.Status.ResourceRules, authorizationv1.ResourceRule{
			Verbs: r.GetVerbs(), APIGroups: r.GetAPIGroups(), Resources: r.GetResources(), ResourceNames: r.GetResourceNames()})
	}
	out.Status.NonResourceRules = []authorizationv1.NonResourceRule{}
	for _, r := range nonRes {
		out.Status.NonResourceRules = append(out.Status.NonResourceRules, authorizationv1.NonResourceRule{
			Verbs: r.GetVerbs(), NonResourceURLs: r.GetNonResourceURLs()})
	}
	return out, nil
}

func (s *Server) selfSubjectReview(ctx context.Context, obj runtime.Object) (runtime.Object, error) {
	u, err := reviewUser(ctx)
	if err != nil {
		return nil, err
	}
	out := &authenticationv1.SelfSubjectReview{ObjectMeta: metav1.ObjectMeta{CreationTimestamp: metav1.NewTime(time.Now())}}
	out.Status.UserInfo = userInfo(u)
	return out, nil
}

func extraFrom(in map[string]authorizationv1.ExtraValue) map[string][]string {
	if len(in) == 0 {
		return nil
	}
	out := make(map[string][]string, len(in))
	for k, v := range in {
		out[k] = v
	}
	return out
}
