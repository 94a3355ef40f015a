package apiserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/storage"
)

// parseDeleteOptions reads DeleteOptions from the body and query.
func (s *Server) parseDeleteOptions(r *http.Request) (metav1.DeleteOptions, error) {
	var opts metav1.DeleteOptions
	body, err := readBody(r)
	if err != nil {
		return opts, err
	}
	if len(bytes.TrimSpace(body)) > 0 {
		var dec runtime.Decoder
		switch mt := requestMediaType(r); mt {
		case mediaJSON:
			dec = s.codecs.json
		case mediaYAML:
			dec = s.codecs.yaml
		case mediaProtobuf:
			dec = s.codecs.proto
		default:
			return opts, unsupportedMediaType(mt)
		}
		gvk := metav1.SchemeGroupVersion.WithKind("DeleteOptions")
		if _, _, err := dec.Decode(body, &gvk, &opts); err != nil {
			return opts, badRequest("the DeleteOptions in the request body could not be decoded: %v", err)
		}
	}
	q := r.URL.Query()
	if g := q.Get("gracePeriodSeconds"); g != "" {
		n, err := strconv.ParseInt(g, 10, 64)
		if err != nil {
			return opts, badRequest("invalid gracePeriodSeconds %q", g)
		}
		opts.GracePeriodSeconds = &n
	}
	if p := q.Get("propagationPolicy"); p != "" {
		pp := metav1.DeletionPropagation(p)
		opts.PropagationPolicy = &pp
	}
	if o := q.Get("orphanDependents"); o != "" {
		b := o == "true"
		opts.OrphanDependents = &b
	}
	opts.DryRun = append(opts.DryRun, q["dryRun"]...)
	var errs field.ErrorList
	for _, d := range opts.DryRun {
		if d != "All" {
			errs = append(errs, field.NotSupported(field.NewPath("dryRun"), d, []string{"All"}))
		}
	}
	if p := opts.PropagationPolicy; p != nil {
		switch *p {
		case metav1.DeletePropagationBackground, metav1.DeletePropagationForeground, metav1.DeletePropagationOrphan:
		default:
			errs = append(errs, field.NotSupported(field.NewPath("propagationPolicy"), *p, []string{"Foreground", "Background", "Orphan"}))
		}
		if opts.OrphanDependents != nil {
			errs = append(errs, field.Invalid(field.NewPath("propagationPolicy"), *p, "orphanDependents and propagationPolicy cannot both be set"))
		}
	}
	if opts.GracePeriodSeconds != nil && *opts.GracePeriodSeconds < 0 {
		zero := int64(0)
		opts.GracePeriodSeconds = &zero
	}
	if len(errs) > 0 {
		return opts, apierrors.NewInvalid(schema.GroupKind{Group: "meta.k8s.io", Kind: "DeleteOptions"}, "", errs)
	}
	return opts, nil
}

func (res *resource) handleDelete(w http.ResponseWriter, r *http.Request, info requestInfo) error {
	f, ok := negotiate(r, true)
	if !ok {
		return notAcceptable(r.Header.Get("Accept"))
	}
	opts, err := res.s.parseDeleteOptions(r)
	if err != nil {
		return err
	}
	obj, deleted, err := res.deleteObjectAdmitted(r.Context(), info.Namespace, info.Name, opts, res.s.admissionFor(r, info))
	if err != nil {
		return err
	}
	if !deleted {
		return res.respond(w, r, f, http.StatusOK, obj, nil)
	}
	acc, _ := meta.Accessor(obj)
	f.target = targetObject
	res.s.writeObject(w, f, http.StatusOK, &metav1.Status{
		Status: metav1.StatusSuccess,
		Details: &metav1.StatusDetails{
			Name:  info.Name,
			Group: res.reg.GroupVersion.Group,
			Kind:  res.reg.Plural,
			UID:   acc.GetUID(),
		},
	})
	return nil
}

// deleteObject deletes an object, or marks it deleted while finalizers hold
// it. deleted says whether it is gone from the store.
//
// An object that cannot be decoded is removed as it is (no finalizers, no
// preconditions) when the options say ignoreStoreReadErrorWithClusterBreakingPotential.
func (res *resource) deleteObject(ctx context.Context, ns, name string, opts metav1.DeleteOptions) (runtime.Object, bool, error) {
	return res.deleteObjectAdmitted(ctx, ns, name, opts, nil)
}

