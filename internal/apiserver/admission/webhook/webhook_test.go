package webhook

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/apiserver/admission"
)

// objects is an in-memory admission.Objects: namespaces and webhook
// configurations.
type objects struct {
	namespaces map[string]*corev1.Namespace
	mutating   []*admissionregistrationv1.MutatingWebhookConfiguration
	validating []*admissionregistrationv1.ValidatingWebhookConfiguration
}

func (o *objects) Get(_ context.Context, gvr schema.GroupVersionResource, _, name string) (runtime.Object, error) {
	if ns, ok := o.namespaces[name]; ok && gvr.Resource == "namespaces" {
		return ns.DeepCopy(), nil
	}
	return nil, apierrors.NewNotFound(gvr.GroupResource(), name)
}

func (o *objects) List(_ context.Context, gvr schema.GroupVersionResource, _ string) ([]runtime.Object, error) {
	var out []runtime.Object
	switch gvr.Resource {
	case "mutatingwebhookconfigurations":
		for _, c := range o.mutating {
			out = append(out, c.DeepCopy())
		}
	case "validatingwebhookconfigurations":
		for _, c := range o.validating {
			out = append(out, c.DeepCopy())
		}
	}
	return out, nil
}

func (o *objects) UpdateStatus(context.Context, schema.GroupVersionResource, string, string, bool, func(runtime.Object) error) (runtime.Object, error) {
	panic("not used")
}

// tlsFor is a self-signed serving certificate for the names (and
// 127.0.0.1) and its PEM, the caBundle that trusts it.
func tlsFor(t *testing.T, names ...string) (tls.Certificate, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "webhook"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, BasicConstraintsValid: true, IsCA: true,
		DNSNames: names, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// hookServer is a webhook on a loopback HTTPS server; answer decides each
// review. It records the requests it got.
type hookServer struct {
	*httptest.Server
	ca   []byte
	mu   sync.Mutex
	got  []*admissionv1.AdmissionRequest
	path []string
}

func startHook(t *testing.T, answer func(w http.ResponseWriter, r *http.Request, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse, names ...string) *hookServer {
	t.Helper()
	cert, ca := tlsFor(t, names...)
	h := &hookServer{ca: ca}
	h.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rev admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&rev); err != nil || rev.Request == nil {
			http.Error(w, "bad review", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.got = append(h.got, rev.Request)
		h.path = append(h.path, r.URL.Path)
		h.mu.Unlock()
		resp := answer(w, r, rev.Request)
		if resp == nil {
			return
		}
		resp.UID = rev.Request.UID
		out := admissionv1.AdmissionReview{Response: resp}
		out.SetGroupVersionKind(admissionv1.SchemeGroupVersion.WithKind("AdmissionReview"))
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(out)
	}))
	h.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	h.StartTLS()
	t.Cleanup(h.Close)
	return h
}

func (h *hookServer) requests() []*admissionv1.AdmissionRequest {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]*admissionv1.AdmissionRequest(nil), h.got...)
}

func allow(http.ResponseWriter, *http.Request, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Allowed: true}
}

func rule(ops []admissionregistrationv1.OperationType, resources ...string) []admissionregistrationv1.RuleWithOperations {
	return []admissionregistrationv1.RuleWithOperations{{Operations: ops,
		Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: resources}}}
}

var create = []admissionregistrationv1.OperationType{admissionregistrationv1.Create}

func validating(name string, cc admissionregistrationv1.WebhookClientConfig, rules []admissionregistrationv1.RuleWithOperations, change func(*admissionregistrationv1.ValidatingWebhook)) *admissionregistrationv1.ValidatingWebhookConfiguration {
	w := admissionregistrationv1.ValidatingWebhook{Name: name, ClientConfig: cc, Rules: rules,
		SideEffects: ptr.To(admissionregistrationv1.SideEffectClassNone), AdmissionReviewVersions: []string{"v1"},
		FailurePolicy: ptr.To(admissionregistrationv1.Fail), TimeoutSeconds: ptr.To[int32](10),
		NamespaceSelector: &metav1.LabelSelector{}, ObjectSelector: &metav1.LabelSelector{}}
	if change != nil {
		change(&w)
	}
	return &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}, Webhooks: []admissionregistrationv1.ValidatingWebhook{w}}
}

