package apiserver_test

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/apiserver"
	"github.com/headway/headway/internal/apiserver/admission"
	"github.com/headway/headway/internal/registry/builtin"
	"github.com/headway/headway/internal/storage/memory"
	"github.com/headway/headway/internal/version"
)

// recorder is an admission plugin that records what it is asked, labels
// objects on the way in and refuses what is labelled deny=true.
type recorder struct {
	mu   sync.Mutex
	seen []string
	last map[string]admission.Attributes
}

func (r *recorder) Name() string { return "Recorder" }

func (r *recorder) record(step string, a *admission.Attributes) {
	r.mu.Lock()
	defer r.mu.Unlock()
	key := step + " " + a.String()
	r.seen = append(r.seen, key)
	if r.last == nil {
		r.last = map[string]admission.Attributes{}
	}
	r.last[key] = *a
}

func (r *recorder) Admit(_ context.Context, a *admission.Attributes, _ admission.Objects) error {
	r.record("admit", a)
	if cm, ok := a.Object.(*corev1.ConfigMap); ok {
		if cm.Labels == nil {
			cm.Labels = map[string]string{}
		}
		cm.Labels["admitted"] = "yes"
	}
	return nil
}

func (r *recorder) Validate(ctx context.Context, a *admission.Attributes, o admission.Objects) error {
	r.record("validate", a)
	if cm, ok := a.Object.(*corev1.ConfigMap); ok && cm.Labels["deny"] == "true" {
		return admission.NewForbidden(a, errors.New("denied by the recorder"))
	}
	if cm, ok := a.OldObject.(*corev1.ConfigMap); ok && a.Operation == admission.Delete && cm.Labels["keep"] == "true" {
		return admission.NewForbidden(a, errors.New("kept by the recorder"))
	}
	// The objects a plugin reads are the server's.
	if a.Operation == admission.Create && a.Is("", "configmaps") {
		if _, err := o.Get(ctx, corev1.SchemeGroupVersion.WithResource("namespaces"), "", a.Namespace); err != nil {
			return err
		}
	}
	return nil
}

func (r *recorder) saw(key string) (admission.Attributes, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	a, ok := r.last[key]
	return a, ok
}

func (r *recorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen, r.last = nil, nil
}

// startAdmitted serves the built-in resources with chain on a loopback
// listener and returns a client.
func startAdmitted(t *testing.T, chain admission.Chain) kubernetes.Interface {
	t.Helper()
	srv, err := apiserver.New(apiserver.Config{
		Store: memory.New(), Scheme: builtin.Scheme(), Resources: builtin.Resources(builtin.Options{}),
		Version: version.Info(), Token: "secret", Admission: chain,
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(hs.Close)
	cs, err := kubernetes.NewForConfig(&rest.Config{Host: hs.URL, BearerToken: "secret", QPS: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestAdmissionSeam(t *testing.T) {
	rec := &recorder{}
	cs := startAdmitted(t, admission.Chain{rec})
	ctx := ctxT(t)
	cms := cs.CoreV1().ConfigMaps("default")

	// Create: mutated before it is stored, validated with the user.
	cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "a"}}, metav1.CreateOptions{FieldManager: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if cm.Labels["admitted"] != "yes" {
		t.Fatalf("the mutating step's label was not stored: %v", cm.Labels)
	}
	a, ok := rec.saw("validate CREATE configmaps default/a")
	if !ok {
		t.Fatalf("no validating call for the create; saw %v", rec.seen)
	}
	if a.User.Username != "kubernetes-admin" || a.OldObject != nil || a.Kind.Kind != "ConfigMap" || a.DryRun {
		t.Fatalf("create attributes: %+v", a)
	}
	if o, ok := a.Options.(*metav1.CreateOptions); !ok || o.FieldManager != "test" {
		t.Fatalf("create options: %#v", a.Options)
	}

	// A refusal is the plugin's 403 and nothing is stored.
	_, err = cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "b", Labels: map[string]string{"deny": "true"}}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `configmaps "b" is forbidden: denied by the recorder`) {
		t.Fatalf("denied create: %v", err)
	}
	if _, err := cms.Get(ctx, "b", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("a refused create was stored: %v", err)
	}

	// Update and patch: the old object is the stored one; dry run is said.
	cm.Data = map[string]string{"k": "v"}
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{DryRun: []string{metav1.DryRunAll}}); err != nil {
		t.Fatal(err)
	}
	a, ok = rec.saw("validate UPDATE configmaps default/a")
	if !ok || !a.DryRun || a.OldObject.(*corev1.ConfigMap).Data != nil || a.Object.(*corev1.ConfigMap).Data["k"] != "v" {
		t.Fatalf("update attributes: %+v (seen %v)", a, rec.seen)
	}
	_, err = cms.Patch(ctx, "a", types.MergePatchType, []byte(`{"metadata":{"labels":{"deny":"true"}}}`), metav1.PatchOptions{})
	if !apierrors.IsForbidden(err) {
		t.Fatalf("denied patch: %v", err)
	}
	if got, _ := cms.Get(ctx, "a", metav1.GetOptions{}); got.Labels["deny"] != "" {
		t.Fatalf("a refused patch was stored: %v", got.Labels)
	}

	// Delete: validated with the stored object; refused, it stays.
	if _, err := cms.Patch(ctx, "a", types.MergePatchType, []byte(`{"metadata":{"labels":{"keep":"true"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "a", metav1.DeleteOptions{}); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "kept by the recorder") {
		t.Fatalf("refused delete: %v", err)
	}
	if _, err := cms.Get(ctx, "a", metav1.GetOptions{}); err != nil {
		t.Fatalf("a refused delete removed the object: %v", err)
	}

	// Server-side apply creates through admission too.
	rec.reset()
	apply := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"c"}}`)
	cm, err = cms.Patch(ctx, "c", types.ApplyPatchType, apply, metav1.PatchOptions{FieldManager: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rec.saw("validate CREATE configmaps default/c"); !ok || cm.Labels["admitted"] != "yes" {
		t.Fatalf("apply-create not admitted: %v, labels %v", rec.seen, cm.Labels)
	}

	// Subresources: status with the whole object, scale with Scales,
	// eviction with the Eviction.
	rec.reset()
	d, err := cs.AppsV1().Deployments("default").Create(ctx, &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: podTemplate("web", corev1.RestartPolicyAlways),
		},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d.Status.ObservedGeneration = 1
	if _, err := cs.AppsV1().Deployments("default").UpdateStatus(ctx, d, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if a, ok := rec.saw("validate UPDATE deployments.apps/status default/web"); !ok || a.Kind.Kind != "Deployment" {
		t.Fatalf("status update not admitted as deployments/status: %v", rec.seen)
	}
	if _, err := cs.AppsV1().Deployments("default").UpdateScale(ctx, "web", &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: autoscalingv1.ScaleSpec{Replicas: 3}}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	a, ok = rec.saw("validate UPDATE deployments.apps/scale default/web")
	if !ok || a.Kind.Kind != "Scale" || a.OldObject == nil {
		t.Fatalf("scale not admitted as deployments/scale with Scales: %+v (seen %v)", a, rec.seen)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"}}
	if err := cs.CoreV1().Pods("default").EvictV1(ctx, ev); err != nil {
		t.Fatal(err)
	}
	if a, ok := rec.saw("validate CREATE pods/eviction default/p"); !ok || a.Kind.Kind != "Eviction" {
		t.Fatalf("eviction not admitted as pods/eviction: %v", rec.seen)
	}
}
