package app_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/satoken"
	"github.com/headway/headway/internal/testing/cluster"
)

const issuer = "https://kubernetes.default.svc.cluster.local"

// get GETs path on the API with token as the bearer ("" for none).
func get(t *testing.T, c *cluster.Cluster, path, token string) (int, []byte) {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest(http.MethodGet, c.URL+path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, body
}

func claims(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", token)
	}
	data, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTokenRequestAndReview(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := context.Background()
	sas := c.Client.CoreV1().ServiceAccounts("default")

	tr, err := sas.CreateToken(ctx, "default", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(tr.Spec.Audiences, []string{issuer}) || tr.Spec.ExpirationSeconds == nil || *tr.Spec.ExpirationSeconds != 3600 {
		t.Errorf("defaults: audiences %v expiration %v, want [%s] and 3600", tr.Spec.Audiences, tr.Spec.ExpirationSeconds, issuer)
	}
	if d := time.Until(tr.Status.ExpirationTimestamp.Time); d < 59*time.Minute || d > 61*time.Minute {
		t.Errorf("expires in %v, want an hour", d)
	}
	cl := claims(t, tr.Status.Token)
	if cl["sub"] != "system:serviceaccount:default:default" || cl["iss"] != issuer ||
		int64(cl["exp"].(float64)) != tr.Status.ExpirationTimestamp.Unix() {
		t.Errorf("claims %v", cl)
	}

	// The token authenticates; a wrong one does not.
	if code, body := get(t, c, "/api", tr.Status.Token); code != http.StatusOK {
		t.Fatalf("GET /api with the token: %d %s", code, body)
	}
	if code, _ := get(t, c, "/api", tr.Status.Token[:len(tr.Status.Token)-4]+"AAAA"); code != http.StatusUnauthorized {
		t.Errorf("GET /api with a wrongly signed token: %d, want 401", code)
	}

	// TokenReview says whom it is.
	review, err := c.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: tr.Status.Token}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := review.Status
	if !st.Authenticated || st.User.Username != "system:serviceaccount:default:default" ||
		!slices.Equal(st.User.Groups, []string{"system:serviceaccounts", "system:serviceaccounts:default", "system:authenticated"}) ||
		!slices.Equal(st.Audiences, []string{issuer}) {
		t.Errorf("review status %+v", st)
	}
	review, err = c.Client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: tr.Status.Token, Audiences: []string{"vault"}}}, metav1.CreateOptions{})
	if err != nil || review.Status.Authenticated || review.Status.Error == "" {
		t.Errorf("review for another audience: %+v %v, want unauthenticated with an error", review.Status, err)
	}
	// Reviews are create-only.
	if _, err := c.Client.AuthenticationV1().RESTClient().Get().Resource("tokenreviews").DoRaw(ctx); !apierrors.IsMethodNotSupported(err) {
		t.Errorf("GET tokenreviews: %v, want 405", err)
	}

	// Bad requests, answered as kube-apiserver does.
	if _, err := sas.CreateToken(ctx, "default", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](599)}}, metav1.CreateOptions{}); !apierrors.IsInvalid(err) ||
		!strings.Contains(err.Error(), "may not specify a duration less than 10 minutes") {
		t.Errorf("expirationSeconds 599: %v, want 422", err)
	}
	if _, err := sas.CreateToken(ctx, "nobody", &authenticationv1.TokenRequest{}, metav1.CreateOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("token of a missing account: %v, want 404", err)
	}
	if _, err := sas.CreateToken(ctx, "default", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		BoundObjectRef: &authenticationv1.BoundObjectReference{Kind: "ConfigMap", APIVersion: "v1", Name: "x"}}}, metav1.CreateOptions{}); !apierrors.IsBadRequest(err) {
		t.Errorf("bound to a ConfigMap: %v, want 400", err)
	}
}

