package apiserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"

	"github.com/headway/headway/internal/testing/cluster"
)

// The probe's copy bomb: an array copied into itself 16 times in a 1.8 KB
// body (unbounded, 5.3 s and 485 MB; ~22 copies exhaust the machine).
// kube-apiserver's 3 MiB copy limit stops it at the 13th copy.
func TestJSONPatchCopyBombRefusedFast(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := ctxT(t)
	raw := newRaw(t, c)
	if _, err := c.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bomb"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ops := []map[string]any{{"op": "add", "path": "/metadata/finalizers", "value": []string{"example.com/" + strings.Repeat("x", 600)}}}
	for i := 0; i < 16; i++ {
		ops = append(ops, map[string]any{"op": "copy", "from": "/metadata/finalizers", "path": "/metadata/finalizers/-"})
	}
	body, _ := json.Marshal(ops)
	if len(body) > 1900 {
		t.Fatalf("the bomb is %d bytes; the probe's was 1.8 KB", len(body))
	}
	start := time.Now()
	code, st, _ := raw.do("PATCH", "/api/v1/namespaces/default/configmaps/bomb", "application/json-patch+json", body)
	took := time.Since(start)
	t.Logf("copy bomb (%d bytes): HTTP %d in %v: %s", len(body), code, took.Round(time.Millisecond), st.Message)
	if code != 422 || st.Reason != metav1.StatusReasonInvalid || !strings.Contains(st.Message, "accumulated size increase of copy") {
		t.Fatalf("copy bomb: got %d %s %q, want 422 Invalid naming the copy limit", code, st.Reason, st.Message)
	}
	if took > 3*time.Second && !raceEnabled { // ~0.25 s of CPU; the machine may be shared
		t.Fatalf("copy bomb took %v to refuse", took)
	}
	got, err := c.Client.CoreV1().ConfigMaps("default").Get(ctx, "bomb", metav1.GetOptions{})
	if err != nil || len(got.Finalizers) != 0 {
		t.Fatalf("the refused patch changed the object: %v %v", got.Finalizers, err)
	}

	// More than 10,000 operations: 413, as kube-apiserver.
	many := make([]map[string]any, 10001)
	for i := range many {
		many[i] = map[string]any{"op": "test", "path": "/metadata/name", "value": "bomb"}
	}
	body, _ = json.Marshal(many)
	code, st, _ = raw.do("PATCH", "/api/v1/namespaces/default/configmaps/bomb", "application/json-patch+json", body)
	if code != 413 || st.Reason != metav1.StatusReasonRequestEntityTooLarge || st.Message != "Request entity too large: The allowed maximum operations in a JSON patch is 10000, got 10001" {
		t.Fatalf("10,001 operations: got %d %s %q", code, st.Reason, st.Message)
	}
	// A copy within the limit still works.
	small := `[{"op":"add","path":"/metadata/labels","value":{"a":"1"}},{"op":"copy","from":"/metadata/labels/a","path":"/metadata/labels/b"}]`
	if code, st, _ := raw.do("PATCH", "/api/v1/namespaces/default/configmaps/bomb", "application/json-patch+json", []byte(small)); code != 200 {
		t.Fatalf("small copy: %d %s", code, st.Message)
	}
}