func urlConfig(h *hookServer) admissionregistrationv1.WebhookClientConfig {
	return admissionregistrationv1.WebhookClientConfig{URL: ptr.To(h.URL + "/validate"), CABundle: h.ca}
}

func configMapCreate(ns string, labels map[string]string) *admission.Attributes {
	return &admission.Attributes{
		Operation: admission.Create, Kind: corev1.SchemeGroupVersion.WithKind("ConfigMap"),
		Resource: corev1.SchemeGroupVersion.WithResource("configmaps"), Namespace: ns, Name: "cm",
		Object: &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm", Namespace: ns, Labels: labels}},
		User:   authenticationv1.UserInfo{Username: "alice", Groups: []string{"dev"}},
	}
}

func newObjects() *objects {
	return &objects{namespaces: map[string]*corev1.Namespace{
		"dev":  {ObjectMeta: metav1.ObjectMeta{Name: "dev", Labels: map[string]string{"env": "dev"}}},
		"prod": {ObjectMeta: metav1.ObjectMeta{Name: "prod", Labels: map[string]string{"env": "prod"}}},
	}}
}

func TestValidatingWebhook(t *testing.T) {
	deny := startHook(t, func(_ http.ResponseWriter, _ *http.Request, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		if req.Namespace == "prod" {
			return &admissionv1.AdmissionResponse{Allowed: false, Result: &metav1.Status{Message: "no changes in prod", Code: http.StatusForbidden}}
		}
		return &admissionv1.AdmissionResponse{Allowed: true}
	})
	o := newObjects()
	o.validating = []*admissionregistrationv1.ValidatingWebhookConfiguration{validating("policy.example.com", urlConfig(deny), rule(create, "configmaps"), nil)}
	v := NewValidating(Options{})
	ctx := context.Background()

	if err := v.Validate(ctx, configMapCreate("dev", nil), o); err != nil {
		t.Fatalf("allowed request: %v", err)
	}
	err := v.Validate(ctx, configMapCreate("prod", nil), o)
	if st, ok := err.(*apierrors.StatusError); !ok || st.ErrStatus.Code != http.StatusForbidden ||
		st.ErrStatus.Message != `admission webhook "policy.example.com" denied the request: no changes in prod` {
		t.Fatalf("denied request: %#v", err)
	}
	reqs := deny.requests()
	if len(reqs) != 2 {
		t.Fatalf("webhook called %d times, want 2", len(reqs))
	}
	r := reqs[1]
	if r.Operation != admissionv1.Create || r.Kind.Kind != "ConfigMap" || r.Resource.Resource != "configmaps" || r.Name != "cm" ||
		r.UserInfo.Username != "alice" || r.UID == "" || r.DryRun == nil || *r.DryRun || !strings.Contains(string(r.Object.Raw), `"kind":"ConfigMap"`) || r.OldObject.Raw != nil {
		t.Fatalf("review request: %+v", r)
	}
	// Rules that do not match: another operation, resource or subresource.
	upd := configMapCreate("prod", nil)
	upd.Operation = admission.Update
	secret := configMapCreate("prod", nil)
	secret.Resource.Resource = "secrets"
	status := configMapCreate("prod", nil)
	status.Subresource = "status"
	for _, a := range []*admission.Attributes{upd, secret, status} {
		if err := v.Validate(ctx, a, o); err != nil {
			t.Errorf("%s reached the webhook: %v", a, err)
		}
	}
	if n := len(deny.requests()); n != 2 {
		t.Fatalf("webhook called %d times, want still 2", n)
	}
}

