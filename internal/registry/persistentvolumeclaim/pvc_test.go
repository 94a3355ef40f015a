package persistentvolumeclaim

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/registry/registrytest"
)

func claim() *corev1.PersistentVolumeClaim {
	return &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data-web-0", Namespace: "default"}, Spec: corev1.PersistentVolumeClaimSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
	}}
}

func TestDefault(t *testing.T) {
	r := Resource()
	c := claim()
	r.Default(c)
	if c.Spec.VolumeMode == nil || *c.Spec.VolumeMode != corev1.PersistentVolumeFilesystem {
		t.Errorf("volumeMode %v, want Filesystem", c.Spec.VolumeMode)
	}
	c = claim()
	c.Spec.VolumeMode = ptr.To(corev1.PersistentVolumeBlock)
	r.Default(c)
	if *c.Spec.VolumeMode != corev1.PersistentVolumeBlock {
		t.Errorf("volumeMode overwritten: %v", *c.Spec.VolumeMode)
	}
	c = claim()
	c.Status.Phase = corev1.ClaimBound
	r.PrepareForCreate(context.Background(), c)
	if c.Status.Phase != corev1.ClaimPending {
		t.Errorf("a new claim is %s, want Pending", c.Status.Phase)
	}
}

func TestValidate(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name string
		mod  func(*corev1.PersistentVolumeClaim)
		want []string
	}{
		{"good", func(*corev1.PersistentVolumeClaim) {}, nil},
		{"all access modes", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce, corev1.ReadOnlyMany, corev1.ReadWriteMany, corev1.ReadWriteOncePod}
		}, nil},
		{"no access mode", func(c *corev1.PersistentVolumeClaim) { c.Spec.AccessModes = nil }, []string{"spec.accessModes: Required value"}},
		{"unknown access mode", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.AccessModes = append(c.Spec.AccessModes, "ReadWriteSometimes")
		}, []string{"spec.accessModes[1]: Unsupported value"}},
		{"no storage request", func(c *corev1.PersistentVolumeClaim) { c.Spec.Resources.Requests = nil }, []string{"spec.resources[storage]: Required value"}},
		{"zero storage", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("0")
		}, []string{"spec.resources.requests[storage]: Invalid value"}},
		{"negative storage", func(c *corev1.PersistentVolumeClaim) {
			c.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("-1Gi")
		}, []string{"spec.resources.requests[storage]: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := claim()
			tc.mod(c)
			registrytest.Errors(t, r.Validate(c), tc.want...)
			registrytest.Errors(t, Validate(c), tc.want...)
		})
	}
}

func TestValidateUpdate(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name     string
		old, mod func(*corev1.PersistentVolumeClaim)
		want     []string
	}{
		{"bound by the controller", func(*corev1.PersistentVolumeClaim) {}, func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv-1" }, nil},
		{"default class assigned", func(*corev1.PersistentVolumeClaim) {}, func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = ptr.To("local-path") }, nil},
		{"resized", func(*corev1.PersistentVolumeClaim) {}, func(c *corev1.PersistentVolumeClaim) {
			c.Spec.Resources.Requests[corev1.ResourceStorage] = resource.MustParse("2Gi")
		}, nil},
		{"rebound to another volume", func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv-1" },
			func(c *corev1.PersistentVolumeClaim) { c.Spec.VolumeName = "pv-2" }, []string{"spec: Forbidden"}},
		{"class changed", func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = ptr.To("a") },
			func(c *corev1.PersistentVolumeClaim) { c.Spec.StorageClassName = ptr.To("b") }, []string{"spec: Forbidden"}},
		{"access modes changed", func(*corev1.PersistentVolumeClaim) {},
			func(c *corev1.PersistentVolumeClaim) {
				c.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
			}, []string{"spec: Forbidden"}},
		{"invalid and changed", func(*corev1.PersistentVolumeClaim) {},
			func(c *corev1.PersistentVolumeClaim) { c.Spec.AccessModes = nil },
			[]string{"spec.accessModes: Required value", "spec: Forbidden"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			old, up := claim(), claim()
			tc.old(old)
			tc.old(up)
			tc.mod(up)
			registrytest.Errors(t, r.ValidateUpdate(up, old), tc.want...)
		})
	}
}

func TestAccessModes(t *testing.T) {
	if got := AccessModes([]corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce, corev1.ReadOnlyMany, corev1.ReadWriteMany, corev1.ReadWriteOncePod}); got != "RWO,ROX,RWX,RWOP" {
		t.Fatalf("AccessModes = %q", got)
	}
}

func TestRow(t *testing.T) {
	r := Resource()
	c := claim()
	c.Spec.StorageClassName = ptr.To("local-path")
	c.Status.Capacity = corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}
	c.Status.AccessModes = c.Spec.AccessModes
	row, _ := r.Row(c)
	if row[2] != "" || row[3] != "" || row[4] != "" || row[5] != "local-path" {
		t.Errorf("unbound claim row %v: capacity and modes only once bound", row)
	}
	c.Spec.VolumeName, c.Status.Phase = "pv-1", corev1.ClaimBound
	row, _ = r.Row(c)
	if row[1] != "Bound" || row[2] != "pv-1" || row[3] != "1Gi" || row[4] != "RWO" {
		t.Errorf("bound claim row %v", row)
	}
}
