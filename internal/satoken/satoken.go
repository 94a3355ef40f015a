// Package satoken issues and validates bound service-account tokens: JWTs
// signed with the cluster's service-account key, carrying the claims
// kube-apiserver puts in them (iss, sub, aud, exp, iat, nbf, jti and the
// private "kubernetes.io" claim naming the namespace, the ServiceAccount and
// the object the token is bound to). A token is valid while it has not
// expired, names an audience the caller accepts, and its ServiceAccount and
// bound pod or secret still exist with the same UIDs.
package satoken

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/uuid"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apiserver/pkg/authentication/authenticator"
	"k8s.io/apiserver/pkg/authentication/user"
)

// DefaultIssuer is the issuer (and the default audience) of a cluster with
// the domain cluster.local, as kubeadm configures kube-apiserver.
const DefaultIssuer = "https://kubernetes.default.svc.cluster.local"

// IssuerFor is the issuer URL of a cluster domain.
func IssuerFor(clusterDomain string) string {
	return "https://kubernetes.default.svc." + clusterDomain
}

// The user extra keys kube-apiserver sets for a bound token.
const (
	ExtraPodName      = "authentication.kubernetes.io/pod-name"
	ExtraPodUID       = "authentication.kubernetes.io/pod-uid"
	ExtraNodeName     = "authentication.kubernetes.io/node-name"
	ExtraNodeUID      = "authentication.kubernetes.io/node-uid"
	ExtraCredentialID = "authentication.kubernetes.io/credential-id"
)

// Ref names an object a token is bound to (or its ServiceAccount).
type Ref struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

// KubernetesClaims is the private "kubernetes.io" claim.
type KubernetesClaims struct {
	Namespace      string           `json:"namespace"`
	ServiceAccount Ref              `json:"serviceaccount"`
	Pod            *Ref             `json:"pod,omitempty"`
	Secret         *Ref             `json:"secret,omitempty"`
	Node           *Ref             `json:"node,omitempty"`
	WarnAfter      *jwt.NumericDate `json:"warnafter,omitempty"`
}

// privateClaims is the token's own part beside the registered claims.
type privateClaims struct {
	Kubernetes KubernetesClaims `json:"kubernetes.io"`
}

// Request is what a token is issued for.
type Request struct {
	Namespace string
	// ServiceAccount is the account's name and UID.
	ServiceAccount Ref
	Audiences      []string
	// Expiration is the token's lifetime.
	Expiration time.Duration
	// Pod or Secret is the object the token is bound to (at most one);
	// Node the pod's node when the pod is scheduled.
	Pod, Secret, Node *Ref
}

// Issuer signs tokens with one key.
type Issuer struct {
	issuer string
	key    crypto.Signer
	keyID  string
	alg    jose.SignatureAlgorithm
	signer jose.Signer
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// NewIssuer returns an issuer of tokens from iss signed with key (ECDSA
// P-256 or RSA).
func NewIssuer(iss string, key crypto.Signer) (*Issuer, error) {
	var alg jose.SignatureAlgorithm
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if k.Curve.Params().BitSize != 256 {
			return nil, fmt.Errorf("the service-account key is an ECDSA key on %s; want P-256", k.Curve.Params().Name)
		}
		alg = jose.ES256
	case *rsa.PrivateKey:
		alg = jose.RS256
	default:
		return nil, fmt.Errorf("the service-account key is a %T; want an ECDSA or RSA key", key)
	}
	kid, err := KeyID(key.Public())
	if err != nil {
		return nil, err
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return nil, err
	}
	return &Issuer{issuer: iss, key: key, keyID: kid, alg: alg, signer: signer}, nil
}

// KeyID is the "kid" of a public key, as kube-apiserver derives it: the
// unpadded base64url SHA-256 of its PKIX DER encoding.
func KeyID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:]), nil
}

// Issuer is the issuer URL (the iss claim).
func (i *Issuer) Issuer() string { return i.issuer }

func (i *Issuer) now() time.Time {
	if i.Now != nil {
		return i.Now()
	}
	return time.Now()
}

