package apiserver

import (
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/managedfields"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/structured-merge-diff/v6/typed"

	"github.com/headway/headway/internal/apiserver/builtinschema"
	"github.com/headway/headway/internal/registry/builtin"
)

// stockTypeConverter is apimachinery's converter on the same schema: every
// object through the validating walk.
type stockTypeConverter struct{ managedfields.TypeConverter }

func fieldManagers(t *testing.T, gvk schema.GroupVersionKind) (ours, stock *managedfields.FieldManager) {
	t.Helper()
	scheme := builtin.Scheme()
	var err error
	ours, err = managedfields.NewDefaultFieldManager(typeConverter(scheme), scheme, scheme, scheme, gvk, gvk.GroupVersion(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	stock, err = managedfields.NewDefaultFieldManager(stockTypeConverter{managedfields.NewSchemeTypeConverter(scheme, builtinschema.Core())},
		scheme, scheme, scheme, gvk, gvk.GroupVersion(), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	return ours, stock
}

func managedOf(t *testing.T, obj runtime.Object) []metav1.ManagedFieldsEntry {
	t.Helper()
	a, err := meta.Accessor(obj)
	if err != nil {
		t.Fatal(err)
	}
	out := a.GetManagedFields()
	for i := range out {
		out[i].Time = nil
	}
	return out
}

func richPod() *corev1.Pod {
	return &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "default", Labels: map[string]string{"app": "web"}, Annotations: map[string]string{"a": "b"}},
		Spec: corev1.PodSpec{
			Hostname: "web-0", Subdomain: "web",
			Containers: []corev1.Container{{
				Name: "nginx", Image: "nginx",
				Ports:          []corev1.ContainerPort{{Name: "web", ContainerPort: 80, Protocol: corev1.ProtocolTCP}},
				Env:            []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}},
				VolumeMounts:   []corev1.VolumeMount{{Name: "www", MountPath: "/usr/share/nginx/html"}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: intstr.FromInt32(80)}}},
			}},
			Volumes:     []corev1.Volume{{Name: "www", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			Tolerations: []corev1.Toleration{{Key: "k", Operator: corev1.TolerationOpExists}},
		},
	}
}

// TestUnvalidatedTypedValuesTrackTheSameFields: managedFields tracking on
// our converter (no validating walk for Go structs) gives what it gives on
// apimachinery's, for creates and updates of several kinds, including an
// update that changes, adds and removes fields, objects whose associative
// lists hold duplicates (allowed for updates), and one whose list item
// lacks its key (tracking fails, and both reset the fields the same way).
func TestUnvalidatedTypedValuesTrackTheSameFields(t *testing.T) {
	cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: "cm", Namespace: "ns", Labels: map[string]string{"app": "bench"}},
		Data:       map[string]string{"a": "1", "b": "2"}, BinaryData: map[string][]byte{"c": []byte("x")}}
	cm2 := cm.DeepCopy()
	cm2.Data = map[string]string{"a": "changed", "d": "new"}
	cm2.Labels = nil

	pod := richPod()
	pod2 := pod.DeepCopy()
	pod2.Spec.Containers = append(pod2.Spec.Containers, corev1.Container{Name: "sidecar", Image: "busybox", Command: []string{"sleep", "3600"}})
	pod2.Spec.Containers[0].Env = pod2.Spec.Containers[0].Env[:1]

	dupEnv := richPod()
	dupEnv.Spec.Containers[0].Env = append(dupEnv.Spec.Containers[0].Env, corev1.EnvVar{Name: "A", Value: "2"})

	svc := &corev1.Service{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: corev1.ServiceSpec{ClusterIP: "None", Selector: map[string]string{"app": "web"},
			Ports: []corev1.ServicePort{{Name: "web", Port: 80, Protocol: corev1.ProtocolTCP}}}}
	// A Service port without its protocol: the list's key is port and
	// protocol, so the item lacks part of its key.
	svcNoProtocol := svc.DeepCopy()
	svcNoProtocol.Spec.Ports = []corev1.ServicePort{{Name: "web", Port: 80}, {Name: "web2", Port: 80}}

	sts := &appsv1.StatefulSet{TypeMeta: metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](2), ServiceName: "web",
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: richPod().Spec},
			VolumeClaimTemplates: []corev1.PersistentVolumeClaim{{ObjectMeta: metav1.ObjectMeta{Name: "www"},
				Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce}}}}}}

	// The Go structs take the unvalidated path, strict conversions not.
	tc := typeConverter(builtin.Scheme()).(builtinTypeConverter)
	if _, ok := tc.unvalidated(pod, tc.coreParser, []typed.ValidationOptions{typed.AllowDuplicates}); !ok {
		t.Fatal("a Pod with duplicates allowed took the validating path: this test compares nothing")
	}
	if _, ok := tc.unvalidated(pod, tc.coreParser, nil); ok {
		t.Fatal("a strict conversion skipped validation")
	}

	for _, c := range []struct {
		name      string
		live, obj runtime.Object
	}{
		{"ConfigMap create", &corev1.ConfigMap{}, cm},
		{"ConfigMap update", cm, cm2},
		{"Pod create", &corev1.Pod{}, pod},
		{"Pod update", pod, pod2},
		{"Pod with duplicate env names", pod, dupEnv},
		{"Service create", &corev1.Service{}, svc},
		{"Service port without its protocol", &corev1.Service{}, svcNoProtocol},
		{"StatefulSet create", &appsv1.StatefulSet{}, sts},
	} {
		t.Run(c.name, func(t *testing.T) {
			gvk := c.obj.GetObjectKind().GroupVersionKind()
			ours, stock := fieldManagers(t, gvk)
			// The live object carries the fields a first update gave it.
			live := c.live
			if meta.IsListType(live) {
				t.Fatal("not an object")
			}
			if a, _ := meta.Accessor(live); a.GetName() != "" {
				live = stock.UpdateNoErrors(emptyLike(live), live.DeepCopyObject(), "first")
			}
			want := managedOf(t, stock.UpdateNoErrors(live.DeepCopyObject(), c.obj.DeepCopyObject(), "second"))
			got := managedOf(t, ours.UpdateNoErrors(live.DeepCopyObject(), c.obj.DeepCopyObject(), "second"))
			if !equality.Semantic.DeepEqual(got, want) {
				t.Fatalf("managedFields differ:\nours:  %s\nstock: %s", fieldsJSON(got), fieldsJSON(want))
			}
			if len(want) == 0 && c.name != "Service port without its protocol" {
				t.Fatalf("no managedFields tracked at all: the comparison says nothing")
			}
		})
	}
}

func emptyLike(obj runtime.Object) runtime.Object {
	out := obj.DeepCopyObject()
	switch o := out.(type) {
	case *corev1.ConfigMap:
		*o = corev1.ConfigMap{}
	case *corev1.Pod:
		*o = corev1.Pod{}
	case *corev1.Service:
		*o = corev1.Service{}
	case *appsv1.StatefulSet:
		*o = appsv1.StatefulSet{}
	}
	return out
}

func fieldsJSON(entries []metav1.ManagedFieldsEntry) string {
	s := ""
	for _, e := range entries {
		raw := ""
		if e.FieldsV1 != nil {
			raw = string(e.FieldsV1.Raw)
		}
		s += e.Manager + "/" + string(e.Operation) + ": " + raw + "\n"
	}
	return s
}
