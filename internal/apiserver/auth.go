package apiserver

import (
	"context"
	"crypto/subtle"
	"fmt"
	"net/http"
	"strings"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/request"
)

// AdminUser is who the admin bearer token authenticates as: the same
// identity kubeadm and kind give their admin kubeconfig.
var AdminUser = &user.DefaultInfo{
	Name:   "kubernetes-admin",
	Groups: []string{user.SystemPrivilegedGroup, user.AllAuthenticated},
}

// Authenticator turns a request's credentials into a user. ok is false when
// the request carries no credential this authenticator understands; an
// error means it carried one that is invalid (401).
type Authenticator interface {
	AuthenticateRequest(r *http.Request) (u user.Info, ok bool, err error)
}

// AuthenticatorFunc adapts a function to Authenticator.
type AuthenticatorFunc func(r *http.Request) (user.Info, bool, error)

// AuthenticateRequest calls f.
func (f AuthenticatorFunc) AuthenticateRequest(r *http.Request) (user.Info, bool, error) {
	return f(r)
}

// UserFrom returns the authenticated user of a request's context.
func UserFrom(ctx context.Context) (user.Info, bool) { return request.UserFrom(ctx) }

// userInfo is u as the API shows a user (TokenReview and
// SelfSubjectReview status, admission's request.userInfo): Extra nil when
// empty.
func userInfo(u user.Info) authenticationv1.UserInfo {
	info := authenticationv1.UserInfo{Username: u.GetName(), UID: u.GetUID(), Groups: append([]string(nil), u.GetGroups()...)}
	if extra := u.GetExtra(); len(extra) > 0 {
		info.Extra = make(map[string]authenticationv1.ExtraValue, len(extra))
		for k, v := range extra {
			info.Extra[k] = append(authenticationv1.ExtraValue(nil), v...)
		}
	}
	return info
}

// authenticate finds the request's user: a client certificate verified
// against the CA (CN is the name, O the groups), the admin bearer token,
// then the configured authenticators in order. Requests without a
// credential may only read the health and version paths.
func (s *Server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, ok, err := s.authenticateRequest(r)
		switch {
		case err == nil && ok:
			r = r.WithContext(request.WithUser(r.Context(), u))
		case anonymousPath(r.URL.Path):
			// Health and version stay readable whatever the credential.
			// (kube-apiserver answers 401 to an invalid one even here.)
			r = r.WithContext(request.WithUser(r.Context(), &user.DefaultInfo{
				Name: user.Anonymous, Groups: []string{user.AllUnauthenticated},
			}))
		default:
			if err != nil {
				s.log.Debug("authentication failed", "path", r.URL.Path, "err", err)
			}
			s.writeError(w, r, apierrors.NewUnauthorized("Unauthorized"))
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) authenticateRequest(r *http.Request) (user.Info, bool, error) {
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		cert := r.TLS.VerifiedChains[0][0]
		groups := append(append([]string(nil), cert.Subject.Organization...), user.AllAuthenticated)
		return &user.DefaultInfo{Name: cert.Subject.CommonName, Groups: groups}, true, nil
	}
	if token, ok := bearerToken(r); ok && s.cfg.Token != "" &&
		subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.Token)) == 1 {
		return AdminUser, true, nil
	}
	for _, a := range s.cfg.Authenticators {
		u, ok, err := a.AuthenticateRequest(r)
		if err != nil || ok {
			return u, ok, err
		}
	}
	if _, ok := bearerToken(r); ok {
		return nil, false, fmt.Errorf("invalid bearer token")
	}
	return nil, false, nil
}

// bearerToken returns the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	auth := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(auth) <= len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return "", false
	}
	token := strings.TrimSpace(auth[len(prefix):])
	return token, token != ""
}

// authorize asks the configured authorizer whether the request's user may
// do what the request asks, and answers 403 as kube-apiserver words it
// when not. Without an authorizer every authenticated request is allowed.
func (s *Server) authorize(next http.Handler) http.Handler {
	if s.cfg.Authorizer == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attrs := requestAttributes(r)
		decision, reason, err := s.cfg.Authorizer.Authorize(r.Context(), attrs)
		if decision == authorizer.DecisionAllow {
			next.ServeHTTP(w, r)
			return
		}
		if err != nil {
			s.log.Warn("authorization error", "user", attrs.GetUser().GetName(), "path", r.URL.Path, "err", err)
		}
		s.writeError(w, r, forbidden(attrs, reason))
	})
}

// requestAttributes describes a request for the authorizer.
func requestAttributes(r *http.Request) authorizer.AttributesRecord {
	u, _ := request.UserFrom(r.Context())
	attrs := authorizer.AttributesRecord{User: u, Path: r.URL.Path}
	info, ok := parseRequestInfo(r)
	if !ok {
		attrs.Verb = strings.ToLower(r.Method)
		if r.Method == http.MethodHead {
			attrs.Verb = "get"
		}
		return attrs
	}
	attrs.ResourceRequest = true
	attrs.Verb = info.Verb
	attrs.APIGroup, attrs.APIVersion = info.Group, info.Version
	attrs.Namespace, attrs.Resource, attrs.Subresource, attrs.Name = info.Namespace, info.Resource, info.Subresource, info.Name
	if info.Resource == "namespaces" && info.Name != "" {
		// /api/v1/namespaces/foo[/status] is the namespace object foo, in
		// the namespace foo for authorization, as kube-apiserver has it.
		attrs.Namespace = info.Name
	}
	return attrs
}

// forbidden is kube-apiserver's 403 for a denied request.
func forbidden(attrs authorizer.Attributes, reason string) error {
	name := "<none>"
	if u := attrs.GetUser(); u != nil {
		name = u.GetName()
	}
	if !attrs.IsResourceRequest() {
		msg := fmt.Sprintf("User %q cannot %s path %q", name, attrs.GetVerb(), attrs.GetPath())
		if reason != "" {
			msg += ": " + reason
		}
		return apierrors.NewForbidden(schema.GroupResource{}, "", fmt.Errorf("%s", msg))
	}
	resource := attrs.GetResource()
	if sub := attrs.GetSubresource(); sub != "" {
		resource += "/" + sub
	}
	msg := fmt.Sprintf("User %q cannot %s resource %q in API group %q", name, attrs.GetVerb(), resource, attrs.GetAPIGroup())
	if ns := attrs.GetNamespace(); ns != "" {
		msg += fmt.Sprintf(" in the namespace %q", ns)
	} else {
		msg += " at the cluster scope"
	}
	if reason != "" {
		msg += ": " + reason
	}
	return apierrors.NewForbidden(schema.GroupResource{Group: attrs.GetAPIGroup(), Resource: attrs.GetResource()}, attrs.GetName(), fmt.Errorf("%s", msg))
}
