package openapi

import (
	"fmt"
	"strconv"

	"github.com/google/gnostic-models/compiler"
	openapi_v2 "github.com/google/gnostic-models/openapiv2"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/proto"
	"k8s.io/kube-openapi/pkg/validation/spec"
)

// swaggerProtobuf builds the Swagger 2.0 document as gnostic's
// openapi_v2.Document, in protobuf: the form client-go's
// discovery.OpenAPISchema asks for.
//
// kube-apiserver gets it by parsing its JSON document with
// openapi_v2.ParseDocument. That goes through a YAML parser and took most of
// the build time, so the Document is assembled here directly from the same
// model the JSON is written from. A test checks it equals what ParseDocument
// makes of V2JSON.
func swaggerProtobuf(defs map[string]*spec.Schema, names []string, p *params, paramKeys []string,
	items []*pathItem, version string) ([]byte, error) {
	b := pbBuilder{ext: map[string]*openapi_v2.Any{}}
	doc := &openapi_v2.Document{
		Swagger:     "2.0",
		Info:        &openapi_v2.Info{Title: "Headway", Version: version},
		Paths:       &openapi_v2.Paths{},
		Definitions: &openapi_v2.Definitions{},
		Parameters:  &openapi_v2.ParameterDefinitions{},
	}
	for _, name := range names {
		doc.Definitions.AdditionalProperties = append(doc.Definitions.AdditionalProperties,
			&openapi_v2.NamedSchema{Name: name, Value: b.schema(defs[name])})
	}
	for _, k := range paramKeys {
		doc.Parameters.AdditionalProperties = append(doc.Parameters.AdditionalProperties,
			&openapi_v2.NamedParameter{Name: k, Value: b.param(p.defs[k])})
	}
	for _, item := range items {
		pi := &openapi_v2.PathItem{Parameters: b.paramRefs(item.params)}
		for _, op := range item.ops {
			o := b.operation(op)
			switch op.method {
			case "get":
				pi.Get = o
			case "put":
				pi.Put = o
			case "post":
				pi.Post = o
			case "delete":
				pi.Delete = o
			case "patch":
				pi.Patch = o
			}
		}
		doc.Paths.Path = append(doc.Paths.Path, &openapi_v2.NamedPathItem{Name: item.path, Value: pi})
	}
	out, err := proto.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("openapi: encoding v2 protobuf: %w", err)
	}
	return out, nil
}

type pbBuilder struct {
	ext map[string]*openapi_v2.Any // extension values by their JSON form
}

func (b *pbBuilder) schema(s *spec.Schema) *openapi_v2.Schema {
	out := &openapi_v2.Schema{
		XRef:        s.Ref.String(),
		Format:      s.Format,
		Description: s.Description,
		Required:    s.Required,
	}
	if s.AdditionalProperties != nil && s.AdditionalProperties.Schema != nil {
		out.AdditionalProperties = &openapi_v2.AdditionalPropertiesItem{
			Oneof: &openapi_v2.AdditionalPropertiesItem_Schema{Schema: b.schema(s.AdditionalProperties.Schema)},
		}
	}
	if len(s.Type) > 0 {
		out.Type = &openapi_v2.TypeItem{Value: []string{s.Type[0]}}
	}
	if s.Items != nil && s.Items.Schema != nil {
		out.Items = &openapi_v2.ItemsItem{Schema: []*openapi_v2.Schema{b.schema(s.Items.Schema)}}
	}
	if len(s.Properties) > 0 {
		out.Properties = &openapi_v2.Properties{}
		for _, k := range sortedKeys(s.Properties) {
			p := s.Properties[k]
			out.Properties.AdditionalProperties = append(out.Properties.AdditionalProperties,
				&openapi_v2.NamedSchema{Name: k, Value: b.schema(&p)})
		}
	}
	for _, k := range sortedKeys(s.Extensions) {
		out.VendorExtension = append(out.VendorExtension, b.extension(k, s.Extensions[k]))
	}
	return out
}

