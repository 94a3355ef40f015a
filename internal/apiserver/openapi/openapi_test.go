package openapi

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"k8s.io/cli-runtime/pkg/resource"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/openapi3"
	"k8s.io/client-go/rest"
	"k8s.io/kube-openapi/pkg/openapiconv"
	"k8s.io/kube-openapi/pkg/spec3"
	kubeproto "k8s.io/kube-openapi/pkg/util/proto"
	"k8s.io/kube-openapi/pkg/validation/spec"
	"k8s.io/kubectl/pkg/explain"
	explainv2 "k8s.io/kubectl/pkg/explain/v2"
	kubectlopenapi "k8s.io/kubectl/pkg/util/openapi"
)

var allVerbs = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}

func testResources() []Resource {
	return []Resource{
		{Version: "v1", Kind: "Namespace", ListKind: "NamespaceList", Resource: "namespaces",
			Object: reflect.TypeOf(corev1.Namespace{}), List: reflect.TypeOf(corev1.NamespaceList{}),
			Verbs: []string{"get", "list", "watch", "create", "update", "patch", "delete"}, Subresources: []string{"status"}},
		{Version: "v1", Kind: "ConfigMap", ListKind: "ConfigMapList", Resource: "configmaps", Namespaced: true,
			Object: reflect.TypeOf(corev1.ConfigMap{}), List: reflect.TypeOf(corev1.ConfigMapList{}), Verbs: allVerbs},
		{Version: "v1", Kind: "Secret", ListKind: "SecretList", Resource: "secrets", Namespaced: true,
			Object: reflect.TypeOf(corev1.Secret{}), List: reflect.TypeOf(corev1.SecretList{}), Verbs: allVerbs},
		{Version: "v1", Kind: "Service", ListKind: "ServiceList", Resource: "services", Namespaced: true,
			Object: reflect.TypeOf(corev1.Service{}), List: reflect.TypeOf(corev1.ServiceList{}), Verbs: allVerbs,
			Subresources: []string{"status"}},
		{Version: "v1", Kind: "Pod", ListKind: "PodList", Resource: "pods", Namespaced: true,
			Object: reflect.TypeOf(corev1.Pod{}), List: reflect.TypeOf(corev1.PodList{}), Verbs: allVerbs,
			Subresources: []string{"status"}},
		{Group: "apps", Version: "v1", Kind: "StatefulSet", ListKind: "StatefulSetList", Resource: "statefulsets", Namespaced: true,
			Object: reflect.TypeOf(appsv1.StatefulSet{}), List: reflect.TypeOf(appsv1.StatefulSetList{}), Verbs: allVerbs,
			Subresources: []string{"status", "scale"}},
	}
}

// manyResources is about what a small cluster serves: twenty resources over
// six group-versions. It sizes the build-time measurement.
func manyResources() []Resource {
	rs := testResources()
	add := func(group, kind, plural string, namespaced bool, obj, list any, subs ...string) {
		rs = append(rs, Resource{Group: group, Version: "v1", Kind: kind, ListKind: kind + "List", Resource: plural,
			Namespaced: namespaced, Object: reflect.TypeOf(obj), List: reflect.TypeOf(list), Verbs: allVerbs, Subresources: subs})
	}
	add("", "Node", "nodes", false, corev1.Node{}, corev1.NodeList{}, "status")
	add("", "Endpoints", "endpoints", true, corev1.Endpoints{}, corev1.EndpointsList{})
	add("", "ServiceAccount", "serviceaccounts", true, corev1.ServiceAccount{}, corev1.ServiceAccountList{})
	add("", "Event", "events", true, corev1.Event{}, corev1.EventList{})
	add("", "PersistentVolumeClaim", "persistentvolumeclaims", true, corev1.PersistentVolumeClaim{}, corev1.PersistentVolumeClaimList{}, "status")
	add("", "PersistentVolume", "persistentvolumes", false, corev1.PersistentVolume{}, corev1.PersistentVolumeList{}, "status")
	add("apps", "Deployment", "deployments", true, appsv1.Deployment{}, appsv1.DeploymentList{}, "status", "scale")
	add("apps", "ReplicaSet", "replicasets", true, appsv1.ReplicaSet{}, appsv1.ReplicaSetList{}, "status", "scale")
	add("apps", "ControllerRevision", "controllerrevisions", true, appsv1.ControllerRevision{}, appsv1.ControllerRevisionList{})
	add("discovery.k8s.io", "EndpointSlice", "endpointslices", true, discoveryv1.EndpointSlice{}, discoveryv1.EndpointSliceList{})
	add("coordination.k8s.io", "Lease", "leases", true, coordinationv1.Lease{}, coordinationv1.LeaseList{})
	add("events.k8s.io", "Event", "events", true, eventsv1.Event{}, eventsv1.EventList{})
	add("rbac.authorization.k8s.io", "Role", "roles", true, rbacv1.Role{}, rbacv1.RoleList{})
	add("rbac.authorization.k8s.io", "ClusterRole", "clusterroles", false, rbacv1.ClusterRole{}, rbacv1.ClusterRoleList{})
	return rs
}

