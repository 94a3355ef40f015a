package apiserver

import (
	"net/http"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// handleBinding serves POST pods/<name>/binding: assigns the pod to a node.
func (res *resource) handleBinding(w http.ResponseWriter, r *http.Request, info requestInfo) error {
	f, opts, body, err := writeRequest(r, false)
	if err != nil {
		return err
	}
	b := &corev1.Binding{}
	if _, err := res.decodeBody(r, body, opts, b, coreV1.WithKind("Binding")); err != nil {
		return err
	}
	if b.Target.Name == "" {
		return apierrors.NewInvalid(schema.GroupKind{Kind: "Binding"}, info.Name, nil)
	}
	_, _, err = res.updateObject(r.Context(), info.Namespace, info.Name, modeSubresource, opts, func(cur runtime.Object) (runtime.Object, error) {
		out, err := res.reg.Bind(cur, b.Target.Name)
		if err != nil {
			return nil, apierrors.NewConflict(res.reg.GroupResource(), info.Name, err)
		}
		return out, nil
	}, nil)
	if err != nil {
		return err
	}
	res.s.writeObject(w, f, http.StatusCreated, &metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusCreated})
	return nil
}
