package openapi

import (
	"reflect"
	"strings"
	"time"

	"k8s.io/kube-openapi/pkg/util"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// v2RefPrefix is where Swagger 2.0 documents keep named schemas; the
// definitions are built with references of this form, and the OpenAPI 3
// encoder rewrites them to #/components/schemas/.
const v2RefPrefix = "#/definitions/"

// Extension keys understood by kubectl and apimachinery.
const (
	extGVK           = "x-kubernetes-group-version-kind"
	extAction        = "x-kubernetes-action"
	extPatchStrategy = "x-kubernetes-patch-strategy"
	extPatchMergeKey = "x-kubernetes-patch-merge-key"
)

// Interfaces the Kubernetes types implement to describe themselves. They are
// looked up on a pointer to a zero value so both receiver kinds are found.
type (
	swaggerDoc      interface{ SwaggerDoc() map[string]string }
	modelNamer      interface{ OpenAPIModelName() string }
	schemaTyper     interface{ OpenAPISchemaType() []string }
	schemaFormatter interface{ OpenAPISchemaFormat() string }
	v3OneOfTyper    interface{ OpenAPIV3OneOfTypes() []string }
)

// ownDescriptions describes the few named types whose packages carry no
// SwaggerDoc. The wording is ours.
var ownDescriptions = map[string]string{
	"io.k8s.apimachinery.pkg.apis.meta.v1.Time":          "A point in time, serialized as an RFC 3339 string with second precision.",
	"io.k8s.apimachinery.pkg.apis.meta.v1.MicroTime":     "A point in time, serialized as an RFC 3339 string with microsecond precision.",
	"io.k8s.apimachinery.pkg.apis.meta.v1.Duration":      "A length of time, written the way Go's time.ParseDuration reads it, for example \"1h30m\".",
	"io.k8s.apimachinery.pkg.api.resource.Quantity":      "A fixed-point amount, written as a number with an optional suffix: binary (Ki, Mi, Gi, Ti, Pi, Ei), decimal (m, k, M, G, T, P, E) or an exponent (e3). Examples: \"500m\", \"2Gi\", \"1.5\".",
	"io.k8s.apimachinery.pkg.util.intstr.IntOrString":    "A value that is either a 32-bit integer or a string, for example a port number or a port name.",
	"io.k8s.apimachinery.pkg.runtime.RawExtension":       "An embedded object of any kind, kept as raw JSON with its own apiVersion and kind.",
	"io.k8s.apimachinery.pkg.apis.meta.v1.WatchEvent":    "One event in a watch stream: what happened and the object it happened to.",
	"io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1":      "A set of field paths in the managed fields JSON format.",
	"io.k8s.apimachinery.pkg.apis.meta.v1.Patch":         "The body of a PATCH request; its format is given by the request's Content-Type.",
	"io.k8s.apimachinery.pkg.apis.meta.v1.Preconditions": "Conditions an object must meet before it is deleted.",
}

// schemaSet accumulates Swagger 2.0 definitions for Go types found by
// reflection.
type schemaSet struct {
	defs  spec.Definitions
	names map[reflect.Type]string
	// v3OneOf records the definitions whose OpenAPI 3 form is a oneOf over
	// primitive types (IntOrString, Quantity) rather than a single type.
	v3OneOf map[string][]string
}

func newSchemaSet() *schemaSet {
	return &schemaSet{
		defs:    spec.Definitions{},
		names:   map[reflect.Type]string{},
		v3OneOf: map[string][]string{},
	}
}

// definitionName is the name kube gives the Go type t: the model name the
// type reports, or its package path with the domain reversed and the type
// name appended (k8s.io/api/core/v1.Pod → io.k8s.api.core.v1.Pod).
func definitionName(t reflect.Type) string {
	if n, ok := reflect.New(t).Interface().(modelNamer); ok {
		if name := n.OpenAPIModelName(); name != "" {
			return name
		}
	}
	return util.ToRESTFriendlyName(t.PkgPath() + "." + t.Name())
}

// define makes sure t (a named struct type) has a definition and returns its
// name.
func (s *schemaSet) define(t reflect.Type) string {
	if name, ok := s.names[t]; ok {
		return name
	}
	name := definitionName(t)
	s.names[t] = name
	if _, ok := s.defs[name]; ok {
		return name
	}
	// Reserve the name first so recursive types terminate.
	s.defs[name] = spec.Schema{}
	s.defs[name] = s.structSchema(t, name)
	return name
}

func (s *schemaSet) structSchema(t reflect.Type, name string) spec.Schema {
	ptr := reflect.New(t).Interface()
	var out spec.Schema
	if d, ok := ptr.(swaggerDoc); ok {
		out.Description = d.SwaggerDoc()[""]
	}
	if out.Description == "" {
		out.Description = ownDescriptions[name]
	}
	if typer, ok := ptr.(schemaTyper); ok {
		out.Type = typer.OpenAPISchemaType()
		if f, ok := ptr.(schemaFormatter); ok {
			out.Format = f.OpenAPISchemaFormat()
		}
		if o, ok := ptr.(v3OneOfTyper); ok {
			s.v3OneOf[name] = o.OpenAPIV3OneOfTypes()
		}
		return out
	}
	out.Type = spec.StringOrArray{"object"}
	props := map[string]spec.Schema{}
	var required []string
	s.addFields(t, props, &required)
	if len(props) > 0 {
		out.Properties = props
	}
	out.Required = required
	return out
}

// addFields adds the JSON fields of struct t, following encoding/json:
// unexported and json:"-" fields are skipped, embedded structs without a
// name are inlined.
func (s *schemaSet) addFields(t reflect.Type, props map[string]spec.Schema, required *[]string) {
	var docs map[string]string
	if d, ok := reflect.New(t).Interface().(swaggerDoc); ok {
		docs = d.SwaggerDoc()
	}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			// Like encoding/json, an embedded struct without a JSON name
			// contributes its fields, exported or not.
			s.addFields(ft, props, required)
			continue
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		p := s.schemaOf(f.Type)
		if desc := docs[name]; desc != "" {
			p.Description = desc
		}
		if v, ok := f.Tag.Lookup("patchStrategy"); ok && v != "" {
			setExt(&p.VendorExtensible, extPatchStrategy, v)
		}
		if v, ok := f.Tag.Lookup("patchMergeKey"); ok && v != "" {
			setExt(&p.VendorExtensible, extPatchMergeKey, v)
		}
		props[name] = p
		if !hasOpt(opts, "omitempty") && !hasOpt(opts, "omitzero") &&
			name != "metadata" && name != "apiVersion" && name != "kind" {
			*required = append(*required, name)
		}
	}
}

