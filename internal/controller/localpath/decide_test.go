package localpath

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDefaultClass(t *testing.T) {
	old := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "old", CreationTimestamp: metav1.NewTime(time.Unix(1, 0)),
		Annotations: map[string]string{DefaultClassAnnotation: "true"}}}
	newer := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "newer", CreationTimestamp: metav1.NewTime(time.Unix(2, 0)),
		Annotations: map[string]string{DefaultClassAnnotation: "true"}}}
	plain := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "plain"}}
	for _, c := range []struct {
		classes []*storagev1.StorageClass
		want    string
	}{
		{nil, ""}, {[]*storagev1.StorageClass{plain}, ""}, {[]*storagev1.StorageClass{plain, old}, "old"}, {[]*storagev1.StorageClass{old, newer, plain}, "newer"},
	} {
		got := ""
		if d := DefaultClass(c.classes); d != nil {
			got = d.Name
		}
		if got != c.want {
			t.Errorf("default of %d classes: %q, want %q", len(c.classes), got, c.want)
		}
	}
}

func claim() *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "www-web-0", Namespace: "default", UID: "u1"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("2Gi")}},
		},
	}
}

func TestConsumerNode(t *testing.T) {
	c := claim()
	uses := func(node string, deleting bool) *corev1.Pod {
		p := &corev1.Pod{Spec: corev1.PodSpec{NodeName: node, Volumes: []corev1.Volume{{Name: "www",
			VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "www-web-0"}}}}}}
		if deleting {
			now := metav1.Now()
			p.DeletionTimestamp = &now
		}
		return p
	}
	if n := ConsumerNode(c, []*corev1.Pod{uses("", false)}); n != "" {
		t.Errorf("unscheduled consumer gave %q", n)
	}
	if n := ConsumerNode(c, []*corev1.Pod{uses("a", true), uses("b", false)}); n != "b" {
		t.Errorf("got %q, want b", n)
	}
	c.Annotations = map[string]string{SelectedNodeAnnotation: "z"}
	if n := ConsumerNode(c, []*corev1.Pod{uses("b", false)}); n != "z" {
		t.Errorf("selected-node ignored: %q", n)
	}
}

func TestNewVolume(t *testing.T) {
	retain := corev1.PersistentVolumeReclaimRetain
	class := &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local-path"}, ReclaimPolicy: &retain}
	c := claim()
	pv := NewVolume(c, class, "headway.dev/local-path", "node-1", VolumePath("/data/volumes", c))
	if pv.Name != "pvc-u1" || pv.Spec.Local == nil || pv.Spec.Local.Path != "/data/volumes/pvc-u1_default_www-web-0" ||
		pv.Spec.ClaimRef.UID != "u1" || pv.Spec.PersistentVolumeReclaimPolicy != retain || pv.Spec.StorageClassName != "local-path" ||
		pv.Spec.Capacity.Storage().String() != "2Gi" || pv.Spec.NodeAffinity == nil {
		t.Fatalf("volume %+v", pv.Spec)
	}
	pv = NewVolume(c, class, "headway.dev/local-path", "", "/d")
	if pv.Spec.HostPath == nil || pv.Spec.NodeAffinity != nil {
		t.Fatalf("immediate volume %+v", pv.Spec)
	}
}