// Issue signs a token for r; it returns the token and when it expires.
func (i *Issuer) Issue(r Request) (string, time.Time, error) {
	if r.Namespace == "" || r.ServiceAccount.Name == "" || r.ServiceAccount.UID == "" {
		return "", time.Time{}, errors.New("a token needs the namespace, name and uid of its service account")
	}
	if len(r.Audiences) == 0 {
		return "", time.Time{}, errors.New("a token needs an audience")
	}
	if r.Pod != nil && r.Secret != nil {
		return "", time.Time{}, errors.New("a token is bound to a pod or a secret, not both")
	}
	now := i.now()
	exp := now.Add(r.Expiration)
	std := jwt.Claims{
		Issuer:    i.issuer,
		Subject:   "system:serviceaccount:" + r.Namespace + ":" + r.ServiceAccount.Name,
		Audience:  jwt.Audience(r.Audiences),
		Expiry:    jwt.NewNumericDate(exp),
		NotBefore: jwt.NewNumericDate(now),
		IssuedAt:  jwt.NewNumericDate(now),
		ID:        uuid.NewString(),
	}
	priv := privateClaims{Kubernetes: KubernetesClaims{
		Namespace: r.Namespace, ServiceAccount: r.ServiceAccount, Pod: r.Pod, Secret: r.Secret, Node: r.Node,
	}}
	tok, err := jwt.Signed(i.signer).Claims(std).Claims(priv).Serialize()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("signing the token: %w", err)
	}
	// The expiry the client sees is the one in the token (whole seconds).
	return tok, time.Unix(exp.Unix(), 0), nil
}

// JWKS is the JSON Web Key Set of the issuer's public key, as
// /openid/v1/jwks serves it.
func (i *Issuer) JWKS() jose.JSONWebKeySet {
	return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: i.key.Public(), KeyID: i.keyID, Algorithm: string(i.alg), Use: "sig"}}}
}

// OpenIDConfiguration is the OIDC discovery document, as
// /.well-known/openid-configuration serves it; jwksURI is where the key
// set is.
func (i *Issuer) OpenIDConfiguration(jwksURI string) map[string]any {
	return map[string]any{
		"issuer":                                i.issuer,
		"jwks_uri":                              jwksURI,
		"response_types_supported":              []string{"id_token"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{string(i.alg)},
	}
}

// Lookup reads the objects a token names. Each returns a NotFound API
// error when the object does not exist.
type Lookup interface {
	ServiceAccount(ctx context.Context, ns, name string) (*corev1.ServiceAccount, error)
	Pod(ctx context.Context, ns, name string) (*corev1.Pod, error)
	Secret(ctx context.Context, ns, name string) (*corev1.Secret, error)
}

// Authenticator authenticates service-account tokens of one issuer.
type Authenticator struct {
	issuer *Issuer
	// audiences are the API's own: a token must name one of them unless
	// the caller (a TokenReview) asks for others.
	audiences []string
	lookup    Lookup
	// Leeway is the clock skew allowed on exp, nbf and iat (1 minute).
	Leeway time.Duration
}

// NewAuthenticator validates tokens of issuer for the API's audiences,
// checking the objects they name through lookup.
func NewAuthenticator(issuer *Issuer, audiences []string, lookup Lookup) *Authenticator {
	return &Authenticator{issuer: issuer, audiences: audiences, lookup: lookup, Leeway: time.Minute}
}

// AuthenticateRequest authenticates the request's bearer token (the
// apiserver's Authenticator): ok is false for a request without one, or
// with a token that is not a JWT of this issuer (another authenticator's).
func (a *Authenticator) AuthenticateRequest(r *http.Request) (user.Info, bool, error) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return nil, false, nil
	}
	u, _, ok, err := a.AuthenticateToken(r.Context(), strings.TrimSpace(h[len(prefix):]))
	return u, ok, err
}

