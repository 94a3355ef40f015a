package openapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"sigs.k8s.io/yaml"
)

const testCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
  - name: v1
    served: true
    storage: true
    subresources: {status: {}}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              replicas: {type: integer, description: How many.}
          status: {type: object, x-kubernetes-preserve-unknown-fields: true}
  - name: v1alpha1
    served: false
    storage: false
    schema:
      openAPIV3Schema: {type: object}
`

func get(t *testing.T, h http.Handler, path, accept string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, path, nil)
	if accept != "" {
		r.Header.Set("Accept", accept)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		t.Fatalf("GET %s: %d %s", path, w.Code, w.Body.String())
	}
	return w
}

// TestCustomResourceDocuments checks that a definition's served versions
// are published in both documents, and go when the definition does.
func TestCustomResourceDocuments(t *testing.T) {
	base, err := Build(testResources(), "v1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal([]byte(testCRD), crd); err != nil {
		t.Fatal(err)
	}
	h := NewWithCustomResources(base)
	h.SetCustomResourceDefinitions([]*apiextensionsv1.CustomResourceDefinition{crd})
	if errs := h.Errors(); len(errs) > 0 {
		t.Fatal(errs)
	}

	// Swagger 2.0, JSON: still one valid document, with the built-in and the
	// custom resource's paths and definitions.
	var v2 struct {
		Definitions map[string]json.RawMessage `json:"definitions"`
		Paths       map[string]json.RawMessage `json:"paths"`
		Parameters  map[string]json.RawMessage `json:"parameters"`
	}
	if err := json.Unmarshal(get(t, h, "/openapi/v2", "application/json").Body.Bytes(), &v2); err != nil {
		t.Fatalf("merged Swagger document: %v", err)
	}
	for _, def := range []string{"com.example.v1.Widget", "com.example.v1.WidgetList", "io.k8s.api.core.v1.ConfigMap"} {
		if v2.Definitions[def] == nil {
			t.Errorf("definition %s missing", def)
		}
	}
	for _, p := range []string{"/apis/example.com/v1/namespaces/{namespace}/widgets/{name}", "/apis/example.com/v1/namespaces/{namespace}/widgets/{name}/status", "/api/v1/namespaces/{namespace}/configmaps"} {
		if v2.Paths[p] == nil {
			t.Errorf("path %s missing", p)
		}
	}
	if strings.Contains(string(v2.Paths["/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"]), "#/parameters/") {
		t.Errorf("custom resource paths refer to global parameters they may not match")
	}
	if !strings.Contains(string(v2.Definitions["com.example.v1.Widget"]), "How many.") {
		t.Errorf("Widget definition: %s", v2.Definitions["com.example.v1.Widget"])
	}

	// Swagger 2.0, protobuf: what client-go's OpenAPISchema reads.
	doc := &openapi_v2.Document{}
	if err := proto.Unmarshal(get(t, h, "/openapi/v2", MediaTypeV2Protobuf).Body.Bytes(), doc); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, p := range doc.Paths.Path {
		if p.Name == "/apis/example.com/v1/namespaces/{namespace}/widgets/{name}" {
			found = p.Value.Get != nil && p.Value.Patch != nil
		}
	}
	if !found {
		t.Errorf("protobuf document lacks the widget path")
	}

	// OpenAPI 3: the index names the group-version, its document has the paths.
	var index v3Index
	if err := json.Unmarshal(get(t, h, "/openapi/v3", "").Body.Bytes(), &index); err != nil {
		t.Fatal(err)
	}
	entry, ok := index.Paths["apis/example.com/v1"]
	if !ok || index.Paths["api/v1"].ServerRelativeURL == "" {
		t.Fatalf("v3 index: %+v", index)
	}
	if _, ok := index.Paths["apis/example.com/v1alpha1"]; ok {
		t.Errorf("an unserved version is published")
	}
	body := get(t, h, entry.ServerRelativeURL, "application/json").Body.String()
	if !strings.Contains(body, `"/apis/example.com/v1/namespaces/{namespace}/widgets/{name}"`) || !strings.Contains(body, `"fieldValidation"`) {
		t.Errorf("v3 document: %.500s", body)
	}

	// Without definitions, the built-in documents again.
	h.SetCustomResourceDefinitions(nil)
	if got := get(t, h, "/openapi/v2", "application/json").Body.Bytes(); string(got) != string(base.V2JSON()) {
		t.Errorf("documents after the definitions went differ from the built-in ones")
	}
	r := httptest.NewRequest(http.MethodGet, "/openapi/v3/apis/example.com/v1", nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusNotFound {
		t.Errorf("removed group-version: %d", w.Code)
	}
}

// TestLazyDocuments: the lazy handler builds nothing until asked, builds
// once, serves what Build serves, and answers 500 while the build fails
// (retrying it on the next request).
func TestLazyDocuments(t *testing.T) {
	want, err := Build(testResources(), "v1.37.2")
	if err != nil {
		t.Fatal(err)
	}
	builds := 0
	h := NewLazyWithCustomResources(func() (*Documents, error) {
		builds++
		return Build(testResources(), "v1.37.2")
	})
	if builds != 0 {
		t.Fatalf("built %d times before any request", builds)
	}
	for range 2 {
		for _, path := range []string{"/openapi/v2", "/openapi/v3/api/v1"} {
			got := get(t, h, path, "application/json")
			exp := get(t, want, path, "application/json")
			if !bytes.Equal(got.Body.Bytes(), exp.Body.Bytes()) {
				t.Errorf("GET %s: the lazy documents differ from Build's", path)
			}
		}
	}
	if builds != 1 {
		t.Errorf("built %d times for four requests, want once", builds)
	}

	failures := 0
	broken := NewLazyWithCustomResources(func() (*Documents, error) {
		failures++
		return nil, errors.New("no documents")
	})
	for range 2 {
		got := httptest.NewRecorder()
		broken.ServeHTTP(got, httptest.NewRequest(http.MethodGet, "/openapi/v2", nil))
		if got.Code != http.StatusInternalServerError || !strings.Contains(got.Body.String(), "no documents") {
			t.Errorf("GET /openapi/v2 while the build fails: %d %s, want 500 with the error", got.Code, got.Body)
		}
	}
	if failures != 2 {
		t.Errorf("a failed build was tried %d times over two requests, want each request to retry", failures)
	}
	if errs := broken.Errors(); len(errs) != 1 {
		t.Errorf("Errors() of a failing build: %v", errs)
	}
}