// served builds the documents for testResources and serves them the way the
// API server does, returning a discovery client pointed at them.
func served(t *testing.T) (*Documents, *discovery.DiscoveryClient) {
	t.Helper()
	docs, err := Build(testResources(), "v1.37.2-headway")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(docs)
	t.Cleanup(srv.Close)
	dc, err := discovery.NewDiscoveryClientForConfig(&rest.Config{Host: srv.URL})
	if err != nil {
		t.Fatal(err)
	}
	return docs, dc
}

func parseV3(t *testing.T, docs *Documents, gv string) *spec3.OpenAPI {
	t.Helper()
	b, _, ok := docs.V3(gv)
	if !ok {
		t.Fatalf("no OpenAPI v3 document for %s", gv)
	}
	var doc spec3.OpenAPI
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("%s: %v", gv, err)
	}
	return &doc
}

// oneLine collapses runs of white space, undoing kubectl's wrapping.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// resolve follows a property schema to the schema it stands for: through a
// $ref, or the single-$ref allOf OpenAPI 3 wraps described references in.
func resolve(t *testing.T, doc *spec3.OpenAPI, s *spec.Schema) *spec.Schema {
	t.Helper()
	if len(s.AllOf) == 1 {
		s = &s.AllOf[0]
	}
	if ref := s.Ref.String(); ref != "" {
		r, ok := doc.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")]
		if !ok {
			t.Fatalf("dangling reference %s", ref)
		}
		return r
	}
	return s
}

func TestV3SchemasDescribeFields(t *testing.T) {
	docs, err := Build(testResources(), "v1.37.2-headway")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		gv, schema string
		path       []string // property names; "[]" steps into array items
		wantDesc   string
		wantType   string
	}{
		{"api/v1", "io.k8s.api.core.v1.Service", []string{"spec", "clusterIP"},
			corev1.ServiceSpec{}.SwaggerDoc()["clusterIP"], "string"},
		{"api/v1", "io.k8s.api.core.v1.Service", []string{"metadata", "name"},
			metav1.ObjectMeta{}.SwaggerDoc()["name"], "string"},
		{"api/v1", "io.k8s.api.core.v1.Pod", []string{"spec", "containers", "[]", "image"},
			corev1.Container{}.SwaggerDoc()["image"], "string"},
		{"api/v1", "io.k8s.api.core.v1.Secret", []string{"data"},
			corev1.Secret{}.SwaggerDoc()["data"], "object"},
		{"api/v1", "io.k8s.api.core.v1.Namespace", []string{"status", "phase"},
			corev1.NamespaceStatus{}.SwaggerDoc()["phase"], "string"},
		{"apis/apps/v1", "io.k8s.api.apps.v1.StatefulSet", []string{"spec", "replicas"},
			appsv1.StatefulSetSpec{}.SwaggerDoc()["replicas"], "integer"},
		{"apis/apps/v1", "io.k8s.api.apps.v1.StatefulSet", []string{"spec", "template", "spec", "containers"},
			corev1.PodSpec{}.SwaggerDoc()["containers"], "array"},
		{"apis/apps/v1", "io.k8s.api.autoscaling.v1.Scale", []string{"spec", "replicas"},
			autoscalingv1.ScaleSpec{}.SwaggerDoc()["replicas"], "integer"},
	}
	for _, tc := range cases {
		t.Run(tc.schema+"."+strings.Join(tc.path, "."), func(t *testing.T) {
			doc := parseV3(t, docs, tc.gv)
			s, ok := doc.Components.Schemas[tc.schema]
			if !ok {
				t.Fatalf("%s has no schema %s", tc.gv, tc.schema)
			}
			var field spec.Schema
			for _, step := range tc.path {
				if step == "[]" {
					s = resolve(t, doc, s.Items.Schema)
					continue
				}
				p, ok := s.Properties[step]
				if !ok {
					t.Fatalf("no property %q", step)
				}
				field = p
				s = resolve(t, doc, &p)
			}
			if tc.wantDesc == "" {
				t.Fatal("test case has no description to look for")
			}
			if field.Description != tc.wantDesc {
				t.Errorf("description = %q, want %q", field.Description, tc.wantDesc)
			}
			if got := s.Type; len(got) != 1 || got[0] != tc.wantType {
				t.Errorf("type = %v, want %s", got, tc.wantType)
			}
		})
	}
}

