package apiserver

import (
	"encoding/json"
	"net/http"

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
