package apiserver

// Custom resources: the resources a CustomResourceDefinition defines,
// served as unstructured objects through the same REST machinery as the
// built-in kinds. Schema validation, pruning, defaulting and object-meta
// coercion are k8s.io/apiextensions-apiserver's libraries; objects are
// stored as JSON in the definition's storage version (conversion strategy
// None: only apiVersion changes between versions).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"sync/atomic"

	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	celvalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/cel"
	structuraldefaulting "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/defaulting"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/listtype"
	schemaobjectmeta "k8s.io/apiextensions-apiserver/pkg/apiserver/schema/objectmeta"
	"k8s.io/apiextensions-apiserver/pkg/apiserver/schema/pruning"
	apiservervalidation "k8s.io/apiextensions-apiserver/pkg/apiserver/validation"
	"k8s.io/apiextensions-apiserver/pkg/controller/openapi/builder"
	"k8s.io/apiextensions-apiserver/pkg/registry/customresource/tableconvertor"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apimachinery/pkg/util/validation/field"
	celconfig "k8s.io/apiserver/pkg/apis/cel"
	"k8s.io/apiserver/pkg/registry/rest"
	"k8s.io/kube-openapi/pkg/spec3"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"

	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/customresourcedefinition"
	"github.com/headway/headway/internal/storage"
)

// customResource is what serving one version of a custom resource needs
// beyond its registry entry.
type customResource struct {
	crd *apiextensionsv1.CustomResourceDefinition
	gvk schema.GroupVersionKind
	// storageGV is the group and storage version objects are stored in.
	storageGV  schema.GroupVersion
	structural *structuralschema.Structural
	validator  apiservervalidation.SchemaValidator
	cel        *celvalidation.Validator // nil without x-kubernetes-validations
	status     bool
	scale      *apiextensionsv1.CustomResourceSubresourceScale
	table      rest.TableConvertor
	selectable []apiextensionsv1.SelectableField
	// terminating: the definition is being deleted (no creates).
	terminating atomic.Bool
	// ctx ends when the version is no longer served (open watches end).
	ctx  context.Context
	stop context.CancelFunc
}

// crTypeConverter builds the structured-merge-diff schema of every version
// of a definition, for server-side apply and managedFields.
func crTypeConverter(crd *apiextensionsv1.CustomResourceDefinition) (managedfields.TypeConverter, error) {
	var specs []*spec3.OpenAPI
	for _, v := range crd.Spec.Versions {
		sp, err := builder.BuildOpenAPIV3(crd, v.Name, builder.Options{})
		if err != nil {
			return nil, err
		}
		specs = append(specs, sp)
	}
	merged, err := builder.MergeSpecsV3(specs...)
	if err != nil {
		return nil, err
	}
	return managedfields.NewTypeConverter(merged.Components.Schemas, crd.Spec.PreserveUnknownFields)
}

// ageColumn is what a custom resource's table shows when its definition
// names no columns.
var ageColumn = apiextensionsv1.CustomResourceColumnDefinition{
	Name: "Age", Type: "date", JSONPath: ".metadata.creationTimestamp",
	Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"],
}