func TestPodBoundTokenDiesWithThePod(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := context.Background()
	pods := c.Client.CoreV1().Pods("default")
	pod, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ref := &authenticationv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: "web", UID: pod.UID}
	tr, err := c.Client.CoreV1().ServiceAccounts("default").CreateToken(ctx, "default",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{BoundObjectRef: ref}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	k8s := claims(t, tr.Status.Token)["kubernetes.io"].(map[string]any)
	if p := k8s["pod"].(map[string]any); p["name"] != "web" || p["uid"] != string(pod.UID) {
		t.Errorf("pod claim %v", p)
	}
	if code, body := get(t, c, "/api", tr.Status.Token); code != http.StatusOK {
		t.Fatalf("bound token while the pod exists: %d %s", code, body)
	}
	// A stale UID is a conflict.
	bad := *ref
	bad.UID = "0000"
	if _, err := c.Client.CoreV1().ServiceAccounts("default").CreateToken(ctx, "default",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{BoundObjectRef: &bad}}, metav1.CreateOptions{}); !apierrors.IsConflict(err) {
		t.Errorf("bound to a stale pod UID: %v, want 409", err)
	}
	if err := pods.Delete(ctx, "web", metav1.DeleteOptions{GracePeriodSeconds: ptr.To[int64](0)}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 10*time.Second, "the pod gone", func() (bool, error) {
		_, err := pods.Get(ctx, "web", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if code, _ := get(t, c, "/api", tr.Status.Token); code != http.StatusUnauthorized {
		t.Errorf("bound token after its pod was deleted: %d, want 401", code)
	}
}

func TestServiceAccountAdmission(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := context.Background()
	pods := c.Client.CoreV1().Pods("default")
	mk := func(name string, mod func(*corev1.Pod)) (*corev1.Pod, error) {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{
			InitContainers: []corev1.Container{{Name: "init", Image: "busybox"}},
			Containers:     []corev1.Container{{Name: "c", Image: "busybox"}, {Name: "d", Image: "busybox"}},
		}}
		if mod != nil {
			mod(p)
		}
		return pods.Create(ctx, p, metav1.CreateOptions{})
	}
	p, err := mk("plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.ServiceAccountName != "default" {
		t.Errorf("serviceAccountName %q, want default", p.Spec.ServiceAccountName)
	}
	if len(p.Spec.Volumes) != 1 || !strings.HasPrefix(p.Spec.Volumes[0].Name, "kube-api-access-") || len(p.Spec.Volumes[0].Name) != len("kube-api-access-")+5 {
		t.Fatalf("volumes %+v, want one kube-api-access-xxxxx", p.Spec.Volumes)
	}
	v := p.Spec.Volumes[0]
	src := v.Projected.Sources
	if len(src) != 3 || src[0].ServiceAccountToken == nil || *src[0].ServiceAccountToken.ExpirationSeconds != 3607 || src[0].ServiceAccountToken.Path != "token" ||
		src[1].ConfigMap == nil || src[1].ConfigMap.Name != "kube-root-ca.crt" || src[1].ConfigMap.Items[0].Key != "ca.crt" ||
		src[2].DownwardAPI == nil || src[2].DownwardAPI.Items[0].FieldRef.FieldPath != "metadata.namespace" || src[2].DownwardAPI.Items[0].Path != "namespace" {
		t.Errorf("projected sources %+v", src)
	}
	for _, ctr := range append(p.Spec.InitContainers, p.Spec.Containers...) {
		want := corev1.VolumeMount{Name: v.Name, ReadOnly: true, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}
		if !slices.ContainsFunc(ctr.VolumeMounts, func(m corev1.VolumeMount) bool {
			return m.Name == want.Name && m.ReadOnly && m.MountPath == want.MountPath
		}) {
			t.Errorf("container %s mounts %+v, want %+v", ctr.Name, ctr.VolumeMounts, want)
		}
	}

	// automountServiceAccountToken: false on the pod, or on the account.
	p, err = mk("nomount", func(p *corev1.Pod) { p.Spec.AutomountServiceAccountToken = ptr.To(false) })
	if err != nil || len(p.Spec.Volumes) != 0 || len(p.Spec.Containers[0].VolumeMounts) != 0 {
		t.Errorf("automount off on the pod: %v %+v", err, p.Spec)
	}
	if _, err := c.Client.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "quiet"},
		AutomountServiceAccountToken: ptr.To(false)}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	p, err = mk("quiet", func(p *corev1.Pod) { p.Spec.ServiceAccountName = "quiet" })
	if err != nil || len(p.Spec.Volumes) != 0 {
		t.Errorf("automount off on the account: %v %+v", err, p.Spec.Volumes)
	}
	// A container with its own mount there keeps it.
	p, err = mk("own", func(p *corev1.Pod) {
		p.Spec.Volumes = []corev1.Volume{{Name: "mine", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "mine", MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}}
	})
	if err != nil || len(p.Spec.Containers[0].VolumeMounts) != 1 || p.Spec.Containers[0].VolumeMounts[0].Name != "mine" || len(p.Spec.Containers[1].VolumeMounts) != 1 {
		t.Errorf("own mount at the token path: %v %+v", err, p.Spec.Containers)
	}

	// A missing account: 403 as kube-apiserver words it, nothing stored.
	_, err = mk("lost", func(p *corev1.Pod) { p.Spec.ServiceAccountName = "ghost" })
	if !apierrors.IsForbidden(err) || err.Error() != `pods "lost" is forbidden: error looking up service account default/ghost: serviceaccount "ghost" not found` {
		t.Errorf("pod of a missing account: %v", err)
	}
	if _, err := pods.Get(ctx, "lost", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the rejected pod was stored: %v", err)
	}
}

