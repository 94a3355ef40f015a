package deployment_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/kubectl/pkg/polymorphichelpers"

	"github.com/headway/headway/internal/controller/deployment"
	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/internal/testing/kubeletsim"
)

func getDeployment(t *testing.T, ctx context.Context, client kubernetes.Interface, ns, name string) *appsv1.Deployment {
	t.Helper()
	d, err := client.AppsV1().Deployments(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// rolledOut asks kubectl's rollout status viewer.
func rolledOut(t *testing.T, ctx context.Context, client kubernetes.Interface, ns, name string) (string, bool, error) {
	t.Helper()
	viewer, err := polymorphichelpers.StatusViewerFor(appsv1.SchemeGroupVersion.WithKind("Deployment").GroupKind())
	if err != nil {
		t.Fatal(err)
	}
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(getDeployment(t, ctx, client, ns, name))
	if err != nil {
		t.Fatal(err)
	}
	return viewer.Status(&unstructured.Unstructured{Object: u}, 0)
}

func waitRolledOut(t *testing.T, ctx context.Context, client kubernetes.Interface, ns, name string) {
	t.Helper()
	var msg string
	cluster.WaitFor(t, 30*time.Second, "rollout status: successfully rolled out", func() (bool, error) {
		m, done, err := rolledOut(t, ctx, client, ns, name)
		msg = m
		return done, err
	})
	if want := fmt.Sprintf("deployment %q successfully rolled out\n", name); msg != want {
		t.Fatalf("rollout status %q, want %q", msg, want)
	}
}

// sets returns the Deployment's ReplicaSets by name.
func sets(t *testing.T, ctx context.Context, client kubernetes.Interface, ns string) map[string]appsv1.ReplicaSet {
	t.Helper()
	list, err := client.AppsV1().ReplicaSets(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]appsv1.ReplicaSet{}
	for _, rs := range list.Items {
		out[rs.Name] = rs
	}
	return out
}

func livePods(t *testing.T, ctx context.Context, client kubernetes.Interface, ns string) []corev1.Pod {
	t.Helper()
	list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p)
		}
	}
	return out
}