// newCustomResource builds the served resource of one version of crd;
// names are the accepted names it is served under.
func (s *Server) newCustomResource(crd *apiextensionsv1.CustomResourceDefinition, version apiextensionsv1.CustomResourceDefinitionVersion,
	names apiextensionsv1.CustomResourceDefinitionNames, tc managedfields.TypeConverter) (*resource, error) {
	internal, err := customresourcedefinition.ToInternal(crd)
	if err != nil {
		return nil, err
	}
	var props *apiextensions.JSONSchemaProps
	for _, v := range internal.Spec.Versions {
		if v.Name == version.Name && v.Schema != nil {
			props = v.Schema.OpenAPIV3Schema
		}
	}
	if props == nil && internal.Spec.Validation != nil {
		props = internal.Spec.Validation.OpenAPIV3Schema
	}
	if props == nil {
		props = &apiextensions.JSONSchemaProps{Type: "object", XPreserveUnknownFields: ptrTrue()}
	}
	structural, err := structuralschema.NewStructural(props)
	if err != nil {
		return nil, fmt.Errorf("the schema of %s version %s: %w", crd.Name, version.Name, err)
	}
	validator, _, err := apiservervalidation.NewSchemaValidator(props)
	if err != nil {
		return nil, fmt.Errorf("the schema of %s version %s: %w", crd.Name, version.Name, err)
	}
	storageVersion, err := apihelpers.GetCRDStorageVersion(crd)
	if err != nil {
		return nil, err
	}
	columns := version.AdditionalPrinterColumns
	if len(columns) == 0 {
		columns = []apiextensionsv1.CustomResourceColumnDefinition{ageColumn}
	}
	table, err := tableconvertor.New(columns)
	if err != nil {
		return nil, fmt.Errorf("the printer columns of %s version %s: %w", crd.Name, version.Name, err)
	}
	gv := schema.GroupVersion{Group: crd.Spec.Group, Version: version.Name}
	cr := &customResource{
		crd:        crd,
		gvk:        gv.WithKind(names.Kind),
		storageGV:  schema.GroupVersion{Group: crd.Spec.Group, Version: storageVersion},
		structural: structural,
		validator:  validator,
		cel:        celvalidation.NewValidator(structural, true, celconfig.PerCallLimit),
		table:      table,
		selectable: version.SelectableFields,
	}
	if sub := version.Subresources; sub != nil {
		cr.status = sub.Status != nil
		cr.scale = sub.Scale
	}
	cr.ctx, cr.stop = context.WithCancel(context.Background())
	listGVK := gv.WithKind(names.ListKind)
	reg := &registry.Resource{
		GroupVersion: gv,
		Kind:         names.Kind, ListKind: names.ListKind,
		Plural: names.Plural, Singular: names.Singular,
		ShortNames: names.ShortNames, Categories: names.Categories,
		Namespaced: crd.Spec.Scope == apiextensionsv1.NamespaceScoped,
		New: func() runtime.Object {
			u := &unstructured.Unstructured{}
			u.SetGroupVersionKind(cr.gvk)
			return u
		},
		NewList: func() runtime.Object {
			l := &unstructured.UnstructuredList{}
			l.SetGroupVersionKind(listGVK)
			return l
		},
		Default: func(obj runtime.Object) { cr.normalize(obj.(*unstructured.Unstructured)) },
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			if cr.status {
				delete(obj.(*unstructured.Unstructured).Object, "status")
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return cr.validate(obj.(*unstructured.Unstructured), nil) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return cr.validate(obj.(*unstructured.Unstructured), old.(*unstructured.Unstructured))
		},
		ValidateStatusUpdate: func(obj, old runtime.Object) field.ErrorList {
			u := obj.(*unstructured.Unstructured)
			cr.normalize(u)
			return cr.validate(u, old.(*unstructured.Unstructured))
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			t, err := cr.table.ConvertToTable(context.Background(), obj, nil)
			if err != nil {
				return nil, err
			}
			if len(t.Rows) != 1 {
				return nil, fmt.Errorf("table of one %s has %d rows", names.Kind, len(t.Rows))
			}
			return t.Rows[0].Cells, nil
		},
		Fields:     cr.fields,
		HasStatus:  cr.status,
		Generation: true,
	}
	empty, err := table.ConvertToTable(context.Background(), &unstructured.UnstructuredList{}, nil)
	if err != nil {
		return nil, err
	}
	reg.Columns = empty.ColumnDefinitions
	if cr.scale != nil {
		reg.Scale = &registry.ScaleSubresource{Get: cr.getScale, Set: cr.setScale}
	}

	group := gv.Group
	res := &resource{
		s:             s,
		reg:           reg,
		gvk:           cr.gvk,
		prefix:        "/registry/" + group + "/" + crd.Spec.Names.Plural + "/",
		fieldManagers: map[string]*managedfields.FieldManager{},
		custom:        cr,
		events:        newEventCache(),
	}
	res.selectableFields = res.fieldSet(reg.New())
	for _, sf := range cr.selectable {
		res.selectableFields[strings.TrimPrefix(sf.JSONPath, ".")] = ""
	}
	for _, sub := range []string{"", "status"} {
		if sub == "status" && !cr.status {
			continue
		}
		var reset map[fieldpath.APIVersion]fieldpath.Filter
		if cr.status {
			excluded := fieldpath.NewSet(fieldpath.MakePathOrDie("status"))
			if sub == "status" {
				excluded = fieldpath.NewSet(fieldpath.MakePathOrDie("spec"), fieldpath.MakePathOrDie("metadata"))
			}
			reset = map[fieldpath.APIVersion]fieldpath.Filter{
				fieldpath.APIVersion(gv.String()): fieldpath.NewExcludeSetFilter(excluded),
			}
		}
		fm, err := managedfields.NewDefaultCRDFieldManager(tc, crConvertor{}, crDefaulter{cr}, crCreater{}, cr.gvk, gv, sub, reset)
		if err != nil {
			return nil, fmt.Errorf("field manager for %s: %w", crd.Name, err)
		}
		res.fieldManagers[sub] = fm
	}
	return res, nil
}