func TestOIDCDiscovery(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	code, body := get(t, c, "/.well-known/openid-configuration", c.Running.PKI.Token)
	var conf map[string]any
	if code != http.StatusOK || json.Unmarshal(body, &conf) != nil {
		t.Fatalf("openid-configuration: %d %s", code, body)
	}
	if conf["issuer"] != issuer || conf["jwks_uri"] != issuer+"/openid/v1/jwks" {
		t.Errorf("openid-configuration %v", conf)
	}
	code, body = get(t, c, "/openid/v1/jwks", c.Running.PKI.Token)
	var jwks struct {
		Keys []struct {
			Kty, Kid, Alg, Use string
		}
	}
	if code != http.StatusOK || json.Unmarshal(body, &jwks) != nil || len(jwks.Keys) != 1 {
		t.Fatalf("jwks: %d %s", code, body)
	}
	if k := jwks.Keys[0]; k.Kty != "EC" || k.Alg != "ES256" || k.Use != "sig" || k.Kid == "" {
		t.Errorf("key %+v", k)
	}
	// The key that signs tokens is the one published.
	tr, err := c.Client.CoreV1().ServiceAccounts("default").CreateToken(context.Background(), "default", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	hdr, _ := base64.RawURLEncoding.DecodeString(strings.Split(tr.Status.Token, ".")[0])
	if !bytes.Contains(hdr, []byte(`"kid":"`+jwks.Keys[0].Kid+`"`)) {
		t.Errorf("token header %s does not name the published key %s", hdr, jwks.Keys[0].Kid)
	}
	if code, _ := get(t, c, "/openid/v1/jwks", ""); code != http.StatusUnauthorized {
		t.Errorf("jwks without credentials: %d, want 401", code)
	}
}

// kubectl create token default prints a token the API accepts.
func TestKubectlCreateToken(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	var out, errOut bytes.Buffer
	cmd := kubectlcmd.NewDefaultKubectlCommandWithArgs(kubectlcmd.KubectlOptions{
		IOStreams: genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut},
	})
	cmd.SetArgs([]string{"--kubeconfig", c.Kubeconfig, "create", "token", "default", "--duration", "15m"})
	if err := cmd.Execute(); err != nil {
		t.Fatalf("kubectl create token: %v %s", err, errOut.String())
	}
	token := strings.TrimSpace(out.String())
	cl := claims(t, token)
	if exp, iat := cl["exp"].(float64), cl["iat"].(float64); exp-iat != 900 {
		t.Errorf("--duration 15m gave a lifetime of %vs", exp-iat)
	}
	if code, body := get(t, c, "/api", token); code != http.StatusOK {
		t.Fatalf("the token kubectl printed does not authenticate: %d %s", code, body)
	}
}

// TestBadTokensAreUnauthorized: every service-account token the API must
// not accept is answered 401 Unauthorized with kube-apiserver's Status, on
// a resource request as on discovery: expired, signed by another key,
// for another audience, bound to a deleted pod (TestPodBoundTokenDiesWithThePod
// has the last with a tampered signature too).
func TestBadTokensAreUnauthorized(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := context.Background()
	sa, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	req := satoken.Request{Namespace: "default", ServiceAccount: satoken.Ref{Name: "default", UID: string(sa.UID)},
		Audiences: []string{issuer}, Expiration: time.Hour}

	// The cluster's own key and issuer: the token is good until it expires.
	own, err := satoken.NewIssuer(issuer, c.Running.PKI.ServiceAccountKey)
	if err != nil {
		t.Fatal(err)
	}
	good, _, err := own.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	own.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
	expired, _, err := own.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	// Another key, same issuer, same claims.
	otherKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	other, err := satoken.NewIssuer(issuer, otherKey)
	if err != nil {
		t.Fatal(err)
	}
	forged, _, err := other.Issue(req)
	if err != nil {
		t.Fatal(err)
	}
	// A TokenRequest for another audience (vault's): good for vault's
	// TokenReview, not for the API.
	tr, err := c.Client.CoreV1().ServiceAccounts("default").CreateToken(ctx, "default",
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"vault"}}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	const pods = "/api/v1/namespaces/default/pods"
	if code, body := get(t, c, "/api", good); code != http.StatusOK {
		t.Fatalf("a good token signed with the cluster's key: %d %s", code, body)
	}
	// Authenticated but not authorized: 403, not 401 (the control).
	if code, body := get(t, c, pods, good); code != http.StatusForbidden {
		t.Fatalf("listing pods with a good token and no binding: %d %s, want 403", code, body)
	}
	for name, token := range map[string]string{
		"expired":                expired,
		"signed by another key":  forged,
		"for another audience":   tr.Status.Token,
		"not a token":            "x.y.z",
		"expired, tampered with": expired[:len(expired)-4] + "AAAA",
	} {
		for _, path := range []string{"/api", pods} {
			code, body := get(t, c, path, token)
			var st metav1.Status
			if err := json.Unmarshal(body, &st); err != nil || code != http.StatusUnauthorized ||
				st.Kind != "Status" || st.Reason != metav1.StatusReasonUnauthorized || st.Code != http.StatusUnauthorized || st.Message != "Unauthorized" {
				t.Errorf("GET %s with a token %s: %d %s, want 401 with the Unauthorized Status", path, name, code, body)
			}
		}
	}
}
