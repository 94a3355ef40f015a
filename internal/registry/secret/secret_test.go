package secret

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/registry/registrytest"
)

func secret(data map[string]string) *corev1.Secret {
	s := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "default"}}
	for k, v := range data {
		if s.Data == nil {
			s.Data = map[string][]byte{}
		}
		s.Data[k] = []byte(v)
	}
	return s
}

func TestDefault(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name     string
		in       *corev1.Secret
		wantType corev1.SecretType
		wantData map[string]string
	}{
		{"type defaults to Opaque", secret(nil), corev1.SecretTypeOpaque, nil},
		{"type kept", func() *corev1.Secret { s := secret(nil); s.Type = corev1.SecretTypeTLS; return s }(), corev1.SecretTypeTLS, nil},
		{"stringData merged into data", func() *corev1.Secret {
			s := secret(map[string]string{"a": "old", "b": "kept"})
			s.StringData = map[string]string{"a": "new", "c": "added"}
			return s
		}(), corev1.SecretTypeOpaque, map[string]string{"a": "new", "b": "kept", "c": "added"}},
		{"stringData alone", func() *corev1.Secret { s := secret(nil); s.StringData = map[string]string{"x": "1"}; return s }(),
			corev1.SecretTypeOpaque, map[string]string{"x": "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.Default(tc.in)
			if tc.in.Type != tc.wantType || tc.in.StringData != nil || len(tc.in.Data) != len(tc.wantData) {
				t.Fatalf("type %q data %v stringData %v; want %q %v and no stringData", tc.in.Type, tc.in.Data, tc.in.StringData, tc.wantType, tc.wantData)
			}
			for k, v := range tc.wantData {
				if string(tc.in.Data[k]) != v {
					t.Errorf("data[%s] = %q, want %q", k, tc.in.Data[k], v)
				}
			}
		})
	}
}

func TestValidate(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name string
		obj  *corev1.Secret
		want []string
	}{
		{"good", secret(map[string]string{"tls.crt": "x", "password": "y", "A_B-c": ""}), nil},
		{"key with a slash", secret(map[string]string{"a/b": "x"}), []string{"data[a/b]: Invalid value"}},
		{"key .", secret(map[string]string{".": "x"}), []string{"data[.]: Invalid value"}},
		{"exactly 1 MiB of values", secret(map[string]string{"k": strings.Repeat("x", MaxSize)}), nil},
		{"over 1 MiB", secret(map[string]string{"k": strings.Repeat("x", MaxSize), "l": "y"}), []string{"data: Too long"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			registrytest.Errors(t, r.Validate(tc.obj), tc.want...)
		})
	}
}

func TestValidateUpdate(t *testing.T) {
	r := Resource()
	with := func(typ corev1.SecretType, immutable *bool, data map[string]string) *corev1.Secret {
		s := secret(data)
		s.Type, s.Immutable = typ, immutable
		return s
	}
	opaque := corev1.SecretTypeOpaque
	for _, tc := range []struct {
		name     string
		old, obj *corev1.Secret
		want     []string
	}{
		{"data changes", with(opaque, nil, map[string]string{"a": "1"}), with(opaque, nil, map[string]string{"a": "2"}), nil},
		{"type changes", with(opaque, nil, nil), with(corev1.SecretTypeBasicAuth, nil, nil), []string{"type: Invalid value"}},
		{"made immutable", with(opaque, nil, nil), with(opaque, ptr.To(true), nil), nil},
		{"immutable, unchanged", with(opaque, ptr.To(true), map[string]string{"a": "1"}), with(opaque, ptr.To(true), map[string]string{"a": "1"}), nil},
		{"immutable flag cleared", with(opaque, ptr.To(true), nil), with(opaque, nil, nil), []string{"immutable: Forbidden"}},
		// kube-apiserver forbids changing the data of an immutable Secret
		// (the point of the flag); this was missing.
		{"immutable, data changed", with(opaque, ptr.To(true), map[string]string{"a": "1"}), with(opaque, ptr.To(true), map[string]string{"a": "2"}),
			[]string{"data: Forbidden"}},
		{"immutable, key added", with(opaque, ptr.To(true), map[string]string{"a": "1"}), with(opaque, ptr.To(true), map[string]string{"a": "1", "b": "2"}),
			[]string{"data: Forbidden"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			registrytest.Errors(t, r.ValidateUpdate(tc.obj, tc.old), tc.want...)
		})
	}
}

func TestFieldsAndRow(t *testing.T) {
	r := Resource()
	s := secret(map[string]string{"a": "1", "b": "2"})
	s.Type = corev1.SecretTypeDockerConfigJson
	if f := r.Fields(s); f["type"] != string(corev1.SecretTypeDockerConfigJson) {
		t.Errorf("fields %v", f)
	}
	row, err := r.Row(s)
	if err != nil || row[0] != "s" || row[1] != string(corev1.SecretTypeDockerConfigJson) || row[2] != int64(2) {
		t.Errorf("row %v (%v)", row, err)
	}
}
