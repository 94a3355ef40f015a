package apiserver

import (
	"encoding/json"
	"net/http"

	autoscalingv1 "k8s.io/api/autoscaling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/apiserver/admission"
)

// scaleOf builds the autoscaling/v1 Scale of an object.
func (res *resource) scaleOf(obj runtime.Object) *autoscalingv1.Scale {
	acc, _ := meta.Accessor(obj)
	spec, status, selector := res.reg.Scale.Get(obj)
	sc := &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{
			Name:              acc.GetName(),
			Namespace:         acc.GetNamespace(),
			UID:               acc.GetUID(),
			ResourceVersion:   acc.GetResourceVersion(),
			CreationTimestamp: acc.GetCreationTimestamp(),
		},
		Spec:   autoscalingv1.ScaleSpec{Replicas: spec},
		Status: autoscalingv1.ScaleStatus{Replicas: status, Selector: selector},
	}
	sc.SetGroupVersionKind(autoscalingV1Scale)
	return sc
}

// handleScale serves get, update and patch of the scale subresource.
func (res *resource) handleScale(w http.ResponseWriter, r *http.Request, info requestInfo) error {
	f, ok := negotiate(r, false)
	if !ok {
		return notAcceptable(r.Header.Get("Accept"))
	}
	if info.Verb == "get" {
		obj, err := res.get(r.Context(), info.Namespace, info.Name)
		if err != nil {
			return err
		}
		res.s.writeObject(w, f, http.StatusOK, res.scaleOf(obj))
		return nil
	}
	if info.Verb != "update" && info.Verb != "patch" {
		return methodNotSupported(res.reg.GroupResource(), info.Verb)
	}
	opts, err := parseWriteOptions(r)
	if err != nil {
		return err
	}
	body, err := readBody(r)
	if err != nil {
		return err
	}
	pt := requestMediaType(r)
	out, _, err := res.updateObject(r.Context(), info.Namespace, info.Name, modeMain, opts, func(cur runtime.Object) (runtime.Object, error) {
		sc := res.scaleOf(cur)
		want := &autoscalingv1.Scale{}
		if info.Verb == "update" {
			if _, err := res.decodeBody(r, body, opts, want, autoscalingV1Scale); err != nil {
				return nil, err
			}
		} else {
			if pt == mediaApplyPatchYAML {
				return nil, unsupportedMediaType(pt)
			}
			doc, _ := json.Marshal(sc)
			patched, err := applyPatch(pt, doc, body, &autoscalingv1.Scale{})
			if err != nil {
				return nil, err
			}
			if err := json.Unmarshal(patched, want); err != nil {
				return nil, badRequest("Scale in version \"v1\" cannot be handled as a Scale: %v", err)
			}
		}
		admitted, err := res.admitSubresource(r.Context(), res.s.admissionFor(r, info), admission.Update, autoscalingV1Scale, info.Namespace, info.Name, want, sc, opts)
		if err != nil {
			return nil, err
		}
		want = admitted.(*autoscalingv1.Scale)
		if want.Spec.Replicas < 0 {
			return nil, apierrors.NewInvalid(autoscalingV1Scale.GroupKind(), info.Name,
				field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), want.Spec.Replicas, "must be greater than or equal to 0")})
		}
		acc, _ := meta.Accessor(cur)
		if want.ResourceVersion != "" && want.ResourceVersion != acc.GetResourceVersion() {
			return nil, res.conflict(info.Name)
		}
		res.reg.Scale.Set(cur, want.Spec.Replicas)
		return cur, nil
	}, nil)
	if err != nil {
		return err
	}
	res.s.writeObject(w, f, http.StatusOK, res.scaleOf(out))
	return nil
}