func ptrTrue() *bool { t := true; return &t }

// normalize makes an incoming object what the schema allows: metadata
// coerced, unknown fields pruned (unless preserved), nulls without defaults
// dropped, defaults filled. It returns the paths of pruned fields.
func (cr *customResource) normalize(u *unstructured.Unstructured) []string {
	om, found, unknownMeta, err := schemaobjectmeta.GetObjectMetaWithOptions(u.Object, schemaobjectmeta.ObjectMetaOptions{ReturnUnknownFieldPaths: true})
	if err != nil {
		// Malformed metadata was refused at decode time; keep what is there.
		found = false
	}
	apiVersion, kind := u.GetAPIVersion(), u.GetKind()
	var unknown []string
	if !cr.crd.Spec.PreserveUnknownFields {
		unknown = pruning.PruneWithOptions(u.Object, cr.structural, true, structuralschema.UnknownFieldPathOptions{TrackUnknownFieldPaths: true})
		structuraldefaulting.PruneNonNullableNullsWithoutDefaults(u.Object, cr.structural)
	}
	if _, paths := schemaobjectmeta.CoerceWithOptions(nil, u.Object, cr.structural, false, schemaobjectmeta.CoerceOptions{ReturnUnknownFieldPaths: true}); len(paths) > 0 {
		unknown = append(unknown, paths...)
	}
	structuraldefaulting.Default(u.Object, cr.structural)
	u.SetAPIVersion(apiVersion)
	u.SetKind(kind)
	if found {
		if err := schemaobjectmeta.SetObjectMeta(u.Object, om); err == nil {
			unknown = append(unknown, unknownMeta...)
		}
	}
	return unknown
}

// validate checks an object (an update of old, when set) against the
// schema: OpenAPI validation, list types, embedded object metadata, CEL
// rules and the scale subresource's replica paths.
func (cr *customResource) validate(u, old *unstructured.Unstructured) field.ErrorList {
	var errs field.ErrorList
	if old == nil {
		errs = apiservervalidation.ValidateCustomResource(nil, u.UnstructuredContent(), cr.validator)
	} else {
		errs = apiservervalidation.ValidateCustomResourceUpdate(nil, u.UnstructuredContent(), old.UnstructuredContent(), cr.validator)
	}
	if cr.scale != nil {
		errs = append(errs, replicasAt(u, cr.scale.SpecReplicasPath)...)
		if cr.status {
			errs = append(errs, replicasAt(u, cr.scale.StatusReplicasPath)...)
		}
	}
	errs = append(errs, schemaobjectmeta.Validate(context.Background(), nil, u.Object, cr.structural, false)...)
	errs = append(errs, listtype.ValidateListSetsAndMaps(nil, cr.structural, u.Object)...)
	if cr.cel == nil {
		return errs
	}
	// CEL rules only see objects of the declared shape: after a wrong
	// type, a missing required field, an unsupported value or a size limit,
	// say they were not run.
	for _, e := range errs {
		switch e.Type {
		case field.ErrorTypeTypeInvalid, field.ErrorTypeRequired, field.ErrorTypeNotSupported, field.ErrorTypeTooLong, field.ErrorTypeTooMany:
			return append(errs, field.Invalid(nil, nil, "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation"))
		}
	}
	var oldObj interface{}
	if old != nil {
		oldObj = old.Object
	}
	celErrs, _ := cr.cel.Validate(context.Background(), nil, cr.structural, u.Object, oldObj, celconfig.RuntimeCELCostBudget)
	return append(errs, celErrs...)
}

