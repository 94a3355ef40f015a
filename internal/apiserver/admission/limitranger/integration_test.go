package limitranger_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/apiserver/admission/limitranger"
	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/internal/testing/kubectl"
)

const limits = `apiVersion: v1
kind: LimitRange
metadata:
  name: limits
spec:
  limits:
  - type: Container
    default:
      cpu: 500m
      memory: 256Mi
    defaultRequest:
      cpu: 100m
    max:
      cpu: "1"
  - type: PersistentVolumeClaim
    max:
      storage: 10Gi
`

// TestLimitRangeOnARealServer: a LimitRange applied with kubectl gives new
// pods their defaults and refuses pods and claims over its maximums with
// kube-apiserver's 403.
func TestLimitRangeOnARealServer(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs := c.Client
	file := filepath.Join(t.TempDir(), "limits.yaml")
	if err := os.WriteFile(file, []byte(limits), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := kubectl.Run(t, c.Kubeconfig, "apply", "-f", file); err != nil {
		t.Fatalf("kubectl apply: %v", err)
	}

	p, err := cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "plain"},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := p.Spec.Containers[0].Resources
	for what, got := range map[string]resource.Quantity{
		"requests.cpu=100m": r.Requests[corev1.ResourceCPU], "requests.memory=256Mi": r.Requests[corev1.ResourceMemory],
		"limits.cpu=500m": r.Limits[corev1.ResourceCPU], "limits.memory=256Mi": r.Limits[corev1.ResourceMemory],
	} {
		want := resource.MustParse(what[strings.Index(what, "=")+1:])
		if got.Cmp(want) != 0 {
			t.Errorf("%s: got %s", what, got.String())
		}
	}
	if p.Status.QOSClass != corev1.PodQOSBurstable {
		t.Errorf("QoS class %q after the defaults, want Burstable", p.Status.QOSClass)
	}
	if got := p.Annotations[limitranger.Annotation]; got != "LimitRanger plugin set: cpu, memory request for container app; cpu, memory limit for container app" {
		t.Errorf("annotation %q", got)
	}

	_, err = cs.CoreV1().Pods("default").Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "big"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("2")}}}}},
	}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || err.Error() != `pods "big" is forbidden: maximum cpu usage per Container is 1, but limit is 2` {
		t.Fatalf("pod over the max: %v", err)
	}

	// kubectl says it as kube-apiserver would.
	_, stderr, err := kubectl.Run(t, c.Kubeconfig, "run", "huge", "--image=busybox", "--restart=Never", "--overrides",
		`{"spec":{"containers":[{"name":"huge","image":"busybox","resources":{"limits":{"cpu":"3"}}}]}}`)
	if err == nil || !strings.Contains(stderr, `pods "huge" is forbidden: maximum cpu usage per Container is 1, but limit is 3`) {
		t.Fatalf("kubectl run over the max: %v\n%s", err, stderr)
	}

	_, err = cs.CoreV1().PersistentVolumeClaims("default").Create(ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("20Gi")}},
		},
	}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || err.Error() != `persistentvolumeclaims "data" is forbidden: maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi` {
		t.Fatalf("claim over the max: %v", err)
	}
}