// AuthenticateToken validates token for the audiences in ctx
// (authenticator.WithAudiences; the API's own when ctx has none). It
// returns the user and the audiences both the token and the caller
// accept. ok is false when token is not a JWT of this issuer.
func (a *Authenticator) AuthenticateToken(ctx context.Context, token string) (user.Info, []string, bool, error) {
	if strings.Count(token, ".") != 2 {
		return nil, nil, false, nil
	}
	tok, err := jwt.ParseSigned(token, []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.ES512, jose.RS256, jose.RS384, jose.RS512, jose.PS256, jose.PS384, jose.PS512})
	if err != nil {
		return nil, nil, false, nil
	}
	var unverified jwt.Claims
	if err := tok.UnsafeClaimsWithoutVerification(&unverified); err != nil || unverified.Issuer != a.issuer.issuer {
		return nil, nil, false, nil
	}
	var std jwt.Claims
	var priv privateClaims
	if err := tok.Claims(a.issuer.key.Public(), &std, &priv); err != nil {
		return nil, nil, true, errors.New("invalid service-account token: the signature does not verify (signed by another key)")
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: a.issuer.issuer, Time: a.issuer.now()}, a.Leeway); err != nil {
		if errors.Is(err, jwt.ErrExpired) {
			return nil, nil, true, errors.New("invalid service-account token: it has expired")
		}
		return nil, nil, true, fmt.Errorf("invalid service-account token: %w", err)
	}
	if std.Expiry == nil {
		return nil, nil, true, errors.New("invalid service-account token: it has no expiry")
	}
	want, ok := authenticator.AudiencesFrom(ctx)
	if !ok || len(want) == 0 {
		want = a.audiences
	}
	var auds []string
	for _, aud := range want {
		if std.Audience.Contains(aud) {
			auds = append(auds, aud)
		}
	}
	if len(auds) == 0 {
		return nil, nil, true, fmt.Errorf("invalid service-account token: its audiences %v are not any of %v", []string(std.Audience), want)
	}
	k := priv.Kubernetes
	ns, name, found := parseSubject(std.Subject)
	if !found || ns != k.Namespace || name != k.ServiceAccount.Name {
		return nil, nil, true, errors.New("invalid service-account token: its subject does not name its service account")
	}
	sa, err := a.lookup.ServiceAccount(ctx, ns, name)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil, true, fmt.Errorf("invalid service-account token: service account %s/%s has been deleted", ns, name)
	case err != nil:
		return nil, nil, true, fmt.Errorf("checking service account %s/%s: %w", ns, name, err)
	case string(sa.UID) != k.ServiceAccount.UID:
		return nil, nil, true, fmt.Errorf("invalid service-account token: service account UID (%s) does not match claim (%s)", sa.UID, k.ServiceAccount.UID)
	case sa.DeletionTimestamp != nil:
		return nil, nil, true, fmt.Errorf("invalid service-account token: service account %s/%s is being deleted", ns, name)
	}
	extra := map[string][]string{ExtraCredentialID: {"JTI=" + std.ID}}
	if k.Pod != nil {
		pod, err := a.lookup.Pod(ctx, ns, k.Pod.Name)
		switch {
		case apierrors.IsNotFound(err):
			return nil, nil, true, fmt.Errorf("invalid service-account token: pod %s/%s it is bound to has been deleted", ns, k.Pod.Name)
		case err != nil:
			return nil, nil, true, fmt.Errorf("checking pod %s/%s: %w", ns, k.Pod.Name, err)
		case string(pod.UID) != k.Pod.UID:
			return nil, nil, true, fmt.Errorf("invalid service-account token: pod UID (%s) does not match claim (%s): the pod it is bound to was deleted", pod.UID, k.Pod.UID)
		}
		extra[ExtraPodName] = []string{k.Pod.Name}
		extra[ExtraPodUID] = []string{k.Pod.UID}
		if k.Node != nil {
			extra[ExtraNodeName] = []string{k.Node.Name}
			if k.Node.UID != "" {
				extra[ExtraNodeUID] = []string{k.Node.UID}
			}
		}
	}
	if k.Secret != nil {
		sec, err := a.lookup.Secret(ctx, ns, k.Secret.Name)
		switch {
		case apierrors.IsNotFound(err):
			return nil, nil, true, fmt.Errorf("invalid service-account token: secret %s/%s it is bound to has been deleted", ns, k.Secret.Name)
		case err != nil:
			return nil, nil, true, fmt.Errorf("checking secret %s/%s: %w", ns, k.Secret.Name, err)
		case string(sec.UID) != k.Secret.UID:
			return nil, nil, true, fmt.Errorf("invalid service-account token: secret UID (%s) does not match claim (%s)", sec.UID, k.Secret.UID)
		}
	}
	return &user.DefaultInfo{
		Name:   std.Subject,
		UID:    string(sa.UID),
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:" + ns, user.AllAuthenticated},
		Extra:  extra,
	}, auds, true, nil
}

// parseSubject splits system:serviceaccount:<ns>:<name>.
func parseSubject(sub string) (ns, name string, ok bool) {
	rest, ok := strings.CutPrefix(sub, "system:serviceaccount:")
	if !ok {
		return "", "", false
	}
	parts := strings.Split(rest, ":")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" || slices.Contains(parts, "") {
		return "", "", false
	}
	return parts[0], parts[1], true
}