func hasOpt(opts, want string) bool {
	for opts != "" {
		var o string
		o, opts, _ = strings.Cut(opts, ",")
		if o == want {
			return true
		}
	}
	return false
}

func setExt(v *spec.VendorExtensible, key string, value any) {
	if v.Extensions == nil {
		v.Extensions = spec.Extensions{}
	}
	v.Extensions[key] = value
}

var timeType = reflect.TypeOf(time.Time{})

// schemaOf is the schema of a value of type t where it appears (a field, an
// array item, a map value): a reference for named structs, inline otherwise.
func (s *schemaSet) schemaOf(t reflect.Type) spec.Schema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.Bool:
		return typed("boolean", "")
	case reflect.Int8, reflect.Int16, reflect.Int32, reflect.Uint8, reflect.Uint16, reflect.Uint32:
		return typed("integer", "int32")
	case reflect.Int, reflect.Int64, reflect.Uint, reflect.Uint64, reflect.Uintptr:
		return typed("integer", "int64")
	case reflect.Float32:
		return typed("number", "float")
	case reflect.Float64:
		return typed("number", "double")
	case reflect.String:
		return typed("string", "")
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return typed("string", "byte")
		}
		item := s.schemaOf(t.Elem())
		out := typed("array", "")
		out.Items = &spec.SchemaOrArray{Schema: &item}
		return out
	case reflect.Map:
		value := s.schemaOf(t.Elem())
		out := typed("object", "")
		out.AdditionalProperties = &spec.SchemaOrBool{Allows: true, Schema: &value}
		return out
	case reflect.Struct:
		if t == timeType {
			return typed("string", "date-time")
		}
		if t.Name() == "" {
			// An anonymous struct: describe it in place.
			out := typed("object", "")
			props := map[string]spec.Schema{}
			var required []string
			s.addFields(t, props, &required)
			if len(props) > 0 {
				out.Properties = props
			}
			out.Required = required
			return out
		}
		return spec.Schema{SchemaProps: spec.SchemaProps{Ref: spec.MustCreateRef(v2RefPrefix + s.define(t))}}
	default:
		// Interfaces (runtime.Object, any) and anything else: an object of
		// unknown shape.
		return typed("object", "")
	}
}

func typed(typ, format string) spec.Schema {
	return spec.Schema{SchemaProps: spec.SchemaProps{Type: spec.StringOrArray{typ}, Format: format}}
}

// refsOf calls fn with the definition name of every reference in sch.
func refsOf(sch *spec.Schema, fn func(string)) {
	if sch == nil {
		return
	}
	if r := sch.Ref.String(); r != "" {
		fn(strings.TrimPrefix(r, v2RefPrefix))
	}
	for k := range sch.Properties {
		p := sch.Properties[k]
		refsOf(&p, fn)
	}
	if sch.Items != nil {
		refsOf(sch.Items.Schema, fn)
		for i := range sch.Items.Schemas {
			refsOf(&sch.Items.Schemas[i], fn)
		}
	}
	if sch.AdditionalProperties != nil {
		refsOf(sch.AdditionalProperties.Schema, fn)
	}
	for i := range sch.AllOf {
		refsOf(&sch.AllOf[i], fn)
	}
}

// closure returns the names of the definitions reachable from roots.
func (s *schemaSet) closure(roots []string) map[string]bool {
	seen := map[string]bool{}
	var visit func(string)
	visit = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		sch := s.defs[name]
		refsOf(&sch, visit)
	}
	for _, r := range roots {
		visit(r)
	}
	return seen
}
