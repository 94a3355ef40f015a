package pod

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func newPod() *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0"}, Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:alpine"}}}}
}

func TestDefaults(t *testing.T) {
	p := newPod()
	p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side", Image: "busybox"}, corev1.Container{Name: "pinned", Image: "busybox@sha256:abc"})
	Default(p)
	c := p.Spec.Containers
	switch {
	case p.Spec.RestartPolicy != corev1.RestartPolicyAlways:
		t.Errorf("restartPolicy %q", p.Spec.RestartPolicy)
	case p.Spec.DNSPolicy != corev1.DNSClusterFirst:
		t.Errorf("dnsPolicy %q", p.Spec.DNSPolicy)
	case *p.Spec.TerminationGracePeriodSeconds != 30:
		t.Errorf("grace %d", *p.Spec.TerminationGracePeriodSeconds)
	case !*p.Spec.EnableServiceLinks:
		t.Error("enableServiceLinks")
	case p.Spec.SchedulerName != "default-scheduler":
		t.Errorf("schedulerName %q", p.Spec.SchedulerName)
	case c[0].ImagePullPolicy != corev1.PullIfNotPresent, c[1].ImagePullPolicy != corev1.PullAlways, c[2].ImagePullPolicy != corev1.PullIfNotPresent:
		t.Errorf("pull policies %q %q %q", c[0].ImagePullPolicy, c[1].ImagePullPolicy, c[2].ImagePullPolicy)
	case c[0].TerminationMessagePath != "/dev/termination-log":
		t.Errorf("terminationMessagePath %q", c[0].TerminationMessagePath)
	}
}

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*corev1.Pod)
		want []string
	}{
		{"valid", func(*corev1.Pod) {}, nil},
		{"no containers", func(p *corev1.Pod) { p.Spec.Containers = nil }, []string{"spec.containers: Required value"}},
		{"no image", func(p *corev1.Pod) { p.Spec.Containers[0].Image = "" }, []string{"spec.containers[0].image: Required value"}},
		{"bad container name", func(p *corev1.Pod) { p.Spec.Containers[0].Name = "Nginx" }, []string{"spec.containers[0].name: Invalid value"}},
		{"duplicate container", func(p *corev1.Pod) { p.Spec.Containers = append(p.Spec.Containers, p.Spec.Containers[0]) }, []string{"spec.containers[1].name: Duplicate value"}},
		{"bad hostname", func(p *corev1.Pod) { p.Spec.Hostname = "web.0" }, []string{"spec.hostname: Invalid value"}},
		{"bad subdomain", func(p *corev1.Pod) { p.Spec.Subdomain = "Nginx_Headless" }, []string{"spec.subdomain: Invalid value"}},
		{"bad port", func(p *corev1.Pod) { p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 70000}} }, []string{"spec.containers[0].ports[0].containerPort: Invalid value"}},
		{"bad restart policy", func(p *corev1.Pod) { p.Spec.RestartPolicy = "Sometimes" }, []string{"spec.restartPolicy: Unsupported value"}},
		{"dnsPolicy None without config", func(p *corev1.Pod) { p.Spec.DNSPolicy = corev1.DNSNone }, []string{"spec.dnsConfig: Required value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPod()
			tc.mod(p)
			Default(p)
			errs := Validate(p)
			if len(errs) != len(tc.want) {
				t.Fatalf("got %v, want %v", errs, tc.want)
			}
			for i, e := range errs {
				if !strings.HasPrefix(e.Error(), tc.want[i]) {
					t.Errorf("error %d = %q, want prefix %q", i, e.Error(), tc.want[i])
				}
			}
		})
	}
}

func TestSpecImmutable(t *testing.T) {
	old := newPod()
	Default(old)
	img := old.DeepCopy()
	img.Spec.Containers[0].Image = "nginx:1.27"
	if errs := ValidateUpdate(img, old); len(errs) != 0 {
		t.Fatalf("image change refused: %v", errs)
	}
	cmd := old.DeepCopy()
	cmd.Spec.Containers[0].Command = []string{"sh"}
	if errs := ValidateUpdate(cmd, old); len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "spec: Forbidden: pod updates may not change fields") {
		t.Fatalf("command change: %v", errs)
	}
}

func TestGracefulDelete(t *testing.T) {
	p := newPod()
	Default(p)
	if g, _ := GracefulDelete(p, &metav1.DeleteOptions{}); g {
		t.Fatal("an unscheduled pod is deleted gracefully")
	}
	p.Spec.NodeName = "node-a"
	if g, secs := GracefulDelete(p, &metav1.DeleteOptions{}); !g || secs != 30 {
		t.Fatalf("bound pod: graceful %v, %ds", g, secs)
	}
	zero := int64(0)
	if g, _ := GracefulDelete(p, &metav1.DeleteOptions{GracePeriodSeconds: &zero}); g {
		t.Fatal("grace period 0 is not immediate")
	}
	p.Status.Phase = corev1.PodSucceeded
	if g, _ := GracefulDelete(p, &metav1.DeleteOptions{}); g {
		t.Fatal("a finished pod is deleted gracefully")
	}
}

func TestRowStatus(t *testing.T) {
	p := newPod()
	p.Status.Phase = corev1.PodRunning
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "nginx", Ready: true, RestartCount: 2, State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	row := Row(p)
	if row[1] != "1/1" || row[2] != "Running" || row[3] != int64(2) {
		t.Fatalf("running row %v", row)
	}
	p.Status.ContainerStatuses[0] = corev1.ContainerStatus{Name: "nginx", State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff"}}}
	if row := Row(p); row[1] != "0/1" || row[2] != "CrashLoopBackOff" {
		t.Fatalf("waiting row %v", row)
	}
	now := metav1.Now()
	p.DeletionTimestamp = &now
	if row := Row(p); row[2] != "Terminating" {
		t.Fatalf("deleting row %v", row)
	}
}
