package apiserver

// Writes: create, update, and the guarded store update that every write
// of an existing object (update, patch, scale, status, finalize, binding)
// goes through.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"strings"
	"sync"

	"github.com/google/uuid"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metavalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/apiserver/admission"
	"github.com/headway/headway/internal/storage"
)

func (res *resource) handleCreate(w http.ResponseWriter, r *http.Request, info requestInfo) error {
	f, opts, body, err := writeRequest(r, true)
	if err != nil {
		return err
	}
	obj := res.reg.New()
	warnings, err := res.decodeBody(r, body, opts, obj, res.gvk)
	if err != nil {
		return err
	}
	if res.reg.Namespaced && info.Namespace == "" {
		return badRequest("the server could not find the requested resource: %s is namespaced; create it in a namespace", res.reg.Plural)
	}
	opts.admission = res.s.admissionFor(r, info)
	out, err := res.createObject(r.Context(), info.Namespace, obj, opts)
	if err != nil {
		return err
	}
	return res.respond(w, r, f, http.StatusCreated, out, warnings)
}

func (res *resource) handleUpdate(w http.ResponseWriter, r *http.Request, info requestInfo) error {
	f, opts, body, err := writeRequest(r, true)
	if err != nil {
		return err
	}
	obj := res.reg.New()
	warnings, err := res.decodeBody(r, body, opts, obj, res.gvk)
	if err != nil {
		return err
	}
	acc, _ := meta.Accessor(obj)
	if acc.GetName() != info.Name {
		return badRequest("the name of the object (%s) does not match the name on the URL (%s)", acc.GetName(), info.Name)
	}
	mode := modeMain
	switch info.Subresource {
	case "status":
		mode = modeStatus
	case "finalize":
		mode = modeFinalize
	}
	opts.admission = res.s.admissionFor(r, info)
	out, _, err := res.updateObject(r.Context(), info.Namespace, info.Name, mode, opts, func(runtime.Object) (runtime.Object, error) {
		return obj.DeepCopyObject(), nil
	}, nil)
	if err != nil {
		return err
	}
	return res.respond(w, r, f, http.StatusOK, out, warnings)
}

// writeRequest reads what every write verb starts with: the response
// format, the write options and the body.
func writeRequest(r *http.Request, allowTransform bool) (outputFormat, writeOptions, []byte, error) {
	f, ok := negotiate(r, allowTransform)
	if !ok {
		return f, writeOptions{}, nil, notAcceptable(r.Header.Get("Accept"))
	}
	opts, err := parseWriteOptions(r)
	if err != nil {
		return f, opts, nil, err
	}
	body, err := readBody(r)
	return f, opts, body, err
}

// writeOptions are the query parameters shared by create, update and patch.
type writeOptions struct {
	dryRun          bool
	fieldManager    string
	fieldValidation string
	force           bool
	// managedFieldsDone: the caller (server-side apply) already updated
	// managedFields; the pipeline must not record an Update on top.
	managedFieldsDone bool
	// admission: a client's write, admitted by the chain (admission.go);
	// nil for the server's own writes.
	admission *admissionInfo
}

func parseWriteOptions(r *http.Request) (writeOptions, error) {
	q := r.URL.Query()
	opts := writeOptions{fieldManager: q.Get("fieldManager"), fieldValidation: q.Get("fieldValidation")}
	for _, d := range q["dryRun"] {
		if d != "All" {
			return opts, apierrors.NewInvalid(schema.GroupKind{Group: "meta.k8s.io", Kind: "CreateOptions"}, "",
				field.ErrorList{field.NotSupported(field.NewPath("dryRun"), d, []string{"All"})})
		}
		opts.dryRun = true
	}
	switch opts.fieldValidation {
	case "", "Ignore", "Warn", "Strict":
	default:
		return opts, badRequest("invalid fieldValidation %q: must be one of Ignore, Warn, Strict", opts.fieldValidation)
	}
	if opts.fieldValidation == "" {
		opts.fieldValidation = "Warn"
	}
	if f := q.Get("force"); f == "true" || f == "1" {
		opts.force = true
	}
	if opts.fieldManager == "" {
		ua := r.Header.Get("User-Agent")
		if i := strings.Index(ua, "/"); i >= 0 {
			ua = ua[:i]
		}
		if len(ua) > 128 {
			ua = ua[:128]
		}
		opts.fieldManager = ua
	} else if len(opts.fieldManager) > 128 {
		return opts, apierrors.NewInvalid(schema.GroupKind{Group: "meta.k8s.io", Kind: "CreateOptions"}, "",
			field.ErrorList{field.TooLong(field.NewPath("fieldManager"), "", 128)})
	}
	return opts, nil
}

