package webhook

// Which requests a webhook is called for (rules, selectors), and where a
// Service reference leads.

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/headway/headway/internal/apiserver/admission"
)

// MatchesRules reports whether any rule covers the request's operation,
// group, version, resource (and subresource) and scope.
func MatchesRules(rules []admissionregistrationv1.RuleWithOperations, a *admission.Attributes) bool {
	for _, r := range rules {
		if matchesRule(r, a) {
			return true
		}
	}
	return false
}

func matchesRule(r admissionregistrationv1.RuleWithOperations, a *admission.Attributes) bool {
	if !anyOf(opStrings(r.Operations), string(a.Operation)) ||
		!anyOf(r.APIGroups, a.Resource.Group) || !anyOf(r.APIVersions, a.Resource.Version) {
		return false
	}
	if !resourceMatches(r.Resources, a.Resource.Resource, a.Subresource) {
		return false
	}
	scope := admissionregistrationv1.AllScopes
	if r.Scope != nil {
		scope = *r.Scope
	}
	// Namespaces themselves are cluster-scoped.
	namespaced := a.Namespace != "" && !(a.Resource.Group == "" && a.Resource.Resource == "namespaces")
	switch scope {
	case admissionregistrationv1.ClusterScope:
		return !namespaced
	case admissionregistrationv1.NamespacedScope:
		return namespaced
	}
	return true
}

func opStrings(ops []admissionregistrationv1.OperationType) []string {
	out := make([]string, len(ops))
	for i, o := range ops {
		out[i] = string(o)
	}
	return out
}

func anyOf(list []string, v string) bool {
	for _, s := range list {
		if s == "*" || s == v {
			return true
		}
	}
	return false
}

// resourceMatches: "*" is every resource (not subresources), "*/*" every
// resource and subresource, "pods/*" every subresource of pods, "*/status"
// the status of every resource.
func resourceMatches(patterns []string, resource, sub string) bool {
	for _, p := range patterns {
		res, psub, hasSub := strings.Cut(p, "/")
		if !hasSub {
			if sub == "" && (res == "*" || res == resource) {
				return true
			}
			continue
		}
		if (res == "*" || res == resource) && (psub == "*" || psub == sub) && sub != "" {
			return true
		}
		if res == "*" && psub == "*" {
			return true
		}
	}
	return false
}

// objectMatches: the object's labels, or the old object's, match.
func objectMatches(sel *metav1.LabelSelector, a *admission.Attributes) (bool, error) {
	if sel == nil {
		return true, nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, err
	}
	if s.Empty() {
		return true, nil
	}
	for _, obj := range []any{a.Object, a.OldObject} {
		if obj == nil {
			continue
		}
		if m, err := meta.Accessor(obj); err == nil && m != nil && s.Matches(labels.Set(m.GetLabels())) {
			return true, nil
		}
	}
	return false, nil
}

// namespaceLabels are the labels namespaceSelector is matched against: the
// request's namespace's (the namespace object's own for a namespace).
func namespaceLabels(ctx context.Context, a *admission.Attributes, o admission.Objects) (map[string]string, error) {
	if a.Resource.Group == "" && a.Resource.Resource == "namespaces" {
		for _, obj := range []any{a.Object, a.OldObject} {
			if obj == nil {
				continue
			}
			if m, err := meta.Accessor(obj); err == nil && m != nil {
				return m.GetLabels(), nil
			}
		}
	}
	if a.Namespace == "" {
		return nil, nil
	}
	obj, err := o.Get(ctx, corev1.SchemeGroupVersion.WithResource("namespaces"), "", a.Namespace)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return nil, err
		}
		return nil, apierrors.NewInternalError(err)
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	return m.GetLabels(), nil
}

// namespaceMatches: cluster-scoped requests (other than namespaces) are
// not restricted by namespaceSelector.
func namespaceMatches(sel *metav1.LabelSelector, a *admission.Attributes, nsLabels map[string]string) (bool, error) {
	if sel == nil {
		return true, nil
	}
	if a.Namespace == "" && !(a.Resource.Group == "" && a.Resource.Resource == "namespaces") {
		return true, nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		return false, err
	}
	return s.Matches(labels.Set(nsLabels)), nil
}

// ResolveService finds where the Service's port is served: a ready endpoint
// of its EndpointSlices (the target port), else the Service's cluster IP.
func ResolveService(ctx context.Context, o admission.Objects, namespace, name string, port int32) (string, error) {
	obj, err := o.Get(ctx, corev1.SchemeGroupVersion.WithResource("services"), namespace, name)
	if err != nil {
		return "", fmt.Errorf("service %s/%s: %w", namespace, name, err)
	}
	svc := obj.(*corev1.Service)
	var sp *corev1.ServicePort
	for i := range svc.Spec.Ports {
		if svc.Spec.Ports[i].Port == port {
			sp = &svc.Spec.Ports[i]
		}
	}
	if sp == nil {
		return "", fmt.Errorf("service %s/%s has no port %d", namespace, name, port)
	}
	slices, err := o.List(ctx, discoveryv1.SchemeGroupVersion.WithResource("endpointslices"), namespace)
	if err == nil {
		for _, so := range slices {
			es, ok := so.(*discoveryv1.EndpointSlice)
			if !ok || es.Labels[discoveryv1.LabelServiceName] != name {
				continue
			}
			var target int32
			for _, p := range es.Ports {
				if p.Port != nil && (p.Name == nil && sp.Name == "" || p.Name != nil && *p.Name == sp.Name) {
					target = *p.Port
				}
			}
			if target == 0 {
				continue
			}
			for _, ep := range es.Endpoints {
				if (ep.Conditions.Ready == nil || *ep.Conditions.Ready) && len(ep.Addresses) > 0 {
					return net.JoinHostPort(ep.Addresses[0], strconv.Itoa(int(target))), nil
				}
			}
		}
	}
	if ip := svc.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone {
		return net.JoinHostPort(ip, strconv.Itoa(int(port))), nil
	}
	return "", fmt.Errorf("service %s/%s has no ready endpoints and no cluster IP", namespace, name)
}
