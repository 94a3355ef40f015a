// Package openapi generates the OpenAPI documents the API server publishes
// at /openapi/v2 and /openapi/v3, by reflection over the Go types of the
// served resources.
//
// The documents follow the conventions kube-apiserver uses, to the extent
// kubectl relies on them: definition names (io.k8s.api.core.v1.Service),
// descriptions from the types' SwaggerDoc, strategic merge patch extensions
// from struct tags, x-kubernetes-group-version-kind on kinds and operations,
// and one OpenAPI 3 document per group-version holding only the schemas that
// group-version reaches.
package openapi

import (
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"sort"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// Resource describes one served resource.
type Resource struct {
	Group, Version string
	Kind, ListKind string
	Resource       string // plural, e.g. "services"
	Namespaced     bool
	Object         reflect.Type // e.g. reflect.TypeOf(corev1.Service{})
	List           reflect.Type // e.g. reflect.TypeOf(corev1.ServiceList{})
	// Verbs is a subset of get, list, watch, create, update, patch, delete,
	// deletecollection.
	Verbs []string
	// Subresources is a subset of status, scale. The scale subresource
	// speaks autoscaling/v1 Scale.
	Subresources []string
}

var (
	knownVerbs        = []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
	knownSubresources = []string{"status", "scale"}
)

func (r Resource) validate() error {
	if r.Object == nil || r.List == nil || r.Kind == "" || r.Resource == "" || r.Version == "" {
		return fmt.Errorf("openapi: resource %q of %q/%q is incomplete", r.Resource, gvPath(r.Group, r.Version), r.Kind)
	}
	for _, v := range r.Verbs {
		if !slices.Contains(knownVerbs, v) {
			return fmt.Errorf("openapi: %s/%s: unknown verb %q", gvPath(r.Group, r.Version), r.Resource, v)
		}
	}
	for _, sub := range r.Subresources {
		if !slices.Contains(knownSubresources, sub) {
			return fmt.Errorf("openapi: %s/%s: unsupported subresource %q", gvPath(r.Group, r.Version), r.Resource, sub)
		}
	}
	for _, t := range []reflect.Type{derefType(r.Object), derefType(r.List)} {
		if t.Kind() != reflect.Struct || t.Name() == "" {
			return fmt.Errorf("openapi: %s/%s: %v is not a named struct type", gvPath(r.Group, r.Version), r.Resource, t)
		}
	}
	return nil
}

// Documents holds the generated documents, serialized once.
type Documents struct {
	v2JSON  blob
	v2Proto blob
	v3Index blob
	v3      map[string]v3Doc // by group-version path: "api/v1", "apis/apps/v1"
	defs    map[string]*spec.Schema
}

// blob is a serialized document and its HTTP entity tag.
type blob struct {
	data []byte
	etag string
}

func newBlob(b []byte) blob { return blob{data: b, etag: etag(b)} }

type v3Doc struct {
	blob
	hash string
}

const (
	scaleGroup, scaleVersion, scaleKind = "autoscaling", "v1", "Scale"
)

// Names of the meta definitions the paths refer to.
var (
	defStatus        = definitionName(reflect.TypeOf(metav1.Status{}))
	defDeleteOptions = definitionName(reflect.TypeOf(metav1.DeleteOptions{}))
	defPatch         = definitionName(reflect.TypeOf(metav1.Patch{}))
	defWatchEvent    = definitionName(reflect.TypeOf(metav1.WatchEvent{}))
)

// Build generates the documents for resources. serverVersion is reported as
// the documents' info.version. The output is deterministic: the same input
// gives the same bytes, and so the same v3 hashes, on every start.
//
// A build for twenty resources takes about 20-30 ms; build once and keep
// the Documents.
func Build(resources []Resource, serverVersion string) (*Documents, error) {
	s := newSchemaSet()
	gvks := map[string][]any{} // definition name → x-kubernetes-group-version-kind
	addGVK := func(name string, g gvk) {
		for _, have := range gvks[name] {
			if reflect.DeepEqual(have, g.ext()) {
				return
			}
		}
		gvks[name] = append(gvks[name], g.ext())
	}

	p := newParams()
	var items []*pathItem
	seen := map[string]bool{}
	gvRoots := map[string][]string{}
	var gvOrder []string

	// The meta types the paths use.
	for _, t := range []reflect.Type{
		reflect.TypeOf(metav1.Status{}),
		reflect.TypeOf(metav1.DeleteOptions{}),
		reflect.TypeOf(metav1.Patch{}),
		reflect.TypeOf(metav1.WatchEvent{}),
	} {
		s.define(t)
	}
	addGVK(defStatus, gvk{"", "v1", "Status"})

	for _, r := range resources {
		if err := r.validate(); err != nil {
			return nil, err
		}
		listKind := r.ListKind
		if listKind == "" {
			listKind = r.Kind + "List"
		}
		obj := s.define(derefType(r.Object))
		list := s.define(derefType(r.List))
		addGVK(obj, gvk{r.Group, r.Version, r.Kind})
		addGVK(list, gvk{r.Group, r.Version, listKind})
		addGVK(defDeleteOptions, gvk{r.Group, r.Version, "DeleteOptions"})
		addGVK(defWatchEvent, gvk{r.Group, r.Version, "WatchEvent"})

		gv := gvPath(r.Group, r.Version)
		if _, ok := gvRoots[gv]; !ok {
			gvOrder = append(gvOrder, gv)
		}
		roots := []string{obj, list, defStatus, defDeleteOptions, defPatch}
		scale := ""
		if slices.Contains(r.Subresources, "scale") {
			scale = s.define(reflect.TypeOf(autoscalingv1.Scale{}))
			addGVK(scale, gvk{scaleGroup, scaleVersion, scaleKind})
			roots = append(roots, scale)
		}
		if slices.Contains(r.Verbs, "watch") {
			roots = append(roots, defWatchEvent)
		}
		gvRoots[gv] = append(gvRoots[gv], roots...)

		for _, item := range resourcePaths(r, p, obj, list, scale) {
			if seen[item.path] {
				return nil, fmt.Errorf("openapi: path %s is served twice", item.path)
			}
			seen[item.path] = true
			items = append(items, item)
		}
	}
	sort.Slice(items, func(i, j int) bool { return items[i].path < items[j].path })

	for name, list := range gvks {
		d := s.defs[name]
		ext := spec.Extensions{}
		for k, v := range d.Extensions {
			ext[k] = v
		}
		ext[extGVK] = list
		d.Extensions = ext
		s.defs[name] = d
	}
	return serialize(s, p, items, gvRoots, gvOrder, serverVersion)
}

func serialize(s *schemaSet, p *params, items []*pathItem, gvRoots map[string][]string, gvOrder []string,
	serverVersion string) (*Documents, error) {
	docs := &Documents{v3: map[string]v3Doc{}, defs: make(map[string]*spec.Schema, len(s.defs))}
	names := sortedKeys(s.defs)
	for _, name := range names {
		d := s.defs[name]
		docs.defs[name] = &d
	}

	// Each definition, in both forms.
	v2Defs := make([][]byte, len(names))
	v3Defs := make([][]byte, len(names))
	var e enc
	for i, name := range names {
		d := docs.defs[name]
		e.b = e.b[:0]
		e.schema(d, false)
		v2Defs[i] = append([]byte(nil), e.b...)
		e.b = e.b[:0]
		e.schema(v3Form(d, s.v3OneOf[name]), true)
		v3Defs[i] = append([]byte(nil), e.b...)
	}
	objectOf := func(e *enc, keep map[string]bool, defs [][]byte) {
		e.b = append(e.b, '{')
		for i, name := range names {
			if keep == nil || keep[name] {
				e.key(name)
				e.b = append(e.b, defs[i]...)
			}
		}
		e.b = append(e.b, '}')
	}
	paramKeys := p.sortedKeys()

	// Swagger 2.0: everything.
	v2 := enc{b: make([]byte, 0, 1<<20)}
	v2.raw("{")
	v2.key("definitions")
	objectOf(&v2, nil, v2Defs)
	v2.key("info")
	v2.info(serverVersion)
	v2.key("parameters")
	v2.raw("{")
	for _, k := range paramKeys {
		v2.key(k)
		v2.v2Param(p.defs[k])
	}
	v2.raw("}")
	v2.key("paths")
	v2.paths(items, p, false)
	v2.key("swagger")
	v2.str("2.0")
	v2.raw("}")
	docs.v2JSON = newBlob(v2.b)
	pb, err := swaggerProtobuf(docs.defs, names, p, paramKeys, items, serverVersion)
	if err != nil {
		return nil, err
	}
	docs.v2Proto = newBlob(pb)

	// OpenAPI 3: one document per group-version, with the schemas it reaches.
	var v3Params enc
	v3Params.raw("{")
	for _, k := range paramKeys {
		v3Params.key(k)
		v3Params.v3Param(p.defs[k])
	}
	v3Params.raw("}")
	index := v3Index{Paths: map[string]v3IndexEntry{}}
	for _, gv := range gvOrder {
		var gvItems []*pathItem
		for _, item := range items {
			if item.gv == gv {
				gvItems = append(gvItems, item)
			}
		}
		var e enc
		e.raw("{")
		e.key("components")
		e.raw("{")
		e.key("parameters")
		e.raw(string(v3Params.b))
		e.key("schemas")
		objectOf(&e, s.closure(gvRoots[gv]), v3Defs)
		e.raw("}")
		e.key("info")
		e.info(serverVersion)
		e.key("openapi")
		e.str("3.0.0")
		e.key("paths")
		e.paths(gvItems, p, true)
		e.raw("}")
		hash := fmt.Sprintf("%X", sha512.Sum512(e.b))
		docs.v3[gv] = v3Doc{blob: blob{data: e.b, etag: `"` + hash[:32] + `"`}, hash: hash}
		index.Paths[gv] = v3IndexEntry{ServerRelativeURL: "/openapi/v3/" + gv + "?hash=" + hash}
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return nil, fmt.Errorf("openapi: encoding v3 index: %w", err)
	}
	docs.v3Index = newBlob(indexJSON)
	return docs, nil
}

// v3Form is d as OpenAPI 3 describes it: types that declare
// OpenAPIV3OneOfTypes (IntOrString, Quantity) become a oneOf over those
// types instead of a single type.
func v3Form(d *spec.Schema, oneOf []string) *spec.Schema {
	if len(oneOf) == 0 {
		return d
	}
	n := &spec.Schema{VendorExtensible: d.VendorExtensible}
	n.Description = d.Description
	n.Format = d.Format
	for _, t := range oneOf {
		n.OneOf = append(n.OneOf, typed(t, ""))
	}
	return n
}

func derefType(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

type v3Index struct {
	Paths map[string]v3IndexEntry `json:"paths"`
}

type v3IndexEntry struct {
	ServerRelativeURL string `json:"serverRelativeURL"`
}

// V2JSON is the Swagger 2.0 document with every definition and path.
func (d *Documents) V2JSON() []byte { return d.v2JSON.data }

// V2Protobuf is V2JSON as a gnostic openapi_v2.Document in protobuf, the
// form client-go's discovery.OpenAPISchema asks for.
func (d *Documents) V2Protobuf() []byte { return d.v2Proto.data }

// V3Index is the /openapi/v3 discovery document: for every group-version
// path ("api/v1", "apis/apps/v1") the URL of its document, with its hash.
func (d *Documents) V3Index() []byte { return d.v3Index.data }

// V3 is the OpenAPI 3.0 document of one group-version, named by its path
// ("api/v1", "apis/apps/v1"), and its hash as used in V3Index.
func (d *Documents) V3(groupVersionPath string) (doc []byte, hash string, ok bool) {
	v, ok := d.v3[groupVersionPath]
	return v.data, v.hash, ok
}

// GroupVersionPaths lists the group-version paths V3 answers for, sorted.
func (d *Documents) GroupVersionPaths() []string {
	out := make([]string, 0, len(d.v3))
	for k := range d.v3 {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Definitions are the Swagger 2.0 definitions by name, the input
// k8s.io/apimachinery/pkg/util/managedfields.NewTypeConverter takes. They
// are shared: callers must not modify them.
//
// Reflection cannot see the +listType/+listMapKey markers kube's schemas
// carry, so a type converter built from these knows list keys only from
// patchMergeKey tags: it keys Service ports by port alone and rejects a
// Service with 53/UDP and 53/TCP as a duplicate. For managed fields use
// k8s.io/client-go/applyconfigurations.NewTypeConverter, which has kube's
// exact list semantics for the built-in types.
func (d *Documents) Definitions() map[string]*spec.Schema { return d.defs }