// jsonPathFields splits ".spec.replicas" into its fields.
func jsonPathFields(p string) []string {
	return strings.Split(strings.TrimPrefix(p, "."), ".")
}

// replicasAt checks that the value at path, when set, is a replica count.
func replicasAt(u *unstructured.Unstructured, path string) field.ErrorList {
	if path == "" {
		return nil
	}
	v, found, err := unstructured.NestedFieldNoCopy(u.Object, jsonPathFields(path)...)
	if err != nil || !found {
		return nil
	}
	fp := field.NewPath(jsonPathFields(path)[0], jsonPathFields(path)[1:]...)
	n, ok := v.(int64)
	switch {
	case !ok:
		return field.ErrorList{field.Invalid(fp, v, "should be an integer")}
	case n < 0:
		return field.ErrorList{field.Invalid(fp, n, "should be a non-negative integer")}
	case n > math.MaxInt32:
		return field.ErrorList{field.Invalid(fp, n, fmt.Sprintf("should be less than or equal to %d", math.MaxInt32))}
	}
	return nil
}

func (cr *customResource) getScale(obj runtime.Object) (spec, status int32, selector string) {
	u := obj.(*unstructured.Unstructured)
	spec = nestedReplicas(u, cr.scale.SpecReplicasPath)
	status = nestedReplicas(u, cr.scale.StatusReplicasPath)
	if p := cr.scale.LabelSelectorPath; p != nil && *p != "" {
		selector, _, _ = unstructured.NestedString(u.Object, jsonPathFields(*p)...)
	}
	return spec, status, selector
}

func nestedReplicas(u *unstructured.Unstructured, path string) int32 {
	if path == "" {
		return 0
	}
	n, _, _ := unstructured.NestedInt64(u.Object, jsonPathFields(path)...)
	return int32(n)
}

func (cr *customResource) setScale(obj runtime.Object, replicas int32) {
	u := obj.(*unstructured.Unstructured)
	_ = unstructured.SetNestedField(u.Object, int64(replicas), jsonPathFields(cr.scale.SpecReplicasPath)...)
}

// fields are the selectable fields the version declares.
func (cr *customResource) fields(obj runtime.Object) fields.Set {
	if len(cr.selectable) == 0 {
		return nil
	}
	u := obj.(*unstructured.Unstructured)
	set := fields.Set{}
	for _, sf := range cr.selectable {
		v, found, _ := unstructured.NestedFieldNoCopy(u.Object, jsonPathFields(sf.JSONPath)...)
		s := ""
		if found && v != nil {
			s = fmt.Sprint(v)
		}
		set[strings.TrimPrefix(sf.JSONPath, ".")] = s
	}
	return set
}

// decodeBody reads a create or update body (JSON or YAML) into u, prunes
// and defaults it; unknown fields are warnings, or a 400 with
// fieldValidation=Strict, as kube-apiserver answers.
func (cr *customResource) decodeBody(res *resource, r *http.Request, body []byte, opts writeOptions, u *unstructured.Unstructured) ([]string, error) {
	mt := requestMediaType(r)
	var dec runtime.Decoder
	switch mt {
	case mediaJSON:
		dec = res.s.codecs.jsonStrict
	case mediaYAML:
		dec = res.s.codecs.yamlStrict
	default:
		return nil, unsupportedMediaType(mt)
	}
	if len(strings.TrimSpace(string(body))) == 0 {
		return nil, badRequest("the request body is empty; send the %s object to %s", cr.gvk.Kind, r.Method)
	}
	return cr.decode(dec, body, opts, u)
}

// decodePatched reads the JSON a patch produced.
func (cr *customResource) decodePatched(res *resource, data []byte, opts writeOptions, u *unstructured.Unstructured) ([]string, error) {
	return cr.decode(res.s.codecs.jsonStrict, data, opts, u)
}

