package apiserver_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/headway/headway/internal/testing/cluster"
)

// TestMain lets the test binary run as kubectl (the kubectl Headway embeds),
// so tests drive the real kubectl as a separate process.
// kubectl runs the embedded kubectl against c with its own cache dir.
func kubectl(t *testing.T, c *cluster.Cluster, home, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], append([]string{"--kubeconfig", c.Kubeconfig, "--cache-dir", filepath.Join(home, "cache")}, args...)...)
	cmd.Env = append(os.Environ(), "HEADWAY_TEST_KUBECTL=1", "HOME="+home, "KUBECONFIG=")
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func mustKubectl(t *testing.T, c *cluster.Cluster, home, stdin string, args ...string) string {
	t.Helper()
	out, err := kubectl(t, c, home, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

const widgetCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.example.com
spec:
  group: example.com
  scope: Namespaced
  names:
    plural: widgets
    singular: widget
    kind: Widget
    shortNames: [wd]
    categories: [toys]
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.selector
    additionalPrinterColumns:
    - name: Replicas
      type: integer
      jsonPath: .spec.replicas
    - name: Color
      type: string
      jsonPath: .spec.color
      priority: 1
    - name: Age
      type: date
      jsonPath: .metadata.creationTimestamp
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              replicas:
                type: integer
                minimum: 0
                description: How many widgets to make.
              color:
                type: string
                default: blue
              size:
                type: object
                default: {}
                properties:
                  unit: {type: string, default: cm}
              ports:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    port: {type: integer}
              extra:
                type: object
                x-kubernetes-preserve-unknown-fields: true
          status:
            type: object
            properties:
              replicas: {type: integer}
              selector: {type: string}
              phase: {type: string}
  - name: v1beta1
    served: true
    storage: false
    schema:
      openAPIV3Schema:
        type: object
        x-kubernetes-preserve-unknown-fields: true
`

const gadgetCRD = `apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gadgets.tools.example.org
spec:
  group: tools.example.org
  scope: Cluster
  names: {plural: gadgets, singular: gadget, kind: Gadget}
  versions:
  - name: v1alpha1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              level: {type: integer, maximum: 10}
`

var (
	widgetsV1      = schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"}
	widgetsV1beta1 = schema.GroupVersionResource{Group: "example.com", Version: "v1beta1", Resource: "widgets"}
	gadgets        = schema.GroupVersionResource{Group: "tools.example.org", Version: "v1alpha1", Resource: "gadgets"}
	crds           = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

func widget(name string, spec map[string]any) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "example.com/v1", "kind": "Widget",
		"metadata": map[string]any{"name": name},
		"spec":     spec,
	}}
}

func crdCondition(u *unstructured.Unstructured, typ string) string {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m := c.(map[string]any)
		if m["type"] == typ {
			return m["status"].(string)
		}
	}
	return ""
}

func statusErr(t *testing.T, err error) metav1.Status {
	t.Helper()
	var se *apierrors.StatusError
	if err == nil || !errorsAs(err, &se) {
		t.Fatalf("want a Status error, got %v", err)
	}
	return se.ErrStatus
}

func errorsAs(err error, se **apierrors.StatusError) bool {
	s, ok := err.(*apierrors.StatusError)
	if ok {
		*se = s
	}
	return ok
}

// TestCustomResources drives CustomResourceDefinitions and custom resources
// with kubectl and the dynamic client, and restarts the server on the same
// store to check that both are kept.
func TestCustomResources(t *testing.T) {
	dir := t.TempDir()
	c, err := cluster.StartE(dir, cluster.WithBolt(dir), cluster.WithoutDNS())
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			c.Stop()
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	home := t.TempDir()
	dyn := dynamic.NewForConfigOrDie(c.Config)

	// kubectl apply of the definitions, then kubectl get by plural, short
	// name and category right away.
	mustKubectl(t, c, home, "", "get", "pods") // fills kubectl's discovery cache first
	mustKubectl(t, c, home, widgetCRD+"---\n"+gadgetCRD, "apply", "-f", "-")
	if out := mustKubectl(t, c, home, "", "get", "widgets"); !strings.Contains(out, "No resources found in default namespace") {
		t.Errorf("kubectl get widgets right after apply: %s", out)
	}
	mustKubectl(t, c, home, "", "get", "wd")
	mustKubectl(t, c, home, "", "get", "toys")
	mustKubectl(t, c, home, "", "get", "gadgets")

	cluster.WaitFor(t, 30*time.Second, "Established and NamesAccepted", func() (bool, error) {
		u, err := dyn.Resource(crds).Get(ctx, "widgets.example.com", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return crdCondition(u, "Established") == "True" && crdCondition(u, "NamesAccepted") == "True", nil
	})

	t.Run("discovery", func(t *testing.T) {
		disc := c.Client.Discovery()
		list, err := disc.ServerResourcesForGroupVersion("example.com/v1")
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]metav1.APIResource{}
		for _, r := range list.APIResources {
			byName[r.Name] = r
		}
		w := byName["widgets"]
		if w.Kind != "Widget" || !w.Namespaced || !slices.Equal(w.ShortNames, []string{"wd"}) || !slices.Equal(w.Categories, []string{"toys"}) || w.SingularName != "widget" {
			t.Errorf("widgets in discovery: %+v", w)
		}
		if byName["widgets/status"].Kind != "Widget" || byName["widgets/scale"].Kind != "Scale" {
			t.Errorf("subresources in discovery: %+v", list.APIResources)
		}
		groups, err := disc.ServerGroups()
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, g := range groups.Groups {
			if g.Name == "example.com" {
				found = true
				if g.PreferredVersion.Version != "v1" || len(g.Versions) != 2 {
					t.Errorf("example.com versions: %+v", g)
				}
			}
		}
		if !found {
			t.Errorf("example.com not in /apis")
		}
		// Aggregated discovery (what client-go asks for first).
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+"/apis", nil)
		req.Header.Set("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
		body := doRaw(t, c, req)
		if !strings.Contains(body, `"resource":"widgets"`) || !strings.Contains(body, `"resource":"gadgets"`) {
			t.Errorf("aggregated discovery lacks the custom resources: %.300s", body)
		}
	})

	t.Run("openapi and kubectl explain", func(t *testing.T) {
		out := mustKubectl(t, c, home, "", "explain", "widgets.spec.replicas")
		if !strings.Contains(out, "FIELD: replicas <integer>") || !strings.Contains(out, "How many widgets to make.") {
			t.Errorf("kubectl explain (OpenAPI v3):\n%s", out)
		}
		out = mustKubectl(t, c, home, "", "explain", "widgets.spec", "--output", "plaintext-openapiv2")
		if !strings.Contains(out, "replicas") || !strings.Contains(out, "KIND:       Widget") && !strings.Contains(out, "KIND:     Widget") {
			t.Errorf("kubectl explain (OpenAPI v2):\n%s", out)
		}
		out = mustKubectl(t, c, home, "", "explain", "gadgets.spec.level")
		if !strings.Contains(out, "<integer>") {
			t.Errorf("kubectl explain gadgets:\n%s", out)
		}
	})

	t.Run("kubectl validation, defaults and pruning", func(t *testing.T) {
		bad := "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w0}\nspec: {replicas: 1, bogus: 1}\n"
		out, err := kubectl(t, c, home, bad, "apply", "-f", "-")
		if err == nil || !strings.Contains(out, `unknown field "spec.bogus"`) {
			t.Errorf("kubectl apply with an unknown field: %v\n%s", err, out)
		}
		mustKubectl(t, c, home, bad, "apply", "--validate=false", "-f", "-")
		u, err := dyn.Resource(widgetsV1).Namespace("default").Get(ctx, "w0", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		spec := u.Object["spec"].(map[string]any)
		if _, ok := spec["bogus"]; ok {
			t.Errorf("unknown field kept: %v", spec)
		}
		if spec["color"] != "blue" || spec["size"].(map[string]any)["unit"] != "cm" {
			t.Errorf("defaults not applied: %v", spec)
		}
		if u.GetGeneration() != 1 {
			t.Errorf("generation = %d, want 1", u.GetGeneration())
		}
	})

	t.Run("schema validation", func(t *testing.T) {
		_, err := dyn.Resource(widgetsV1).Namespace("default").Create(ctx, widget("bad", map[string]any{"replicas": "string"}), metav1.CreateOptions{})
		st := statusErr(t, err)
		if st.Code != 422 || st.Reason != metav1.StatusReasonInvalid ||
			!strings.Contains(st.Message, `spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer`) {
			t.Errorf("invalid widget: %d %s %s", st.Code, st.Reason, st.Message)
		}
		if st.Details == nil || len(st.Details.Causes) == 0 || st.Details.Causes[0].Field != "spec.replicas" {
			t.Errorf("causes: %+v", st.Details)
		}
		_, err = dyn.Resource(widgetsV1).Namespace("default").Create(ctx, widget("neg", map[string]any{"replicas": int64(-1)}), metav1.CreateOptions{})
		if st := statusErr(t, err); st.Code != 422 || !strings.Contains(st.Message, "spec.replicas") {
			t.Errorf("negative replicas: %s", st.Message)
		}
		_, err = dyn.Resource(widgetsV1).Namespace("default").Create(ctx, widget("dup", map[string]any{
			"ports": []any{map[string]any{"name": "a", "port": int64(1)}, map[string]any{"name": "a", "port": int64(2)}}}), metav1.CreateOptions{})
		if st := statusErr(t, err); st.Code != 422 || !strings.Contains(st.Message, "spec.ports[1]: Duplicate value") {
			t.Errorf("duplicate list-map key: %s", st.Message)
		}
		bad := widget("Bad_Name", map[string]any{})
		_, err = dyn.Resource(widgetsV1).Namespace("default").Create(ctx, bad, metav1.CreateOptions{})
		if st := statusErr(t, err); st.Code != 422 || !strings.Contains(st.Message, "metadata.name") {
			t.Errorf("bad name: %s", st.Message)
		}
	})

	t.Run("verbs, status and generation", func(t *testing.T) {
		ws := dyn.Resource(widgetsV1).Namespace("default")
		w := widget("w1", map[string]any{"replicas": int64(1), "extra": map[string]any{"anything": "kept"}})
		w.Object["status"] = map[string]any{"phase": "ignored on create"}
		w.SetLabels(map[string]string{"app": "w"})
		created, err := ws.Create(ctx, w, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := created.Object["status"]; ok {
			t.Errorf("status kept on create: %v", created.Object["status"])
		}
		if v, _, _ := unstructured.NestedString(created.Object, "spec", "extra", "anything"); v != "kept" {
			t.Errorf("preserved unknown field pruned: %v", created.Object["spec"])
		}
		// Update without resourceVersion is refused.
		noRV := created.DeepCopy()
		noRV.SetResourceVersion("")
		_, err = ws.Update(ctx, noRV, metav1.UpdateOptions{})
		if st := statusErr(t, err); st.Code != 422 || !strings.Contains(st.Message, "must be specified for an update") {
			t.Errorf("update without resourceVersion: %d %s", st.Code, st.Message)
		}
		// A stale resourceVersion conflicts.
		stale := created.DeepCopy()
		stale.SetResourceVersion("1")
		if _, err = ws.Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
			t.Errorf("stale update: %v", err)
		}
		// Main update: status ignored, generation bumps with spec.
		upd := created.DeepCopy()
		unstructured.SetNestedField(upd.Object, int64(2), "spec", "replicas")
		upd.Object["status"] = map[string]any{"phase": "ignored"}
		updated, err := ws.Update(ctx, upd, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := updated.Object["status"]; ok || updated.GetGeneration() != 2 {
			t.Errorf("after update: generation %d status %v", updated.GetGeneration(), updated.Object["status"])
		}
		// Status update: spec ignored, generation kept.
		st := updated.DeepCopy()
		st.Object["status"] = map[string]any{"phase": "Ready", "replicas": int64(2), "selector": "app=w", "bogus": "pruned"}
		unstructured.SetNestedField(st.Object, int64(9), "spec", "replicas")
		afterStatus, err := ws.UpdateStatus(ctx, st, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r, _, _ := unstructured.NestedInt64(afterStatus.Object, "spec", "replicas"); r != 2 {
			t.Errorf("status write changed spec.replicas to %d", r)
		}
		if p, _, _ := unstructured.NestedString(afterStatus.Object, "status", "phase"); p != "Ready" || afterStatus.GetGeneration() != 2 {
			t.Errorf("after status write: %v generation %d", afterStatus.Object["status"], afterStatus.GetGeneration())
		}
		if _, found, _ := unstructured.NestedFieldNoCopy(afterStatus.Object, "status", "bogus"); found {
			t.Errorf("unknown status field kept")
		}
		// A status write with a bad type is refused.
		badSt := afterStatus.DeepCopy()
		badSt.Object["status"] = map[string]any{"replicas": "two"}
		if _, err := ws.UpdateStatus(ctx, badSt, metav1.UpdateOptions{}); err == nil || statusErr(t, err).Code != 422 {
			t.Errorf("bad status write: %v", err)
		}
		// Merge and JSON patches; strategic merge patch is not for custom resources.
		p, err := ws.Patch(ctx, "w1", types.MergePatchType, []byte(`{"spec":{"color":"red"}}`), metav1.PatchOptions{})
		if err != nil || p.Object["spec"].(map[string]any)["color"] != "red" || p.GetGeneration() != 3 {
			t.Errorf("merge patch: %v %v", err, p)
		}
		p, err = ws.Patch(ctx, "w1", types.JSONPatchType, []byte(`[{"op":"replace","path":"/spec/color","value":"green"}]`), metav1.PatchOptions{})
		if err != nil || p.Object["spec"].(map[string]any)["color"] != "green" {
			t.Errorf("json patch: %v %v", err, p)
		}
		_, err = ws.Patch(ctx, "w1", types.StrategicMergePatchType, []byte(`{"spec":{"color":"x"}}`), metav1.PatchOptions{})
		if st := statusErr(t, err); st.Code != http.StatusUnsupportedMediaType {
			t.Errorf("strategic merge patch: %d %s", st.Code, st.Message)
		}
		_, err = ws.Patch(ctx, "w1", types.MergePatchType, []byte(`{"spec":{"replicas":"x"}}`), metav1.PatchOptions{})
		if st := statusErr(t, err); st.Code != 422 {
			t.Errorf("invalid merge patch: %d %s", st.Code, st.Message)
		}
		// The same object through the other served version (stored once).
		beta, err := dyn.Resource(widgetsV1beta1).Namespace("default").Get(ctx, "w1", metav1.GetOptions{})
		if err != nil || beta.GetAPIVersion() != "example.com/v1beta1" || beta.GetUID() != created.GetUID() {
			t.Errorf("v1beta1 view: %v %v", err, beta)
		}
		// Label selector, field selector.
		l, err := ws.List(ctx, metav1.ListOptions{LabelSelector: "app=w", FieldSelector: "metadata.name=w1"})
		if err != nil || len(l.Items) != 1 {
			t.Errorf("list with selectors: %v %d", err, len(l.Items))
		}
	})

	t.Run("server-side apply", func(t *testing.T) {
		ws := dyn.Resource(widgetsV1).Namespace("default")
		cfg := widget("applied", map[string]any{"replicas": int64(1), "ports": []any{map[string]any{"name": "http", "port": int64(80)}}})
		out, err := ws.Apply(ctx, "applied", cfg, metav1.ApplyOptions{FieldManager: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		if out.Object["spec"].(map[string]any)["color"] != "blue" || len(out.GetManagedFields()) == 0 {
			t.Errorf("apply create: %v", out.Object)
		}
		// Bob adds a port: the list is a map keyed by name, so both stay.
		bob := widget("applied", map[string]any{"ports": []any{map[string]any{"name": "https", "port": int64(443)}}})
		out, err = ws.Apply(ctx, "applied", bob, metav1.ApplyOptions{FieldManager: "bob"})
		if err != nil {
			t.Fatal(err)
		}
		if ports, _, _ := unstructured.NestedSlice(out.Object, "spec", "ports"); len(ports) != 2 {
			t.Errorf("ports after two appliers: %v", ports)
		}
		// Bob taking Alice's field conflicts unless forced.
		bob2 := widget("applied", map[string]any{"replicas": int64(5)})
		if _, err = ws.Apply(ctx, "applied", bob2, metav1.ApplyOptions{FieldManager: "bob"}); !apierrors.IsConflict(err) {
			t.Errorf("conflicting apply: %v", err)
		}
		out, err = ws.Apply(ctx, "applied", bob2, metav1.ApplyOptions{FieldManager: "bob", Force: true})
		if err != nil || out.Object["spec"].(map[string]any)["replicas"] != int64(5) {
			t.Errorf("forced apply: %v %v", err, out)
		}
		// kubectl apply --server-side.
		mustKubectl(t, c, home, "apiVersion: example.com/v1\nkind: Widget\nmetadata: {name: ssa}\nspec: {replicas: 3}\n", "apply", "--server-side", "-f", "-")
		if got, err := ws.Get(ctx, "ssa", metav1.GetOptions{}); err != nil || got.Object["spec"].(map[string]any)["replicas"] != int64(3) {
			t.Errorf("kubectl apply --server-side: %v %v", err, got)
		}
	})

	t.Run("scale and printer columns", func(t *testing.T) {
		mustKubectl(t, c, home, "", "scale", "widget/w1", "--replicas=4")
		u, err := dyn.Resource(widgetsV1).Namespace("default").Get(ctx, "w1", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r, _, _ := unstructured.NestedInt64(u.Object, "spec", "replicas"); r != 4 {
			t.Errorf("spec.replicas after kubectl scale = %d", r)
		}
		if _, found, _ := unstructured.NestedFieldNoCopy(u.Object, "status", "phase"); !found {
			t.Errorf("scaling dropped the status")
		}
		sc, err := dyn.Resource(widgetsV1).Namespace("default").Get(ctx, "w1", metav1.GetOptions{}, "scale")
		if err != nil {
			t.Fatal(err)
		}
		if r, _, _ := unstructured.NestedInt64(sc.Object, "status", "replicas"); r != 2 {
			t.Errorf("scale status.replicas = %d: %v", r, sc.Object)
		}
		if s, _, _ := unstructured.NestedString(sc.Object, "status", "selector"); s != "app=w" {
			t.Errorf("scale selector = %q", s)
		}
		out := mustKubectl(t, c, home, "", "get", "widgets", "w1")
		if !strings.Contains(out, "REPLICAS") || !strings.Contains(out, "AGE") || strings.Contains(out, "COLOR") || !strings.Contains(out, "w1") {
			t.Errorf("kubectl get widgets:\n%s", out)
		}
		var row []string
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 0 && f[0] == "w1" {
				row = f
			}
		}
		if len(row) < 2 || row[1] != "4" {
			t.Errorf("row of w1 in:\n%s", out)
		}
		out = mustKubectl(t, c, home, "", "get", "widgets", "w1", "-o", "wide")
		if !strings.Contains(out, "COLOR") || !strings.Contains(out, "green") {
			t.Errorf("kubectl get -o wide:\n%s", out)
		}
	})

	t.Run("watch and deletecollection", func(t *testing.T) {
		ws := dyn.Resource(widgetsV1).Namespace("watched")
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "watched"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		wi, err := ws.Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer wi.Stop()
		for _, n := range []string{"a", "b"} {
			if _, err := ws.Create(ctx, widget(n, map[string]any{}), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := ws.Patch(ctx, "a", types.MergePatchType, []byte(`{"spec":{"color":"x"}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := ws.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Fatal(err)
		}
		var got []string
		for len(got) < 5 {
			select {
			case ev := <-wi.ResultChan():
				got = append(got, string(ev.Type)+" "+ev.Object.(*unstructured.Unstructured).GetName())
			case <-time.After(30 * time.Second):
				t.Fatalf("watch events so far: %v", got)
			}
		}
		want := []string{"ADDED a", "ADDED b", "MODIFIED a", "DELETED a", "DELETED b"}
		if !slices.Equal(got, want) {
			t.Errorf("watch events %v, want %v", got, want)
		}
		if l, _ := ws.List(ctx, metav1.ListOptions{}); len(l.Items) != 0 {
			t.Errorf("deletecollection left %d", len(l.Items))
		}
	})

	t.Run("cluster-scoped", func(t *testing.T) {
		gs := dyn.Resource(gadgets)
		g := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "tools.example.org/v1alpha1", "kind": "Gadget",
			"metadata": map[string]any{"name": "g1"}, "spec": map[string]any{"level": int64(3)}}}
		if _, err := gs.Create(ctx, g, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		g2 := g.DeepCopy()
		g2.SetName("g2")
		unstructured.SetNestedField(g2.Object, int64(11), "spec", "level")
		if _, err := gs.Create(ctx, g2, metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "should be less than or equal to 10") {
			t.Errorf("level 11: %v", err)
		}
		if out := mustKubectl(t, c, home, "", "get", "gadgets"); !strings.Contains(out, "g1") {
			t.Errorf("kubectl get gadgets:\n%s", out)
		}
	})

	t.Run("invalid definitions", func(t *testing.T) {
		// Rejected with the field causes kube-apiserver gives (a schema the
		// same for every version is validated as spec.validation, as there).
		for _, tc := range []struct {
			name  string
			props map[string]apiextensionsv1.JSONSchemaProps
			cause string
		}{
			{"untyped field", map[string]apiextensionsv1.JSONSchemaProps{"bad": {}},
				"spec.validation.openAPIV3Schema.properties[bad].type"},
			{"default of the wrong type", map[string]apiextensionsv1.JSONSchemaProps{
				"spec": {Type: "object", Properties: map[string]apiextensionsv1.JSONSchemaProps{"n": {Type: "number", Default: &apiextensionsv1.JSON{Raw: []byte(`"x"`)}}}}},
				"spec.validation.openAPIV3Schema.properties[spec].properties[n].default"},
		} {
			bad := &apiextensionsv1.CustomResourceDefinition{
				ObjectMeta: metav1.ObjectMeta{Name: "things.example.com"},
				Spec: apiextensionsv1.CustomResourceDefinitionSpec{
					Group: "example.com", Scope: apiextensionsv1.NamespaceScoped,
					Names: apiextensionsv1.CustomResourceDefinitionNames{Plural: "things", Kind: "Thing"},
					Versions: []apiextensionsv1.CustomResourceDefinitionVersion{{Name: "v1", Served: true, Storage: true,
						Schema: &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: &apiextensionsv1.JSONSchemaProps{
							Type: "object", Properties: tc.props}}}},
				},
			}
			obj, _ := runtime.DefaultUnstructuredConverter.ToUnstructured(bad)
			u := &unstructured.Unstructured{Object: obj}
			u.SetAPIVersion("apiextensions.k8s.io/v1")
			u.SetKind("CustomResourceDefinition")
			_, err := dyn.Resource(crds).Create(ctx, u, metav1.CreateOptions{})
			st := statusErr(t, err)
			if st.Code != 422 || st.Reason != metav1.StatusReasonInvalid || st.Details == nil {
				t.Fatalf("%s: %d %s %+v", tc.name, st.Code, st.Message, st.Details)
			}
			var fields []string
			for _, c := range st.Details.Causes {
				fields = append(fields, c.Field)
			}
			if !slices.Contains(fields, tc.cause) {
				t.Errorf("%s: causes %v, want %s (%s)", tc.name, fields, tc.cause, st.Message)
			}
		}
		if _, err := dyn.Resource(crds).Get(ctx, "things.example.com", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("a rejected definition was stored: %v", err)
		}
		// Names another definition in the group already has.
		dup := strings.ReplaceAll(strings.ReplaceAll(gadgetCRD, "gadgets.tools", "gizmos.tools"), "plural: gadgets", "plural: gizmos")
		mustKubectl(t, c, home, dup, "apply", "-f", "-")
		cluster.WaitFor(t, 30*time.Second, "NamesAccepted=False", func() (bool, error) {
			u, err := dyn.Resource(crds).Get(ctx, "gizmos.tools.example.org", metav1.GetOptions{})
			return err == nil && crdCondition(u, "NamesAccepted") == "False", err
		})
		if _, err := dyn.Resource(schema.GroupVersionResource{Group: "tools.example.org", Version: "v1alpha1", Resource: "gizmos"}).List(ctx, metav1.ListOptions{}); !apierrors.IsNotFound(err) {
			t.Errorf("gizmos served despite the name conflict: %v", err)
		}
		mustKubectl(t, c, home, "", "delete", "crd", "gizmos.tools.example.org")
	})

	// Restart on the same store: definitions and objects are restored.
	stopped = true
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	c, err = cluster.StartE(dir, cluster.WithBolt(dir), cluster.WithoutDNS())
	if err != nil {
		t.Fatal(err)
	}
	stopped = false
	dyn = dynamic.NewForConfigOrDie(c.Config)
	u, err := dyn.Resource(widgetsV1).Namespace("default").Get(ctx, "w1", metav1.GetOptions{})
	if err != nil || u.GetGeneration() != 5 { // create, update, two patches, scale
		t.Fatalf("w1 after restart: %v %v", err, u)
	}
	if out := mustKubectl(t, c, home, "", "get", "wd"); !strings.Contains(out, "w1") {
		t.Errorf("kubectl get wd after restart:\n%s", out)
	}

	t.Run("deleting the definition", func(t *testing.T) {
		ws := dyn.Resource(widgetsV1).Namespace("default")
		wi, err := ws.Watch(ctx, metav1.ListOptions{ResourceVersion: u.GetResourceVersion()})
		if err != nil {
			t.Fatal(err)
		}
		defer wi.Stop()
		// A custom resource with a finalizer holds the definition until it goes.
		held := widget("held", map[string]any{})
		held.SetFinalizers([]string{"example.com/hold"})
		if _, err := ws.Create(ctx, held, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := dyn.Resource(crds).Delete(ctx, "widgets.example.com", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, 30*time.Second, "the widgets without finalizers to go", func() (bool, error) {
			l, err := ws.List(ctx, metav1.ListOptions{})
			return err == nil && len(l.Items) == 1 && l.Items[0].GetName() == "held", err
		})
		_, err = ws.Create(ctx, widget("late", map[string]any{}), metav1.CreateOptions{})
		if st := statusErr(t, err); st.Code != http.StatusMethodNotAllowed {
			t.Errorf("create while terminating: %d %s", st.Code, st.Message)
		}
		crd, err := dyn.Resource(crds).Get(ctx, "widgets.example.com", metav1.GetOptions{})
		if err != nil || crdCondition(crd, "Terminating") != "True" {
			t.Errorf("terminating definition: %v %v", err, crd)
		}
		if _, err := ws.Patch(ctx, "held", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, 30*time.Second, "the definition to go", func() (bool, error) {
			_, err := dyn.Resource(crds).Get(ctx, "widgets.example.com", metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		// The server stops serving the widgets when its watch of the
		// definitions sees the deletion, just after the definition is gone.
		cluster.WaitFor(t, 10*time.Second, "the widgets no longer served", func() (bool, error) {
			_, err := ws.List(ctx, metav1.ListOptions{})
			if !apierrors.IsNotFound(err) {
				return false, fmt.Errorf("widgets still served: %v", err)
			}
			if _, err := c.Client.Discovery().ServerResourcesForGroupVersion("example.com/v1"); !apierrors.IsNotFound(err) {
				return false, fmt.Errorf("example.com/v1 still in discovery: %v", err)
			}
			return true, nil
		})
		// The open watch saw the deletions, then ended.
		deleted := map[string]bool{}
		for ev := range wi.ResultChan() {
			if ev.Type == watch.Deleted {
				deleted[ev.Object.(*unstructured.Unstructured).GetName()] = true
			}
		}
		if !deleted["w1"] || !deleted["held"] {
			t.Errorf("deletions seen by the watch: %v", deleted)
		}
		// Creating it again starts empty.
		mustKubectl(t, c, home, widgetCRD, "apply", "-f", "-")
		if out := mustKubectl(t, c, home, "", "get", "widgets", "-A"); !strings.Contains(out, "No resources found") {
			t.Errorf("widgets after re-creating the definition:\n%s", out)
		}
	})
}

// doRaw sends req as the admin and returns the body.
func doRaw(t *testing.T, c *cluster.Cluster, req *http.Request) string {
	t.Helper()
	hc, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCustomResourcesCollected checks that the garbage collector and the
// namespace controller, which find resources through discovery, handle
// custom resources defined after they started.
func TestCustomResourcesCollected(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	home := t.TempDir()
	dyn := dynamic.NewForConfigOrDie(c.Config)
	mustKubectl(t, c, home, widgetCRD, "apply", "-f", "-")

	// Owned by a ConfigMap: deleting the owner deletes the widget.
	owner, err := c.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "owner"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	w := widget("owned", map[string]any{})
	w.SetOwnerReferences([]metav1.OwnerReference{*metav1.NewControllerRef(owner, corev1.SchemeGroupVersion.WithKind("ConfigMap"))})
	ws := dyn.Resource(widgetsV1).Namespace("default")
	if _, err := ws.Create(ctx, w, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.CoreV1().ConfigMaps("default").Delete(ctx, "owner", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 30*time.Second, "the garbage collector to delete the owned widget", func() (bool, error) {
		_, err := ws.Get(ctx, "owned", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})

	// In a deleted namespace.
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "doomed"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(widgetsV1).Namespace("doomed").Create(ctx, widget("inside", map[string]any{}), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.CoreV1().Namespaces().Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 30*time.Second, "the namespace and its widget to go", func() (bool, error) {
		_, err := c.Client.CoreV1().Namespaces().Get(ctx, "doomed", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if l, err := dyn.Resource(widgetsV1).Namespace("doomed").List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Errorf("widgets left in a deleted namespace: %v %v", err, l)
	}
}
