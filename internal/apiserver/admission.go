package apiserver

// Admission: where the write paths call the configured chain of mutating
// and validating steps (package admission), and the access to objects the
// steps get.
//
// A write carries an *admissionInfo when it comes from a client request;
// writes the server makes itself (admission's own quota status updates, an
// eviction's budget, a binding) carry none and are not admitted.

import (
	"context"
	"fmt"
	"net/http"
	"reflect"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/headway/headway/internal/apiserver/admission"
)

// admissionInfo is what admission needs to know about a request beyond
// the object: the subresource it addressed and who sent it.
type admissionInfo struct {
	subresource string
	user        authenticationv1.UserInfo
}

// admissionFor returns the admission info of a client request, or nil when
// the server has no admission chain.
func (s *Server) admissionFor(r *http.Request, info requestInfo) *admissionInfo {
	if len(s.cfg.Admission) == 0 {
		return nil
	}
	return &admissionInfo{subresource: info.Subresource, user: requestUser(r)}
}

// requestUser is who sent r, for admission (webhooks see it as
// request.userInfo): the user authentication left in the request context.
func requestUser(r *http.Request) authenticationv1.UserInfo {
	u, ok := UserFrom(r.Context())
	if !ok {
		return authenticationv1.UserInfo{}
	}
	return userInfo(u)
}

// attributes builds the admission attributes of a write of res.
func (res *resource) attributes(op admission.Operation, adm *admissionInfo, ns, name string, obj, old runtime.Object, dryRun bool, options runtime.Object) *admission.Attributes {
	return &admission.Attributes{
		Operation:   op,
		Kind:        res.gvk,
		Resource:    res.reg.GroupVersionResource(),
		Subresource: adm.subresource,
		Namespace:   ns,
		Name:        name,
		Object:      obj,
		OldObject:   old,
		Options:     options,
		DryRun:      dryRun,
		User:        adm.user,
	}
}

// writeOptionsObject is the Create/UpdateOptions a webhook sees.
func writeOptionsObject(op admission.Operation, opts writeOptions) runtime.Object {
	var dryRun []string
	if opts.dryRun {
		dryRun = []string{metav1.DryRunAll}
	}
	if op == admission.Create {
		o := &metav1.CreateOptions{DryRun: dryRun, FieldManager: opts.fieldManager, FieldValidation: opts.fieldValidation}
		o.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("CreateOptions"))
		return o
	}
	o := &metav1.UpdateOptions{DryRun: dryRun, FieldManager: opts.fieldManager, FieldValidation: opts.fieldValidation}
	o.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("UpdateOptions"))
	return o
}

// admitWrite runs the mutating steps on a create or update of obj and
// returns the object they leave (obj itself, changed, or a replacement of
// the same type, defaulted again).
func (res *resource) admitWrite(ctx context.Context, op admission.Operation, opts writeOptions, ns, name string, obj, old runtime.Object) (runtime.Object, error) {
	if opts.admission == nil {
		return obj, nil
	}
	a := res.attributes(op, opts.admission, ns, name, obj, old, opts.dryRun, writeOptionsObject(op, opts))
	if err := res.s.cfg.Admission.Admit(ctx, a, serverObjects{res.s}); err != nil {
		return nil, err
	}
	if a.Object != obj {
		if reflect.TypeOf(a.Object) != reflect.TypeOf(obj) {
			return nil, apierrors.NewInternalError(fmt.Errorf("admission replaced the %s with a %T", res.gvk.Kind, a.Object))
		}
		if res.reg.Default != nil {
			res.reg.Default(a.Object)
		}
	}
	return a.Object, nil
}

// validateWrite runs the validating steps on a create or update of obj.
func (res *resource) validateWrite(ctx context.Context, op admission.Operation, opts writeOptions, ns, name string, obj, old runtime.Object) error {
	if opts.admission == nil {
		return nil
	}
	a := res.attributes(op, opts.admission, ns, name, obj, old, opts.dryRun, writeOptionsObject(op, opts))
	return res.s.cfg.Admission.Validate(ctx, a, serverObjects{res.s})
}