// decodeBody decodes a create/update body into a new object of the resource.
// Unknown and duplicate fields follow fieldValidation; warnings are returned.
func (res *resource) decodeBody(r *http.Request, body []byte, opts writeOptions, into runtime.Object, wantGVK schema.GroupVersionKind) ([]string, error) {
	if u, ok := into.(*unstructured.Unstructured); ok && res.custom != nil {
		return res.custom.decodeBody(res, r, body, opts, u)
	}
	mt := requestMediaType(r)
	var dec runtime.Decoder
	switch mt {
	case mediaJSON:
		dec = res.s.codecs.json
		if opts.fieldValidation != "Ignore" {
			dec = res.s.codecs.jsonStrict
		}
	case mediaYAML:
		dec = res.s.codecs.yaml
		if opts.fieldValidation != "Ignore" {
			dec = res.s.codecs.yamlStrict
		}
	case mediaProtobuf:
		dec = res.s.codecs.proto
	default:
		return nil, unsupportedMediaType(mt)
	}
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, badRequest("the request body is empty; send the %s object to %s", wantGVK.Kind, r.Method)
	}
	obj, gvk, err := dec.Decode(body, &wantGVK, into)
	var warnings []string
	if err != nil {
		if runtime.IsStrictDecodingError(err) && obj != nil {
			if opts.fieldValidation == "Strict" {
				return nil, badRequest("%s in version %q cannot be handled as a %s: %v", wantGVK.Kind, wantGVK.Version, wantGVK.Kind, err)
			}
			var sde interface{ Errors() []error }
			if errors.As(err, &sde) {
				for _, e := range sde.Errors() {
					warnings = append(warnings, e.Error())
				}
			}
		} else {
			return nil, badRequest("%s in version %q cannot be handled as a %s: %v", wantGVK.Kind, wantGVK.Version, wantGVK.Kind, err)
		}
	}
	if gvk != nil && (gvk.Group != wantGVK.Group || gvk.Version != wantGVK.Version) {
		return nil, badRequest("the API version in the data (%s) does not match the expected API version (%s)", gvk.GroupVersion(), wantGVK.GroupVersion())
	}
	if gvk != nil && gvk.Kind != wantGVK.Kind {
		return nil, badRequest("the kind in the data (%s) does not match the expected kind (%s)", gvk.Kind, wantGVK.Kind)
	}
	if obj != into {
		return nil, badRequest("%s in version %q cannot be handled as a %s", gvk.Kind, gvk.Version, wantGVK.Kind)
	}
	return warnings, nil
}

// validateMeta checks object metadata as kube-apiserver does.
func (res *resource) validateMeta(obj runtime.Object) field.ErrorList {
	acc, err := meta.Accessor(obj)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("metadata"), err)}
	}
	nameFn := metavalidation.NameIsDNSSubdomain
	if res.reg.NameValidation != nil {
		nameFn = metavalidation.ValidateNameFunc(res.reg.NameValidation)
	}
	return metavalidation.ValidateObjectMetaAccessor(acc, res.reg.Namespaced, nameFn, field.NewPath("metadata"))
}

