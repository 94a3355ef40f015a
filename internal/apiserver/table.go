package apiserver

import (
	"fmt"
	"net/http"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

var defaultColumns = []metav1.TableColumnDefinition{
	{Name: "Name", Type: "string", Format: "name", Description: metav1.ObjectMeta{}.SwaggerDoc()["name"]},
	{Name: "Created At", Type: "date", Description: metav1.ObjectMeta{}.SwaggerDoc()["creationTimestamp"]},
}

// transform converts an object or list into what the client negotiated:
// the object itself, a Table, or PartialObjectMetadata(List).
func (res *resource) transform(r *http.Request, f outputFormat, obj runtime.Object, isList bool) (runtime.Object, error) {
	switch f.target {
	case targetTable:
		return res.table(r, obj, isList, true)
	case targetPartialMetadata:
		return res.partialMetadata(obj, isList)
	}
	return obj, nil
}

func (res *resource) partialMetadata(obj runtime.Object, isList bool) (runtime.Object, error) {
	one := func(o runtime.Object) (*metav1.PartialObjectMetadata, error) {
		om, ok := unstructuredMeta(o)
		if !ok {
			ma, ok := o.(metav1.ObjectMetaAccessor)
			if !ok {
				return nil, fmt.Errorf("%T has no object metadata", o)
			}
			if om, ok = ma.GetObjectMeta().(*metav1.ObjectMeta); !ok {
				return nil, fmt.Errorf("%T has no object metadata", o)
			}
		}
		pm := &metav1.PartialObjectMetadata{}
		pm.ObjectMeta = *om.DeepCopy()
		pm.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("PartialObjectMetadata"))
		return pm, nil
	}
	if !isList {
		return one(obj)
	}
	items, err := meta.ExtractList(obj)
	if err != nil {
		return nil, err
	}
	lm, _ := meta.ListAccessor(obj)
	list := &metav1.PartialObjectMetadataList{}
	list.ResourceVersion = lm.GetResourceVersion()
	list.Continue = lm.GetContinue()
	list.RemainingItemCount = lm.GetRemainingItemCount()
	for _, it := range items {
		pm, err := one(it)
		if err != nil {
			return nil, err
		}
		list.Items = append(list.Items, *pm)
	}
	list.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("PartialObjectMetadataList"))
	return list, nil
}

// table builds a meta.k8s.io/v1 Table; withHeaders=false leaves out the
// column definitions (watch events after the first).
func (res *resource) table(r *http.Request, obj runtime.Object, isList, withHeaders bool) (*metav1.Table, error) {
	include := metav1.IncludeMetadata
	if v := r.URL.Query().Get("includeObject"); v != "" {
		include = metav1.IncludeObjectPolicy(v)
	}
	var items []runtime.Object
	t := &metav1.Table{}
	if isList {
		var err error
		items, err = meta.ExtractList(obj)
		if err != nil {
			return nil, err
		}
		lm, _ := meta.ListAccessor(obj)
		t.ResourceVersion = lm.GetResourceVersion()
		t.Continue = lm.GetContinue()
		t.RemainingItemCount = lm.GetRemainingItemCount()
	} else {
		items = []runtime.Object{obj}
		if acc, err := meta.Accessor(obj); err == nil {
			t.ResourceVersion = acc.GetResourceVersion()
		}
	}
	if withHeaders {
		if res.reg.Columns != nil {
			t.ColumnDefinitions = res.reg.Columns
		} else {
			t.ColumnDefinitions = defaultColumns
		}
	}
	t.Rows = make([]metav1.TableRow, 0, len(items))
	for _, it := range items {
		acc, err := meta.Accessor(it)
		if err != nil {
			return nil, err
		}
		var cells []interface{}
		if res.reg.Row != nil {
			cells, err = res.reg.Row(it)
			if err != nil {
				return nil, err
			}
		} else {
			cells = []interface{}{acc.GetName(), acc.GetCreationTimestamp().UTC().Format("2006-01-02T15:04:05Z")}
		}
		row := metav1.TableRow{Cells: cells}
		switch include {
		case metav1.IncludeObject:
			it.GetObjectKind().SetGroupVersionKind(res.gvk)
			row.Object.Object = it
		case metav1.IncludeMetadata:
			pm, err := res.partialMetadata(it, false)
			if err != nil {
				return nil, err
			}
			row.Object.Object = pm
		}
		t.Rows = append(t.Rows, row)
	}
	t.SetGroupVersionKind(metav1.SchemeGroupVersion.WithKind("Table"))
	return t, nil
}