func TestV3KindsCarryGroupVersionKind(t *testing.T) {
	docs, err := Build(testResources(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		gv, schema           string
		group, version, kind string
	}{
		{"api/v1", "io.k8s.api.core.v1.Service", "", "v1", "Service"},
		{"api/v1", "io.k8s.api.core.v1.ServiceList", "", "v1", "ServiceList"},
		{"api/v1", "io.k8s.api.core.v1.Namespace", "", "v1", "Namespace"},
		{"api/v1", "io.k8s.apimachinery.pkg.apis.meta.v1.Status", "", "v1", "Status"},
		{"api/v1", "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions", "", "v1", "DeleteOptions"},
		{"apis/apps/v1", "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions", "apps", "v1", "DeleteOptions"},
		{"apis/apps/v1", "io.k8s.api.apps.v1.StatefulSet", "apps", "v1", "StatefulSet"},
		{"apis/apps/v1", "io.k8s.api.apps.v1.StatefulSetList", "apps", "v1", "StatefulSetList"},
		{"apis/apps/v1", "io.k8s.api.autoscaling.v1.Scale", "autoscaling", "v1", "Scale"},
	}
	for _, tc := range cases {
		t.Run(tc.gv+"/"+tc.schema, func(t *testing.T) {
			s, ok := parseV3(t, docs, tc.gv).Components.Schemas[tc.schema]
			if !ok {
				t.Fatalf("no schema %s", tc.schema)
			}
			var got []map[string]string
			if err := s.Extensions.GetObject("x-kubernetes-group-version-kind", &got); err != nil {
				t.Fatal(err)
			}
			want := map[string]string{"group": tc.group, "version": tc.version, "kind": tc.kind}
			if !slices.ContainsFunc(got, func(m map[string]string) bool { return reflect.DeepEqual(m, want) }) {
				t.Errorf("x-kubernetes-group-version-kind = %v, want it to hold %v", got, want)
			}
		})
	}
}

// TestV3DocumentsAreSelfContained checks each group-version document holds
// every schema it refers to, and only what its resources reach: apps/v1
// does not carry core/v1's Service, core/v1 not StatefulSet.
func TestV3DocumentsAreSelfContained(t *testing.T) {
	docs, err := Build(testResources(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	absent := map[string]string{
		"api/v1":       "io.k8s.api.apps.v1.StatefulSet",
		"apis/apps/v1": "io.k8s.api.core.v1.Service",
	}
	if got, want := docs.GroupVersionPaths(), []string{"api/v1", "apis/apps/v1"}; !slices.Equal(got, want) {
		t.Fatalf("GroupVersionPaths = %v, want %v", got, want)
	}
	for _, gv := range docs.GroupVersionPaths() {
		b, _, _ := docs.V3(gv)
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
		params := doc["components"].(map[string]any)["parameters"].(map[string]any)
		var walk func(v any)
		walk = func(v any) {
			switch v := v.(type) {
			case map[string]any:
				if ref, ok := v["$ref"].(string); ok {
					switch {
					case strings.HasPrefix(ref, "#/components/schemas/"):
						if _, ok := schemas[strings.TrimPrefix(ref, "#/components/schemas/")]; !ok {
							t.Errorf("%s: dangling reference %s", gv, ref)
						}
					case strings.HasPrefix(ref, "#/components/parameters/"):
						if _, ok := params[strings.TrimPrefix(ref, "#/components/parameters/")]; !ok {
							t.Errorf("%s: dangling reference %s", gv, ref)
						}
					default:
						t.Errorf("%s: reference %s outside the document's components", gv, ref)
					}
				}
				for _, x := range v {
					walk(x)
				}
			case []any:
				for _, x := range v {
					walk(x)
				}
			}
		}
		walk(doc)
		if _, ok := schemas[absent[gv]]; ok {
			t.Errorf("%s holds %s, which none of its resources reach", gv, absent[gv])
		}
	}
}

// TestV3SchemasMatchKubeConversion checks the OpenAPI 3 schemas against
// kube-openapi's own conversion of the Swagger 2.0 definitions (the one
// kube-apiserver applies): same references, same allOf wrapping.
func TestV3SchemasMatchKubeConversion(t *testing.T) {
	docs, err := Build(testResources(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	var v2 spec.Swagger
	if err := json.Unmarshal(docs.V2JSON(), &v2); err != nil {
		t.Fatal(err)
	}
	oneOf := map[string]bool{
		"io.k8s.apimachinery.pkg.util.intstr.IntOrString": true,
		"io.k8s.apimachinery.pkg.api.resource.Quantity":   true,
	}
	normal := func(v any) any {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		var out any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatal(err)
		}
		return out
	}
	compared := 0
	for _, gv := range docs.GroupVersionPaths() {
		b, _, _ := docs.V3(gv)
		var doc struct {
			Components struct {
				Schemas map[string]json.RawMessage `json:"schemas"`
			} `json:"components"`
		}
		if err := json.Unmarshal(b, &doc); err != nil {
			t.Fatal(err)
		}
		for name, raw := range doc.Components.Schemas {
			def, ok := v2.Definitions[name]
			if !ok {
				t.Errorf("%s: schema %s is not among the v2 definitions", gv, name)
				continue
			}
			var got any
			if err := json.Unmarshal(raw, &got); err != nil {
				t.Fatal(err)
			}
			if oneOf[name] {
				if _, ok := got.(map[string]any)["oneOf"]; !ok {
					t.Errorf("%s: %s has no oneOf", gv, name)
				}
				continue
			}
			if want := normal(openapiconv.ConvertSchema(&def)); !reflect.DeepEqual(got, want) {
				t.Errorf("%s: schema %s differs from kube-openapi's conversion:\n got %s\nwant %s", gv, name, raw, mustJSON(want))
			}
			compared++
		}
	}
	if compared < 100 {
		t.Errorf("compared only %d schemas", compared)
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestExplainV3(t *testing.T) {
	_, dc := served(t)
	cases := []struct {
		resource schema.GroupVersionResource
		fields   []string
		want     []string
	}{
		{corev1.SchemeGroupVersion.WithResource("services"), []string{"spec", "clusterIP"},
			[]string{"KIND: Service", "VERSION: v1", "FIELD: clusterIP <string>", oneLine(corev1.ServiceSpec{}.SwaggerDoc()["clusterIP"])}},
		{corev1.SchemeGroupVersion.WithResource("services"), []string{"spec", "ports", "targetPort"},
			[]string{"FIELD: targetPort <IntOrString>", oneLine(corev1.ServicePort{}.SwaggerDoc()["targetPort"])}},
		{appsv1.SchemeGroupVersion.WithResource("statefulsets"), []string{"spec", "template", "spec", "containers"},
			[]string{"GROUP: apps", "KIND: StatefulSet", "FIELD: containers <[]Container>",
				oneLine(corev1.PodSpec{}.SwaggerDoc()["containers"]), "image <string>", "name <string> -required-"}},
		{appsv1.SchemeGroupVersion.WithResource("statefulsets"), nil,
			[]string{"KIND: StatefulSet", oneLine(appsv1.StatefulSet{}.SwaggerDoc()[""]), "spec <StatefulSetSpec>"}},
		{corev1.SchemeGroupVersion.WithResource("namespaces"), nil,
			[]string{"KIND: Namespace", "metadata <ObjectMeta>"}},
		{corev1.SchemeGroupVersion.WithResource("pods"), []string{"metadata", "creationTimestamp"},
			[]string{"FIELD: creationTimestamp <string>"}},
		{corev1.SchemeGroupVersion.WithResource("configmaps"), []string{"data"},
			[]string{"FIELD: data <map[string]string>"}},
	}
	for _, tc := range cases {
		t.Run(tc.resource.Resource+"."+strings.Join(tc.fields, "."), func(t *testing.T) {
			var out bytes.Buffer
			err := explainv2.PrintModelDescription(tc.fields, &out, dc.OpenAPIV3(), tc.resource, false, 0, "plaintext")
			if err != nil {
				t.Fatal(err)
			}
			got := oneLine(out.String())
			for _, w := range tc.want {
				if !strings.Contains(got, oneLine(w)) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// TestExplainV2 runs `kubectl explain --output plaintext-openapiv2`'s code
// over the protobuf document the discovery client downloads.
func TestExplainV2(t *testing.T) {
	_, dc := served(t)
	doc, err := dc.OpenAPISchema()
	if err != nil {
		t.Fatal(err)
	}
	resources, err := kubectlopenapi.NewOpenAPIData(doc)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		gvk    schema.GroupVersionKind
		fields []string
		want   []string
	}{
		{corev1.SchemeGroupVersion.WithKind("Service"), []string{"spec", "clusterIP"},
			[]string{"KIND: Service", "FIELD: clusterIP <string>", oneLine(corev1.ServiceSpec{}.SwaggerDoc()["clusterIP"])}},
		{appsv1.SchemeGroupVersion.WithKind("StatefulSet"), []string{"spec", "template", "spec", "containers"},
			[]string{"KIND: StatefulSet", "RESOURCE: containers <[]Object>", oneLine(corev1.PodSpec{}.SwaggerDoc()["containers"]),
				"image <string>", "name <string> -required-"}},
		{corev1.SchemeGroupVersion.WithKind("Namespace"), nil,
			[]string{"KIND: Namespace", oneLine(corev1.Namespace{}.SwaggerDoc()[""])}},
	}
	for _, tc := range cases {
		t.Run(tc.gvk.Kind+"."+strings.Join(tc.fields, "."), func(t *testing.T) {
			s := resources.LookupResource(tc.gvk)
			if s == nil {
				t.Fatalf("no model for %v", tc.gvk)
			}
			var out bytes.Buffer
			if err := explain.PrintModelDescription(tc.fields, &out, s, tc.gvk, false, 0); err != nil {
				t.Fatal(err)
			}
			got := oneLine(out.String())
			for _, w := range tc.want {
				if !strings.Contains(got, oneLine(w)) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}

// TestStrategicMergePatchMetadata looks up patch metadata the way
// client-side `kubectl apply` does, from the OpenAPI 3 document (through
// openapi3.Root) and from the Swagger 2.0 one.
func TestStrategicMergePatchMetadata(t *testing.T) {
	_, dc := served(t)
	root := openapi3.NewRoot(dc.OpenAPIV3())
	v2doc, err := dc.OpenAPISchema()
	if err != nil {
		t.Fatal(err)
	}
	v2, err := kubectlopenapi.NewOpenAPIData(v2doc)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		gvk      schema.GroupVersionKind
		path     []string // fields to descend through; the last, and those marked [], are lists
		mergeKey string
		strategy string
	}{
		{corev1.SchemeGroupVersion.WithKind("Pod"), []string{"spec", "containers"}, "name", "merge"},
		{corev1.SchemeGroupVersion.WithKind("Pod"), []string{"spec", "volumes"}, "name", "merge,retainKeys"},
		{corev1.SchemeGroupVersion.WithKind("Service"), []string{"spec", "ports"}, "port", "merge"},
		{appsv1.SchemeGroupVersion.WithKind("StatefulSet"), []string{"spec", "template", "spec", "containers"}, "name", "merge"},
		{appsv1.SchemeGroupVersion.WithKind("StatefulSet"), []string{"spec", "template", "spec", "containers[]", "env"}, "name", "merge"},
	}
	for _, tc := range cases {
		t.Run(tc.gvk.Kind+"."+strings.Join(tc.path, "."), func(t *testing.T) {
			gvSpec, err := root.GVSpec(tc.gvk.GroupVersion())
			if err != nil {
				t.Fatal(err)
			}
			var kind *spec.Schema
			for _, s := range gvSpec.Components.Schemas {
				var gvks []map[string]string
				if s.Extensions.GetObject("x-kubernetes-group-version-kind", &gvks) == nil &&
					slices.ContainsFunc(gvks, func(m map[string]string) bool {
						return m["group"] == tc.gvk.Group && m["version"] == tc.gvk.Version && m["kind"] == tc.gvk.Kind
					}) {
					kind = s
				}
			}
			if kind == nil {
				t.Fatalf("no schema for %v", tc.gvk)
			}
			lookups := map[string]strategicpatch.LookupPatchMeta{
				"v3": strategicpatch.PatchMetaFromOpenAPIV3{Schema: kind, SchemaList: gvSpec.Components.Schemas},
				"v2": strategicpatch.NewPatchMetaFromOpenAPI(v2.LookupResource(tc.gvk)),
			}
			for name, l := range lookups {
				var meta strategicpatch.PatchMeta
				for i, field := range tc.path {
					var err error
					if list, ok := strings.CutSuffix(field, "[]"); ok || i == len(tc.path)-1 {
						l, meta, err = l.LookupPatchMetadataForSlice(list)
					} else {
						l, meta, err = l.LookupPatchMetadataForStruct(field)
					}
					if err != nil {
						t.Fatalf("%s: %s: %v", name, field, err)
					}
				}
				if meta.GetPatchMergeKey() != tc.mergeKey {
					t.Errorf("%s: merge key = %q, want %q", name, meta.GetPatchMergeKey(), tc.mergeKey)
				}
				if got := strings.Join(meta.GetPatchStrategies(), ","); got != tc.strategy {
					t.Errorf("%s: strategy = %q, want %q", name, got, tc.strategy)
				}
			}
		})
	}
}

// TestThreeWayMergeByName computes the patch `kubectl apply` sends when one
// container of a StatefulSet changes: with the schema's merge key the patch
// names the container rather than replacing the list.
func TestThreeWayMergeByName(t *testing.T) {
	_, dc := served(t)
	gvSpec, err := openapi3.NewRoot(dc.OpenAPIV3()).GVSpec(appsv1.SchemeGroupVersion)
	if err != nil {
		t.Fatal(err)
	}
	lookup := strategicpatch.PatchMetaFromOpenAPIV3{
		Schema:     gvSpec.Components.Schemas["io.k8s.api.apps.v1.StatefulSet"],
		SchemaList: gvSpec.Components.Schemas,
	}
	original := `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"web"},"spec":{"template":{"spec":{"containers":[{"name":"app","image":"nginx:1"},{"name":"log","image":"busybox"}]}}}}`
	modified := `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"web"},"spec":{"template":{"spec":{"containers":[{"name":"app","image":"nginx:2"},{"name":"log","image":"busybox"}]}}}}`
	current := `{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"web"},"spec":{"template":{"spec":{"containers":[{"name":"app","image":"nginx:1","imagePullPolicy":"Always"},{"name":"log","image":"busybox"}]}}}}`
	patch, err := strategicpatch.CreateThreeWayMergePatch([]byte(original), []byte(modified), []byte(current), lookup, false)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"app"},{"name":"log"}],"containers":[{"image":"nginx:2","name":"app"}]}}}}`
	if string(patch) != want {
		t.Errorf("patch = %s\nwant    %s", patch, want)
	}
}

// TestV2Protobuf checks the protobuf document is what kube-apiserver would
// serve for V2JSON (gnostic's ParseDocument of it), reaches client-go's
// discovery client intact, and parses into kubectl's models.
func TestV2Protobuf(t *testing.T) {
	docs, dc := served(t)
	want, err := openapi_v2.ParseDocument(docs.V2JSON())
	if err != nil {
		t.Fatal(err)
	}
	got, err := dc.OpenAPISchema()
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		wantPB, _ := proto.Marshal(want)
		t.Fatalf("protobuf document differs from ParseDocument(V2JSON) (%d bytes, want %d)", len(docs.V2Protobuf()), len(wantPB))
	}
	models, err := kubeproto.NewOpenAPIData(got)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{
		"io.k8s.api.core.v1.Service", "io.k8s.api.core.v1.PodSpec", "io.k8s.api.apps.v1.StatefulSet",
		"io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta", "io.k8s.apimachinery.pkg.util.intstr.IntOrString",
	} {
		if models.LookupModel(name) == nil {
			t.Errorf("no model %s", name)
		}
	}
	var sw spec.Swagger
	if err := json.Unmarshal(docs.V2JSON(), &sw); err != nil {
		t.Fatal(err)
	}
	if sw.Swagger != "2.0" || len(sw.Definitions) == 0 || len(sw.Paths.Paths) == 0 {
		t.Errorf("V2JSON: swagger %q, %d definitions, %d paths", sw.Swagger, len(sw.Definitions), len(sw.Paths.Paths))
	}
}

// TestFieldValidationSupport runs kubectl's check for server-side field
// validation (what `kubectl apply/create/replace` use to decide whether to
// send fieldValidation) against both documents.
func TestFieldValidationSupport(t *testing.T) {
	_, dc := served(t)
	v3 := resource.NewQueryParamVerifierV3(nil, dc.OpenAPIV3(), resource.QueryParamFieldValidation)
	v2 := resource.NewQueryParamVerifier(nil, dc, resource.QueryParamFieldValidation)
	for _, r := range testResources() {
		gvk := schema.GroupVersionKind{Group: r.Group, Version: r.Version, Kind: r.Kind}
		if err := v3.HasSupport(gvk); err != nil {
			t.Errorf("v3: %v: %v", gvk, err)
		}
		if err := v2.HasSupport(gvk); err != nil {
			t.Errorf("v2: %v: %v", gvk, err)
		}
	}
	// A kind the server does not serve, in a group-version it does.
	if err := v3.HasSupport(appsv1.SchemeGroupVersion.WithKind("Deployment")); err == nil {
		t.Error("v3: Deployment is reported as supported")
	}
}

// TestTypeConverter checks managedfields accepts the definitions (see
// Documents.Definitions for their limits).
func TestTypeConverter(t *testing.T) {
	docs, err := Build(testResources(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	tc, err := managedfields.NewTypeConverter(docs.Definitions(), false)
	if err != nil {
		t.Fatal(err)
	}
	replicas := int32(2)
	sts := &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas,
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{
				{Name: "app", Image: "nginx", Ports: []corev1.ContainerPort{{ContainerPort: 80, Protocol: "TCP"}}},
			}}},
		},
	}
	typed, err := tc.ObjectToTyped(sts)
	if err != nil {
		t.Fatal(err)
	}
	set, err := typed.ToFieldSet()
	if err != nil {
		t.Fatal(err)
	}
	// Containers are a list keyed by name, as the patch merge key says.
	if s := set.String(); !strings.Contains(s, `.spec.template.spec.containers[name="app"].image`) {
		t.Errorf("field set lacks the container keyed by name:\n%s", s)
	}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec:       corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Port: 80, TargetPort: intstr.FromString("http")}}},
	}
	if _, err := tc.ObjectToTyped(svc); err != nil {
		t.Errorf("Service: %v", err)
	}
}

func TestServeHTTP(t *testing.T) {
	docs, err := Build(testResources(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(docs)
	defer srv.Close()
	_, coreHash, _ := docs.V3("api/v1")
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	var index struct {
		Paths map[string]struct {
			ServerRelativeURL string `json:"serverRelativeURL"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(docs.V3Index(), &index); err != nil {
		t.Fatal(err)
	}
	if got, want := index.Paths["api/v1"].ServerRelativeURL, "/openapi/v3/api/v1?hash="+coreHash; got != want {
		t.Errorf("index URL for api/v1 = %q, want %q", got, want)
	}
	if _, ok := index.Paths["apis/apps/v1"]; !ok || len(index.Paths) != 2 {
		t.Errorf("index paths = %v", index.Paths)
	}

	cases := []struct {
		name, path, accept string
		header             map[string]string
		wantCode           int
		wantType           string
		wantLocation       string
		wantCache          string
	}{
		{name: "v2 json", path: "/openapi/v2", accept: "application/json", wantCode: 200, wantType: "application/json"},
		{name: "v2 default", path: "/openapi/v2", wantCode: 200, wantType: "application/json"},
		{name: "v2 protobuf", path: "/openapi/v2", accept: "application/com.github.proto-openapi.spec.v2@v1.0+protobuf", wantCode: 200, wantType: MediaTypeV2Protobuf},
		{name: "v2 first acceptable", path: "/openapi/v2", accept: "text/html, " + MediaTypeV2Protobuf + ", application/json", wantCode: 200, wantType: MediaTypeV2Protobuf},
		{name: "v2 unacceptable", path: "/openapi/v2", accept: "text/html", wantCode: 406},
		{name: "v3 index", path: "/openapi/v3", accept: "application/json", wantCode: 200, wantType: "application/json"},
		{name: "v3 current hash", path: "/openapi/v3/api/v1?hash=" + coreHash, wantCode: 200, wantType: "application/json", wantCache: "public, immutable"},
		{name: "v3 no hash", path: "/openapi/v3/apis/apps/v1", wantCode: 200, wantType: "application/json", wantCache: "no-cache, private"},
		{name: "v3 stale hash", path: "/openapi/v3/api/v1?hash=0123", wantCode: 301, wantLocation: "/openapi/v3/api/v1?hash=" + coreHash},
		{name: "v3 protobuf only", path: "/openapi/v3/api/v1", accept: "application/com.github.proto-openapi.spec.v3@v1.0+protobuf", wantCode: 406},
		{name: "v3 unknown", path: "/openapi/v3/apis/batch/v1", wantCode: 404},
		{name: "etag", path: "/openapi/v3/api/v1", header: map[string]string{"If-None-Match": `"` + coreHash[:32] + `"`}, wantCode: 304},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", srv.URL+tc.path, nil)
			if tc.accept != "" {
				req.Header.Set("Accept", tc.accept)
			}
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := noRedirect.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.wantCode {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.wantCode, body)
			}
			if tc.wantType != "" && resp.Header.Get("Content-Type") != tc.wantType {
				t.Errorf("Content-Type %q, want %q", resp.Header.Get("Content-Type"), tc.wantType)
			}
			if tc.wantLocation != "" && resp.Header.Get("Location") != tc.wantLocation {
				t.Errorf("Location %q, want %q", resp.Header.Get("Location"), tc.wantLocation)
			}
			if tc.wantCache != "" && resp.Header.Get("Cache-Control") != tc.wantCache {
				t.Errorf("Cache-Control %q, want %q", resp.Header.Get("Cache-Control"), tc.wantCache)
			}
		})
	}
}

func TestBuildIsDeterministic(t *testing.T) {
	a, err := Build(manyResources(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	b, err := Build(manyResources(), "v1")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.V2JSON(), b.V2JSON()) || !bytes.Equal(a.V2Protobuf(), b.V2Protobuf()) || !bytes.Equal(a.V3Index(), b.V3Index()) {
		t.Error("two builds from the same resources differ")
	}
}

func TestBuildRejects(t *testing.T) {
	svc := testResources()[3]
	cases := map[string][]Resource{
		"no types":     {{Version: "v1", Kind: "Service", Resource: "services"}},
		"no resource":  {{Version: "v1", Kind: "Service", Object: svc.Object, List: svc.List}},
		"served twice": {svc, svc},
		"unknown verb": {{Version: "v1", Kind: "Service", Resource: "services", Object: svc.Object, List: svc.List, Verbs: []string{"proxy"}}},
		"unknown sub":  {{Version: "v1", Kind: "Service", Resource: "services", Object: svc.Object, List: svc.List, Subresources: []string{"exec"}}},
		"not a struct": {{Version: "v1", Kind: "Service", Resource: "services", Object: reflect.TypeOf(""), List: svc.List}},
	}
	for name, rs := range cases {
		if _, err := Build(rs, "v1"); err == nil {
			t.Errorf("%s: Build succeeded", name)
		}
	}
}

// BenchmarkBuild measures a build for about what a small cluster serves.
func BenchmarkBuild(b *testing.B) {
	rs := manyResources()
	for b.Loop() {
		if _, err := Build(rs, "v1"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBuildReportsTime logs how long a first build takes in a fresh
// process, reflection caches cold. It asserts nothing about speed.
func TestBuildReportsTime(t *testing.T) {
	rs := manyResources()
	start := time.Now()
	docs, err := Build(rs, "v1")
	if err != nil {
		t.Fatal(err)
	}
	size := len(docs.V2JSON()) + len(docs.V2Protobuf()) + len(docs.V3Index())
	for _, gv := range docs.GroupVersionPaths() {
		b, _, _ := docs.V3(gv)
		size += len(b)
	}
	t.Logf("first build of %d resources in %d group-versions: %v, %d bytes of documents",
		len(rs), len(docs.GroupVersionPaths()), time.Since(start), size)
}
