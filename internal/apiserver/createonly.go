package apiserver

// Create-only kinds: objects that are posted, answered and never stored
// (the review APIs). A registry.Resource with CreateOnly set is one.

import (
	"net/http"

	"k8s.io/apimachinery/pkg/api/meta"
)

// serveCreateOnly answers a request to a create-only kind: POST to the
// collection is the only verb.
func (res *resource) serveCreateOnly(w http.ResponseWriter, r *http.Request, info requestInfo) error {
	if info.Subresource != "" || info.Name != "" {
		return notFoundResource()
	}
	if info.Verb != "create" {
		return methodNotSupported(res.reg.GroupResource(), info.Verb)
	}
	f, opts, body, err := writeRequest(r, false)
	if err != nil {
		return err
	}
	obj := res.reg.New()
	warnings, err := res.decodeBody(r, body, opts, obj, res.gvk)
	if err != nil {
		return err
	}
	if acc, err := meta.Accessor(obj); err == nil && res.reg.Namespaced {
		if acc.GetNamespace() != "" && acc.GetNamespace() != info.Namespace {
			return badRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
		acc.SetNamespace(info.Namespace)
	}
	out, err := res.reg.CreateOnly(r.Context(), obj)
	if err != nil {
		return err
	}
	out.GetObjectKind().SetGroupVersionKind(res.gvk)
	writeWarnings(w, warnings)
	res.s.writeObject(w, f, http.StatusCreated, out)
	return nil
}