func TestSelectors(t *testing.T) {
	h := startHook(t, func(http.ResponseWriter, *http.Request, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		return &admissionv1.AdmissionResponse{Allowed: false}
	})
	o := newObjects()
	o.validating = []*admissionregistrationv1.ValidatingWebhookConfiguration{validating("sel.example.com", urlConfig(h), rule(create, "*"), func(w *admissionregistrationv1.ValidatingWebhook) {
		w.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{"env": "prod"}}
		w.ObjectSelector = &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "skip", Operator: metav1.LabelSelectorOpDoesNotExist}}}
	})}
	v := NewValidating(Options{})
	for _, tc := range []struct {
		a      *admission.Attributes
		denied bool
	}{
		{configMapCreate("prod", nil), true},
		{configMapCreate("dev", nil), false},
		{configMapCreate("prod", map[string]string{"skip": "yes"}), false},
	} {
		err := v.Validate(context.Background(), tc.a, o)
		if denied := err != nil; denied != tc.denied {
			t.Errorf("%s labels %v: denied=%v (%v), want %v", tc.a.Namespace, tc.a.Object.(*corev1.ConfigMap).Labels, denied, err, tc.denied)
		} else if denied && err.Error() != `admission webhook "sel.example.com" denied the request without explanation` {
			t.Errorf("message %q", err.Error())
		}
	}
}

func TestFailurePolicyAndTimeout(t *testing.T) {
	// A listener that is closed: nothing answers there.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "https://" + ln.Addr().String() + "/"
	ln.Close()
	// The slow hook never answers while the test runs. (Waiting for its
	// request's context instead let it send an empty answer when that
	// context ended before the caller's deadline did, 1 run in many.)
	release := make(chan struct{})
	slow := startHook(t, func(_ http.ResponseWriter, r *http.Request, _ *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		<-release
		return nil
	})
	t.Cleanup(func() { close(release) }) // before the server's Close, which waits for the handler
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		cc      admissionregistrationv1.WebhookClientConfig
		policy  admissionregistrationv1.FailurePolicyType
		timeout int32
		wantErr string
	}{
		{"unreachable, Fail", admissionregistrationv1.WebhookClientConfig{URL: &dead}, admissionregistrationv1.Fail, 10,
			`Internal error occurred: failed calling webhook "hook.example.com": failed to call webhook: Post "` + dead + `?timeout=10s": dial tcp`},
		{"unreachable, Ignore", admissionregistrationv1.WebhookClientConfig{URL: &dead}, admissionregistrationv1.Ignore, 10, ""},
		{"timeout, Fail", urlConfig(slow), admissionregistrationv1.Fail, 1, "context deadline exceeded"},
		{"untrusted certificate, Fail", admissionregistrationv1.WebhookClientConfig{URL: ptr.To(slow.URL)}, admissionregistrationv1.Fail, 10, "certificate signed by unknown authority"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := newObjects()
			o.validating = []*admissionregistrationv1.ValidatingWebhookConfiguration{validating("hook.example.com", tc.cc, rule(create, "configmaps"), func(w *admissionregistrationv1.ValidatingWebhook) {
				w.FailurePolicy = &tc.policy
				w.TimeoutSeconds = &tc.timeout
			})}
			err := NewValidating(Options{}).Validate(ctx, configMapCreate("dev", nil), o)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("failurePolicy Ignore refused: %v", err)
				}
				return
			}
			if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want a 500 with %q", err, tc.wantErr)
			}
		})
	}
}

