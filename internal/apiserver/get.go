package apiserver

// Reads: get and list (selectors, pagination, resourceVersion semantics).

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/storage"
)

func (res *resource) handleGet(w http.ResponseWriter, r *http.Request, info requestInfo) error {
	f, ok := negotiate(r, true)
	if !ok {
		return notAcceptable(r.Header.Get("Accept"))
	}
	if err := checkResourceVersion("resourceVersion", r.URL.Query().Get("resourceVersion")); err != nil {
		return err
	}
	obj, err := res.get(r.Context(), info.Namespace, info.Name)
	if err != nil {
		return err
	}
	return res.respond(w, r, f, http.StatusOK, obj, nil)
}

// get reads one object.
func (res *resource) get(ctx context.Context, ns, name string) (runtime.Object, error) {
	kv, err := res.s.store.Get(ctx, res.key(ns, name))
	if errors.Is(err, storage.ErrNotFound) {
		return nil, res.notFound(name)
	}
	if err != nil {
		return nil, err
	}
	return res.decode(kv)
}

// selection is a parsed label and field selector.
type selection struct {
	labels labels.Selector
	fields fields.Selector
}

func (sel selection) empty() bool { return sel.labels.Empty() && sel.fields.Empty() }

func (res *resource) parseSelection(q map[string][]string) (selection, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	ls, err := labels.Parse(get("labelSelector"))
	if err != nil {
		return selection{}, badRequest("unable to parse requirement: %v", err)
	}
	fs, err := fields.ParseSelector(get("fieldSelector"))
	if err != nil {
		return selection{}, badRequest("invalid field selector: %v", err)
	}
	for _, req := range fs.Requirements() {
		if _, ok := res.selectableFields[req.Field]; !ok {
			return selection{}, badRequest("field label not supported: %s", req.Field)
		}
	}
	return selection{labels: ls, fields: fs}, nil
}

func (res *resource) fieldSet(obj runtime.Object) fields.Set {
	acc, _ := meta.Accessor(obj)
	set := fields.Set{"metadata.name": acc.GetName()}
	if res.reg.Namespaced {
		set["metadata.namespace"] = acc.GetNamespace()
	}
	if res.reg.Fields != nil {
		for k, v := range res.reg.Fields(obj) {
			set[k] = v
		}
	}
	return set
}

func (res *resource) matches(sel selection, obj runtime.Object) bool {
	if sel.empty() {
		return true
	}
	acc, err := meta.Accessor(obj)
	if err != nil {
		return false
	}
	if !sel.labels.Matches(labels.Set(acc.GetLabels())) {
		return false
	}
	return sel.fields.Empty() || sel.fields.Matches(res.fieldSet(obj))
}

// continueToken is the opaque "continue" of a paginated list.
type continueToken struct {
	APIVersion string `json:"v"`
	RV         int64  `json:"rv"`
	Start      string `json:"start"`
}

func encodeContinue(rv int64, start string) string {
	b, _ := json.Marshal(continueToken{APIVersion: "meta.k8s.io/v1", RV: rv, Start: start})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeContinue(s string) (continueToken, error) {
	var tok continueToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return tok, err
	}
	if err := json.Unmarshal(b, &tok); err != nil {
		return tok, err
	}
	if tok.APIVersion != "meta.k8s.io/v1" || tok.RV <= 0 {
		return tok, errors.New("unknown continue token version")
	}
	return tok, nil
}

func invalidList(errs field.ErrorList) error {
	return apierrors.NewInvalid(schema.GroupKind{Group: "meta.k8s.io", Kind: "ListOptions"}, "", errs)
}

func tooLargeRV(want, cur int64) error {
	err := apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %d, current: %d", want, cur), 1)
	err.ErrStatus.Details.Causes = []metav1.StatusCause{{Type: metav1.CauseTypeResourceVersionTooLarge, Message: "Too large resource version"}}
	return err
}