func (cr *customResource) decode(dec runtime.Decoder, data []byte, opts writeOptions, u *unstructured.Unstructured) ([]string, error) {
	want := cr.gvk
	cannot := func(err error) error {
		return badRequest("%s in version %q cannot be handled as a %s: %v", want.Kind, want.Version, want.Kind, err)
	}
	_, gvk, err := dec.Decode(data, &want, u)
	var problems []string
	if err != nil {
		var sde interface{ Errors() []error }
		if !runtime.IsStrictDecodingError(err) || !errors.As(err, &sde) {
			return nil, cannot(err)
		}
		for _, e := range sde.Errors() {
			problems = append(problems, e.Error())
		}
	}
	if gvk != nil && (gvk.Group != want.Group || gvk.Version != want.Version) {
		return nil, badRequest("the API version in the data (%s) does not match the expected API version (%s)", gvk.GroupVersion(), want.GroupVersion())
	}
	if gvk != nil && gvk.Kind != want.Kind {
		return nil, badRequest("the kind in the data (%s) does not match the expected kind (%s)", gvk.Kind, want.Kind)
	}
	if _, _, _, err := schemaobjectmeta.GetObjectMetaWithOptions(u.Object, schemaobjectmeta.ObjectMetaOptions{}); err != nil {
		return nil, cannot(err)
	}
	for _, p := range cr.normalize(u) {
		problems = append(problems, fmt.Sprintf("unknown field %q", p))
	}
	if len(problems) == 0 || opts.fieldValidation == "Ignore" {
		return nil, nil
	}
	if opts.fieldValidation == "Strict" {
		return nil, cannot(fmt.Errorf("strict decoding error: %s", strings.Join(problems, ", ")))
	}
	return problems, nil
}

// decodeStored reads a stored object as this version (conversion None:
// only apiVersion changes), with the schema's defaults.
func (cr *customResource) decodeStored(kv storage.KV) (runtime.Object, error) {
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(kv.Value); err != nil {
		return nil, fmt.Errorf("decoding %s: %w", kv.Key, err)
	}
	u.SetGroupVersionKind(cr.gvk)
	structuraldefaulting.Default(u.Object, cr.structural)
	u.SetResourceVersion(formatRV(kv.ModRevision))
	return u, nil
}

// encodeStored serialises an object in the storage version, without its
// resourceVersion.
func (cr *customResource) encodeStored(obj runtime.Object) ([]byte, error) {
	u, ok := obj.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("a %s must be unstructured, not %T", cr.gvk.Kind, obj)
	}
	out := make(map[string]interface{}, len(u.Object))
	for k, v := range u.Object {
		out[k] = v
	}
	if md, ok := u.Object["metadata"].(map[string]interface{}); ok {
		m := make(map[string]interface{}, len(md))
		for k, v := range md {
			if k != "resourceVersion" && k != "selfLink" {
				m[k] = v
			}
		}
		out["metadata"] = m
	}
	out["apiVersion"] = cr.storageGV.String()
	out["kind"] = cr.gvk.Kind
	return json.Marshal(out)
}

// crConvertor converts between versions of one custom resource: with
// conversion strategy None only apiVersion changes.
type crConvertor struct{}

func (crConvertor) Convert(in, out, _ interface{}) error {
	u, ok1 := in.(*unstructured.Unstructured)
	o, ok2 := out.(*unstructured.Unstructured)
	if !ok1 || !ok2 {
		return fmt.Errorf("cannot convert %T to %T", in, out)
	}
	o.Object = u.DeepCopy().Object
	return nil
}

func (crConvertor) ConvertToVersion(in runtime.Object, target runtime.GroupVersioner) (runtime.Object, error) {
	u, ok := in.(*unstructured.Unstructured)
	if !ok {
		return nil, fmt.Errorf("cannot convert %T", in)
	}
	gvk, ok := target.KindForGroupVersionKinds([]schema.GroupVersionKind{u.GroupVersionKind()})
	if !ok {
		return nil, fmt.Errorf("%s cannot be converted to %v", u.GroupVersionKind(), target)
	}
	out := u.DeepCopy()
	out.SetGroupVersionKind(gvk)
	return out, nil
}

func (crConvertor) ConvertFieldLabel(_ schema.GroupVersionKind, label, value string) (string, string, error) {
	return label, value, nil
}

