package persistentvolume

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func pv() *corev1.PersistentVolume {
	return &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: "pv-1"}, Spec: corev1.PersistentVolumeSpec{
		AccessModes:            []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
		PersistentVolumeSource: corev1.PersistentVolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/data/pv-1"}},
	}}
}

func TestDefault(t *testing.T) {
	r := Resource()
	p := pv()
	r.Default(p)
	if p.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimRetain || p.Spec.VolumeMode == nil || *p.Spec.VolumeMode != corev1.PersistentVolumeFilesystem {
		t.Errorf("defaults: policy %q mode %v, want Retain Filesystem", p.Spec.PersistentVolumeReclaimPolicy, p.Spec.VolumeMode)
	}
	p = pv()
	block := corev1.PersistentVolumeBlock
	p.Spec.PersistentVolumeReclaimPolicy, p.Spec.VolumeMode = corev1.PersistentVolumeReclaimDelete, &block
	r.Default(p)
	if p.Spec.PersistentVolumeReclaimPolicy != corev1.PersistentVolumeReclaimDelete || *p.Spec.VolumeMode != block {
		t.Errorf("set values overwritten: %q %v", p.Spec.PersistentVolumeReclaimPolicy, *p.Spec.VolumeMode)
	}
	p = pv()
	p.Status.Phase = corev1.VolumeBound
	r.PrepareForCreate(context.Background(), p)
	if p.Status.Phase != corev1.VolumePending {
		t.Errorf("a new volume is %s, want Pending", p.Status.Phase)
	}
}

func TestValidate(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name string
		mod  func(*corev1.PersistentVolume)
		want []string
	}{
		{"hostPath", func(*corev1.PersistentVolume) {}, nil},
		{"local", func(p *corev1.PersistentVolume) {
			p.Spec.HostPath, p.Spec.Local = nil, &corev1.LocalVolumeSource{Path: "/mnt/disk"}
		}, nil},
		{"csi", func(p *corev1.PersistentVolume) {
			p.Spec.HostPath, p.Spec.CSI = nil, &corev1.CSIPersistentVolumeSource{Driver: "d", VolumeHandle: "h"}
		}, nil},
		{"no access modes", func(p *corev1.PersistentVolume) { p.Spec.AccessModes = nil }, []string{"spec.accessModes: Required value"}},
		{"no capacity", func(p *corev1.PersistentVolume) { p.Spec.Capacity = nil }, []string{"spec.capacity[storage]: Required value"}},
		{"no volume source", func(p *corev1.PersistentVolume) { p.Spec.HostPath = nil }, []string{"spec: Required value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pv()
			tc.mod(p)
			registrytest.Errors(t, r.Validate(p), tc.want...)
		})
	}
}

func TestRow(t *testing.T) {
	p := pv()
	p.Spec.ClaimRef = &corev1.ObjectReference{Namespace: "default", Name: "data-web-0"}
	p.Spec.PersistentVolumeReclaimPolicy = corev1.PersistentVolumeReclaimDelete
	p.Spec.StorageClassName = "local-path"
	p.Status.Phase = corev1.VolumeBound
	row, err := Resource().Row(p)
	if err != nil || row[1] != "1Gi" || row[2] != "RWO" || row[3] != "Delete" || row[4] != "Bound" || row[5] != "default/data-web-0" || row[6] != "local-path" || row[10] != "<unset>" {
		t.Fatalf("row %v (%v)", row, err)
	}
	now := metav1.Now()
	p.DeletionTimestamp = &now
	if row, _ := Resource().Row(p); row[4] != "Terminating" {
		t.Errorf("status of a deleted volume %v", row[4])
	}
}
