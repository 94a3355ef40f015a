package apiserver

import (
	"encoding/json"
	"fmt"
	"net/http"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
	"sigs.k8s.io/yaml"
)

func (res *resource) handlePatch(w http.ResponseWriter, r *http.Request, info requestInfo) error {
	f, opts, patch, err := writeRequest(r, true)
	if err != nil {
		return err
	}
	pt := requestMediaType(r)
	switch pt {
	case mediaJSONPatch, mediaMergePatch, mediaStrategicPatch, mediaApplyPatchYAML:
	default:
		return unsupportedMediaType(pt)
	}
	if pt == mediaStrategicPatch && res.custom != nil {
		return strategicPatchUnsupported()
	}
	mode := modeMain
	sub := ""
	if info.Subresource == "status" {
		mode, sub = modeStatus, "status"
	}
	opts.admission = res.s.admissionFor(r, info)
	var warnings []string
	var fn updateFunc
	var create func() (runtime.Object, error)
	if pt == mediaApplyPatchYAML {
		if r.URL.Query().Get("fieldManager") == "" {
			return badRequest("PATCH with content type %s requires the fieldManager parameter", pt)
		}
		applied, err := res.decodeApply(patch)
		if err != nil {
			return err
		}
		fm := res.fieldManagers[sub]
		fn = func(cur runtime.Object) (runtime.Object, error) {
			return res.s.applyFields(fm, cur, applied.DeepCopy(), opts)
		}
		if mode == modeMain {
			create = func() (runtime.Object, error) {
				empty := res.reg.New()
				acc, _ := meta.Accessor(empty)
				acc.SetName(info.Name)
				acc.SetNamespace(info.Namespace)
				obj, err := res.s.applyFields(fm, empty, applied.DeepCopy(), opts)
				if err != nil {
					return nil, err
				}
				createOpts := opts
				createOpts.managedFieldsDone = true
				return res.createObject(r.Context(), info.Namespace, obj, createOpts)
			}
		}
		opts.managedFieldsDone = true
	} else {
		fn = func(cur runtime.Object) (runtime.Object, error) {
			cur.GetObjectKind().SetGroupVersionKind(res.gvk)
			curJSON, err := json.Marshal(cur)
			if err != nil {
				return nil, err
			}
			patched, err := applyPatch(pt, curJSON, patch, res.reg.New())
			if err != nil {
				return nil, err
			}
			obj := res.reg.New()
			warnings, err = res.decodePatched(patched, opts, obj)
			if err != nil {
				return nil, err
			}
			return obj, nil
		}
	}
	out, created, err := res.updateObject(r.Context(), info.Namespace, info.Name, mode, opts, fn, create)
	if err != nil {
		return err
	}
	code := http.StatusOK
	if created {
		code = http.StatusCreated
	}
	return res.respond(w, r, f, code, out, warnings)
}

// applyPatch applies a JSON, merge or strategic merge patch to a JSON document.
func applyPatch(pt string, doc, patch []byte, schemaObj runtime.Object) ([]byte, error) {
	switch pt {
	case mediaJSONPatch:
		p, err := jsonpatch.DecodePatch(patch)
		if err != nil {
			return nil, badRequest("the JSON patch could not be decoded: %v", err)
		}
		if err := checkJSONPatchLength(p); err != nil {
			return nil, err
		}
		out, err := p.Apply(doc)
		if err != nil {
			return nil, &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnprocessableEntity,
				Reason: metav1.StatusReasonInvalid, Message: fmt.Sprintf("the JSON patch could not be applied: %v", err)}}
		}
		return out, nil
	case mediaMergePatch:
		out, err := jsonpatch.MergePatch(doc, patch)
		if err != nil {
			return nil, badRequest("the merge patch could not be applied: %v", err)
		}
		return out, nil
	case mediaStrategicPatch:
		out, err := strategicpatch.StrategicMergePatch(doc, patch, schemaObj)
		if err != nil {
			return nil, badRequest("the strategic merge patch could not be applied: %v", err)
		}
		return out, nil
	}
	return nil, unsupportedMediaType(pt)
}

// decodePatched decodes a patched JSON document with field validation.
func (res *resource) decodePatched(data []byte, opts writeOptions, into runtime.Object) ([]string, error) {
	if u, ok := into.(*unstructured.Unstructured); ok && res.custom != nil {
		return res.custom.decodePatched(res, data, opts, u)
	}
	dec := res.s.codecs.json
	if opts.fieldValidation != "Ignore" {
		dec = res.s.codecs.jsonStrict
	}
	want := res.gvk
	obj, gvk, err := dec.Decode(data, &want, into)
	var warnings []string
	if err != nil {
		if !runtime.IsStrictDecodingError(err) || obj == nil {
			return nil, badRequest("%s in version %q cannot be handled as a %s: %v", want.Kind, want.Version, want.Kind, err)
		}
		if opts.fieldValidation == "Strict" {
			return nil, badRequest("%s in version %q cannot be handled as a %s: %v", want.Kind, want.Version, want.Kind, err)
		}
		warnings = append(warnings, err.Error())
	}
	if gvk != nil && *gvk != want {
		return nil, badRequest("the patch changed the object's apiVersion or kind to %s; that is not allowed", gvk)
	}
	return warnings, nil
}

// decodeApply reads a server-side apply body (YAML or JSON).
func (res *resource) decodeApply(patch []byte) (*unstructured.Unstructured, error) {
	js, err := yaml.YAMLToJSON(patch)
	if err != nil {
		return nil, badRequest("error decoding YAML: %v", err)
	}
	u := &unstructured.Unstructured{}
	if err := u.UnmarshalJSON(js); err != nil {
		return nil, badRequest("error decoding apply configuration: %v", err)
	}
	gvk := u.GroupVersionKind()
	if gvk != res.gvk {
		return nil, badRequest("the apply configuration's apiVersion and kind (%s) must be %s", gvk, res.gvk)
	}
	if u.GetManagedFields() != nil {
		return nil, badRequest("metadata.managedFields must be nil")
	}
	return u, nil
}