// extension is a vendor extension as gnostic keeps it: the value as YAML.
func (b *pbBuilder) extension(name string, v any) *openapi_v2.NamedAny {
	var e enc
	e.value(v)
	key := string(e.b)
	a, ok := b.ext[key]
	if !ok {
		a = &openapi_v2.Any{Yaml: string(compiler.Marshal(yamlNode(v)))}
		b.ext[key] = a
	}
	return &openapi_v2.NamedAny{Name: name, Value: a}
}

func (b *pbBuilder) param(p param) *openapi_v2.Parameter {
	var nb openapi_v2.NonBodyParameter
	switch p.in {
	case "path":
		nb.Oneof = &openapi_v2.NonBodyParameter_PathParameterSubSchema{PathParameterSubSchema: &openapi_v2.PathParameterSubSchema{
			Required: p.required, In: p.in, Description: p.desc, Name: p.name, Type: p.typ,
		}}
	default:
		nb.Oneof = &openapi_v2.NonBodyParameter_QueryParameterSubSchema{QueryParameterSubSchema: &openapi_v2.QueryParameterSubSchema{
			Required: p.required, In: p.in, Description: p.desc, Name: p.name, Type: p.typ,
		}}
	}
	return &openapi_v2.Parameter{Oneof: &openapi_v2.Parameter_NonBodyParameter{NonBodyParameter: &nb}}
}

func (b *pbBuilder) paramRefs(keys []string) []*openapi_v2.ParametersItem {
	out := make([]*openapi_v2.ParametersItem, 0, len(keys)+1)
	for _, k := range keys {
		out = append(out, &openapi_v2.ParametersItem{Oneof: &openapi_v2.ParametersItem_JsonReference{
			JsonReference: &openapi_v2.JsonReference{XRef: "#/parameters/" + k},
		}})
	}
	return out
}

func refSchema(def string) *openapi_v2.Schema { return &openapi_v2.Schema{XRef: v2RefPrefix + def} }

func (b *pbBuilder) operation(o *operation) *openapi_v2.Operation {
	out := &openapi_v2.Operation{
		Tags:        []string{o.tag},
		Description: o.desc,
		OperationId: o.id,
		Produces:    o.produces,
		Consumes:    o.consumes,
		Schemes:     []string{"https"},
		Responses:   &openapi_v2.Responses{},
		VendorExtension: []*openapi_v2.NamedAny{
			b.extension(extAction, o.action),
			b.extension(extGVK, o.gvk.ext()),
		},
	}
	if o.body != "" {
		out.Parameters = append(out.Parameters, &openapi_v2.ParametersItem{Oneof: &openapi_v2.ParametersItem_Parameter{
			Parameter: &openapi_v2.Parameter{Oneof: &openapi_v2.Parameter_BodyParameter{BodyParameter: &openapi_v2.BodyParameter{
				Name: "body", In: "body", Required: true, Schema: refSchema(o.body),
			}}},
		}})
	}
	out.Parameters = append(out.Parameters, b.paramRefs(o.params)...)
	for _, r := range o.responses {
		resp := &openapi_v2.Response{Description: statusText(r.code)}
		if r.def != "" {
			resp.Schema = &openapi_v2.SchemaItem{Oneof: &openapi_v2.SchemaItem_Schema{Schema: refSchema(r.def)}}
		}
		out.Responses.ResponseCode = append(out.Responses.ResponseCode, &openapi_v2.NamedResponseValue{
			Name:  strconv.Itoa(r.code),
			Value: &openapi_v2.ResponseValue{Oneof: &openapi_v2.ResponseValue_Response{Response: resp}},
		})
	}
	return out
}

// yamlNode is the YAML node tree of an extension value, as
// go.yaml.in/yaml/v3 reads it from JSON.
func yamlNode(v any) *yaml.Node {
	switch v := v.(type) {
	case map[string]any:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		for _, k := range sortedKeys(v) {
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, yamlNode(v[k]))
		}
		return n
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, e := range v {
			n.Content = append(n.Content, yamlNode(e))
		}
		return n
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v)}
	case int:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.Itoa(v)}
	default:
		panic(fmt.Sprintf("openapi: cannot convert extension value of type %T", v))
	}
}
