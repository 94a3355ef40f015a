package priority_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/internal/testing/kubectl"
)

func pod(name, class string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{PriorityClassName: class, Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}}
}

// TestPriorityClassesOnARealServer: the system classes exist from the
// start, pods' class names resolve their priority, unknown classes and
// reserved names are refused as kube-apiserver refuses them.
func TestPriorityClassesOnARealServer(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cs := c.Client

	out, _, err := kubectl.Run(t, c.Kubeconfig, "get", "priorityclass")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"system-cluster-critical   2000000000", "system-node-critical      2000001000"} {
		if !strings.Contains(out, want) {
			t.Errorf("kubectl get priorityclass has no %q:\n%s", want, out)
		}
	}

	p, err := cs.CoreV1().Pods("default").Create(ctx, pod("critical", "system-cluster-critical"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Spec.Priority == nil || *p.Spec.Priority != 2000000000 || p.Spec.PreemptionPolicy == nil || *p.Spec.PreemptionPolicy != corev1.PreemptLowerPriority {
		t.Fatalf("priority %v, preemption %v from system-cluster-critical", p.Spec.Priority, p.Spec.PreemptionPolicy)
	}
	plain, err := cs.CoreV1().Pods("default").Create(ctx, pod("plain", ""), metav1.CreateOptions{})
	if err != nil || *plain.Spec.Priority != 0 {
		t.Fatalf("a pod without a class: %v %v", err, plain.Spec.Priority)
	}

	_, err = cs.CoreV1().Pods("default").Create(ctx, pod("lost", "nope"), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || err.Error() != `pods "lost" is forbidden: no PriorityClass with name nope was found` {
		t.Fatalf("unknown class: %v", err)
	}
	stated := pod("stated", "system-node-critical")
	stated.Spec.Priority = ptr.To[int32](5)
	_, err = cs.CoreV1().Pods("default").Create(ctx, stated, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 2000001000 from the given PriorityClass name") {
		t.Fatalf("stated priority: %v", err)
	}

	for _, pc := range []*schedulingv1.PriorityClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "system-mine"}, Value: 10},
		{ObjectMeta: metav1.ObjectMeta{Name: "huge"}, Value: 2000000000},
	} {
		if _, err := cs.SchedulingV1().PriorityClasses().Create(ctx, pc, metav1.CreateOptions{}); !apierrors.IsInvalid(err) {
			t.Errorf("PriorityClass %s value %d: %v, want 422", pc.Name, pc.Value, err)
		}
	}

	// The global default covers pods without a class; only one may exist.
	if _, err := cs.SchedulingV1().PriorityClasses().Create(ctx, &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "normal"}, Value: 100, GlobalDefault: true,
		PreemptionPolicy: ptr.To(corev1.PreemptNever)}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	d, err := cs.CoreV1().Pods("default").Create(ctx, pod("defaulted", ""), metav1.CreateOptions{})
	if err != nil || d.Spec.PriorityClassName != "normal" || *d.Spec.Priority != 100 || *d.Spec.PreemptionPolicy != corev1.PreemptNever {
		t.Fatalf("pod under the global default: %v %+v", err, d.Spec)
	}
	_, err = cs.SchedulingV1().PriorityClasses().Create(ctx, &schedulingv1.PriorityClass{ObjectMeta: metav1.ObjectMeta{Name: "other"}, Value: 1, GlobalDefault: true}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "PriorityClass normal is already marked as default. Only one default can exist") {
		t.Fatalf("second global default: %v", err)
	}
}