// deleteObjectAdmitted is deleteObject for a client's request: adm, when
// set, has the admission chain accept the delete first.
func (res *resource) deleteObjectAdmitted(ctx context.Context, ns, name string, opts metav1.DeleteOptions, adm *admissionInfo) (runtime.Object, bool, error) {
	if err := res.checkDeletable(name); err != nil {
		return nil, false, err
	}
	key := res.key(ns, name)
	dryRun := len(opts.DryRun) > 0
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if err := ctx.Err(); err != nil {
			return nil, false, err
		}
		kv, err := res.s.store.Get(ctx, key)
		if errors.Is(err, storage.ErrNotFound) {
			return nil, false, res.notFound(name)
		}
		if err != nil {
			return nil, false, err
		}
		cur, err := res.decode(kv)
		var corrupt *corruptObjectError
		if errors.As(err, &corrupt) && opts.IgnoreStoreReadErrorWithClusterBreakingPotential != nil && *opts.IgnoreStoreReadErrorWithClusterBreakingPotential {
			return res.unsafeDelete(ctx, kv, name, dryRun)
		}
		if err != nil {
			return nil, false, err
		}
		acc, _ := meta.Accessor(cur)
		if p := opts.Preconditions; p != nil {
			if p.UID != nil && *p.UID != acc.GetUID() {
				return nil, false, apierrors.NewConflict(res.reg.GroupResource(), name,
					fmt.Errorf("Precondition failed: UID in precondition: %v, UID in object meta: %v", *p.UID, acc.GetUID()))
			}
			if p.ResourceVersion != nil && *p.ResourceVersion != acc.GetResourceVersion() {
				return nil, false, apierrors.NewConflict(res.reg.GroupResource(), name,
					fmt.Errorf("Precondition failed: ResourceVersion in precondition: %v, ResourceVersion in object meta: %v", *p.ResourceVersion, acc.GetResourceVersion()))
			}
		}
		if err := res.admitDelete(ctx, adm, ns, name, cur, opts); err != nil {
			return nil, false, err
		}
		if acc.GetDeletionTimestamp() == nil || opts.GracePeriodSeconds != nil {
			if res.reg.GracefulDelete != nil {
				if graceful, grace := res.reg.GracefulDelete(cur, &opts); graceful {
					out, deleted, err := res.markDeleted(ctx, kv, cur, grace, opts, dryRun)
					if errors.Is(err, errRetry) {
						// Another write (the agent's status, a controller's
						// patch) got in first: as kube-apiserver does, start
						// again from the current object, preconditions and all.
						continue
					}
					return out, deleted, err
				}
			}
		}
		finalizers := withPropagationFinalizer(acc.GetFinalizers(), opts)
		pending := len(finalizers) > 0 || (res.reg.Finalizing != nil && res.reg.Finalizing(cur))
		if pending {
			if acc.GetDeletionTimestamp() != nil {
				return cur, false, nil
			}
			next := cur.DeepCopyObject()
			nacc, _ := meta.Accessor(next)
			now := metav1.Now()
			zero := int64(0)
			nacc.SetDeletionTimestamp(&now)
			nacc.SetDeletionGracePeriodSeconds(&zero)
			nacc.SetFinalizers(finalizers)
			if res.reg.PrepareForDelete != nil {
				res.reg.PrepareForDelete(next)
			}
			if dryRun {
				return next, false, nil
			}
			data, err := res.encode(next)
			if err != nil {
				return nil, false, err
			}
			rev, err := res.s.store.Update(ctx, key, data, kv.ModRevision)
			if errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrNotFound) {
				continue // the next read finds the current object, or none
			}
			if err != nil {
				return nil, false, err
			}
			nacc.SetResourceVersion(formatRV(rev))
			return next, false, nil
		}
		if dryRun {
			return cur, true, nil
		}
		_, _, err = res.s.store.Delete(ctx, key, kv.ModRevision)
		if errors.Is(err, storage.ErrConflict) {
			continue
		}
		if errors.Is(err, storage.ErrNotFound) {
			return nil, false, res.notFound(name)
		}
		if err != nil {
			return nil, false, err
		}
		if h := res.reg.Hooks.AfterDelete; h != nil {
			h(ctx, cur)
		}
		return cur, true, nil
	}
	return nil, false, res.conflict(name)
}

