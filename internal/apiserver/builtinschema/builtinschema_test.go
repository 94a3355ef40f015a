package builtinschema

import (
	"reflect"
	"testing"
	"unsafe"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsapply "k8s.io/apiextensions-apiserver/pkg/client/applyconfiguration"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/client-go/applyconfigurations"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/structured-merge-diff/v6/typed"
)

// upstreamParser is the parser inside a type converter that
// managedfields.NewSchemeTypeConverter made (an unexported field: the
// upstream packages offer no other way to their parsed schema).
func upstreamParser(t *testing.T, tc managedfields.TypeConverter) *typed.Parser {
	t.Helper()
	v := reflect.ValueOf(tc)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		t.Fatalf("the upstream type converter is a %T, not a pointer to a struct: update this test", tc)
	}
	f := v.Elem().FieldByName("parser")
	if !f.IsValid() || f.Type() != reflect.TypeFor[*typed.Parser]() {
		t.Fatalf("the upstream type converter %T has no parser field of type *typed.Parser: update this test", tc)
	}
	return reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().Interface().(*typed.Parser)
}

// TestMatchesUpstream: the generated schemas are the ones the Kubernetes
// modules in go.mod parse from their YAML, type for type and field for
// field. When it fails after a module update: go generate
// ./internal/apiserver/builtinschema.
func TestMatchesUpstream(t *testing.T) {
	scheme := runtime.NewScheme()
	for _, c := range []struct {
		name     string
		ours     *typed.Parser
		upstream managedfields.TypeConverter
	}{
		{"client-go", Core(), applyconfigurations.NewTypeConverter(scheme)},
		{"apiextensions-apiserver", APIExtensions(), apiextensionsapply.NewTypeConverter(scheme)},
	} {
		t.Run(c.name, func(t *testing.T) {
			want := upstreamParser(t, c.upstream).Schema.Types
			got := c.ours.Schema.Types
			if len(got) != len(want) {
				t.Fatalf("%d types, upstream has %d: run go generate ./internal/apiserver/builtinschema", len(got), len(want))
			}
			for i := range want {
				if !reflect.DeepEqual(got[i], want[i]) {
					t.Fatalf("type %d (%s) differs from upstream's (%s): run go generate ./internal/apiserver/builtinschema", i, got[i].Name, want[i].Name)
				}
			}
		})
	}
}

// TestConvertsAsUpstream: objects become the same typed values (the same
// field sets, merged the same way) through the generated schema as through
// upstream's, and a field the schema does not know is rejected by both.
func TestConvertsAsUpstream(t *testing.T) {
	scheme := clientgoscheme.Scheme
	ours := managedfields.NewSchemeTypeConverter(scheme, Core())
	upstream := applyconfigurations.NewTypeConverter(scheme)
	replicas := int32(3)
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", Labels: map[string]string{"app": "web"}},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{
				Name: "nginx", Image: "nginx",
				Ports: []corev1.ContainerPort{{ContainerPort: 80, Protocol: corev1.ProtocolTCP}},
				Env:   []corev1.EnvVar{{Name: "A", Value: "1"}},
			}},
			Tolerations: []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}},
		},
	}
	deployment := &appsv1.Deployment{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "Deployment"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec},
		},
	}
	service := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{
			ClusterIP: "None",
			Ports:     []corev1.ServicePort{{Name: "http", Port: 80, Protocol: corev1.ProtocolTCP}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}},
		},
	}
	for _, obj := range []runtime.Object{pod, deployment, service} {
		got, err := ours.ObjectToTyped(obj)
		if err != nil {
			t.Fatalf("%T through the generated schema: %v", obj, err)
		}
		want, err := upstream.ObjectToTyped(obj)
		if err != nil {
			t.Fatalf("%T through upstream's schema: %v", obj, err)
		}
		gotSet, err := got.ToFieldSet()
		if err != nil {
			t.Fatal(err)
		}
		wantSet, err := want.ToFieldSet()
		if err != nil {
			t.Fatal(err)
		}
		if !gotSet.Equals(wantSet) {
			t.Errorf("%T: fields\n%s\nupstream's\n%s", obj, gotSet, wantSet)
		}
		if gotSet.Empty() {
			t.Errorf("%T: no fields", obj)
		}
		merged, err := got.Merge(got)
		if err != nil {
			t.Fatalf("%T: merging with itself: %v", obj, err)
		}
		if cmp, err := merged.Compare(got); err != nil || !cmp.IsSame() {
			t.Errorf("%T: merged with itself it differs (%v): %v", obj, err, cmp)
		}
	}

	bad := &unstructured.Unstructured{Object: map[string]interface{}{
		"apiVersion": "v1", "kind": "ConfigMap", "metadata": map[string]interface{}{"name": "x"},
		"data": map[string]interface{}{"a": "b"}, "notAField": true,
	}}
	if _, err := ours.ObjectToTyped(bad); err == nil {
		t.Error("a ConfigMap with an unknown field converted through the generated schema")
	}
	if _, err := upstream.ObjectToTyped(bad); err == nil {
		t.Error("a ConfigMap with an unknown field converted through upstream's schema")
	}
}
