package apiserver

// Service-account identity: the token subresource of serviceaccounts
// (TokenRequest), create-only reviews (TokenReview), token authentication
// for reviews, the service-account issuer's OIDC discovery, and direct
// reads of objects for the authenticators and admission hooks app wires.

import (
	"context"
	"crypto/subtle"
	"net/http"

	authenticationv1 "k8s.io/api/authentication/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

// OIDCDiscovery is what the service-account issuer publishes for those
// who verify its tokens: GET /.well-known/openid-configuration and GET
// /openid/v1/jwks (JSON documents, made once).
type OIDCDiscovery struct {
	Configuration []byte
	KeySet        []byte
}

// The OIDC discovery paths, as kube-apiserver serves them.
const (
	OpenIDConfigurationPath = "/.well-known/openid-configuration"
	JWKSPath                = "/openid/v1/jwks"
)

// TokenAuthenticator is an Authenticator of bearer tokens that knows the
// audiences a token is valid for; a TokenReview asks it directly.
type TokenAuthenticator interface {
	// AuthenticateToken validates token for the audiences of ctx
	// (authenticator.WithAudiences) and returns the user and the audiences
	// both accept; ok is false when the token is not one it knows.
	AuthenticateToken(ctx context.Context, token string) (u user.Info, audiences []string, ok bool, err error)
}

var tokenRequestGVK = authenticationv1.SchemeGroupVersion.WithKind("TokenRequest")

// handleToken serves POST serviceaccounts/<name>/token: a TokenRequest
// for the stored account, answered 201 with the token.
func (res *resource) handleToken(w http.ResponseWriter, r *http.Request, info requestInfo) error {
	f, opts, body, err := writeRequest(r, false)
	if err != nil {
		return err
	}
	req := &authenticationv1.TokenRequest{}
	warnings, err := res.decodeBody(r, body, opts, req, tokenRequestGVK)
	if err != nil {
		return err
	}
	sa, err := res.get(r.Context(), info.Namespace, info.Name)
	if err != nil {
		return err
	}
	out, err := res.reg.Token(r.Context(), sa, req)
	if err != nil {
		return err
	}
	if opts.dryRun {
		out.Status = authenticationv1.TokenRequestStatus{}
	}
	out.SetGroupVersionKind(tokenRequestGVK)
	writeWarnings(w, warnings)
	res.s.writeObject(w, f, http.StatusCreated, out)
	return nil
}

// Get reads one object from the store, as a GET of it answers (a NotFound
// API error when it does not exist), without authorization: for the
// service-account authenticator and admission hooks.
func (s *Server) Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error) {
	res := s.resources[gvr.Group+"/"+gvr.Version+"/"+gvr.Resource]
	if res == nil {
		return nil, notFoundResource()
	}
	return res.get(ctx, ns, name)
}

// ReviewToken fills a TokenReview's status: whom its token authenticates
// as through the admin token and the configured authenticators, for its
// audiences (the API's when it names none).
func (s *Server) ReviewToken(ctx context.Context, review *authenticationv1.TokenReview) error {
	auds := review.Spec.Audiences
	if len(auds) == 0 {
		auds = s.cfg.APIAudiences
	}
	u, accepted, err := s.authenticateToken(authenticator.WithAudiences(ctx, auds), review.Spec.Token, auds)
	switch {
	case err != nil:
		review.Status = authenticationv1.TokenReviewStatus{Error: err.Error()}
	case u == nil:
		review.Status = authenticationv1.TokenReviewStatus{Error: "[invalid bearer token, token lookup failed]"}
	default:
		review.Status = authenticationv1.TokenReviewStatus{
			Authenticated: true,
			User:          userInfo(u),
			Audiences:     accepted,
		}
	}
	return nil
}

// authenticateToken runs a bearer token through the admin token and the
// authenticators; u is nil when none knows it.
func (s *Server) authenticateToken(ctx context.Context, token string, auds []string) (u user.Info, accepted []string, err error) {
	if s.cfg.Token != "" && subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.Token)) == 1 {
		// Not audience-aware: valid for the API's audiences.
		return AdminUser, intersect(auds, s.cfg.APIAudiences), nil
	}
	for _, a := range s.cfg.Authenticators {
		if ta, ok := a.(TokenAuthenticator); ok {
			u, accepted, ok, err := ta.AuthenticateToken(ctx, token)
			if err != nil || ok {
				return u, accepted, err
			}
			continue
		}
		r, _ := http.NewRequestWithContext(ctx, http.MethodPost, "/", nil)
		r.Header.Set("Authorization", "Bearer "+token)
		u, ok, err := a.AuthenticateRequest(r)
		if err != nil || ok {
			return u, intersect(auds, s.cfg.APIAudiences), err
		}
	}
	return nil, nil, nil
}

func intersect(a, b []string) []string {
	var out []string
	for _, x := range a {
		for _, y := range b {
			if x == y {
				out = append(out, x)
				break
			}
		}
	}
	return out
}

// serveOIDC serves the issuer's discovery documents.
func (s *Server) serveOIDC(w http.ResponseWriter, r *http.Request) {
	d := s.cfg.OIDC
	if d == nil || (r.Method != http.MethodGet && r.Method != http.MethodHead) {
		s.writeError(w, r, notFoundResource())
		return
	}
	body, ct := d.Configuration, "application/json"
	if r.URL.Path == JWKSPath {
		body, ct = d.KeySet, "application/jwk-set+json"
	}
	w.Header().Set("Content-Type", ct)
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		w.Write(body)
	}
}