func TestMutatingWebhookThroughAService(t *testing.T) {
	h := startHook(t, func(_ http.ResponseWriter, _ *http.Request, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		pt := admissionv1.PatchTypeJSONPatch
		return &admissionv1.AdmissionResponse{Allowed: true, PatchType: &pt,
			Patch: []byte(`[{"op":"add","path":"/metadata/labels","value":{"mutated":"` + string(req.Operation) + `"}},{"op":"add","path":"/data","value":{"k":"v"}}]`)}
	}, "hook.webhooks.svc")
	port := int32(h.Listener.Addr().(*net.TCPAddr).Port)
	o := newObjects()
	o.mutating = []*admissionregistrationv1.MutatingWebhookConfiguration{{
		ObjectMeta: metav1.ObjectMeta{Name: "m"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "label.example.com", Rules: rule(create, "configmaps"),
			ClientConfig: admissionregistrationv1.WebhookClientConfig{CABundle: h.ca,
				Service: &admissionregistrationv1.ServiceReference{Namespace: "webhooks", Name: "hook", Path: ptr.To("/mutate"), Port: ptr.To[int32](443)}},
			SideEffects: ptr.To(admissionregistrationv1.SideEffectClassNone), AdmissionReviewVersions: []string{"v1"},
		}},
	}}
	var resolved []string
	m := NewMutating(Options{Resolve: func(_ context.Context, _ admission.Objects, ns, name string, p int32) (string, error) {
		resolved = append(resolved, fmt.Sprintf("%s/%s:%d", ns, name, p))
		return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port))), nil
	}})
	a := configMapCreate("dev", nil)
	before := a.Object
	if err := m.Admit(context.Background(), a, o); err != nil {
		t.Fatal(err)
	}
	cm := a.Object.(*corev1.ConfigMap)
	if cm == before || cm.Labels["mutated"] != "CREATE" || cm.Data["k"] != "v" || cm.Name != "cm" {
		t.Fatalf("patched object %+v", cm)
	}
	if len(resolved) != 1 || resolved[0] != "webhooks/hook:443" || h.path[0] != "/mutate" {
		t.Fatalf("service resolution %v, path %v", resolved, h.path)
	}

	// A dry run only reaches webhooks without side effects.
	o.mutating[0].Webhooks[0].SideEffects = ptr.To(admissionregistrationv1.SideEffectClassSome)
	dry := configMapCreate("dev", nil)
	dry.DryRun = true
	err := m.Admit(context.Background(), dry, o)
	if !apierrors.IsBadRequest(err) || err.Error() != `admission webhook "label.example.com" does not support dry run` {
		t.Fatalf("dry run to a webhook with side effects: %v", err)
	}
}

func TestResourceRules(t *testing.T) {
	for _, tc := range []struct {
		patterns []string
		res, sub string
		want     bool
	}{
		{[]string{"*"}, "pods", "", true},
		{[]string{"*"}, "pods", "status", false},
		{[]string{"*/*"}, "pods", "status", true},
		{[]string{"*/*"}, "pods", "", true},
		{[]string{"pods/*"}, "pods", "eviction", true},
		{[]string{"pods/*"}, "pods", "", false},
		{[]string{"*/status"}, "deployments", "status", true},
		{[]string{"*/status"}, "deployments", "scale", false},
		{[]string{"pods"}, "services", "", false},
	} {
		if got := resourceMatches(tc.patterns, tc.res, tc.sub); got != tc.want {
			t.Errorf("%v matches %s/%s = %v, want %v", tc.patterns, tc.res, tc.sub, got, tc.want)
		}
	}
	ns := configMapCreate("dev", nil)
	cluster := &admission.Attributes{Operation: admission.Create, Resource: corev1.SchemeGroupVersion.WithResource("namespaces")}
	namespaced := []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{"*"},
		Rule: admissionregistrationv1.Rule{APIGroups: []string{"*"}, APIVersions: []string{"*"}, Resources: []string{"*"}, Scope: ptr.To(admissionregistrationv1.NamespacedScope)}}}
	if !MatchesRules(namespaced, ns) || MatchesRules(namespaced, cluster) {
		t.Error("Namespaced scope")
	}
}