// Objects over 1.5 MiB encoded are refused with 413 on every way of
// writing them, and nothing is stored.
func TestObjectsOverEtcdLimitRefused(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	raw := newRaw(t, c)
	cms := c.Client.CoreV1().ConfigMaps("default")
	// Labels have no size limit of their own (a ConfigMap's data has 1 MiB):
	// 6,500 of 260 bytes are 1.6 MiB, under the 3 MiB body limit and over
	// etcd's; 5,000 fit.
	domain := strings.Repeat("a", 60) + "." + strings.Repeat("b", 60) + "." + strings.Repeat("c", 60) + ".example.com/"
	labels := func(n int, prefix string) map[string]string {
		m := make(map[string]string, n)
		for i := 0; i < n; i++ {
			m[fmt.Sprintf("%s%s%05d", domain, prefix, i)] = strings.Repeat("v", 60)
		}
		return m
	}
	mib := 1024 * 1024
	big := strings.Repeat("b", mib*16/10)

	_, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "huge", Labels: labels(6500, "l")}}, metav1.CreateOptions{})
	wantTooLarge(t, "create", err)
	if _, err := cms.Get(ctx, "huge", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a refused create stored the object: %v", err)
	}

	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "near", Labels: labels(5000, "l")}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("a 1.4 MiB object is within the limit: %v", err)
	}
	rv := cm.ResourceVersion

	cm.Labels = labels(6500, "l")
	_, err = cms.Update(ctx, cm, metav1.UpdateOptions{})
	wantTooLarge(t, "update", err)

	// Patches that add 0.4 MiB.
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels(1500, "m")}})
	_, err = cms.Patch(ctx, "near", types.MergePatchType, patch, metav1.PatchOptions{})
	wantTooLarge(t, "merge patch", err)
	_, err = cms.Patch(ctx, "near", types.StrategicMergePatchType, patch, metav1.PatchOptions{})
	wantTooLarge(t, "strategic merge patch", err)
	var ops []map[string]any
	for k, v := range labels(1500, "j") {
		ops = append(ops, map[string]any{"op": "add", "path": "/metadata/labels/" + strings.ReplaceAll(k, "/", "~1"), "value": v})
	}
	patch, _ = json.Marshal(ops)
	code, st, _ := raw.do("PATCH", "/api/v1/namespaces/default/configmaps/near", "application/json-patch+json", patch)
	if code != 413 || st.Reason != metav1.StatusReasonRequestEntityTooLarge {
		t.Fatalf("json patch to 1.7 MiB: got %d %s %q", code, st.Reason, st.Message)
	}

	// Server-side apply, of an existing object and of a new one.
	_, err = cms.Apply(ctx, corev1ac.ConfigMap("near", "default").WithLabels(labels(6500, "l")), metav1.ApplyOptions{FieldManager: "probe", Force: true})
	wantTooLarge(t, "apply", err)
	_, err = cms.Apply(ctx, corev1ac.ConfigMap("applied", "default").WithLabels(labels(6500, "l")), metav1.ApplyOptions{FieldManager: "probe"})
	wantTooLarge(t, "apply (create)", err)

	// A status write.
	ns, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "status-big"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ns.Status.Conditions = []corev1.NamespaceCondition{{Type: corev1.NamespaceDeletionContentFailure, Status: corev1.ConditionTrue, Reason: "Probe", Message: big}}
	_, err = c.Client.CoreV1().Namespaces().UpdateStatus(ctx, ns, metav1.UpdateOptions{})
	wantTooLarge(t, "status update", err)

	got, err := cms.Get(ctx, "near", metav1.GetOptions{})
	if err != nil || got.ResourceVersion != rv || len(got.Labels) != 5000 {
		t.Fatalf("refused writes changed the object: rv %s → %s, %d labels, %v", rv, got.ResourceVersion, len(got.Labels), err)
	}
}

func wantTooLarge(t *testing.T, what string, err error) {
	t.Helper()
	if !apierrors.IsRequestEntityTooLargeError(err) {
		t.Fatalf("%s of a 1.6 MiB object: want 413 RequestEntityTooLarge, got %v", what, err)
	}
	if !strings.Contains(err.Error(), "limit is 1572864") && !strings.Contains(err.Error(), "the limit is 1572864") {
		t.Fatalf("%s: the message does not name the limit: %v", what, err)
	}
}

