package apiserver

// One served resource: its storage keys and encoding, field managers and
// discovery information.

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/structured-merge-diff/v6/fieldpath"
	"sigs.k8s.io/structured-merge-diff/v6/typed"
	"sigs.k8s.io/structured-merge-diff/v6/value"

	"github.com/headway/headway/internal/apiserver/builtinschema"
	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/storage"
)

// resource serves one registry.Resource.
type resource struct {
	s      *Server
	reg    *registry.Resource
	gvk    schema.GroupVersionKind
	prefix string // storage key prefix, ends with "/"

	fieldManagers map[string]*managedfields.FieldManager // by subresource
	// selectableFields are the field selector labels the resource supports.
	selectableFields fields.Set
	// custom is set for a custom resource (see customresource.go).
	custom *customResource
	// events shares decoded and encoded store events between watches.
	events *eventCache
}

type subresourceInfo struct {
	name  string
	kind  schema.GroupVersionKind
	verbs metav1.Verbs
}

var autoscalingV1Scale = schema.GroupVersionKind{Group: "autoscaling", Version: "v1", Kind: "Scale"}

func newResource(s *Server, reg *registry.Resource) (*resource, error) {
	group := reg.GroupVersion.Group
	if group == "" {
		group = "core"
	}
	res := &resource{
		s:             s,
		reg:           reg,
		gvk:           reg.GroupVersionKind(),
		prefix:        "/registry/" + group + "/" + reg.Plural + "/",
		events:        newEventCache(),
		fieldManagers: map[string]*managedfields.FieldManager{},
	}
	if ss := reg.SharedStorage; ss != nil {
		g := ss.Group
		if g == "" {
			g = "core"
		}
		res.prefix = "/registry/" + g + "/" + ss.Plural + "/"
	}
	res.selectableFields = res.fieldSet(reg.New())
	for _, sub := range []string{"", "status"} {
		if reg.CreateOnly != nil {
			break // nothing is stored: no fields to manage
		}
		if sub == "status" && !reg.HasStatus {
			continue
		}
		fm, err := res.newFieldManager(sub)
		if err != nil {
			return nil, fmt.Errorf("field manager for %s: %w", reg.Plural, err)
		}
		res.fieldManagers[sub] = fm
	}
	return res, nil
}

// defaulter adapts registry defaults to runtime.ObjectDefaulter.
type defaulter struct{ reg *registry.Resource }

func (d defaulter) Default(obj runtime.Object) {
	if d.reg.Default != nil && reflect.TypeOf(obj) == reflect.TypeOf(d.reg.New()) {
		d.reg.Default(obj)
	}
}

func (res *resource) newFieldManager(subresource string) (*managedfields.FieldManager, error) {
	var reset map[fieldpath.APIVersion]fieldpath.Filter
	if res.reg.HasStatus {
		var excluded *fieldpath.Set
		if subresource == "status" {
			excluded = fieldpath.NewSet(fieldpath.MakePathOrDie("spec"))
		} else {
			excluded = fieldpath.NewSet(fieldpath.MakePathOrDie("status"))
		}
		reset = map[fieldpath.APIVersion]fieldpath.Filter{
			fieldpath.APIVersion(res.gvk.GroupVersion().String()): fieldpath.NewExcludeSetFilter(excluded),
		}
	}
	return managedfields.NewDefaultFieldManager(typeConverter(res.s.codecs.scheme), res.s.codecs.scheme, defaulter{res.reg},
		res.s.codecs.scheme, res.gvk, res.gvk.GroupVersion(), subresource, reset)
}

