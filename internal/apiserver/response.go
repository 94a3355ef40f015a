package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var coreV1 = schema.GroupVersion{Version: "v1"}

// setKind stamps apiVersion and kind on an object, preferring gv.
func (s *Server) setKind(obj runtime.Object, gv schema.GroupVersion) {
	kinds, _, err := s.codecs.scheme.ObjectKinds(obj)
	if err != nil || len(kinds) == 0 {
		return
	}
	chosen := kinds[0]
	for _, k := range kinds {
		if k.GroupVersion() == gv {
			chosen = k
			break
		}
	}
	obj.GetObjectKind().SetGroupVersionKind(chosen)
}

// writeObject encodes obj in the negotiated format.
func (s *Server) writeObject(w http.ResponseWriter, f outputFormat, code int, obj runtime.Object) {
	if obj.GetObjectKind().GroupVersionKind().Empty() {
		gv := coreV1
		if f.target != targetObject {
			gv = metav1.SchemeGroupVersion
		}
		s.setKind(obj, gv)
	}
	enc := s.codecs.encoder(f)
	w.Header().Set("Content-Type", f.contentType())
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	if err := enc.Encode(obj, w); err != nil {
		s.log.Debug("writing response failed", "err", err)
	}
}

// writeJSON writes a plain JSON value (discovery, version).
func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// respond is the tail of every handler that answers with the object (or
// list) it read or wrote: convert it into what the client negotiated (the
// object, a Table or PartialObjectMetadata), then write it with the
// request's warnings.
func (res *resource) respond(w http.ResponseWriter, r *http.Request, f outputFormat, code int, obj runtime.Object, warnings []string) error {
	out, err := res.transform(r, f, obj, meta.IsListType(obj))
	if err != nil {
		return err
	}
	writeWarnings(w, warnings)
	res.s.writeObject(w, f, code, out)
	return nil
}

// writeWarnings adds a Warning header (code 299) for each message.
func writeWarnings(w http.ResponseWriter, warnings []string) {
	for _, msg := range warnings {
		w.Header().Add("Warning", fmt.Sprintf("299 - %q", msg))
	}
}
