package openapi

import (
	"bytes"
	"crypto/sha512"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"

	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	"google.golang.org/protobuf/proto"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apiextensions-apiserver/pkg/controller/openapi/builder"
	"k8s.io/kube-openapi/pkg/spec3"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// WithCustomResources serves the built-in documents together with those of
// the custom resources the API server serves. The documents of a custom
// resource come from k8s.io/apiextensions-apiserver's OpenAPI builder, as
// kube-apiserver publishes them: one OpenAPI 3 document per group-version,
// and its paths and definitions added to the Swagger 2.0 document.
type WithCustomResources struct {
	// build makes base on first use (NewLazyWithCustomResources); nil
	// once base is set.
	build   func() (*Documents, error)
	base    *Documents
	baseErr error

	mu     sync.Mutex
	crds   []*apiextensionsv1.CustomResourceDefinition
	merged *Documents // nil: rebuilt on the next request
	// Errs counts definitions whose documents could not be built (they are
	// left out).
	errs []error
}

// NewWithCustomResources serves base until custom resources are added.
func NewWithCustomResources(base *Documents) *WithCustomResources {
	return &WithCustomResources{base: base}
}

// NewLazyWithCustomResources is NewWithCustomResources with the built-in
// documents made by build when they are first asked for: building them
// takes a server's start a fifth of a second of CPU and its heap several
// MiB, for documents only some clients (kubectl apply, explain) ever read.
// Until build succeeds, requests are answered 500 with its error.
func NewLazyWithCustomResources(build func() (*Documents, error)) *WithCustomResources {
	return &WithCustomResources{build: build}
}

// SetCustomResourceDefinitions replaces the served definitions (with their
// accepted names in spec.names); the documents are rebuilt when next asked
// for.
func (h *WithCustomResources) SetCustomResourceDefinitions(crds []*apiextensionsv1.CustomResourceDefinition) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.crds = crds
	h.merged = nil
}

// Errors are the problems met building the current documents.
func (h *WithCustomResources) Errors() []error {
	if _, err := h.current(); err != nil {
		return []error{err}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.errs
}

func (h *WithCustomResources) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	d, err := h.current()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	d.ServeHTTP(w, r)
}

// current returns the documents for the current definitions.
func (h *WithCustomResources) current() (*Documents, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.base == nil && h.build != nil {
		if h.base, h.baseErr = h.build(); h.baseErr == nil {
			h.build = nil
		}
	}
	if h.base == nil {
		return nil, h.baseErr
	}
	if len(h.crds) == 0 {
		return h.base, nil
	}
	if h.merged == nil {
		h.merged, h.errs = merge(h.base, h.crds)
	}
	return h.merged, nil
}

// crdSpecs are the built documents of the served versions of one definition.
type crdSpecs struct {
	gv string // "apis/<group>/<version>"
	v2 *spec.Swagger
	v3 *spec3.OpenAPI
}

func merge(base *Documents, crds []*apiextensionsv1.CustomResourceDefinition) (*Documents, []error) {
	var errs []error
	var specs []crdSpecs
	for _, crd := range crds {
		for _, v := range crd.Spec.Versions {
			if !v.Served {
				continue
			}
			gv := gvPath(crd.Spec.Group, v.Name)
			if _, builtIn := base.v3[gv]; builtIn {
				continue
			}
			v3, err := builder.BuildOpenAPIV3(crd, v.Name, builder.Options{V2: false})
			if err != nil {
				errs = append(errs, fmt.Errorf("openapi: %s version %s: %w", crd.Name, v.Name, err))
				continue
			}
			v2, err := builder.BuildOpenAPIV2(crd, v.Name, builder.Options{V2: true, StripValueValidation: true, StripNullable: true})
			if err != nil {
				errs = append(errs, fmt.Errorf("openapi: %s version %s: %w", crd.Name, v.Name, err))
				continue
			}
			specs = append(specs, crdSpecs{gv: gv, v2: v2, v3: v3})
		}
	}
	out := &Documents{v3: map[string]v3Doc{}, defs: base.defs}
	for k, v := range base.v3 {
		out.v3[k] = v
	}

	// OpenAPI 3: one document per group-version.
	byGV := map[string][]*spec3.OpenAPI{}
	for _, s := range specs {
		byGV[s.gv] = append(byGV[s.gv], s.v3)
	}
	for gv, list := range byGV {
		merged, err := builder.MergeSpecsV3(list...)
		if err != nil {
			errs = append(errs, fmt.Errorf("openapi: merging %s: %w", gv, err))
			continue
		}
		b, err := json.Marshal(merged)
		if err != nil {
			errs = append(errs, fmt.Errorf("openapi: encoding %s: %w", gv, err))
			continue
		}
		hash := fmt.Sprintf("%X", sha512.Sum512(b))
		out.v3[gv] = v3Doc{blob: blob{data: b, etag: `"` + hash[:32] + `"`}, hash: hash}
	}
	index := v3Index{Paths: map[string]v3IndexEntry{}}
	for gv, d := range out.v3 {
		index.Paths[gv] = v3IndexEntry{ServerRelativeURL: "/openapi/v3/" + gv + "?hash=" + d.hash}
	}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return base, append(errs, err)
	}
	out.v3Index = newBlob(indexJSON)

	// Swagger 2.0: the built-in document with the custom resources' paths
	// and definitions added.
	defs, paths, err := v2Parts(base, specs)
	if err != nil {
		return base, append(errs, err)
	}
	v2, err := spliceV2(base.v2JSON.data, defs, paths)
	if err != nil {
		return base, append(errs, err)
	}
	out.v2JSON = newBlob(v2)
	pb, err := mergeV2Protobuf(base.v2Proto.data, defs, paths)
	if err != nil {
		return base, append(errs, err)
	}
	out.v2Proto = newBlob(pb)
	return out, errs
}