// createObject runs the create pipeline and stores obj.
func (res *resource) createObject(ctx context.Context, ns string, obj runtime.Object, opts writeOptions) (runtime.Object, error) {
	acc, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	if res.reg.Namespaced {
		if acc.GetNamespace() != "" && acc.GetNamespace() != ns {
			return nil, badRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
		acc.SetNamespace(ns)
	} else {
		acc.SetNamespace("")
	}
	if acc.GetResourceVersion() != "" {
		return nil, badRequest("resourceVersion should not be set on objects to be created")
	}
	if acc.GetName() == "" && acc.GetGenerateName() != "" {
		acc.SetName(acc.GetGenerateName() + utilrand.String(5))
	}
	acc.SetUID(types.UID(uuid.NewString()))
	acc.SetCreationTimestamp(metav1.Now())
	acc.SetDeletionTimestamp(nil)
	acc.SetDeletionGracePeriodSeconds(nil)
	acc.SetSelfLink("")
	if res.reg.Generation {
		acc.SetGeneration(1)
	} else {
		acc.SetGeneration(0)
	}
	if res.reg.Default != nil {
		res.reg.Default(obj)
	}
	if obj, err = res.admitWrite(ctx, admission.Create, opts, ns, acc.GetName(), obj, nil); err != nil {
		return nil, err
	}
	acc, _ = meta.Accessor(obj)
	if res.reg.PrepareForCreate != nil {
		res.reg.PrepareForCreate(ctx, obj)
	}
	errs := res.validateMeta(obj)
	if res.reg.Validate != nil {
		errs = append(errs, res.reg.Validate(obj)...)
	}
	if len(errs) > 0 {
		return nil, res.invalid(acc.GetName(), errs)
	}
	if res.reg.Admit != nil {
		if err := res.reg.Admit(ctx, obj, nil); err != nil {
			return nil, err
		}
	}
	if res.reg.Namespaced {
		if err := res.s.checkNamespace(ctx, ns); err != nil {
			return nil, err
		}
	}
	if err := res.validateWrite(ctx, admission.Create, opts, ns, acc.GetName(), obj, nil); err != nil {
		return nil, err
	}
	if fm := res.fieldManagers[""]; fm != nil && opts.fieldManager != "" && !opts.managedFieldsDone {
		obj = res.s.updateFields(fm, res.reg.New(), obj, opts.fieldManager)
		acc, _ = meta.Accessor(obj)
	}
	if h := res.reg.Hooks.BeforeCreate; h != nil && !opts.dryRun {
		// Say AlreadyExists rather than fail an allocation the existing
		// object holds.
		if _, err := res.s.store.Get(ctx, res.key(ns, acc.GetName())); err == nil {
			return nil, apierrors.NewAlreadyExists(res.reg.GroupResource(), acc.GetName())
		}
		if err := h(ctx, obj); err != nil {
			return nil, err
		}
	}
	if opts.dryRun {
		return obj, nil
	}
	data, err := res.encodeForStore(res.key(ns, acc.GetName()), obj, opts)
	if err != nil {
		return nil, err
	}
	rev, err := res.s.store.Create(ctx, res.key(ns, acc.GetName()), data)
	if err != nil {
		if h := res.reg.Hooks.AfterCreateFailed; h != nil {
			h(ctx, obj)
		}
		if errors.Is(err, storage.ErrKeyExists) {
			return nil, apierrors.NewAlreadyExists(res.reg.GroupResource(), acc.GetName())
		}
		return nil, err
	}
	acc.SetResourceVersion(formatRV(rev))
	return obj, nil
}

// checkNamespace returns an error if objects cannot be created in ns.
func (s *Server) checkNamespace(ctx context.Context, ns string) error {
	nsRes := s.resources["/v1/namespaces"]
	if nsRes == nil {
		return nil
	}
	kv, err := s.store.Get(ctx, nsRes.key("", ns))
	if errors.Is(err, storage.ErrNotFound) {
		return apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, ns)
	}
	if err != nil {
		return err
	}
	terminating, ok := s.nsTerminating.get(kv)
	if !ok {
		obj, err := nsRes.decode(kv)
		if err != nil {
			return err
		}
		acc, _ := meta.Accessor(obj)
		terminating = acc.GetDeletionTimestamp() != nil
		s.nsTerminating.put(kv, terminating)
	}
	if terminating {
		return apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, ns,
			fmt.Errorf("unable to create new content in namespace %s because it is being terminated", ns))
	}
	return nil
}