// A resourceVersion that is not a revision is a bad request, on GET,
// LIST, WATCH and in the object of a PUT; nothing changes.
func TestMalformedResourceVersion(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := ctxT(t)
	raw := newRaw(t, c)
	cm, err := c.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "rv"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		"/api/v1/namespaces/default/configmaps/rv?resourceVersion=abc",
		"/api/v1/namespaces/default/configmaps?resourceVersion=abc",
		"/api/v1/namespaces/default/configmaps?watch=true&resourceVersion=abc",
	} {
		code, st, _ := raw.do("GET", path, "", nil)
		want := `resourceVersion: Invalid value: "abc": strconv.ParseUint: parsing "abc": invalid syntax`
		if code != 400 || st.Reason != metav1.StatusReasonBadRequest || st.Message != want {
			t.Fatalf("GET %s: got %d %s %q, want 400 %q", path, code, st.Reason, st.Message, want)
		}
	}
	if code, st, _ := raw.do("GET", "/api/v1/namespaces/default/configmaps/rv?resourceVersion=-1", "", nil); code != 400 {
		t.Fatalf("resourceVersion=-1: %d %q", code, st.Message)
	}
	_, err = c.Client.CoreV1().ConfigMaps("default").Get(ctx, "rv", metav1.GetOptions{ResourceVersion: "abc"})
	if !apierrors.IsBadRequest(err) {
		t.Fatalf("client-go Get with resourceVersion abc: want 400, got %v", err)
	}
	// Valid ones still read.
	for _, rv := range []string{"0", cm.ResourceVersion} {
		if _, err := c.Client.CoreV1().ConfigMaps("default").Get(ctx, "rv", metav1.GetOptions{ResourceVersion: rv}); err != nil {
			t.Fatalf("Get at resourceVersion %s: %v", rv, err)
		}
	}

	body := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"rv","resourceVersion":"abc"},"data":{"k":"v"}}`
	code, st, _ := raw.do("PUT", "/api/v1/namespaces/default/configmaps/rv", "application/json", []byte(body))
	if code != 400 || st.Reason != metav1.StatusReasonBadRequest || !strings.HasPrefix(st.Message, `metadata.resourceVersion: Invalid value: "abc"`) {
		t.Fatalf("PUT with resourceVersion abc: got %d %s %q", code, st.Reason, st.Message)
	}
	code, st, _ = raw.do("PATCH", "/api/v1/namespaces/default/configmaps/rv", "application/merge-patch+json", []byte(`{"metadata":{"resourceVersion":"x1"}}`))
	if code != 400 {
		t.Fatalf("PATCH with resourceVersion x1: got %d %q", code, st.Message)
	}
	got, _ := c.Client.CoreV1().ConfigMaps("default").Get(ctx, "rv", metav1.GetOptions{})
	if got.ResourceVersion != cm.ResourceVersion || len(got.Data) != 0 {
		t.Fatalf("a refused write changed the object")
	}
}

// default, kube-system and kube-public cannot be deleted (403, kube's
// message); other namespaces can.
func TestImmortalNamespaces(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := ctxT(t)
	nss := c.Client.CoreV1().Namespaces()
	for _, name := range []string{"default", "kube-system", "kube-public"} {
		err := nss.Delete(ctx, name, metav1.DeleteOptions{})
		want := fmt.Sprintf(`namespaces %q is forbidden: this namespace may not be deleted`, name)
		if !apierrors.IsForbidden(err) || err.Error() != want {
			t.Fatalf("delete namespace %s: got %v, want 403 %q", name, err, want)
		}
		ns, err := nss.Get(ctx, name, metav1.GetOptions{})
		if err != nil || ns.DeletionTimestamp != nil || ns.Status.Phase != corev1.NamespaceActive {
			t.Fatalf("namespace %s after the refused delete: %v %v", name, ns.DeletionTimestamp, err)
		}
	}
	if err := nss.Delete(ctx, "kube-node-lease", metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatalf("kube-node-lease may be deleted (kube-apiserver allows it): %v", err)
	}
	if _, err := nss.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "mortal"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := nss.Delete(ctx, "mortal", metav1.DeleteOptions{}); err != nil {
		t.Fatalf("an ordinary namespace: %v", err)
	}
}