// namedJSON is one member of a JSON object, encoded.
type namedJSON struct {
	name string
	raw  json.RawMessage
}

// v2Parts are the definitions (those the built-in document lacks) and
// paths of the custom resources, with parameter references resolved so
// the paths do not depend on the document's global parameters.
func v2Parts(base *Documents, specs []crdSpecs) (defs, paths []namedJSON, err error) {
	seen := map[string]bool{}
	for _, s := range specs {
		names := make([]string, 0, len(s.v2.Definitions))
		for name := range s.v2.Definitions {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			if _, ok := base.defs[name]; ok || seen[name] {
				continue
			}
			seen[name] = true
			d := s.v2.Definitions[name]
			b, err := json.Marshal(&d)
			if err != nil {
				return nil, nil, err
			}
			defs = append(defs, namedJSON{name, b})
		}
		if s.v2.Paths == nil {
			continue
		}
		pnames := make([]string, 0, len(s.v2.Paths.Paths))
		for p := range s.v2.Paths.Paths {
			pnames = append(pnames, p)
		}
		sort.Strings(pnames)
		for _, p := range pnames {
			item := s.v2.Paths.Paths[p]
			item.Parameters = inlineParams(s.v2, item.Parameters)
			for _, op := range []*spec.Operation{item.Get, item.Put, item.Post, item.Delete, item.Patch, item.Options, item.Head} {
				if op != nil {
					op.Parameters = inlineParams(s.v2, op.Parameters)
				}
			}
			b, err := json.Marshal(&item)
			if err != nil {
				return nil, nil, err
			}
			paths = append(paths, namedJSON{p, b})
		}
	}
	return defs, paths, nil
}

func inlineParams(sw *spec.Swagger, params []spec.Parameter) []spec.Parameter {
	out := make([]spec.Parameter, 0, len(params))
	for _, p := range params {
		if ref := p.Ref.String(); strings.HasPrefix(ref, "#/parameters/") {
			if def, ok := sw.Parameters[strings.TrimPrefix(ref, "#/parameters/")]; ok {
				p = def
			}
		}
		out = append(out, p)
	}
	return out
}

// spliceV2 adds members to the "definitions" and "paths" objects of the
// document the encoder wrote ({"definitions":{...},"info":...,"paths":{...},...}).
func spliceV2(doc []byte, defs, paths []namedJSON) ([]byte, error) {
	const defsKey, pathsKey = `{"definitions":{`, `"paths":{`
	if !bytes.HasPrefix(doc, []byte(defsKey)) {
		return nil, fmt.Errorf("openapi: the Swagger document does not start with its definitions")
	}
	// The top-level "paths" is the last key of that name: definitions
	// (which may have properties called paths) come first.
	at := bytes.LastIndex(doc, []byte(pathsKey))
	if at < 0 {
		return nil, fmt.Errorf("openapi: the Swagger document has no paths")
	}
	members := func(list []namedJSON) []byte {
		var b []byte
		for _, m := range list {
			k, _ := json.Marshal(m.name)
			b = append(b, k...)
			b = append(b, ':')
			b = append(b, m.raw...)
			b = append(b, ',')
		}
		return b
	}
	out := make([]byte, 0, len(doc)+64*1024)
	out = append(out, defsKey...)
	out = append(out, members(defs)...)
	rest := doc[len(defsKey) : at+len(pathsKey)]
	if len(defs) > 0 && bytes.HasPrefix(rest, []byte("}")) {
		out = out[:len(out)-1] // no definitions before: drop the trailing comma
	}
	out = append(out, rest...)
	out = append(out, members(paths)...)
	tail := doc[at+len(pathsKey):]
	if len(paths) > 0 && bytes.HasPrefix(tail, []byte("}")) {
		out = out[:len(out)-1]
	}
	out = append(out, tail...)
	return out, nil
}

// mergeV2Protobuf adds the definitions and paths to the protobuf document.
func mergeV2Protobuf(base []byte, defs, paths []namedJSON) ([]byte, error) {
	doc := &openapi_v2.Document{}
	if err := proto.Unmarshal(base, doc); err != nil {
		return nil, err
	}
	var part bytes.Buffer
	part.WriteString(`{"swagger":"2.0","info":{"title":"custom resources","version":"v1"},"definitions":{`)
	for i, d := range defs {
		if i > 0 {
			part.WriteByte(',')
		}
		k, _ := json.Marshal(d.name)
		part.Write(k)
		part.WriteByte(':')
		part.Write(d.raw)
	}
	part.WriteString(`},"paths":{`)
	for i, p := range paths {
		if i > 0 {
			part.WriteByte(',')
		}
		k, _ := json.Marshal(p.name)
		part.Write(k)
		part.WriteByte(':')
		part.Write(p.raw)
	}
	part.WriteString(`}}`)
	extra, err := openapi_v2.ParseDocument(part.Bytes())
	if err != nil {
		return nil, fmt.Errorf("openapi: parsing the custom resources' Swagger document: %w", err)
	}
	if extra.Definitions != nil {
		doc.Definitions.AdditionalProperties = append(doc.Definitions.AdditionalProperties, extra.Definitions.AdditionalProperties...)
	}
	if extra.Paths != nil {
		doc.Paths.Path = append(doc.Paths.Path, extra.Paths.Path...)
	}
	return proto.Marshal(doc)
}