// TestDeploymentLifecycle: create → available, image update rolled out
// within maxSurge (old set scaled to 0), history and undo through kubectl's
// helpers, pause/resume, scaling, and deletion with the garbage collector
// removing sets and pods.
func TestDeploymentLifecycle(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := t.Context()
	client := c.Client
	ns := "default"
	kubeletsim.Start(t, ctx, client)

	surge, unavailable := intstr.FromInt32(1), intstr.FromInt32(0)
	replicas, history := int32(3), int32(2)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns, Labels: map[string]string{"app": "web"}},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:1.27"}}},
			},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: &surge, MaxUnavailable: &unavailable}},
			RevisionHistoryLimit: &history,
		},
	}
	d, err := client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	// The most pods asked for at once, watched over the whole test.
	var maxSpec atomic.Int32
	specs := map[string]int32{}
	var specMu sync.Mutex
	w, err := client.AppsV1().ReplicaSets(ns).Watch(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	go func() {
		for ev := range w.ResultChan() {
			rs, ok := ev.Object.(*appsv1.ReplicaSet)
			if !ok {
				continue
			}
			specMu.Lock()
			if ev.Type == watch.Deleted {
				delete(specs, rs.Name)
			} else {
				specs[rs.Name] = *rs.Spec.Replicas
			}
			sum := int32(0)
			for _, n := range specs {
				sum += n
			}
			specMu.Unlock()
			if sum > maxSpec.Load() {
				maxSpec.Store(sum)
			}
		}
	}()

	var first string
	t.Run("available", func(t *testing.T) {
		waitRolledOut(t, ctx, client, ns, "web")
		got := getDeployment(t, ctx, client, ns, "web")
		st := got.Status
		if st.Replicas != 3 || st.UpdatedReplicas != 3 || st.ReadyReplicas != 3 || st.AvailableReplicas != 3 || st.UnavailableReplicas != 0 || st.ObservedGeneration != got.Generation {
			t.Fatalf("status %+v", st)
		}
		if c := deployment.Condition(st, appsv1.DeploymentAvailable); c == nil || c.Status != corev1.ConditionTrue {
			t.Fatalf("Available %+v", c)
		}
		if c := deployment.Condition(st, appsv1.DeploymentProgressing); c == nil || c.Reason != deployment.ReasonNewRSAvailable {
			t.Fatalf("Progressing %+v", c)
		}
		if got.Annotations[deployment.RevisionAnnotation] != "1" {
			t.Fatalf("deployment annotations %v", got.Annotations)
		}
		all := sets(t, ctx, client, ns)
		if len(all) != 1 {
			t.Fatalf("sets %v", all)
		}
		for name, rs := range all {
			first = name
			hash := rs.Labels[deployment.HashLabel]
			if name != "web-"+hash || rs.Spec.Selector.MatchLabels[deployment.HashLabel] != hash || rs.Annotations[deployment.RevisionAnnotation] != "1" ||
				rs.Annotations[deployment.DesiredReplicasAnnotation] != "3" || rs.Annotations[deployment.MaxReplicasAnnotation] != "4" {
				t.Fatalf("set %s labels %v selector %v annotations %v", name, rs.Labels, rs.Spec.Selector, rs.Annotations)
			}
			if ref := metav1.GetControllerOf(&rs); ref == nil || ref.UID != d.UID || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
				t.Fatalf("set owner %+v", ref)
			}
			if rs.Status.Replicas != 3 || rs.Status.FullyLabeledReplicas != 3 || rs.Status.AvailableReplicas != 3 || rs.Status.ObservedGeneration != rs.Generation {
				t.Fatalf("set status %+v", rs.Status)
			}
		}
		for _, p := range livePods(t, ctx, client, ns) {
			ref := metav1.GetControllerOf(&p)
			if !strings.HasPrefix(p.Name, first+"-") || len(p.Name) != len(first)+6 || p.Labels[deployment.HashLabel] == "" || ref == nil || ref.Name != first {
				t.Fatalf("pod %s labels %v owner %+v", p.Name, p.Labels, ref)
			}
		}
	})

	var second string
	t.Run("image update rolls out", func(t *testing.T) {
		patch := `{"metadata":{"annotations":{"kubernetes.io/change-cause":"nginx 1.28"}},"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.28"}]}}}}`
		if _, err := client.AppsV1().Deployments(ns).Patch(ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, 10*time.Second, "a second set", func() (bool, error) { return len(sets(t, ctx, client, ns)) == 2, nil })
		waitRolledOut(t, ctx, client, ns, "web")
		for name, rs := range sets(t, ctx, client, ns) {
			switch name {
			case first:
				if *rs.Spec.Replicas != 0 || rs.Status.Replicas != 0 {
					t.Fatalf("old set %d/%d", *rs.Spec.Replicas, rs.Status.Replicas)
				}
			default:
				second = name
				if *rs.Spec.Replicas != 3 || rs.Annotations[deployment.RevisionAnnotation] != "2" || rs.Annotations[deployment.ChangeCauseAnnotation] != "nginx 1.28" {
					t.Fatalf("new set %d annotations %v", *rs.Spec.Replicas, rs.Annotations)
				}
			}
		}
		for _, p := range livePods(t, ctx, client, ns) {
			if p.Spec.Containers[0].Image != "nginx:1.28" {
				t.Fatalf("pod %s runs %s", p.Name, p.Spec.Containers[0].Image)
			}
		}
		if got := getDeployment(t, ctx, client, ns, "web").Annotations[deployment.RevisionAnnotation]; got != "2" {
			t.Fatalf("deployment revision %q", got)
		}
		if m := maxSpec.Load(); m > 4 {
			t.Fatalf("%d pods asked for at once, over replicas+maxSurge 4", m)
		}
	})

	gk := appsv1.SchemeGroupVersion.WithKind("Deployment").GroupKind()
	t.Run("history and undo", func(t *testing.T) {
		hv, err := polymorphichelpers.HistoryViewerFor(gk, client)
		if err != nil {
			t.Fatal(err)
		}
		hist, err := hv.ViewHistory(ns, "web", 0)
		if err != nil || !strings.Contains(hist, "REVISION") || !strings.Contains(hist, "\n1 ") || !strings.Contains(hist, "\n2 ") || !strings.Contains(hist, "nginx 1.28") {
			t.Fatalf("rollout history:\n%s\n%v", hist, err)
		}
		rb, err := polymorphichelpers.RollbackerFor(gk, client)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := rb.Rollback(getDeployment(t, ctx, client, ns, "web"), nil, 0, cmdutil.DryRunNone)
		if err != nil || msg != "rolled back" {
			t.Fatalf("rollout undo: %q %v", msg, err)
		}
		cluster.WaitFor(t, 10*time.Second, "the undo observed", func() (bool, error) {
			d := getDeployment(t, ctx, client, ns, "web")
			return d.Status.ObservedGeneration == d.Generation, nil
		})
		waitRolledOut(t, ctx, client, ns, "web")
		all := sets(t, ctx, client, ns)
		if len(all) != 2 || *all[first].Spec.Replicas != 3 || *all[second].Spec.Replicas != 0 {
			t.Fatalf("sets after undo: %d, %s=%d %s=%d", len(all), first, *all[first].Spec.Replicas, second, *all[second].Spec.Replicas)
		}
		if a := all[first].Annotations; a[deployment.RevisionAnnotation] != "3" || a[deployment.RevisionHistoryAnnotation] != "1" {
			t.Fatalf("rolled-back-to set annotations %v", a)
		}
		if got := getDeployment(t, ctx, client, ns, "web").Annotations[deployment.RevisionAnnotation]; got != "3" {
			t.Fatalf("deployment revision %q after undo", got)
		}
		msg, err = rb.Rollback(getDeployment(t, ctx, client, ns, "web"), nil, 3, cmdutil.DryRunNone)
		if err != nil || !strings.Contains(msg, "skipped rollback") {
			t.Fatalf("undo to the current revision: %q %v", msg, err)
		}
	})

	t.Run("pause and resume", func(t *testing.T) {
		if _, err := client.AppsV1().Deployments(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"paused":true}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		patch := `{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.29"}]}}}}`
		if _, err := client.AppsV1().Deployments(ns).Patch(ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, 10*time.Second, "paused condition", func() (bool, error) {
			d := getDeployment(t, ctx, client, ns, "web")
			c := deployment.Condition(d.Status, appsv1.DeploymentProgressing)
			return d.Status.ObservedGeneration == d.Generation && c != nil && c.Reason == deployment.ReasonPaused, nil
		})
		if n := len(sets(t, ctx, client, ns)); n != 2 {
			t.Fatalf("a paused deployment rolled out: %d sets", n)
		}
		if _, err := client.AppsV1().Deployments(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"paused":false}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitRolledOut(t, ctx, client, ns, "web")
		// revisionHistoryLimit 2: the oldest of three old sets is gone.
		cluster.WaitFor(t, 10*time.Second, "history cut to 2 old sets", func() (bool, error) { return len(sets(t, ctx, client, ns)) == 3, nil })
	})

	t.Run("scale", func(t *testing.T) {
		scale, err := client.AppsV1().Deployments(ns).GetScale(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		scale.Spec.Replicas = 5
		if _, err := client.AppsV1().Deployments(ns).UpdateScale(ctx, "web", scale, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitRolledOut(t, ctx, client, ns, "web")
		if n := len(livePods(t, ctx, client, ns)); n != 5 {
			t.Fatalf("%d pods after scaling to 5", n)
		}
		if _, err := client.AppsV1().Deployments(ns).Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"replicas":1}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		waitRolledOut(t, ctx, client, ns, "web")
		cluster.WaitFor(t, 10*time.Second, "one pod", func() (bool, error) { return len(livePods(t, ctx, client, ns)) == 1, nil })
	})

	t.Run("delete", func(t *testing.T) {
		if err := client.AppsV1().Deployments(ns).Delete(ctx, "web", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, 20*time.Second, "sets and pods collected", func() (bool, error) {
			if _, err := client.AppsV1().Deployments(ns).Get(ctx, "web", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				return false, err
			}
			pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
			if err != nil {
				return false, err
			}
			return len(sets(t, ctx, client, ns)) == 0 && len(pods.Items) == 0, nil
		})
	})
}

