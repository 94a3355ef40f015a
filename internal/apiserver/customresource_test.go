package apiserver

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

const schemaTestCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: dbs.example.com}
spec:
  group: example.com
  scope: Namespaced
  names: {plural: dbs, kind: DB}
  versions:
  - name: v1
    served: true
    storage: true
    subresources:
      status: {}
      scale: {specReplicasPath: .spec.replicas, statusReplicasPath: .status.replicas}
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "!has(self.replicas) || self.replicas <= 100"
              message: at most 100 replicas
            properties:
              replicas: {type: integer, minimum: 0}
              engine: {type: string, enum: [postgres, mysql], default: postgres}
              storage:
                type: object
                default: {}
                properties:
                  size: {type: string, default: 1Gi}
                  class: {type: string}
              users:
                type: array
                x-kubernetes-list-type: map
                x-kubernetes-list-map-keys: [name]
                items:
                  type: object
                  required: [name]
                  properties:
                    name: {type: string}
                    admin: {type: boolean, default: false}
              tags:
                type: array
                x-kubernetes-list-type: set
                items: {type: string}
              config:
                type: object
                x-kubernetes-preserve-unknown-fields: true
              template:
                type: object
                x-kubernetes-embedded-resource: true
                x-kubernetes-preserve-unknown-fields: true
          status:
            type: object
            properties:
              replicas: {type: integer}