// admitDelete runs the chain (mutating steps, which may not change
// anything, then validating ones) on the delete of cur.
func (res *resource) admitDelete(ctx context.Context, adm *admissionInfo, ns, name string, cur runtime.Object, opts metav1.DeleteOptions) error {
	if adm == nil {
		return nil
	}
	o := opts.DeepCopy()
	o.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("DeleteOptions"))
	a := res.attributes(admission.Delete, adm, ns, name, nil, cur, len(opts.DryRun) > 0, o)
	if err := res.s.cfg.Admission.Admit(ctx, a, serverObjects{res.s}); err != nil {
		return err
	}
	return res.s.cfg.Admission.Validate(ctx, a, serverObjects{res.s})
}

// admitSubresource runs the whole chain on a request to a subresource whose
// object is not the resource's own (a Scale, an Eviction): kind is the
// object's kind. It returns the object the mutating steps leave.
func (res *resource) admitSubresource(ctx context.Context, adm *admissionInfo, op admission.Operation, kind schema.GroupVersionKind, ns, name string, obj, old runtime.Object, opts writeOptions) (runtime.Object, error) {
	if adm == nil {
		return obj, nil
	}
	a := res.attributes(op, adm, ns, name, obj, old, opts.dryRun, writeOptionsObject(op, opts))
	a.Kind = kind
	if err := res.s.cfg.Admission.Admit(ctx, a, serverObjects{res.s}); err != nil {
		return nil, err
	}
	if reflect.TypeOf(a.Object) != reflect.TypeOf(obj) {
		return nil, apierrors.NewInternalError(fmt.Errorf("admission replaced the %s with a %T", kind.Kind, a.Object))
	}
	if err := res.s.cfg.Admission.Validate(ctx, a, serverObjects{res.s}); err != nil {
		return nil, err
	}
	return a.Object, nil
}

// serverObjects gives admission steps the server's objects.
type serverObjects struct{ s *Server }

func (o serverObjects) resource(gvr schema.GroupVersionResource) (*resource, error) {
	res := o.s.resources[gvr.Group+"/"+gvr.Version+"/"+gvr.Resource]
	if res == nil {
		return nil, apierrors.NewNotFound(gvr.GroupResource(), "")
	}
	return res, nil
}

func (o serverObjects) Get(ctx context.Context, gvr schema.GroupVersionResource, ns, name string) (runtime.Object, error) {
	res, err := o.resource(gvr)
	if err != nil {
		return nil, err
	}
	return res.get(ctx, ns, name)
}

func (o serverObjects) List(ctx context.Context, gvr schema.GroupVersionResource, ns string) ([]runtime.Object, error) {
	res, err := o.resource(gvr)
	if err != nil {
		return nil, err
	}
	sel := selection{labels: labels.Everything(), fields: fields.Everything()}
	// From the object cache, as kube-apiserver's admission plugins read
	// informers, but never older than this server's own last write of the
	// resource: a webhook configuration, quota or limit range created
	// through this server applies to the next request. The items are
	// shared with the cache: admission steps only read them.
	if rc := o.s.cache.forResource(res); rc != nil {
		list, ok, err := res.listCached(ctx, rc, ns, sel, o.s.store.writtenUnder(res.prefix))
		if err != nil {
			return nil, err
		}
		if ok {
			return list.items, nil
		}
	}
	list, err := res.list(ctx, ns, nil, sel)
	if err != nil {
		return nil, err
	}
	return list.items, nil
}

func (o serverObjects) UpdateStatus(ctx context.Context, gvr schema.GroupVersionResource, ns, name string, dryRun bool, fn func(runtime.Object) error) (runtime.Object, error) {
	res, err := o.resource(gvr)
	if err != nil {
		return nil, err
	}
	mode := modeStatus
	if !res.reg.HasStatus {
		mode = modeMain
	}
	out, _, err := res.updateObject(ctx, ns, name, mode, writeOptions{dryRun: dryRun}, func(cur runtime.Object) (runtime.Object, error) {
		if err := fn(cur); err != nil {
			return nil, err
		}
		return cur, nil
	}, nil)
	return out, err
}
