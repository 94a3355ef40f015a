package storageclass

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/utils/ptr"
)

type fieldErr struct {
	typ  field.ErrorType
	path string
}

func check(t *testing.T, errs field.ErrorList, want []fieldErr) {
	t.Helper()
	if len(errs) != len(want) {
		t.Fatalf("got %v, want %v", errs, want)
	}
	for i, e := range errs {
		if e.Type != want[i].typ || e.Field != want[i].path {
			t.Errorf("error %d = %s %q, want %s %q", i, e.Type, e.Field, want[i].typ, want[i].path)
		}
	}
}

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
	check(t, r.Validate(class("headway.dev/local-path")), nil)
	check(t, r.Validate(class("")), []fieldErr{{field.ErrorTypeRequired, "provisioner"}})
	check(t, r.ValidateUpdate(class("a"), class("a")), nil)
	check(t, r.ValidateUpdate(class("b"), class("a")), []fieldErr{{field.ErrorTypeForbidden, "provisioner"}})
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
