package satoken

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/authentication/authenticator"
)

// objects is a Lookup over maps.
type objects struct {
	sas     map[string]*corev1.ServiceAccount
	pods    map[string]*corev1.Pod
	secrets map[string]*corev1.Secret
}

func (o *objects) ServiceAccount(_ context.Context, ns, name string) (*corev1.ServiceAccount, error) {
	if sa, ok := o.sas[ns+"/"+name]; ok {
		return sa, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "serviceaccounts"}, name)
}

func (o *objects) Pod(_ context.Context, ns, name string) (*corev1.Pod, error) {
	if p, ok := o.pods[ns+"/"+name]; ok {
		return p, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "pods"}, name)
}

func (o *objects) Secret(_ context.Context, ns, name string) (*corev1.Secret, error) {
	if s, ok := o.secrets[ns+"/"+name]; ok {
		return s, nil
	}
	return nil, apierrors.NewNotFound(schema.GroupResource{Resource: "secrets"}, name)
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type fixture struct {
	issuer *Issuer
	auth   *Authenticator
	objs   *objects
	now    time.Time
}

func setup(t *testing.T) *fixture {
	t.Helper()
	iss, err := NewIssuer(DefaultIssuer, newKey(t))
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{issuer: iss, now: time.Now()}
	iss.Now = func() time.Time { return f.now }
	f.objs = &objects{
		sas: map[string]*corev1.ServiceAccount{"shop/default": {ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default", UID: "sa-uid"}}},
		pods: map[string]*corev1.Pod{"shop/web-0": {ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-0", UID: "pod-uid"},
			Spec: corev1.PodSpec{ServiceAccountName: "default", NodeName: "n1"}}},
		secrets: map[string]*corev1.Secret{"shop/s": {ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "s", UID: "secret-uid"}}},
	}
	f.auth = NewAuthenticator(iss, []string{DefaultIssuer}, f.objs)
	return f
}

func (f *fixture) issue(t *testing.T, mod func(*Request)) string {
	t.Helper()
	r := Request{Namespace: "shop", ServiceAccount: Ref{Name: "default", UID: "sa-uid"}, Audiences: []string{DefaultIssuer},
		Expiration: time.Hour, Pod: &Ref{Name: "web-0", UID: "pod-uid"}, Node: &Ref{Name: "n1", UID: "node-uid"}}
	if mod != nil {
		mod(&r)
	}
	tok, exp, err := f.issuer.Issue(r)
	if err != nil {
		t.Fatal(err)
	}
	if want := f.now.Add(r.Expiration); exp.Unix() != want.Unix() {
		t.Errorf("expiry %v, want %v", exp, want)
	}
	return tok
}

func TestTokenClaimsAreKubes(t *testing.T) {
	f := setup(t)
	tok := f.issue(t, nil)
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", tok)
	}
	var header map[string]any
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	json.Unmarshal(hdr, &header)
	wantKid, _ := KeyID(f.issuer.key.Public())
	if header["alg"] != "ES256" || header["kid"] != wantKid {
		t.Errorf("header %v, want alg ES256 and kid %s", header, wantKid)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"iss", "sub", "aud", "exp", "iat", "nbf", "jti", "kubernetes.io"} {
		if _, ok := claims[k]; !ok {
			t.Errorf("claim %s missing from %s", k, payload)
		}
	}
	if claims["sub"] != "system:serviceaccount:shop:default" || claims["iss"] != DefaultIssuer {
		t.Errorf("sub %v iss %v", claims["sub"], claims["iss"])
	}
	if exp, iat := claims["exp"].(float64), claims["iat"].(float64); exp-iat != 3600 {
		t.Errorf("exp-iat = %v, want 3600", exp-iat)
	}
	k8s, _ := json.Marshal(claims["kubernetes.io"])
	want := `{"namespace":"shop","node":{"name":"n1","uid":"node-uid"},"pod":{"name":"web-0","uid":"pod-uid"},"serviceaccount":{"name":"default","uid":"sa-uid"}}`
	if string(k8s) != want {
		t.Errorf("kubernetes.io claim\n%s\nwant\n%s", k8s, want)
	}
}

func TestValidTokenAuthenticates(t *testing.T) {
	f := setup(t)
	r, _ := http.NewRequest("GET", "/api", nil)
	r.Header.Set("Authorization", "Bearer "+f.issue(t, nil))
	u, ok, err := f.auth.AuthenticateRequest(r)
	if err != nil || !ok {
		t.Fatalf("ok %v err %v", ok, err)
	}
	if u.GetName() != "system:serviceaccount:shop:default" || u.GetUID() != "sa-uid" {
		t.Errorf("user %s uid %s", u.GetName(), u.GetUID())
	}
	if want := []string{"system:serviceaccounts", "system:serviceaccounts:shop", "system:authenticated"}; !slices.Equal(u.GetGroups(), want) {
		t.Errorf("groups %v, want %v", u.GetGroups(), want)
	}
	ex := u.GetExtra()
	if ex[ExtraPodName][0] != "web-0" || ex[ExtraPodUID][0] != "pod-uid" || ex[ExtraNodeName][0] != "n1" || !strings.HasPrefix(ex[ExtraCredentialID][0], "JTI=") {
		t.Errorf("extra %v", ex)
	}
}

func TestInvalidTokensAreRejected(t *testing.T) {
	other, _ := NewIssuer(DefaultIssuer, newKey(t))
	for _, tc := range []struct {
		name string
		// prepare changes the world after the token was issued; it
		// returns the token to check ("" for the usual one).
		prepare func(f *fixture, tok string) string
		want    string
	}{
		{"expired", func(f *fixture, tok string) string { f.now = f.now.Add(time.Hour + 2*time.Minute); return tok }, "expired"},
		{"wrong signature", func(f *fixture, _ string) string {
			tok, _, _ := other.Issue(Request{Namespace: "shop", ServiceAccount: Ref{Name: "default", UID: "sa-uid"}, Audiences: []string{DefaultIssuer}, Expiration: time.Hour})
			return tok
		}, "signature"},
		{"tampered payload", func(f *fixture, tok string) string {
			p := strings.Split(tok, ".")
			payload, _ := base64.RawURLEncoding.DecodeString(p[1])
			payload = []byte(strings.Replace(string(payload), "shop:default", "shop:admin0", 1))
			p[1] = base64.RawURLEncoding.EncodeToString(payload)
			return strings.Join(p, ".")
		}, "signature"},
		{"wrong audience", func(f *fixture, _ string) string {
			tok, _, _ := f.issuer.Issue(Request{Namespace: "shop", ServiceAccount: Ref{Name: "default", UID: "sa-uid"}, Audiences: []string{"vault"}, Expiration: time.Hour})
			return tok
		}, "audiences"},
		{"bound pod deleted", func(f *fixture, tok string) string { delete(f.objs.pods, "shop/web-0"); return tok }, "deleted"},
		{"bound pod recreated", func(f *fixture, tok string) string {
			f.objs.pods["shop/web-0"] = &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "web-0", UID: "new-uid"}}
			return tok
		}, "does not match"},
		{"service account deleted", func(f *fixture, tok string) string { delete(f.objs.sas, "shop/default"); return tok }, "deleted"},
		{"service account recreated", func(f *fixture, tok string) string {
			f.objs.sas["shop/default"] = &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "default", UID: types.UID("other")}}
			return tok
		}, "does not match"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := setup(t)
			tok := tc.prepare(f, f.issue(t, nil))
			u, _, ok, err := f.auth.AuthenticateToken(context.Background(), tok)
			if err == nil || !ok || u != nil {
				t.Fatalf("user %v ok %v err %v, want the token rejected", u, ok, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestSecretBoundToken(t *testing.T) {
	f := setup(t)
	tok := f.issue(t, func(r *Request) { r.Pod, r.Node, r.Secret = nil, nil, &Ref{Name: "s", UID: "secret-uid"} })
	if _, _, ok, err := f.auth.AuthenticateToken(context.Background(), tok); !ok || err != nil {
		t.Fatalf("ok %v err %v", ok, err)
	}
	delete(f.objs.secrets, "shop/s")
	if _, _, _, err := f.auth.AuthenticateToken(context.Background(), tok); err == nil {
		t.Fatal("a token bound to a deleted secret authenticates")
	}
}

func TestNotOurTokenIsLeftToOthers(t *testing.T) {
	f := setup(t)
	foreign, _ := NewIssuer("https://oidc.example", newKey(t))
	tok, _, _ := foreign.Issue(Request{Namespace: "shop", ServiceAccount: Ref{Name: "default", UID: "sa-uid"}, Audiences: []string{"x"}, Expiration: time.Hour})
	for _, token := range []string{"0123456789abcdef0123456789abcdef", "a.b.c", tok} {
		if u, _, ok, err := f.auth.AuthenticateToken(context.Background(), token); ok || err != nil || u != nil {
			t.Errorf("%q: ok %v err %v, want it left to other authenticators", token, ok, err)
		}
	}
}

func TestAudiencesFromTheCaller(t *testing.T) {
	f := setup(t)
	tok := f.issue(t, func(r *Request) { r.Audiences = []string{"vault", "nats"} })
	if _, _, _, err := f.auth.AuthenticateToken(context.Background(), tok); err == nil {
		t.Fatal("a token for vault and nats authenticates to the API")
	}
	ctx := authenticator.WithAudiences(context.Background(), authenticator.Audiences{"nats", "other"})
	_, auds, ok, err := f.auth.AuthenticateToken(ctx, tok)
	if !ok || err != nil || !slices.Equal(auds, []string{"nats"}) {
		t.Fatalf("auds %v ok %v err %v, want [nats]", auds, ok, err)
	}
}

func TestRSAKeysSignToo(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	iss, err := NewIssuer(DefaultIssuer, k)
	if err != nil {
		t.Fatal(err)
	}
	f := setup(t)
	auth := NewAuthenticator(iss, []string{DefaultIssuer}, f.objs)
	tok, _, err := iss.Issue(Request{Namespace: "shop", ServiceAccount: Ref{Name: "default", UID: "sa-uid"}, Audiences: []string{DefaultIssuer}, Expiration: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok, err := auth.AuthenticateToken(context.Background(), tok); !ok || err != nil {
		t.Fatalf("ok %v err %v", ok, err)
	}
	if ks := iss.JWKS(); len(ks.Keys) != 1 || ks.Keys[0].Algorithm != "RS256" {
		t.Errorf("jwks %+v", ks)
	}
}