// TestReplicaSetAlone: a bare ReplicaSet creates its pods, adopts an
// orphan that matches, releases a pod relabelled out of it, and replaces
// a deleted pod.
func TestReplicaSetAlone(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := t.Context()
	client := c.Client
	ns := "default"
	kubeletsim.Start(t, ctx, client)

	orphan := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "stray", Namespace: ns, Labels: map[string]string{"app": "solo"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
	}
	if _, err := client.CoreV1().Pods(ns).Create(ctx, orphan, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	n := int32(3)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "solo", Namespace: ns},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &n,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "solo"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "solo"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
	rs, err := client.AppsV1().ReplicaSets(ns).Create(ctx, rs, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	owned := func() []corev1.Pod {
		list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var out []corev1.Pod
		for _, p := range list.Items {
			if ref := metav1.GetControllerOf(&p); ref != nil && ref.UID == rs.UID && p.DeletionTimestamp == nil {
				out = append(out, p)
			}
		}
		return out
	}
	cluster.WaitFor(t, 20*time.Second, "3 ready pods, the stray adopted", func() (bool, error) {
		got, err := client.AppsV1().ReplicaSets(ns).Get(ctx, "solo", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return len(owned()) == 3 && got.Status.ReadyReplicas == 3 && got.Status.AvailableReplicas == 3, nil
	})
	adopted := false
	for _, p := range owned() {
		if p.Name == "stray" {
			adopted = true
		}
	}
	if !adopted {
		t.Fatal("the matching orphan was not adopted")
	}

	// Relabel one out: released, and replaced.
	if _, err := client.CoreV1().Pods(ns).Patch(ctx, "stray", types.MergePatchType, []byte(`{"metadata":{"labels":{"app":"elsewhere"}}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 20*time.Second, "stray released and replaced", func() (bool, error) {
		p, err := client.CoreV1().Pods(ns).Get(ctx, "stray", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return metav1.GetControllerOf(p) == nil && len(owned()) == 3, nil
	})

	// Scale down: three go to one.
	if _, err := client.AppsV1().ReplicaSets(ns).Patch(ctx, "solo", types.MergePatchType, []byte(`{"spec":{"replicas":1}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 20*time.Second, "one pod", func() (bool, error) {
		got, err := client.AppsV1().ReplicaSets(ns).Get(ctx, "solo", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return len(owned()) == 1 && got.Status.Replicas == 1 && got.Status.ObservedGeneration == got.Generation, nil
	})
}
