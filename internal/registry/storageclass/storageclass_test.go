package storageclass

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/registry/registrytest"
)

func class(provisioner string) *storagev1.StorageClass {
	return &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "local-path"}, Provisioner: provisioner}
}

func TestDefault(t *testing.T) {
	r := Resource()
	sc := class("headway.dev/local-path")
	r.Default(sc)
	if *sc.ReclaimPolicy != corev1.PersistentVolumeReclaimDelete || *sc.VolumeBindingMode != storagev1.VolumeBindingImmediate {
		t.Errorf("defaults %v %v, want Delete Immediate", *sc.ReclaimPolicy, *sc.VolumeBindingMode)
	}
	sc = class("p")
	sc.ReclaimPolicy = ptr.To(corev1.PersistentVolumeReclaimRetain)
	sc.VolumeBindingMode = ptr.To(storagev1.VolumeBindingWaitForFirstConsumer)
	r.Default(sc)
	if *sc.ReclaimPolicy != corev1.PersistentVolumeReclaimRetain || *sc.VolumeBindingMode != storagev1.VolumeBindingWaitForFirstConsumer {
		t.Errorf("set values overwritten: %v %v", *sc.ReclaimPolicy, *sc.VolumeBindingMode)
	}
}

func TestValidate(t *testing.T) {
	r := Resource()
	registrytest.Errors(t, r.Validate(class("headway.dev/local-path")))
	registrytest.Errors(t, r.Validate(class("")), []string{"provisioner: Required value"}...)
	registrytest.Errors(t, r.ValidateUpdate(class("a"), class("a")))
	registrytest.Errors(t, r.ValidateUpdate(class("b"), class("a")), []string{"provisioner: Forbidden"}...)
}

func TestRow(t *testing.T) {
	r := Resource()
	sc := class("p")
	sc.Annotations = map[string]string{DefaultAnnotation: "true"}
	sc.AllowVolumeExpansion = ptr.To(true)
	row, err := r.Row(sc)
	if err != nil || row[0] != "local-path (default)" || row[1] != "p" || row[2] != "Delete" || row[3] != "Immediate" || row[4] != true {
		t.Fatalf("row %v (%v)", row, err)
	}
	sc.Annotations[DefaultAnnotation] = "false"
	if row, _ := r.Row(sc); row[0] != "local-path" {
		t.Errorf("non-default class shown as %v", row[0])
	}
}
