package openapi

import (
	"crypto/sha256"
	"encoding/hex"
	"reflect"
	"slices"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Media types the REST handlers speak.
var (
	produces = []string{
		"application/json",
		"application/yaml",
		"application/vnd.kubernetes.protobuf",
	}
	producesList = append(slices.Clone(produces),
		"application/json;stream=watch",
		"application/vnd.kubernetes.protobuf;stream=watch",
	)
	consumesAny   = []string{"*/*"}
	consumesPatch = []string{
		"application/json-patch+json",
		"application/merge-patch+json",
		"application/strategic-merge-patch+json",
		"application/apply-patch+yaml",
	}
)

// param is a path or query parameter.
type param struct {
	name, in, desc, typ string
	required            bool
}

// queryParams lists the query parameters of an options type (ListOptions,
// PatchOptions, ...), one per JSON field of a simple type, described by the
// type's own documentation.
func queryParams(options any, skip ...string) []param {
	t := reflect.TypeOf(options)
	var docs map[string]string
	if d, ok := reflect.New(t).Interface().(swaggerDoc); ok {
		docs = d.SwaggerDoc()
	}
	var out []param
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous || !f.IsExported() || name == "" || name == "-" || slices.Contains(skip, name) {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer || ft.Kind() == reflect.Slice {
			ft = ft.Elem()
		}
		var typ string
		switch ft.Kind() {
		case reflect.String:
			typ = "string"
		case reflect.Bool:
			typ = "boolean"
		case reflect.Int, reflect.Int32, reflect.Int64:
			typ = "integer"
		default:
			continue // Preconditions and other structured fields travel in the body only.
		}
		out = append(out, param{name: name, in: "query", desc: docs[name], typ: typ})
	}
	return out
}

// params holds the parameters of every path. Each is defined once, in the
// document's global parameters, and paths and operations refer to it by
// key, as kube-apiserver does in /openapi/v2; this keeps the documents small
// and quick to build and parse.
//
// In the OpenAPI 3 documents fieldValidation is written out in full in each
// operation instead, because kubectl's check for it (k8s.io/cli-runtime
// QueryParamVerifierV3) does not follow #/components/parameters/ references.
type params struct {
	defs map[string]param  // by key
	keys map[string]string // name + "\x00" + description → key

	pretty, namespace, name                          string
	get, list, create, update, patch, del, deleteAll []string
}

func newParams() *params {
	p := &params{defs: map[string]param{}, keys: map[string]string{}}
	p.pretty = p.key(param{name: "pretty", in: "query", typ: "string",
		desc: "If 'true', the response is indented for people to read."})
	p.namespace = p.key(param{name: "namespace", in: "path", typ: "string", required: true,
		desc: "The namespace the object lives in."})
	p.name = p.key(param{name: "name", in: "path", typ: "string", required: true,
		desc: "The name of the object."})
	p.get = p.keyAll(queryParams(metav1.GetOptions{}))
	p.list = p.keyAll(queryParams(metav1.ListOptions{}))
	p.create = p.keyAll(queryParams(metav1.CreateOptions{}))
	p.update = p.keyAll(queryParams(metav1.UpdateOptions{}))
	p.patch = p.keyAll(queryParams(metav1.PatchOptions{}))
	del := queryParams(metav1.DeleteOptions{})
	p.del = p.keyAll(del)
	p.deleteAll = p.keyAll(del, queryParams(metav1.ListOptions{}, "watch", "allowWatchBookmarks"))
	return p
}

// key records pa among the global parameters and returns its key: its name,
// or, when another parameter of that name differs (dryRun, fieldManager are
// worded differently for create and patch), its name and a digest.
func (p *params) key(pa param) string {
	id := pa.name + "\x00" + pa.desc
	if key, ok := p.keys[id]; ok {
		return key
	}
	key := pa.name
	if _, taken := p.defs[key]; taken {
		sum := sha256.Sum256([]byte(pa.desc))
		key += "-" + hex.EncodeToString(sum[:4])
	}
	p.keys[id] = key
	p.defs[key] = pa
	return key
}

// keyAll merges lists (the first parameter of a name wins), sorts them by
// name and returns their keys.
func (p *params) keyAll(lists ...[]param) []string {
	var merged []param
	seen := map[string]bool{}
	for _, l := range lists {
		for _, pa := range l {
			if !seen[pa.name] {
				seen[pa.name] = true
				merged = append(merged, pa)
			}
		}
	}
	sort.Slice(merged, func(i, j int) bool { return merged[i].name < merged[j].name })
	keys := make([]string, len(merged))
	for i, pa := range merged {
		keys[i] = p.key(pa)
	}
	return keys
}

// sortedKeys is the keys of the global parameters, sorted.
func (p *params) sortedKeys() []string {
	keys := make([]string, 0, len(p.defs))
	for k := range p.defs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

type gvk struct{ group, version, kind string }

func (g gvk) ext() map[string]any {
	return map[string]any{"group": g.group, "version": g.version, "kind": g.kind}
}

// pathItem is one URL path and its operations.
type pathItem struct {
	path   string
	gv     string   // group-version path ("api/v1") the path belongs to
	params []string // keys of the parameters all operations share
	ops    []*operation
}

// methods in the order they are written out.
var methods = []string{"get", "put", "post", "delete", "patch"}

// operation is one HTTP method on one path.
type operation struct {
	method           string
	id, action, desc string
	tag              string
	gvk              gvk
	params           []string // keys, sorted by parameter name
	body             string   // definition name of the request body, if any
	consumes         []string
	produces         []string
	responses        []response // by code
}

type response struct {
	code int
	def  string // definition name of the body, "" for none
}

func responses(def string, codes ...int) []response {
	out := make([]response, 0, len(codes)+1)
	for _, c := range codes {
		out = append(out, response{code: c, def: def})
	}
	return append(out, response{code: 401})
}

func statusText(code int) string {
	switch code {
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 202:
		return "Accepted"
	case 401:
		return "Unauthorized"
	}
	return ""
}

// gvID is the group-version as it appears in operation IDs: CoreV1,
// AppsV1, RbacAuthorizationV1.
func gvID(group, version string) string {
	var b strings.Builder
	if group == "" {
		b.WriteString("Core")
	}
	for _, part := range strings.Split(strings.TrimSuffix(group, ".k8s.io"), ".") {
		for _, word := range strings.Split(part, "-") {
			b.WriteString(upperFirst(word))
		}
	}
	b.WriteString(upperFirst(version))
	return b.String()
}

// gvTag is the tag kube groups operations under: core_v1, apps_v1,
// rbacAuthorization_v1.
func gvTag(group, version string) string {
	if group == "" {
		return "core_" + version
	}
	id := strings.TrimSuffix(gvID(group, version), upperFirst(version))
	return strings.ToLower(id[:1]) + id[1:] + "_" + version
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// gvPath is the URL path of a group-version without the leading slash:
// api/v1, apis/apps/v1. It is also the key of the OpenAPI v3 index.
func gvPath(group, version string) string {
	if group == "" {
		return "api/" + version
	}
	return "apis/" + group + "/" + version
}

// resourcePaths returns the paths of r. objName, listName and scaleName are
// the definition names of its types.
func resourcePaths(r Resource, p *params, objName, listName, scaleName string) []*pathItem {
	gv := gvPath(r.Group, r.Version)
	prefix := "/" + gv
	id := gvID(r.Group, r.Version)
	tag := gvTag(r.Group, r.Version)
	can := func(verb string) bool { return slices.Contains(r.Verbs, verb) }
	kind := gvk{r.Group, r.Version, r.Kind}

	kindID := r.Kind
	collection := prefix + "/" + r.Resource
	pathParams := []string{p.pretty}
	if r.Namespaced {
		kindID = "Namespaced" + r.Kind
		collection = prefix + "/namespaces/{namespace}/" + r.Resource
		pathParams = []string{p.namespace, p.pretty}
	}
	itemParams := append([]string{p.name}, pathParams...)

	var out []*pathItem
	add := func(path string, params []string, ops ...*operation) {
		item := &pathItem{path: path, gv: gv, params: params}
		for _, m := range methods {
			for _, op := range ops {
				if op != nil && op.method == m {
					op.tag = tag
					item.ops = append(item.ops, op)
				}
			}
		}
		if len(item.ops) > 0 {
			out = append(out, item)
		}
	}
	list := func(opID, desc string) *operation {
		if !can("list") {
			return nil
		}
		return &operation{method: "get", id: opID, action: "list", gvk: kind, desc: desc,
			params: p.list, produces: producesList, responses: responses(listName, 200)}
	}

	var create, deleteAll *operation
	if can("create") {
		create = &operation{method: "post", id: "create" + id + kindID, action: "post", gvk: kind,
			desc: "Create a " + r.Kind + ".", params: p.create, body: objName,
			consumes: consumesAny, produces: produces, responses: responses(objName, 200, 201, 202)}
	}
	if can("deletecollection") {
		deleteAll = &operation{method: "delete", id: "deletecollection" + id + kindID, action: "deletecollection", gvk: kind,
			desc: "Delete a collection of " + r.Kind + " objects.", params: p.deleteAll, body: defDeleteOptions,
			consumes: consumesAny, produces: produces, responses: responses(defStatus, 200)}
	}
	add(collection, pathParams, list("list"+id+kindID, "List or watch "+r.Kind+" objects."), create, deleteAll)
	if r.Namespaced {
		add(prefix+"/"+r.Resource, []string{p.pretty},
			list("list"+id+r.Kind+"ForAllNamespaces", "List or watch "+r.Kind+" objects in all namespaces."))
	}

	// itemOps are the operations on one object or one of its subresources.
	itemOps := func(suffix, what, def string, kind gvk, withDelete bool) []*operation {
		var ops []*operation
		if can("get") {
			ops = append(ops, &operation{method: "get", id: "read" + id + kindID + suffix, action: "get", gvk: kind,
				desc: "Read " + what + ".", params: p.get, produces: produces, responses: responses(def, 200)})
		}
		if can("update") {
			ops = append(ops, &operation{method: "put", id: "replace" + id + kindID + suffix, action: "put", gvk: kind,
				desc: "Replace " + what + ".", params: p.update, body: def,
				consumes: consumesAny, produces: produces, responses: responses(def, 200, 201)})
		}
		if can("patch") {
			ops = append(ops, &operation{method: "patch", id: "patch" + id + kindID + suffix, action: "patch", gvk: kind,
				desc: "Partially update " + what + ".", params: p.patch, body: defPatch,
				consumes: consumesPatch, produces: produces, responses: responses(def, 200, 201)})
		}
		if withDelete && can("delete") {
			ops = append(ops, &operation{method: "delete", id: "delete" + id + kindID, action: "delete", gvk: kind,
				desc: "Delete " + what + ".", params: p.del, body: defDeleteOptions,
				consumes: consumesAny, produces: produces, responses: responses(defStatus, 200, 202)})
		}
		return ops
	}
	item := collection + "/{name}"
	add(item, itemParams, itemOps("", "the specified "+r.Kind, objName, kind, true)...)
	for _, sub := range r.Subresources {
		switch sub {
		case "status":
			add(item+"/status", itemParams,
				itemOps("Status", "the status of the specified "+r.Kind, objName, kind, false)...)
		case "scale":
			add(item+"/scale", itemParams,
				itemOps("Scale", "the scale of the specified "+r.Kind, scaleName, gvk{scaleGroup, scaleVersion, scaleKind}, false)...)
		}
	}
	return out
}
