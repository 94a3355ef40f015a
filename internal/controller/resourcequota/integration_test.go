package resourcequota_test

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/internal/testing/kubectl"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func namespace(t *testing.T, ctx context.Context, cs kubernetes.Interface, name string) {
	t.Helper()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitUsed waits until the quota's status says used for each resource.
func waitUsed(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns, name string, want map[string]string) *corev1.ResourceQuota {
	t.Helper()
	var q *corev1.ResourceQuota
	cluster.WaitFor(t, 30*time.Second, fmt.Sprintf("quota %s/%s used %v", ns, name, want), func() (bool, error) {
		var err error
		if q, err = cs.CoreV1().ResourceQuotas(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			return false, err
		}
		for n, v := range want {
			got, ok := q.Status.Used[corev1.ResourceName(n)]
			if !ok || got.Cmp(resource.MustParse(v)) != 0 {
				return false, fmt.Errorf("used %v, hard %v", q.Status.Used, q.Status.Hard)
			}
		}
		return true, nil
	})
	return q
}

func pod(name, cpu, memory string) *corev1.Pod {
	c := corev1.Container{Name: "app", Image: "busybox"}
	if cpu != "" {
		c.Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse(cpu)}
	}
	if memory != "" {
		c.Resources.Limits = corev1.ResourceList{corev1.ResourceMemory: resource.MustParse(memory)}
	}
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PodSpec{Containers: []corev1.Container{c}}}
}

// TestQuotaWithKubectl: `kubectl create quota`, the controller fills the
// status, `kubectl describe quota` shows used/hard, pods over the quota are
// refused with kube-apiserver's message, and a deletion gives quota back.
func TestQuotaWithKubectl(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := ctxT(t)
	cs := c.Client
	const ns = "team"
	namespace(t, ctx, cs, ns)

	if out, _, err := kubectl.Run(t, c.Kubeconfig, "-n", ns, "create", "quota", "compute", "--hard=pods=2,requests.cpu=1,limits.memory=1Gi,count/podtemplates=10"); err != nil {
		t.Fatalf("kubectl create quota: %v", err)
	} else if !strings.Contains(out, "resourcequota/compute created") {
		t.Fatalf("kubectl create quota said %q", out)
	}
	waitUsed(t, ctx, cs, ns, "compute", map[string]string{"pods": "0", "requests.cpu": "0", "limits.memory": "0", "count/podtemplates": "0"})

	// A pod that does not state what the quota limits.
	_, err := cs.CoreV1().Pods(ns).Create(ctx, pod("bare", "", ""), metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || err.Error() != `pods "bare" is forbidden: failed quota: compute: must specify limits.memory for: app; requests.cpu for: app` {
		t.Fatalf("pod without requests: %v", err)
	}

	for _, name := range []string{"a", "b"} {
		if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod(name, "400m", "256Mi"), metav1.CreateOptions{}); err != nil {
			t.Fatalf("pod %s within quota: %v", name, err)
		}
	}
	// Admission charged the quota before the pods were stored.
	q, err := cs.CoreV1().ResourceQuotas(ns).Get(ctx, "compute", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if used := q.Status.Used[corev1.ResourceRequestsCPU]; used.Cmp(resource.MustParse("800m")) != 0 {
		t.Fatalf("requests.cpu used %s after two pods, want 800m", used.String())
	}
	// A dry run is checked but not charged.
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod("dry", "100m", "100Mi"), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}}); !apierrors.IsForbidden(err) {
		t.Fatalf("dry-run pod over the pods quota: %v", err)
	}
	_, err = cs.CoreV1().Pods(ns).Create(ctx, pod("c", "400m", "256Mi"), metav1.CreateOptions{})
	want := `pods "c" is forbidden: exceeded quota: compute, requested: pods=1,requests.cpu=400m, used: pods=2,requests.cpu=800m, limited: pods=2,requests.cpu=1`
	if !apierrors.IsForbidden(err) || err.Error() != want {
		t.Fatalf("pod over quota:\n got %v\nwant %s", err, want)
	}
	if _, err := cs.CoreV1().Pods(ns).Get(ctx, "c", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("the refused pod was stored: %v", err)
	}

	out, _, err := kubectl.Run(t, c.Kubeconfig, "-n", ns, "describe", "quota", "compute")
	if err != nil {
		t.Fatalf("kubectl describe quota: %v", err)
	}
	for _, line := range []string{`pods\s+2\s+2`, `requests\.cpu\s+800m\s+1`, `limits\.memory\s+512Mi\s+1Gi`, `count/podtemplates\s+0\s+10`} {
		if !regexp.MustCompile(`(?m)^` + line + `\s*$`).MatchString(out) {
			t.Errorf("kubectl describe quota has no line %q:\n%s", line, out)
		}
	}

	// Deleting a pod gives its share back (the controller recounts).
	if err := cs.CoreV1().Pods(ns).Delete(ctx, "a", metav1.DeleteOptions{GracePeriodSeconds: new(int64)}); err != nil {
		t.Fatal(err)
	}
	waitUsed(t, ctx, cs, ns, "compute", map[string]string{"pods": "1", "requests.cpu": "400m", "limits.memory": "256Mi"})
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod("c", "400m", "256Mi"), metav1.CreateOptions{}); err != nil {
		t.Fatalf("pod after a deletion freed quota: %v", err)
	}

	// A spec change is counted again (hard follows spec).
	if _, _, err := kubectl.Run(t, c.Kubeconfig, "-n", ns, "patch", "quota", "compute", "--type=merge", "-p", `{"spec":{"hard":{"pods":"5"}}}`); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 30*time.Second, "status.hard to follow the spec", func() (bool, error) {
		q, err := cs.CoreV1().ResourceQuotas(ns).Get(ctx, "compute", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		h := q.Status.Hard[corev1.ResourcePods]
		return h.Cmp(resource.MustParse("5")) == 0, nil
	})
}