// nsStates remembers, per namespace key, whether the stored namespace at
// one revision is terminating: a create in a namespace reads the namespace
// (never a cache), but decodes it only when it has changed.
type nsStates struct {
	mu sync.Mutex
	m  map[string]nsState
}

type nsState struct {
	createRev, modRev int64
	terminating       bool
}

// maxNSStates bounds the map; past it, it starts again empty.
const maxNSStates = 4096

func (c *nsStates) get(kv storage.KV) (terminating, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, ok := c.m[kv.Key]
	if !ok || st.createRev != kv.CreateRevision || st.modRev != kv.ModRevision {
		return false, false
	}
	return st.terminating, true
}

func (c *nsStates) put(kv storage.KV, terminating bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxNSStates {
		c.m = map[string]nsState{}
	}
	c.m[kv.Key] = nsState{createRev: kv.CreateRevision, modRev: kv.ModRevision, terminating: terminating}
}

// updateFunc computes the new object from the current one (a copy it may change).
type updateFunc func(cur runtime.Object) (runtime.Object, error)

// updateMode says which part of an object a write may change.
type updateMode int

const (
	modeMain updateMode = iota
	modeStatus
	modeFinalize
	// modeSubresource: a subresource handler (binding) already computed the
	// whole new object; only bookkeeping remains.
	modeSubresource
)

// updateObject reads the current object, applies fn, runs the update
// pipeline and stores the result with optimistic concurrency. If fn leaves a
// resourceVersion that differs from the stored one, the write fails with 409.
// Without one (an unconditional update, where the kind allows it), a lost
// race is retried with the newer object.
// create, when set, is called instead when the object does not exist.
func (res *resource) updateObject(ctx context.Context, ns, name string, mode updateMode, opts writeOptions, fn updateFunc, create func() (runtime.Object, error)) (runtime.Object, bool, error) {
	key := res.key(ns, name)
	for attempt := 0; ; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		kv, err := res.s.store.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			if create != nil {
				obj, err := create()
				return obj, true, err
			}
			return nil, false, res.notFound(name)
		}
		if err != nil {
			return nil, false, err
		}
		cur, err := res.decode(kv)
		if err != nil {
			return nil, false, err
		}
		obj, err := fn(cur.DeepCopyObject())
		if err != nil {
			return nil, false, err
		}
		out, _, err := res.storeUpdate(ctx, kv, cur, obj, mode, opts)
		if errors.Is(err, errRetry) {
			if attempt+1 < maxAttempts {
				continue
			}
			return nil, false, res.conflict(name)
		}
		return out, false, err
	}
}

// errRetry: a guarded store write lost a race with another write; the
// caller starts again from the current object. Only preconditions the
// client gave (a resourceVersion or UID) answer 409 Conflict; a race the
// client did not ask to lose is retried, as kube-apiserver's guaranteed
// updates are.
var errRetry = errors.New("retry")

// maxAttempts bounds the retries of one write. Every lost race means another
// write succeeded, so reaching it needs a key rewritten without pause.
const maxAttempts = 1000