`

// skipped is the error that stands for CEL rules not run on an object of
// the wrong shape.
const skipped = `<nil>: Invalid value: null: some validation rules were not checked`

// TestCustomResourceSchema runs objects through what the server does to an
// incoming custom resource: pruning, defaulting, then validation.
func TestCustomResourceSchema(t *testing.T) {
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.Unmarshal([]byte(schemaTestCRD), crd); err != nil {
		t.Fatal(err)
	}
	apiextensionsv1.SetObjectDefaults_CustomResourceDefinition(crd)
	tc, err := crTypeConverter(crd)
	if err != nil {
		t.Fatal(err)
	}
	res, err := (&Server{}).newCustomResource(crd, crd.Spec.Versions[0], crd.Spec.Names, tc)
	if err != nil {
		t.Fatal(err)
	}
	cr := res.custom
	for _, tc := range []struct {
		name string
		in   string // the object's spec and status, JSON
		// want is the spec and status after pruning and defaulting.
		want    string
		unknown []string
		errs    []string // prefixes, in order
	}{
		{name: "defaults fill an empty spec",
			in:   `{"spec":{}}`,
			want: `{"spec":{"engine":"postgres","storage":{"size":"1Gi"}}}`},
		{name: "defaults inside a given object and list items",
			in:   `{"spec":{"storage":{"class":"fast"},"users":[{"name":"a"},{"name":"b","admin":true}]}}`,
			want: `{"spec":{"engine":"postgres","storage":{"class":"fast","size":"1Gi"},"users":[{"admin":false,"name":"a"},{"admin":true,"name":"b"}]}}`},
		{name: "unknown fields are pruned and reported",
			in:      `{"spec":{"engine":"mysql","colour":"red","storage":{"size":"2Gi","iops":3}},"extra":1}`,
			want:    `{"spec":{"engine":"mysql","storage":{"size":"2Gi"}}}`,
			unknown: []string{"extra", "spec.colour", "spec.storage.iops"}},
		{name: "x-kubernetes-preserve-unknown-fields keeps everything below",
			in:   `{"spec":{"engine":"mysql","config":{"a":{"b":[1,2]}},"storage":{}}}`,
			want: `{"spec":{"config":{"a":{"b":[1,2]}},"engine":"mysql","storage":{"size":"1Gi"}}}`},
		{name: "null without a default is dropped, null with one is defaulted",
			in:   `{"spec":{"replicas":null,"engine":null,"storage":{}}}`,
			want: `{"spec":{"engine":"postgres","storage":{"size":"1Gi"}}}`},
		{name: "unknown status fields are pruned",
			in:      `{"spec":{},"status":{"replicas":2,"ready":true}}`,
			want:    `{"spec":{"engine":"postgres","storage":{"size":"1Gi"}},"status":{"replicas":2}}`,
			unknown: []string{"status.ready"}},
		{name: "wrong type",
			in: `{"spec":{"replicas":"three"}}`,
			errs: []string{`spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string"`,
				`spec.replicas: Invalid value: "three": should be an integer`, skipped}},
		{name: "minimum",
			in:   `{"spec":{"replicas":-1}}`,
			errs: []string{`spec.replicas: Invalid value: -1: spec.replicas in body should be greater than or equal to 0`, `spec.replicas: Invalid value: -1: should be a non-negative integer`}},
		{name: "enum",
			in:   `{"spec":{"engine":"oracle"}}`,
			errs: []string{`spec.engine: Unsupported value: "oracle": supported values: "postgres", "mysql"`, skipped}},
		{name: "required in a list item",
			in:   `{"spec":{"users":[{"admin":true}]}}`,
			errs: []string{`spec.users[0].name: Required value`, skipped}},
		{name: "duplicate list-map key",
			in:   `{"spec":{"users":[{"name":"a"},{"name":"a"}]}}`,
			errs: []string{`spec.users[1]: Duplicate value: {"name":"a"}`}},
		{name: "duplicate set item",
			in:   `{"spec":{"tags":["x","x"]}}`,
			errs: []string{`spec.tags[1]: Duplicate value: "x"`}},
		{name: "CEL rule",
			in:   `{"spec":{"replicas":101}}`,
			errs: []string{`spec: Invalid value: at most 100 replicas`}},
		{name: "embedded resource metadata",
			in:   `{"spec":{"template":{"apiVersion":"v1","kind":"Pod","metadata":{"name":"a/b"}}}}`,
			errs: []string{`spec.template.metadata.name: Invalid value: "a/b": may not contain '/'`}},
		{name: "embedded resource without kind",
			in:   `{"spec":{"template":{"apiVersion":"v1"}}}`,
			errs: []string{`spec.template.kind: Required value`, skipped}},
		{name: "status replicas of the wrong type",
			in: `{"spec":{},"status":{"replicas":"x"}}`,
			errs: []string{`status.replicas: Invalid value: "string": status.replicas in body must be of type integer: "string"`,
				`status.replicas: Invalid value: "x": should be an integer`, skipped}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u := &unstructured.Unstructured{}
			if err := u.UnmarshalJSON([]byte(`{"apiVersion":"example.com/v1","kind":"DB","metadata":{"name":"db","namespace":"default"}}`)); err != nil {
				t.Fatal(err)
			}
			var body map[string]any
			if err := json.Unmarshal([]byte(tc.in), &body); err != nil {
				t.Fatal(err)
			}
			for k, v := range body {
				u.Object[k] = v
			}
			// Through JSON again, as a request body decodes (integers as int64).
			b, _ := json.Marshal(u.Object)
			if err := u.UnmarshalJSON(b); err != nil {
				t.Fatal(err)
			}
			unknown := cr.normalize(u)
			slices.Sort(unknown)
			if !slices.Equal(unknown, tc.unknown) {
				t.Errorf("unknown fields %q, want %q", unknown, tc.unknown)
			}
			if tc.want != "" {
				got := map[string]any{}
				for k, v := range u.Object {
					if k != "apiVersion" && k != "kind" && k != "metadata" {
						got[k] = v
					}
				}
				var want map[string]any
				if err := json.Unmarshal([]byte(tc.want), &want); err != nil {
					t.Fatal(err)
				}
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(want)
				if !reflect.DeepEqual(string(gj), string(wj)) {
					t.Errorf("after pruning and defaulting:\n got %s\nwant %s", gj, wj)
				}
			}
			errs := cr.validate(u, nil)
			if len(errs) != len(tc.errs) {
				t.Fatalf("errors %v, want %q", errs, tc.errs)
			}
			for i, e := range errs {
				if !strings.HasPrefix(e.Error(), tc.errs[i]) {
					t.Errorf("error %d = %q, want prefix %q", i, e.Error(), tc.errs[i])
				}
			}
		})
	}
}
