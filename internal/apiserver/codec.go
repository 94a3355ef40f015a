package apiserver

import (
	"mime"
	"net/http"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/runtime/serializer/protobuf"
)

// Media types the server speaks.
const (
	mediaJSON           = "application/json"
	mediaYAML           = "application/yaml"
	mediaProtobuf       = "application/vnd.kubernetes.protobuf"
	mediaJSONPatch      = "application/json-patch+json"
	mediaMergePatch     = "application/merge-patch+json"
	mediaStrategicPatch = "application/strategic-merge-patch+json"
	mediaApplyPatchYAML = "application/apply-patch+yaml"
	mediaApplyPatchCBOR = "application/apply-patch+cbor"
)

// codecs holds the serializers for one scheme.
type codecs struct {
	scheme     *runtime.Scheme
	json       *json.Serializer
	jsonPretty *json.Serializer
	jsonStrict *json.Serializer
	yaml       *json.Serializer
	yamlStrict *json.Serializer
	proto      *protobuf.Serializer
	protoRaw   *protobuf.RawSerializer
}

func newCodecs(scheme *runtime.Scheme) *codecs {
	mf := json.DefaultMetaFactory
	return &codecs{
		scheme:     scheme,
		json:       json.NewSerializerWithOptions(mf, scheme, scheme, json.SerializerOptions{}),
		jsonPretty: json.NewSerializerWithOptions(mf, scheme, scheme, json.SerializerOptions{Pretty: true}),
		jsonStrict: json.NewSerializerWithOptions(mf, scheme, scheme, json.SerializerOptions{Strict: true}),
		yaml:       json.NewSerializerWithOptions(mf, scheme, scheme, json.SerializerOptions{Yaml: true}),
		yamlStrict: json.NewSerializerWithOptions(mf, scheme, scheme, json.SerializerOptions{Yaml: true, Strict: true}),
		proto:      protobuf.NewSerializer(scheme, scheme),
		protoRaw:   protobuf.NewRawSerializer(scheme, scheme),
	}
}

// mediaRange is one entry of an Accept header.
type mediaRange struct {
	typ    string // "application/json", "*/*", ...
	params map[string]string
}

func parseAccept(header string) []mediaRange {
	if strings.TrimSpace(header) == "" {
		return []mediaRange{{typ: "*/*"}}
	}
	var out []mediaRange
	for _, part := range strings.Split(header, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		typ, params, err := mime.ParseMediaType(part)
		if err != nil {
			continue
		}
		out = append(out, mediaRange{typ: strings.ToLower(typ), params: params})
	}
	return out
}

// target is what a client asked the object to be transformed into.
type target int

const (
	targetObject target = iota
	targetTable
	targetPartialMetadata
)

// outputFormat is the negotiated response encoding.
type outputFormat struct {
	mediaType string // concrete media type written in Content-Type
	target    target
	targetGV  schema.GroupVersion // meta.k8s.io/v1 for Table and metadata
	pretty    bool
}

func (f outputFormat) contentType() string {
	switch f.target {
	case targetTable:
		return f.mediaType + ";as=Table;v=" + f.targetGV.Version + ";g=meta.k8s.io"
	case targetPartialMetadata:
		return f.mediaType + ";as=PartialObjectMetadata;v=" + f.targetGV.Version + ";g=meta.k8s.io"
	}
	return f.mediaType
}

// negotiate picks the response encoding from the Accept header. allowTransform
// says whether Table/PartialObjectMetadata conversions are possible for this
// request (object-returning verbs on resources). ok is false when nothing the
// client accepts can be produced (406).
func negotiate(r *http.Request, allowTransform bool) (outputFormat, bool) {
	pretty := r.URL.Query().Get("pretty") == "true" || r.URL.Query().Get("pretty") == "1"
	for _, mr := range parseAccept(r.Header.Get("Accept")) {
		var mt string
		switch mr.typ {
		case "*/*", "application/*", mediaJSON:
			mt = mediaJSON
		case mediaYAML:
			mt = mediaYAML
		case mediaProtobuf:
			mt = mediaProtobuf
		default:
			continue
		}
		as := mr.params["as"]
		if as == "" {
			if mr.params["g"] != "" || mr.params["v"] != "" {
				continue
			}
			return outputFormat{mediaType: mt, pretty: pretty}, true
		}
		if !allowTransform || mr.params["g"] != "meta.k8s.io" {
			continue
		}
		v := mr.params["v"]
		if v != "v1" && v != "v1beta1" {
			continue
		}
		switch as {
		case "Table":
			if mt == mediaProtobuf {
				continue
			}
			return outputFormat{mediaType: mt, target: targetTable, targetGV: schema.GroupVersion{Group: "meta.k8s.io", Version: v}, pretty: pretty}, true
		case "PartialObjectMetadata", "PartialObjectMetadataList":
			return outputFormat{mediaType: mt, target: targetPartialMetadata, targetGV: schema.GroupVersion{Group: "meta.k8s.io", Version: v}, pretty: pretty}, true
		}
	}
	return outputFormat{}, false
}

// encoder returns the serializer for a negotiated media type.
func (c *codecs) encoder(f outputFormat) runtime.Encoder {
	switch f.mediaType {
	case mediaYAML:
		return c.yaml
	case mediaProtobuf:
		return c.proto
	}
	if f.pretty {
		return c.jsonPretty
	}
	return c.json
}

// requestMediaType returns the media type of a request body.
func requestMediaType(r *http.Request) string {
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return mediaJSON
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil {
		return ct
	}
	return strings.ToLower(mt)
}
