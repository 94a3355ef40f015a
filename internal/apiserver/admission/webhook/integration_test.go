package webhook_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/internal/testing/kubectl"
)

// TestWebhooksOnARealServer: webhook configurations created through the
// API are called by the server for matching writes: the mutating one's
// patch is stored, the validating one's denial reaches kubectl as
// kube-apiserver words it, and a failing webhook fails the write unless
// its failurePolicy is Ignore.
func TestWebhooksOnARealServer(t *testing.T) {
	var mu sync.Mutex
	users := map[string]bool{}
	hook := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rev admissionv1.AdmissionReview
		if err := json.NewDecoder(r.Body).Decode(&rev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		req := rev.Request
		mu.Lock()
		users[req.UserInfo.Username] = true
		mu.Unlock()
		resp := &admissionv1.AdmissionResponse{UID: req.UID, Allowed: true}
		var cm corev1.ConfigMap
		json.Unmarshal(req.Object.Raw, &cm)
		switch r.URL.Path {
		case "/mutate":
			pt := admissionv1.PatchTypeJSONPatch
			resp.PatchType = &pt
			resp.Patch = []byte(`[{"op":"add","path":"/metadata/annotations","value":{"checked-by":"webhook"}}]`)
		case "/validate":
			if cm.Data["forbidden"] != "" {
				resp.Allowed = false
				resp.Result = &metav1.Status{Message: "the key forbidden is not allowed", Reason: metav1.StatusReasonForbidden, Code: http.StatusForbidden}
			}
		}
		out := admissionv1.AdmissionReview{Response: resp}
		out.SetGroupVersionKind(admissionv1.SchemeGroupVersion.WithKind("AdmissionReview"))
		json.NewEncoder(w).Encode(out)
	}))
	defer hook.Close()
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hook.Certificate().Raw})

	c := cluster.Start(t, cluster.WithoutDNS())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs := c.Client
	rules := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
	}}
	only := &metav1.LabelSelector{MatchLabels: map[string]string{"hooked": "yes"}}
	none := ptr.To(admissionregistrationv1.SideEffectClassNone)
	_, err := cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "annotate"},
		Webhooks: []admissionregistrationv1.MutatingWebhook{{
			Name: "annotate.example.com", Rules: rules, ObjectSelector: only, SideEffects: none, AdmissionReviewVersions: []string{"v1"},
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: ptr.To(hook.URL + "/mutate"), CABundle: ca},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "policy"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "policy.example.com", Rules: rules, ObjectSelector: only, SideEffects: none, AdmissionReviewVersions: []string{"v1"},
			ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: ptr.To(hook.URL + "/validate"), CABundle: ca},
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	cm, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "ok", Labels: map[string]string{"hooked": "yes"}}, Data: map[string]string{"a": "b"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Annotations["checked-by"] != "webhook" {
		t.Fatalf("the mutating webhook's patch was not stored: %v", cm.Annotations)
	}
	other, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unhooked"}}, metav1.CreateOptions{})
	if err != nil || other.Annotations["checked-by"] != "" {
		t.Fatalf("an object the selector leaves out was sent: %v %v", err, other.Annotations)
	}

	_, err = cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "bad", Labels: map[string]string{"hooked": "yes"}}, Data: map[string]string{"forbidden": "x"},
	}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || err.Error() != `admission webhook "policy.example.com" denied the request: the key forbidden is not allowed` {
		t.Fatalf("denied create: %v", err)
	}
	_, stderr, err := kubectl.Run(t, c.Kubeconfig, "create", "configmap", "bad2", "--from-literal=forbidden=x")
	if err != nil {
		t.Fatalf("kubectl create of an unlabelled configmap: %v", err)
	}
	_, stderr, err = kubectl.Run(t, c.Kubeconfig, "label", "configmap", "bad2", "hooked=yes")
	if err == nil || !strings.Contains(stderr, `admission webhook "policy.example.com" denied the request: the key forbidden is not allowed`) {
		t.Fatalf("kubectl label into the webhook's scope: %v\n%s", err, stderr)
	}
	mu.Lock()
	if !users["kubernetes-admin"] {
		t.Errorf("the webhook never saw the admin user: %v", users)
	}
	mu.Unlock()

	// The webhook goes away: Fail refuses, Ignore lets the write pass.
	hook.Close()
	_, err = cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "down", Labels: map[string]string{"hooked": "yes"}}}, metav1.CreateOptions{})
	if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), `failed calling webhook "annotate.example.com"`) {
		t.Fatalf("create with the webhook down: %v", err)
	}
	for _, name := range []string{"annotate", "policy"} {
		patch := []byte(`{"webhooks":[{"name":"` + name + `.example.com","failurePolicy":"Ignore"}]}`)
		var err error
		if name == "annotate" {
			_, err = cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Patch(ctx, name, "application/strategic-merge-patch+json", patch, metav1.PatchOptions{})
		} else {
			_, err = cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Patch(ctx, name, "application/strategic-merge-patch+json", patch, metav1.PatchOptions{})
		}
		if err != nil {
			t.Fatalf("webhook configurations are not themselves sent to webhooks: %v", err)
		}
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "down", Labels: map[string]string{"hooked": "yes"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create with the webhook down and failurePolicy Ignore: %v", err)
	}
}