func (res *resource) verbs() metav1.Verbs {
	if res.reg.CreateOnly != nil {
		return metav1.Verbs{"create"}
	}
	return metav1.Verbs{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"}
}

func (res *resource) subresources() []subresourceInfo {
	var out []subresourceInfo
	if res.reg.HasStatus {
		out = append(out, subresourceInfo{name: "status", kind: res.gvk, verbs: metav1.Verbs{"get", "patch", "update"}})
	}
	if res.reg.Scale != nil {
		out = append(out, subresourceInfo{name: "scale", kind: autoscalingV1Scale, verbs: metav1.Verbs{"get", "patch", "update"}})
	}
	if res.reg.Finalize != nil {
		out = append(out, subresourceInfo{name: "finalize", kind: res.gvk, verbs: metav1.Verbs{"update"}})
	}
	if res.reg.Bind != nil {
		out = append(out, subresourceInfo{name: "binding", kind: coreV1.WithKind("Binding"), verbs: metav1.Verbs{"create"}})
	}
	if res.reg.Streams {
		out = append(out,
			subresourceInfo{name: "attach", kind: coreV1.WithKind("PodAttachOptions"), verbs: metav1.Verbs{"create", "get"}},
			subresourceInfo{name: "exec", kind: coreV1.WithKind("PodExecOptions"), verbs: metav1.Verbs{"create", "get"}},
			subresourceInfo{name: "log", kind: coreV1.WithKind("Pod"), verbs: metav1.Verbs{"get"}},
			subresourceInfo{name: "portforward", kind: coreV1.WithKind("PodPortForwardOptions"), verbs: metav1.Verbs{"create", "get"}},
		)
	}
	if res.reg.Token != nil {
		out = append(out, subresourceInfo{name: "token", kind: tokenRequestGVK, verbs: metav1.Verbs{"create"}})
	}
	if res.reg.Evict {
		out = append(out, subresourceInfo{name: "eviction", kind: schema.GroupVersionKind{Group: "policy", Version: "v1", Kind: "Eviction"}, verbs: metav1.Verbs{"create"}})
	}
	return out
}

func (res *resource) key(ns, name string) string {
	if res.reg.Namespaced {
		return res.prefix + ns + "/" + name
	}
	return res.prefix + name
}

// listPrefix is the storage prefix of a list in ns ("" = all namespaces).
func (res *resource) listPrefix(ns string) string {
	if res.reg.Namespaced && ns != "" {
		return res.prefix + ns + "/"
	}
	return res.prefix
}

func (res *resource) notFound(name string) error {
	return apierrors.NewNotFound(res.reg.GroupResource(), name)
}

// decode turns a stored value into an object with its resourceVersion.
func (res *resource) decode(kv storage.KV) (runtime.Object, error) {
	if res.custom != nil {
		return res.custom.decodeStored(kv)
	}
	obj := res.reg.New()
	if ss := res.reg.SharedStorage; ss != nil {
		stored := ss.NewStored()
		if _, _, err := res.s.codecs.proto.Decode(kv.Value, nil, stored); err != nil {
			return nil, res.corrupt(kv.Key, err)
		}
		obj = ss.FromStored(stored)
	} else if _, _, err := res.s.codecs.proto.Decode(kv.Value, nil, obj); err != nil {
		return nil, res.corrupt(kv.Key, err)
	}
	acc, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	acc.SetResourceVersion(formatRV(kv.ModRevision))
	obj.GetObjectKind().SetGroupVersionKind(res.gvk)
	return obj, nil
}

// corruptObjectError is a stored value that does not decode. Lists and
// watches skip such objects; a get answers 500 StoreReadError; a delete with
// ignoreStoreReadErrorWithClusterBreakingPotential removes it.
type corruptObjectError struct {
	*apierrors.StatusError
	key string
}

func (res *resource) corrupt(key string, err error) error {
	undecodableObjects.WithLabelValues(res.reg.GroupVersion.Group, res.reg.Plural).Inc()
	msg := fmt.Sprintf("the stored %s %q cannot be decoded (%v); it can only be deleted, with DeleteOptions ignoreStoreReadErrorWithClusterBreakingPotential: true (this skips finalizers and the garbage collector's checks)",
		res.reg.GroupResource(), strings.TrimPrefix(key, res.prefix), err)
	return &corruptObjectError{key: key, StatusError: &apierrors.StatusError{ErrStatus: metav1.Status{
		Status: metav1.StatusFailure, Code: http.StatusInternalServerError, Reason: metav1.StatusReasonStoreReadError, Message: msg,
	}}}
}

// encode serialises an object for storage (without its resourceVersion).
func (res *resource) encode(obj runtime.Object) ([]byte, error) {
	if res.custom != nil {
		return res.custom.encodeStored(obj)
	}
	acc, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	rv := acc.GetResourceVersion()
	acc.SetResourceVersion("")
	defer acc.SetResourceVersion(rv)
	obj.GetObjectKind().SetGroupVersionKind(res.gvk)
	if ss := res.reg.SharedStorage; ss != nil {
		obj = ss.ToStored(obj)
		obj.GetObjectKind().SetGroupVersionKind(ss.StoredKind)
		if sacc, err := meta.Accessor(obj); err == nil {
			sacc.SetResourceVersion("")
		}
	}
	var buf bytes.Buffer
	err = res.s.codecs.proto.Encode(obj, &buf)
	return buf.Bytes(), err
}

func formatRV(rev int64) string { return fmt.Sprintf("%d", rev) }

var (
	typeConverterOnce sync.Once
	typeConverterVal  managedfields.TypeConverter
)

// typeConverter is the structured-merge-diff schema of the built-in types,
// used by server-side apply and managedFields tracking: client-go's and
// apiextensions-apiserver's, generated as static data (builtinschema) rather
// than parsed from their YAML, which took half of a start's CPU.
func typeConverter(scheme *runtime.Scheme) managedfields.TypeConverter {
	typeConverterOnce.Do(func() {
		core, apiextensions := builtinschema.Core(), builtinschema.APIExtensions()
		typeConverterVal = builtinTypeConverter{
			scheme:              scheme,
			coreParser:          core,
			apiextensionsParser: apiextensions,
			core:                managedfields.NewSchemeTypeConverter(scheme, core),
			apiextensions:       managedfields.NewSchemeTypeConverter(scheme, apiextensions),
		}
	})
	return typeConverterVal
}

// builtinTypeConverter joins client-go's schema of the Kubernetes types
// and apiextensions-apiserver's of CustomResourceDefinition.
type builtinTypeConverter struct {
	scheme                          *runtime.Scheme
	coreParser, apiextensionsParser *typed.Parser
	core, apiextensions             managedfields.TypeConverter
}

func (c builtinTypeConverter) ObjectToTyped(obj runtime.Object, opts ...typed.ValidationOptions) (*typed.TypedValue, error) {
	tc, parser := c.core, c.coreParser
	if obj.GetObjectKind().GroupVersionKind().Group == apiextensionsv1.GroupName {
		tc, parser = c.apiextensions, c.apiextensionsParser
	}
	if tv, ok := c.unvalidated(obj, parser, opts); ok {
		return tv, nil
	}
	return tc.ObjectToTyped(obj, opts...)
}

// unvalidated returns a Go struct of a type in parser's schema as a typed
// value without the validating walk, when duplicates are allowed: that is
// how managedFields tracking takes the objects of an update (the new and
// the live one) and of an apply (the live one). With duplicates allowed
// the walk checks only that the value's shape follows the schema, which a
// struct of the type the schema was generated from does, and that
// associative lists' items have their keys, which the comparison or merge
// that follows checks again (and fails on, as the walk would have). It
// was a tenth of a create's managedFields work. Unstructured objects
// (custom resources, apply patches) and strict conversions take the
// validating path.
func (c builtinTypeConverter) unvalidated(obj runtime.Object, parser *typed.Parser, opts []typed.ValidationOptions) (*typed.TypedValue, bool) {
	if !slices.Contains(opts, typed.AllowDuplicates) {
		return nil, false
	}
	if _, ok := obj.(runtime.Unstructured); ok {
		return nil, false
	}
	name, err := c.scheme.ToOpenAPIDefinitionName(obj.GetObjectKind().GroupVersionKind())
	if err != nil {
		return nil, false
	}
	t := parser.Type(name)
	if !t.IsValid() {
		return nil, false
	}
	v, err := value.NewValueReflect(obj)
	if err != nil {
		return nil, false
	}
	return typed.AsTypedUnvalidated(v, t.Schema, t.TypeRef), true
}

func (c builtinTypeConverter) TypedToObject(value *typed.TypedValue) (runtime.Object, error) {
	return c.core.TypedToObject(value)
}

// invalid is the 422 Invalid answer for the object name.
func (res *resource) invalid(name string, errs field.ErrorList) error {
	return apierrors.NewInvalid(res.gvk.GroupKind(), name, errs)
}

// conflict is the 409 Conflict answer for a stale resourceVersion.
func (res *resource) conflict(name string) error {
	return apierrors.NewConflict(res.reg.GroupResource(), name,
		errors.New("the object has been modified; please apply your changes to the latest version and try again"))
}