func (res *resource) handleDeleteCollection(w http.ResponseWriter, r *http.Request, info requestInfo) error {
	f, ok := negotiate(r, true)
	if !ok {
		return notAcceptable(r.Header.Get("Accept"))
	}
	opts, err := res.s.parseDeleteOptions(r)
	if err != nil {
		return err
	}
	q := r.URL.Query()
	sel, err := res.parseSelection(q)
	if err != nil {
		return err
	}
	lq := map[string][]string{}
	result, err := res.list(r.Context(), info.Namespace, lq, sel)
	if err != nil {
		return err
	}
	var deleted []runtime.Object
	adm := res.s.admissionFor(r, info)
	for _, obj := range result.items {
		acc, _ := meta.Accessor(obj)
		out, _, err := res.deleteObjectAdmitted(r.Context(), acc.GetNamespace(), acc.GetName(), opts, adm)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return err
		}
		deleted = append(deleted, out)
	}
	list := res.reg.NewList()
	if err := meta.SetList(list, deleted); err != nil {
		return err
	}
	return res.respond(w, r, f, http.StatusOK, list, nil)
}

// Finalizers the garbage collector acts on.
const (
	FinalizerOrphan     = metav1.FinalizerOrphanDependents
	FinalizerForeground = metav1.FinalizerDeleteDependents
)

// withPropagationFinalizer adds the finalizer a propagation policy asks for
// (the garbage collector removes it once dependents are handled).
func withPropagationFinalizer(finalizers []string, opts metav1.DeleteOptions) []string {
	want := ""
	switch {
	case opts.PropagationPolicy != nil && *opts.PropagationPolicy == metav1.DeletePropagationOrphan,
		opts.PropagationPolicy == nil && opts.OrphanDependents != nil && *opts.OrphanDependents:
		want = FinalizerOrphan
	case opts.PropagationPolicy != nil && *opts.PropagationPolicy == metav1.DeletePropagationForeground:
		want = FinalizerForeground
	}
	out := append([]string(nil), finalizers...)
	if want == "" {
		return out
	}
	for _, f := range out {
		if f == want {
			return out
		}
	}
	return append(out, want)
}

// markDeleted starts (or shortens) a graceful deletion: the object stays
// with deletionTimestamp = now + grace until its owner finalises it. It
// returns errRetry when the object changed since kv was read.
func (res *resource) markDeleted(ctx context.Context, kv storage.KV, cur runtime.Object, grace int64, opts metav1.DeleteOptions, dryRun bool) (runtime.Object, bool, error) {
	acc, _ := meta.Accessor(cur)
	if old := acc.GetDeletionGracePeriodSeconds(); old != nil && *old <= grace {
		return cur, false, nil
	}
	next := cur.DeepCopyObject()
	nacc, _ := meta.Accessor(next)
	ts := metav1.NewTime(metav1.Now().Add(time.Duration(grace) * time.Second))
	nacc.SetDeletionTimestamp(&ts)
	nacc.SetDeletionGracePeriodSeconds(&grace)
	nacc.SetFinalizers(withPropagationFinalizer(nacc.GetFinalizers(), opts))
	if dryRun {
		return next, false, nil
	}
	data, err := res.encode(next)
	if err != nil {
		return nil, false, err
	}
	rev, err := res.s.store.Update(ctx, kv.Key, data, kv.ModRevision)
	if errors.Is(err, storage.ErrConflict) || errors.Is(err, storage.ErrNotFound) {
		return nil, false, errRetry
	}
	if err != nil {
		return nil, false, err
	}
	nacc.SetResourceVersion(formatRV(rev))
	return next, false, nil
}

// unsafeDelete removes an undecodable object from the store as it is.
func (res *resource) unsafeDelete(ctx context.Context, kv storage.KV, name string, dryRun bool) (runtime.Object, bool, error) {
	obj := res.reg.New()
	if acc, err := meta.Accessor(obj); err == nil {
		acc.SetName(name)
	}
	if dryRun {
		return obj, true, nil
	}
	if _, _, err := res.s.store.Delete(ctx, kv.Key, kv.ModRevision); err != nil {
		if errors.Is(err, storage.ErrConflict) {
			return nil, false, apierrors.NewConflict(res.reg.GroupResource(), name, fmt.Errorf("the object changed while it was being deleted; try again"))
		}
		return nil, false, err
	}
	res.s.log.Warn("unsafe deletion of an undecodable object", "key", kv.Key)
	return obj, true, nil
}
