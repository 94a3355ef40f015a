package configmap

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/registry/registrytest"
)

func cm(data map[string]string, binary map[string][]byte) *corev1.ConfigMap {
	return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c", Namespace: "default"}, Data: data, BinaryData: binary}
}

func TestValidate(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name string
		obj  *corev1.ConfigMap
		want []string
	}{
		{"empty", cm(nil, nil), nil},
		{"good keys", cm(map[string]string{"app.properties": "a=1", "KEY_1": "x", "-dash": ""}, map[string][]byte{"blob.bin": {0, 1}}), nil},
		{"key with a slash", cm(map[string]string{"a/b": "x"}, nil), []string{"data[a/b]: Invalid value"}},
		{"key ..", cm(map[string]string{"..": "x"}, nil), []string{"data[..]: Invalid value"}},
		{"binary key with a space", cm(nil, map[string][]byte{"a b": {1}}), []string{"binaryData[a b]: Invalid value"}},
		{"key in both data and binaryData", cm(map[string]string{"k": "x"}, map[string][]byte{"k": {1}}), []string{"data[k]: Invalid value"}},
		{"exactly 1 MiB", cm(map[string]string{"k": strings.Repeat("x", MaxSize-1)}, nil), nil},
		{"over 1 MiB over both maps", cm(map[string]string{"k": strings.Repeat("x", MaxSize/2)}, map[string][]byte{"b": make([]byte, MaxSize/2)}),
			[]string{"[]: Too long"}}, // the whole object, as kube-apiserver reports it
	} {
		t.Run(tc.name, func(t *testing.T) {
			errs := r.Validate(tc.obj)
			registrytest.Errors(t, errs, tc.want...)
			// An update is validated the same way.
			registrytest.Errors(t, r.ValidateUpdate(tc.obj, cm(nil, nil)), tc.want...)
		})
	}
}

func TestValidateUpdateImmutable(t *testing.T) {
	r := Resource()
	immutable := func(data map[string]string, flag *bool) *corev1.ConfigMap {
		c := cm(data, nil)
		c.Immutable = flag
		return c
	}
	for _, tc := range []struct {
		name     string
		old, obj *corev1.ConfigMap
		want     []string
	}{
		{"mutable: data changes", immutable(map[string]string{"a": "1"}, nil), immutable(map[string]string{"a": "2"}, nil), nil},
		{"made immutable", immutable(map[string]string{"a": "1"}, nil), immutable(map[string]string{"a": "1"}, ptr.To(true)), nil},
		{"immutable: metadata changes only", immutable(map[string]string{"a": "1"}, ptr.To(true)), immutable(map[string]string{"a": "1"}, ptr.To(true)), nil},
		{"immutable: data changes", immutable(map[string]string{"a": "1"}, ptr.To(true)), immutable(map[string]string{"a": "2"}, ptr.To(true)),
			[]string{"data: Forbidden"}},
		{"immutable: key added", immutable(map[string]string{"a": "1"}, ptr.To(true)), immutable(map[string]string{"a": "1", "b": "2"}, ptr.To(true)),
			[]string{"data: Forbidden"}},
		{"immutable: flag cleared", immutable(nil, ptr.To(true)), immutable(nil, nil), []string{"immutable: Forbidden"}},
		{"immutable: flag set false", immutable(nil, ptr.To(true)), immutable(nil, ptr.To(false)), []string{"immutable: Forbidden"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			registrytest.Errors(t, r.ValidateUpdate(tc.obj, tc.old), tc.want...)
		})
	}
	// binaryData is data too.
	old, obj := cm(nil, map[string][]byte{"b": {1}}), cm(nil, map[string][]byte{"b": {2}})
	old.Immutable, obj.Immutable = ptr.To(true), ptr.To(true)
	registrytest.Errors(t, r.ValidateUpdate(obj, old), []string{"data: Forbidden"}...)
}

func TestRow(t *testing.T) {
	row, err := Resource().Row(cm(map[string]string{"a": "1", "b": "2"}, map[string][]byte{"c": {1}}))
	if err != nil || row[0] != "c" || row[1] != int64(3) {
		t.Fatalf("row %v (%v), want name c and 3 entries", row, err)
	}
}