// storeUpdate validates obj as an update of cur and writes it.
func (res *resource) storeUpdate(ctx context.Context, kv storage.KV, cur, obj runtime.Object, mode updateMode, opts writeOptions) (runtime.Object, bool, error) {
	curAcc, _ := meta.Accessor(cur)
	acc, err := meta.Accessor(obj)
	if err != nil {
		return nil, false, err
	}
	name := curAcc.GetName()
	if acc.GetName() != name {
		return nil, false, badRequest("the name of the object (%s) does not match the name on the URL (%s)", acc.GetName(), name)
	}
	if res.reg.Namespaced && acc.GetNamespace() != "" && acc.GetNamespace() != curAcc.GetNamespace() {
		return nil, false, badRequest("the namespace of the provided object does not match the namespace sent on the request")
	}
	acc.SetNamespace(curAcc.GetNamespace())
	if err := checkResourceVersion("metadata.resourceVersion", acc.GetResourceVersion()); err != nil {
		return nil, false, err
	}
	switch rv := acc.GetResourceVersion(); {
	case rv == "" && mode != modeSubresource && !res.reg.AllowUnconditionalUpdate:
		return nil, false, res.resourceVersionRequired(name)
	case rv == "":
		// An unconditional update: it applies to the current object (a
		// lost race is retried with the newer one).
		acc.SetResourceVersion(curAcc.GetResourceVersion())
	case rv != curAcc.GetResourceVersion():
		return nil, false, res.conflict(name)
	}
	if uid := acc.GetUID(); uid != "" && uid != curAcc.GetUID() {
		return nil, false, apierrors.NewConflict(res.reg.GroupResource(), name,
			fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", uid, curAcc.GetUID()))
	}
	// Fields the client cannot change.
	acc.SetUID(curAcc.GetUID())
	acc.SetCreationTimestamp(curAcc.GetCreationTimestamp())
	acc.SetDeletionTimestamp(curAcc.GetDeletionTimestamp())
	acc.SetDeletionGracePeriodSeconds(curAcc.GetDeletionGracePeriodSeconds())
	acc.SetGeneration(curAcc.GetGeneration())
	acc.SetSelfLink("")
	if obj, err = res.admitWrite(ctx, admission.Update, opts, curAcc.GetNamespace(), name, obj, cur); err != nil {
		return nil, false, err
	}
	acc, _ = meta.Accessor(obj)

	switch mode {
	case modeStatus:
		// Only status changes through /status.
		next := cur.DeepCopyObject()
		copyField(next, obj, "Status")
		nacc, _ := meta.Accessor(next)
		nacc.SetManagedFields(acc.GetManagedFields())
		obj, acc = next, nacc
		if res.reg.ValidateStatusUpdate != nil {
			if errs := res.reg.ValidateStatusUpdate(obj, cur); len(errs) > 0 {
				return nil, false, res.invalid(name, errs)
			}
		}
	case modeFinalize:
		obj = res.reg.Finalize(obj, cur)
		acc, _ = meta.Accessor(obj)
	case modeSubresource:
	default:
		if res.reg.HasStatus {
			copyField(obj, cur, "Status")
		}
		if res.reg.Default != nil {
			res.reg.Default(obj)
		}
		if res.reg.PrepareForUpdate != nil {
			res.reg.PrepareForUpdate(ctx, obj, cur)
		}
		errs := res.validateMetaUpdate(obj, cur)
		if res.reg.ValidateUpdate != nil {
			errs = append(errs, res.reg.ValidateUpdate(obj, cur)...)
		}
		if len(errs) > 0 {
			return nil, false, res.invalid(name, errs)
		}
		if res.reg.Admit != nil {
			if err := res.reg.Admit(ctx, obj, cur); err != nil {
				return nil, false, err
			}
		}
		if res.reg.Generation && !specEqual(obj, cur) {
			acc.SetGeneration(curAcc.GetGeneration() + 1)
		}
	}
	if err := res.validateWrite(ctx, admission.Update, opts, curAcc.GetNamespace(), name, obj, cur); err != nil {
		return nil, false, err
	}
	sub := ""
	if mode == modeStatus {
		sub = "status"
	}
	if fm := res.fieldManagers[sub]; fm != nil && opts.fieldManager != "" && !opts.managedFieldsDone && mode != modeFinalize && mode != modeSubresource {
		obj = res.s.updateFields(fm, cur, obj, opts.fieldManager)
		acc, _ = meta.Accessor(obj)
	}
	acc.SetResourceVersion("")

	// A deleted object whose last finalizer is gone is removed now, unless
	// it is in a grace period (a pod its agent is stopping): as in
	// kube-apiserver, updates during the grace period (the agent's status)
	// keep it, and the agent's final DELETE removes it.
	if curAcc.GetDeletionTimestamp() != nil && len(acc.GetFinalizers()) == 0 &&
		(curAcc.GetDeletionGracePeriodSeconds() == nil || *curAcc.GetDeletionGracePeriodSeconds() == 0) &&
		(res.reg.Finalizing == nil || !res.reg.Finalizing(obj)) {
		if opts.dryRun {
			acc.SetResourceVersion(curAcc.GetResourceVersion())
			return obj, true, nil
		}
		_, _, err := res.s.store.Delete(ctx, kv.Key, kv.ModRevision)
		if errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrNotFound) {
			return nil, false, errRetry
		}
		if err != nil {
			return nil, false, err
		}
		if h := res.reg.Hooks.AfterDelete; h != nil {
			h(ctx, obj)
		}
		acc.SetResourceVersion(curAcc.GetResourceVersion())
		return obj, true, nil
	}

	if h := res.reg.Hooks.BeforeUpdate; h != nil && !opts.dryRun {
		if err := h(ctx, obj, cur); err != nil {
			return nil, false, err
		}
	}
	data, err := res.encodeForStore(kv.Key, obj, opts)
	if err != nil {
		return nil, false, err
	}
	if bytes.Equal(data, kv.Value) || opts.dryRun {
		// Nothing changed (or a dry run): no write, the object keeps its version.
		if h := res.reg.Hooks.AfterUpdate; h != nil && !opts.dryRun {
			h(ctx, obj, cur, false)
		}
		if bytes.Equal(data, kv.Value) {
			return cur, false, nil
		}
		acc.SetResourceVersion(curAcc.GetResourceVersion())
		return obj, false, nil
	}
	rev, err := res.s.store.Update(ctx, kv.Key, data, kv.ModRevision)
	if h := res.reg.Hooks.AfterUpdate; h != nil {
		h(ctx, obj, cur, err == nil)
	}
	if errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrNotFound) {
		return nil, false, errRetry
	}
	if err != nil {
		return nil, false, err
	}
	acc.SetResourceVersion(formatRV(rev))
	return obj, false, nil
}