// TestConcurrentCreatesCannotExceedQuota: many clients creating at once
// get exactly as many objects as the quota allows.
func TestConcurrentCreatesCannotExceedQuota(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := ctxT(t)
	cs := c.Client
	const ns, limit, clients = "busy", 5, 24
	namespace(t, ctx, cs, ns)
	_, err := cs.CoreV1().ResourceQuotas(ns).Create(ctx, &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Name: "objects"},
		Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{
			"count/podtemplates": resource.MustParse(fmt.Sprint(limit)),
			"count/secrets":      resource.MustParse(fmt.Sprint(limit)),
		}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitUsed(t, ctx, cs, ns, "objects", map[string]string{"count/podtemplates": "0", "count/secrets": "0"})

	var wg sync.WaitGroup
	var mu sync.Mutex
	created, refused := 0, 0
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var err error
			if i%2 == 0 {
				_, err = cs.CoreV1().PodTemplates(ns).Create(ctx, &corev1.PodTemplate{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("t-%d", i)},
					Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}, metav1.CreateOptions{})
			} else {
				_, err = cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s-%d", i)}}, metav1.CreateOptions{})
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				created++
			case apierrors.IsForbidden(err) && strings.Contains(err.Error(), "exceeded quota: objects"):
				refused++
			default:
				t.Errorf("create %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	templates, err := cs.CoreV1().PodTemplates(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	secrets, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(templates.Items) != limit || len(secrets.Items) != limit || created != 2*limit || refused != clients-2*limit {
		t.Fatalf("%d pod templates and %d secrets stored, %d created, %d refused; want %d of each", len(templates.Items), len(secrets.Items), created, refused, limit)
	}
	waitUsed(t, ctx, cs, ns, "objects", map[string]string{"count/podtemplates": fmt.Sprint(limit), "count/secrets": fmt.Sprint(limit)})
	// Deleting objects the controller counts from metadata informers gives
	// their quota back.
	if err := cs.CoreV1().Secrets(ns).Delete(ctx, secrets.Items[0].Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitUsed(t, ctx, cs, ns, "objects", map[string]string{"count/secrets": fmt.Sprint(limit - 1)})
}
