package openapi

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"k8s.io/kube-openapi/pkg/validation/spec"
)

// The documents are written by hand rather than through the kube-openapi
// types' MarshalJSON: every definition is encoded once per form and spliced
// into the documents that hold it, which makes the whole build a few times
// faster. Tests check the output against kube-openapi's own decoding and
// conversion.

const v3RefPrefix = "#/components/schemas/"

// enc appends JSON to a byte slice.
type enc struct{ b []byte }

func (e *enc) raw(s string) { e.b = append(e.b, s...) }

// key writes a member name and colon, preceded by a comma unless the
// object has just been opened.
func (e *enc) key(k string) {
	if n := len(e.b); n > 0 && e.b[n-1] != '{' && e.b[n-1] != '[' {
		e.b = append(e.b, ',')
	}
	e.str(k)
	e.b = append(e.b, ':')
}

// elem starts an array element.
func (e *enc) elem() {
	if n := len(e.b); n > 0 && e.b[n-1] != '[' {
		e.b = append(e.b, ',')
	}
}

func (e *enc) str(s string) {
	e.b = append(e.b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			e.b = append(e.b, s[start:i]...)
			switch c {
			case '"', '\\':
				e.b = append(e.b, '\\', c)
			case '\n':
				e.b = append(e.b, '\\', 'n')
			case '\r':
				e.b = append(e.b, '\\', 'r')
			case '\t':
				e.b = append(e.b, '\\', 't')
			default:
				e.b = append(e.b, fmt.Sprintf(`\u%04x`, c)...)
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			e.b = append(e.b, s[start:i]...)
			e.b = append(e.b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			e.b = append(e.b, s[start:i]...)
			e.b = append(e.b, fmt.Sprintf(`\u%04x`, r)...)
			i += size
			start = i
			continue
		}
		i += size
	}
	e.b = append(e.b, s[start:]...)
	e.b = append(e.b, '"')
}

func (e *enc) strs(ss []string) {
	e.b = append(e.b, '[')
	for _, s := range ss {
		e.elem()
		e.str(s)
	}
	e.b = append(e.b, ']')
}

// value writes the kinds of values extensions hold.
func (e *enc) value(v any) {
	switch v := v.(type) {
	case string:
		e.str(v)
	case bool:
		e.b = strconv.AppendBool(e.b, v)
	case int:
		e.b = strconv.AppendInt(e.b, int64(v), 10)
	case []any:
		e.b = append(e.b, '[')
		for _, x := range v {
			e.elem()
			e.value(x)
		}
		e.b = append(e.b, ']')
	case map[string]any:
		e.b = append(e.b, '{')
		for _, k := range sortedKeys(v) {
			e.key(k)
			e.value(v[k])
		}
		e.b = append(e.b, '}')
	default:
		panic(fmt.Sprintf("openapi: cannot encode extension value of type %T", v))
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// schema writes s in Swagger 2.0 form, or in OpenAPI 3 form when v3 is set:
// references point into #/components/schemas and a reference with siblings
// (a description, extensions) is wrapped in allOf, since OpenAPI 3.0 ignores
// the siblings of a $ref.
//
// Only the parts of a schema this package produces are written.
func (e *enc) schema(s *spec.Schema, v3 bool) {
	e.b = append(e.b, '{')
	if ref := s.Ref.String(); ref != "" {
		if v3 {
			ref = v3RefPrefix + strings.TrimPrefix(ref, v2RefPrefix)
			if s.Description != "" || len(s.Extensions) > 0 {
				e.key("allOf")
				e.raw(`[{"$ref":`)
				e.str(ref)
				e.raw(`}]`)
			} else {
				e.key("$ref")
				e.str(ref)
			}
		} else {
			e.key("$ref")
			e.str(ref)
		}
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		e.key("additionalProperties")
		e.schema(s.AdditionalProperties.Schema, v3)
	}
	if s.Description != "" {
		e.key("description")
		e.str(s.Description)
	}
	if s.Format != "" {
		e.key("format")
		e.str(s.Format)
	}
	if s.Items != nil && s.Items.Schema != nil {
		e.key("items")
		e.schema(s.Items.Schema, v3)
	}
	if len(s.OneOf) > 0 {
		e.key("oneOf")
		e.b = append(e.b, '[')
		for i := range s.OneOf {
			e.elem()
			e.schema(&s.OneOf[i], v3)
		}
		e.b = append(e.b, ']')
	}
	if len(s.Properties) > 0 {
		e.key("properties")
		e.b = append(e.b, '{')
		for _, k := range sortedKeys(s.Properties) {
			p := s.Properties[k]
			e.key(k)
			e.schema(&p, v3)
		}
		e.b = append(e.b, '}')
	}
	if len(s.Required) > 0 {
		e.key("required")
		e.strs(s.Required)
	}
	if len(s.Type) > 0 {
		e.key("type")
		e.str(s.Type[0])
	}
	for _, k := range sortedKeys(s.Extensions) {
		e.key(k)
		e.value(s.Extensions[k])
	}
	e.b = append(e.b, '}')
}

// v2Param writes a global parameter in Swagger 2.0 form.
func (e *enc) v2Param(p param) {
	e.b = append(e.b, '{')
	e.key("description")
	e.str(p.desc)
	e.key("in")
	e.str(p.in)
	e.key("name")
	e.str(p.name)
	if p.required {
		e.key("required")
		e.raw("true")
	}
	e.key("type")
	e.str(p.typ)
	e.b = append(e.b, '}')
}

// v3Param writes a parameter in OpenAPI 3 form.
func (e *enc) v3Param(p param) {
	e.b = append(e.b, '{')
	e.key("description")
	e.str(p.desc)
	e.key("in")
	e.str(p.in)
	e.key("name")
	e.str(p.name)
	if p.required {
		e.key("required")
		e.raw("true")
	}
	e.key("schema")
	e.raw(`{"type":`)
	e.str(p.typ)
	e.raw(`}`)
	e.b = append(e.b, '}')
}

// paramRefs writes references to global parameters; in OpenAPI 3 form,
// fieldValidation is written out in full (see params).
func (e *enc) paramRefs(p *params, keys []string, v3 bool) {
	for _, k := range keys {
		e.elem()
		switch {
		case !v3:
			e.raw(`{"$ref":`)
			e.str("#/parameters/" + k)
			e.raw("}")
		case p.defs[k].name == "fieldValidation":
			e.v3Param(p.defs[k])
		default:
			e.raw(`{"$ref":`)
			e.str("#/components/parameters/" + k)
			e.raw("}")
		}
	}
}

func (e *enc) refSchema(def string, v3 bool) {
	e.raw(`{"$ref":`)
	if v3 {
		e.str(v3RefPrefix + def)
	} else {
		e.str(v2RefPrefix + def)
	}
	e.raw("}")
}

func (e *enc) operation(o *operation, p *params, v3 bool) {
	e.b = append(e.b, '{')
	if !v3 && len(o.consumes) > 0 {
		e.key("consumes")
		e.strs(o.consumes)
	}
	e.key("description")
	e.str(o.desc)
	e.key("operationId")
	e.str(o.id)
	e.key("parameters")
	e.b = append(e.b, '[')
	if o.body != "" && !v3 {
		e.elem()
		e.raw(`{"in":"body","name":"body","required":true,"schema":`)
		e.refSchema(o.body, false)
		e.raw("}")
	}
	e.paramRefs(p, o.params, v3)
	e.b = append(e.b, ']')
	if !v3 {
		e.key("produces")
		e.strs(o.produces)
	}
	if o.body != "" && v3 {
		e.key("requestBody")
		e.raw(`{"content":{`)
		for _, mt := range o.consumes {
			e.key(mt)
			e.raw(`{"schema":`)
			e.refSchema(o.body, true)
			e.raw("}")
		}
		e.raw(`},"required":true}`)
	}
	e.key("responses")
	e.b = append(e.b, '{')
	for _, r := range o.responses {
		e.key(strconv.Itoa(r.code))
		e.b = append(e.b, '{')
		if r.def != "" && v3 {
			e.key("content")
			e.b = append(e.b, '{')
			for _, mt := range o.produces {
				e.key(mt)
				e.raw(`{"schema":`)
				e.refSchema(r.def, true)
				e.raw("}")
			}
			e.b = append(e.b, '}')
		}
		e.key("description")
		e.str(statusText(r.code))
		if r.def != "" && !v3 {
			e.key("schema")
			e.refSchema(r.def, false)
		}
		e.b = append(e.b, '}')
	}
	e.b = append(e.b, '}')
	if !v3 {
		e.key("schemes")
		e.raw(`["https"]`)
	}
	e.key("tags")
	e.strs([]string{o.tag})
	e.key(extAction)
	e.str(o.action)
	e.key(extGVK)
	e.value(o.gvk.ext())
	e.b = append(e.b, '}')
}

func (e *enc) pathItem(item *pathItem, p *params, v3 bool) {
	e.b = append(e.b, '{')
	for _, op := range item.ops {
		e.key(op.method)
		e.operation(op, p, v3)
	}
	e.key("parameters")
	e.b = append(e.b, '[')
	e.paramRefs(p, item.params, v3)
	e.b = append(e.b, ']')
	e.b = append(e.b, '}')
}

func (e *enc) paths(items []*pathItem, p *params, v3 bool) {
	e.b = append(e.b, '{')
	for _, item := range items {
		e.key(item.path)
		e.pathItem(item, p, v3)
	}
	e.b = append(e.b, '}')
}

func (e *enc) info(version string) {
	e.raw(`{"title":"Headway","version":`)
	e.str(version)
	e.raw("}")
}
