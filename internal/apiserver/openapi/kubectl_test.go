package openapi

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestKubectlBinary runs the kubectl on the PATH, when there is one,
// against the documents, with just enough discovery for it to map resource
// names to kinds.
func TestKubectlBinary(t *testing.T) {
	kubectl, err := exec.LookPath("kubectl")
	if err != nil {
		t.Skip("no kubectl on PATH")
	}
	docs, err := Build(testResources(), "v1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/openapi/", docs)
	serveJSON := func(path string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.Write(b)
		})
	}
	lists := map[string]*metav1.APIResourceList{}
	for _, r := range testResources() {
		gv := r.Version
		if r.Group != "" {
			gv = r.Group + "/" + r.Version
		}
		if lists[gv] == nil {
			lists[gv] = &metav1.APIResourceList{TypeMeta: metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"}, GroupVersion: gv}
		}
		lists[gv].APIResources = append(lists[gv].APIResources, metav1.APIResource{
			Name: r.Resource, Namespaced: r.Namespaced, Kind: r.Kind, Verbs: r.Verbs,
		})
	}
	serveJSON("/api", metav1.APIVersions{TypeMeta: metav1.TypeMeta{Kind: "APIVersions"}, Versions: []string{"v1"}})
	serveJSON("/api/v1", lists["v1"])
	serveJSON("/apis", metav1.APIGroupList{TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"}, Groups: []metav1.APIGroup{{
		Name:             "apps",
		Versions:         []metav1.GroupVersionForDiscovery{{GroupVersion: "apps/v1", Version: "v1"}},
		PreferredVersion: metav1.GroupVersionForDiscovery{GroupVersion: "apps/v1", Version: "v1"},
	}}})
	serveJSON("/apis/apps/v1", lists["apps/v1"])

	// One StatefulSet, last applied with two containers, for `kubectl apply`
	// to patch; the patch it sends is recorded.
	lastApplied := `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"web","namespace":"default"},"spec":{"serviceName":"web","selector":{"matchLabels":{"app":"web"}},"template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[{"name":"app","image":"nginx:1"},{"name":"log","image":"busybox"}]}}}}`
	current, err := json.Marshal(map[string]any{
		"apiVersion": "apps/v1", "kind": "StatefulSet",
		"metadata": map[string]any{"name": "web", "namespace": "default", "resourceVersion": "7",
			"annotations": map[string]string{"kubectl.kubernetes.io/last-applied-configuration": lastApplied}},
		"spec": map[string]any{"serviceName": "web", "selector": map[string]any{"matchLabels": map[string]string{"app": "web"}},
			"template": map[string]any{"metadata": map[string]any{"labels": map[string]string{"app": "web"}},
				"spec": map[string]any{"containers": []map[string]any{
					{"name": "app", "image": "nginx:1", "imagePullPolicy": "IfNotPresent"},
					{"name": "log", "image": "busybox"}}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	var patch struct {
		contentType, query, body string
	}
	mux.HandleFunc("/apis/apps/v1/namespaces/default/statefulsets/web", func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPatch {
			b, _ := io.ReadAll(r.Body)
			patch.contentType, patch.query, patch.body = r.Header.Get("Content-Type"), r.URL.RawQuery, string(b)
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(current)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	dir := t.TempDir()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(kubeconfig, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"explain", "services.spec.clusterIP"},
			[]string{"KIND: Service", "FIELD: clusterIP <string>", "headless service"}},
		{[]string{"explain", "statefulsets.spec.template.spec.containers"},
			[]string{"GROUP: apps", "KIND: StatefulSet", "FIELD: containers <[]Container>", "image <string>", "name <string> -required-"}},
		{[]string{"explain", "statefulsets.spec.template.spec.containers", "--output", "plaintext-openapiv2"},
			[]string{"KIND: StatefulSet", "RESOURCE: containers <[]Object>", "image <string>"}},
		{[]string{"explain", "namespaces", "--recursive"},
			[]string{"KIND: Namespace", "finalizers <[]string>", "phase <string>"}},
		{[]string{"explain", "pods.spec.containers.ports.containerPort"},
			[]string{"FIELD: containerPort <integer>"}},
	}
	for _, tc := range cases {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			args := append([]string{"--kubeconfig", kubeconfig, "--server", srv.URL, "--cache-dir", filepath.Join(dir, "cache")}, tc.args...)
			cmd := exec.Command(kubectl, args...)
			cmd.Env = append(os.Environ(), "HOME="+dir)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("kubectl %s: %v\n%s", strings.Join(tc.args, " "), err, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(oneLine(string(out)), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}

	t.Run("apply", func(t *testing.T) {
		manifest := filepath.Join(dir, "web.json")
		modified := strings.Replace(lastApplied, "nginx:1", "nginx:2", 1)
		if err := os.WriteFile(manifest, []byte(modified), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(kubectl, "--kubeconfig", kubeconfig, "--server", srv.URL, "--cache-dir", filepath.Join(dir, "cache"),
			"apply", "-f", manifest)
		cmd.Env = append(os.Environ(), "HOME="+dir)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("kubectl apply: %v\n%s", err, out)
		}
		// kubectl warns when it cannot compute the patch from the OpenAPI
		// documents, then falls back to its own compiled-in types.
		if strings.Contains(string(out), "warning") {
			t.Errorf("kubectl apply warned:\n%s", out)
		}
		if patch.contentType != "application/strategic-merge-patch+json" {
			t.Errorf("patch Content-Type = %q, want a strategic merge patch", patch.contentType)
		}
		// kubectl found fieldValidation among the PATCH parameters.
		if !strings.Contains(patch.query, "fieldValidation=Strict") {
			t.Errorf("patch query = %q, want fieldValidation=Strict", patch.query)
		}
		// Containers merge by name: only the changed one is sent.
		for _, w := range []string{`"$setElementOrder/containers":[{"name":"app"},{"name":"log"}]`, `"containers":[{"image":"nginx:2","name":"app"}]`} {
			if !strings.Contains(patch.body, w) {
				t.Errorf("patch lacks %s:\n%s", w, patch.body)
			}
		}
	})
}