type crDefaulter struct{ cr *customResource }

func (d crDefaulter) Default(obj runtime.Object) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		structuraldefaulting.Default(u.Object, d.cr.structural)
	}
}

type crCreater struct{}

func (crCreater) New(gvk schema.GroupVersionKind) (runtime.Object, error) {
	u := &unstructured.Unstructured{}
	u.SetGroupVersionKind(gvk)
	return u, nil
}

// Helpers the generic machinery calls for unstructured objects.

// copyUnstructuredField is copyField for custom resources: the top-level
// field name (lower-cased: "Status" is "status") is copied, or removed when
// src has none. It reports whether dst was unstructured.
func copyUnstructuredField(dst, src runtime.Object, name string) bool {
	d, ok := dst.(*unstructured.Unstructured)
	if !ok {
		return false
	}
	s := src.(*unstructured.Unstructured)
	key := strings.ToLower(name[:1]) + name[1:]
	if v, ok := s.Object[key]; ok {
		d.Object[key] = runtime.DeepCopyJSONValue(v)
	} else {
		delete(d.Object, key)
	}
	return true
}

// unstructuredSpecEqual compares everything outside metadata (status is
// already the stored one when the status subresource is on).
func unstructuredSpecEqual(a, b runtime.Object) (equal, ok bool) {
	ua, ok1 := a.(*unstructured.Unstructured)
	ub, ok2 := b.(*unstructured.Unstructured)
	if !ok1 || !ok2 {
		return false, false
	}
	strip := func(m map[string]interface{}) map[string]interface{} {
		out := make(map[string]interface{}, len(m))
		for k, v := range m {
			if k != "metadata" && k != "apiVersion" && k != "kind" {
				out[k] = v
			}
		}
		return out
	}
	return equalJSON(strip(ua.Object), strip(ub.Object)), true
}

func equalJSON(a, b map[string]interface{}) bool {
	ja, err1 := json.Marshal(a)
	jb, err2 := json.Marshal(b)
	return err1 == nil && err2 == nil && string(ja) == string(jb)
}

// unstructuredMeta is the ObjectMeta of a custom resource.
func unstructuredMeta(o runtime.Object) (*metav1.ObjectMeta, bool) {
	u, ok := o.(*unstructured.Unstructured)
	if !ok {
		return nil, false
	}
	om := &metav1.ObjectMeta{}
	if md, ok := u.Object["metadata"].(map[string]interface{}); ok {
		if err := runtime.DefaultUnstructuredConverter.FromUnstructured(md, om); err != nil {
			acc, _ := meta.Accessor(u)
			om = &metav1.ObjectMeta{Name: acc.GetName(), Namespace: acc.GetNamespace(), UID: acc.GetUID(), ResourceVersion: acc.GetResourceVersion()}
		}
	}
	return om, true
}

// acceptOnlyJSON drops protobuf from the Accept header of a request for
// custom resources, which are served as JSON and YAML (as by
// kube-apiserver); Table and PartialObjectMetadata may still be protobuf.
func acceptOnlyJSON(r *http.Request) {
	accept := r.Header.Get("Accept")
	if !strings.Contains(accept, mediaProtobuf) {
		return
	}
	var keep []string
	for _, part := range strings.Split(accept, ",") {
		p := strings.TrimSpace(part)
		if strings.HasPrefix(p, mediaProtobuf) && !strings.Contains(p, "as=") {
			continue
		}
		keep = append(keep, p)
	}
	if len(keep) == 0 {
		// Nothing left that can be produced: negotiation answers 406.
		keep = []string{"application/x-none"}
	}
	r.Header.Set("Accept", strings.Join(keep, ","))
}

// strategicPatchUnsupported is kube-apiserver's answer to a strategic merge
// patch of a custom resource (which has no patch strategies).
func strategicPatchUnsupported() error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType, Reason: metav1.StatusReasonUnsupportedMediaType,
		Message: fmt.Sprintf("the body of the request was in an unknown format - accepted media types include: %s, %s, %s",
			mediaJSONPatch, mediaMergePatch, mediaApplyPatchYAML),
	}}
}