// waitForRevision waits up to 3s for the store to reach rev (a client that
// read a newer version from another server would wait here; with one store
// it only happens for bogus versions).
func (s *Server) waitForRevision(ctx context.Context, rev int64) error {
	deadline := time.Now().Add(3 * time.Second)
	for s.store.Revision() < rev {
		if time.Now().After(deadline) {
			return tooLargeRV(rev, s.store.Revision())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	return nil
}

func parseRV(s string) (int64, error) {
	if err := checkResourceVersion("resourceVersion", s); err != nil {
		return 0, err
	}
	rv, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, badRequest("resourceVersion: Invalid value: %q: %v", s, err)
	}
	return rv, nil
}

// listResult is a filtered page of objects.
type listResult struct {
	items     []runtime.Object
	rev       int64
	cont      string
	remaining *int64
	// warnings name objects skipped because they cannot be decoded.
	warnings []string
	// entries, when set, are the cached entries of items (same index; nil
	// where an item is not cached): their encodings are reused.
	entries []*cacheEntry
}

// list runs a list request's options against the store. The objects are
// the caller's own (not shared with the object cache).
func (res *resource) list(ctx context.Context, ns string, q map[string][]string, sel selection) (listResult, error) {
	return res.listStore(ctx, ns, q, sel, nil)
}

// listStore is list; with rc, objects the cache holds at the same
// revision are taken from it (shared: read only) instead of decoded.
func (res *resource) listStore(ctx context.Context, ns string, q map[string][]string, sel selection, rc *resCache) (listResult, error) {
	get := func(k string) string {
		if v := q[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	var limit int64
	if l := get("limit"); l != "" {
		n, err := strconv.ParseInt(l, 10, 64)
		if err != nil || n < 0 {
			return listResult{}, badRequest("invalid limit %q", l)
		}
		limit = n
	}
	rvParam, match, cont := get("resourceVersion"), get("resourceVersionMatch"), get("continue")
	prefix := res.listPrefix(ns)
	var atRev int64
	start := ""
	switch {
	case cont != "":
		if rvParam != "" && rvParam != "0" {
			return listResult{}, invalidList(field.ErrorList{field.Forbidden(field.NewPath("resourceVersion"), "specifying resource version is not allowed when using continue")})
		}
		tok, err := decodeContinue(cont)
		if err != nil {
			return listResult{}, badRequest("continue key is not valid: %v", err)
		}
		atRev, start = tok.RV, prefix+tok.Start
	case match != "" && rvParam == "":
		return listResult{}, invalidList(field.ErrorList{field.Forbidden(field.NewPath("resourceVersionMatch"), "resourceVersionMatch is forbidden unless resourceVersion is provided")})
	case match == "Exact":
		rv, err := parseRV(rvParam)
		if err != nil {
			return listResult{}, err
		}
		if rv == 0 {
			return listResult{}, invalidList(field.ErrorList{field.Forbidden(field.NewPath("resourceVersionMatch"), "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"")})
		}
		atRev = rv
	case match == "" || match == "NotOlderThan":
		if rvParam != "" {
			rv, err := parseRV(rvParam)
			if err != nil {
				return listResult{}, err
			}
			if err := res.s.waitForRevision(ctx, rv); err != nil {
				return listResult{}, err
			}
		}
	default:
		return listResult{}, invalidList(field.ErrorList{field.NotSupported(field.NewPath("resourceVersionMatch"), match, []string{"Exact", "NotOlderThan"})})
	}

	var out listResult
	for {
		page, err := res.s.store.List(ctx, prefix, storage.ListOptions{Limit: pageSize(limit, len(out.items)), StartKey: start, Revision: atRev})
		if err != nil {
			switch {
			case errors.Is(err, storage.ErrCompacted) && cont != "":
				return listResult{}, apierrors.NewResourceExpired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
			case errors.Is(err, storage.ErrCompacted):
				return listResult{}, apierrors.NewResourceExpired(fmt.Sprintf("too old resource version: %d (%d)", atRev, res.s.store.CompactedRevision()))
			case errors.Is(err, storage.ErrFutureRevision):
				return listResult{}, tooLargeRV(atRev, res.s.store.Revision())
			}
			return listResult{}, err
		}
		atRev = page.Revision
		out.rev = page.Revision
		last := ""
		consumed := 0
		var cached []*cacheEntry
		if rc != nil {
			cached = res.s.cache.lookup(rc, page.Items)
		}
		for i, kv := range page.Items {
			if limit > 0 && int64(len(out.items)) >= limit {
				break
			}
			last = kv.Key
			consumed++
			if cached != nil && cached[i] != nil {
				if res.matches(sel, cached[i].obj) {
					out.items = append(out.items, cached[i].obj)
					out.entries = append(out.entries, cached[i])
				}
				continue
			}
			obj, err := res.decode(kv)
			var corrupt *corruptObjectError
			if errors.As(err, &corrupt) {
				res.s.log.Error("list: skipping an object that cannot be decoded", "key", kv.Key, "err", err)
				out.warnings = append(out.warnings, corrupt.ErrStatus.Message)
				continue
			}
			if err != nil {
				return listResult{}, err
			}
			if res.matches(sel, obj) {
				out.items = append(out.items, obj)
				if rc != nil {
					out.entries = append(out.entries, nil)
				}
			}
		}
		leftInPage := int64(len(page.Items) - consumed)
		if limit > 0 && int64(len(out.items)) >= limit && (page.More || leftInPage > 0) {
			out.cont = encodeContinue(page.Revision, strings.TrimPrefix(last, prefix)+"\x00")
			if sel.empty() {
				n := leftInPage
				if page.More {
					n += page.Remaining
				}
				out.remaining = &n
			}
			return out, nil
		}
		if !page.More || limit == 0 {
			return out, nil
		}
		start = last + "\x00"
	}
}

func pageSize(limit int64, have int) int64 {
	if limit == 0 {
		return 0
	}
	n := limit - int64(have)
	if n < 100 {
		n = 100
	}
	return n
}

func (res *resource) handleList(w http.ResponseWriter, r *http.Request, info requestInfo) error {
	f, ok := negotiate(r, true)
	if !ok {
		return notAcceptable(r.Header.Get("Accept"))
	}
	q := r.URL.Query()
	sel, err := res.parseSelection(q)
	if err != nil {
		return err
	}
	result, err := res.serveList(r.Context(), info.Namespace, q, sel)
	if err != nil {
		return err
	}
	list := res.reg.NewList()
	lm, err := meta.ListAccessor(list)
	if err != nil {
		return err
	}
	lm.SetResourceVersion(formatRV(result.rev))
	lm.SetContinue(result.cont)
	lm.SetRemainingItemCount(result.remaining)
	if f.mediaType == mediaJSON && f.target == targetObject && !f.pretty && res.custom == nil && len(result.entries) == len(result.items) {
		return res.writeListJSON(w, list, result)
	}
	if f.mediaType == mediaProtobuf && f.target == targetObject && res.custom == nil && len(result.entries) == len(result.items) {
		return res.writeListProto(w, list, result)
	}
	if err := meta.SetList(list, result.items); err != nil {
		return err
	}
	return res.respond(w, r, f, http.StatusOK, list, result.warnings)
}