// resourceVersionRequired is kube-apiserver's answer to an update without
// a resourceVersion for a kind that does not allow unconditional updates
// (the kind in it is the resource, as kube-apiserver's store says it).
func (res *resource) resourceVersionRequired(name string) error {
	gr := res.reg.GroupResource()
	return apierrors.NewInvalid(schema.GroupKind{Group: gr.Group, Kind: gr.Resource}, name, field.ErrorList{
		field.Invalid(field.NewPath("metadata", "resourceVersion"), uint64(0), "must be specified for an update")})
}

func (res *resource) validateMetaUpdate(obj, old runtime.Object) field.ErrorList {
	acc, err := meta.Accessor(obj)
	if err != nil {
		return field.ErrorList{field.InternalError(field.NewPath("metadata"), err)}
	}
	oldAcc, _ := meta.Accessor(old)
	errs := metavalidation.ValidateObjectMetaAccessorUpdate(acc, oldAcc, field.NewPath("metadata"))
	errs = append(errs, res.validateMeta(obj)...)
	return errs
}

// copyField copies the exported struct field name from src to dst (both
// pointers to the same struct type), if it exists.
func copyField(dst, src runtime.Object, name string) {
	if copyUnstructuredField(dst, src, name) {
		return
	}
	dv := reflect.ValueOf(dst).Elem()
	sv := reflect.ValueOf(src).Elem()
	f := dv.FieldByName(name)
	if !f.IsValid() || !f.CanSet() {
		return
	}
	f.Set(sv.FieldByName(name))
}

// specEqual compares everything outside metadata and status.
func specEqual(a, b runtime.Object) bool {
	if equal, ok := unstructuredSpecEqual(a, b); ok {
		return equal
	}
	av := reflect.ValueOf(a).Elem()
	bv := reflect.ValueOf(b).Elem()
	t := av.Type()
	for i := 0; i < t.NumField(); i++ {
		switch t.Field(i).Name {
		case "TypeMeta", "ObjectMeta", "Status":
			continue
		}
		if !apiequality.Semantic.DeepEqual(av.Field(i).Interface(), bv.Field(i).Interface()) {
			return false
		}
	}
	return true
}
