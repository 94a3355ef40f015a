package disruption_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/kubectl/pkg/drain"

	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/internal/testing/kubeletsim"
)

// readyPods returns the Ready pods of app=web not being deleted.
func readyPods(t *testing.T, ctx context.Context, client kubernetes.Interface, ns string) []corev1.Pod {
	t.Helper()
	list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	var out []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp != nil {
			continue
		}
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
				out = append(out, p)
			}
		}
	}
	return out
}

// waitBudget waits for the controller to have observed the budget's
// generation with the given healthy counts and allowed disruptions.
// runningReadyPod creates pod name (label app=web) bound to node-x, where
// no kubelet runs, and makes it Running and Ready, retrying on a conflict
// with the scheduler's writes. An evicted pod there stays terminating, so
// its last status can be read.
func runningReadyPod(t *testing.T, ctx context.Context, client kubernetes.Interface, ns, name string) {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "node-x", Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
	}
	if _, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		cur, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		cur.Status.Phase = corev1.PodRunning
		cur.Status.Conditions = append(cur.Status.Conditions, corev1.PodCondition{Type: corev1.PodReady, Status: corev1.ConditionTrue})
		_, err = client.CoreV1().Pods(ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

func waitBudget(t *testing.T, ctx context.Context, client kubernetes.Interface, ns string, expected, current, desired, allowed int32) *policyv1.PodDisruptionBudget {
	t.Helper()
	var pdb *policyv1.PodDisruptionBudget
	cluster.WaitFor(t, 30*time.Second, "the budget's status", func() (bool, error) {
		var err error
		pdb, err = client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		st := pdb.Status
		return st.ObservedGeneration == pdb.Generation && st.ExpectedPods == expected && st.CurrentHealthy == current &&
			st.DesiredHealthy == desired && st.DisruptionsAllowed == allowed, nil
	})
	reason := policyv1.InsufficientPodsReason
	if allowed > 0 {
		reason = policyv1.SufficientPodsReason
	}
	if c := apimeta.FindStatusCondition(pdb.Status.Conditions, policyv1.DisruptionAllowedCondition); c == nil || c.Reason != reason {
		t.Fatalf("DisruptionAllowed %+v, want reason %s", c, reason)
	}
	return pdb
}

func evict(ctx context.Context, client kubernetes.Interface, ns, name string) error {
	return client.PolicyV1().Evictions(ns).Evict(ctx, &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}})
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func drainer(ctx context.Context, client kubernetes.Interface, timeout time.Duration, errOut io.Writer) *drain.Helper {
	return &drain.Helper{
		Ctx: ctx, Client: client, Force: true, IgnoreAllDaemonSets: true, DeleteEmptyDirData: true,
		GracePeriodSeconds: -1, Timeout: timeout, EvictErrorRetryDelay: 100 * time.Millisecond,
		Out: io.Discard, ErrOut: errOut,
	}
}

// TestEvictionHonoursBudget: a Deployment of 2 and a budget of minAvailable
// 2 — the eviction API answers 429 with the budget's reason and kubectl's
// drain waits; scaled to 3, an eviction goes through (taking the budget's
// one disruption) and the drain completes.
func TestEvictionHonoursBudget(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := t.Context()
	client := c.Client
	ns := "default"
	kubeletsim.Start(t, ctx, client)

	replicas := int32(2)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:1.27"}}},
			},
		},
	}
	if _, err := client.AppsV1().Deployments(ns).Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 30*time.Second, "2 ready pods", func() (bool, error) { return len(readyPods(t, ctx, client, ns)) == 2, nil })

	two := intstr.FromInt32(2)
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &two,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}
	if _, err := client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitBudget(t, ctx, client, ns, 2, 2, 2, 0)

	victim := readyPods(t, ctx, client, ns)[0]
	err := evict(ctx, client, ns, victim.Name)
	if !apierrors.IsTooManyRequests(err) {
		t.Fatalf("eviction blocked by the budget: %v, want 429", err)
	}
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		t.Fatalf("%T is not a Status", err)
	}
	st := status.Status()
	if st.Message != "Cannot evict pod as it would violate the pod's disruption budget." || st.Details == nil || len(st.Details.Causes) != 1 {
		t.Fatalf("status %+v", st)
	}
	if cause := st.Details.Causes[0]; cause.Type != policyv1.DisruptionBudgetCause || cause.Message != "The disruption budget web needs 2 healthy pods and has 2 currently" {
		t.Fatalf("cause %+v", cause)
	}
	if p, err := client.CoreV1().Pods(ns).Get(ctx, victim.Name, metav1.GetOptions{}); err != nil || p.DeletionTimestamp != nil {
		t.Fatalf("refused eviction touched the pod: %v %v", err, p.DeletionTimestamp)
	}

	// kubectl drain retries on 429: with a short timeout it gives up.
	errOut := &syncBuffer{}
	if err := drain.RunNodeDrain(drainer(ctx, client, time.Second, errOut), "node-1"); err == nil {
		t.Fatal("drain went through a budget allowing no disruption")
	}
	if !strings.Contains(errOut.String(), "Cannot evict pod as it would violate the pod's disruption budget") {
		t.Fatalf("drain output %q", errOut.String())
	}
	if n := len(readyPods(t, ctx, client, ns)); n != 2 {
		t.Fatalf("%d ready pods after a blocked drain, want 2", n)
	}

	// Scaled to 3, the budget allows one disruption.
	scale, err := client.AppsV1().Deployments(ns).GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	scale.Spec.Replicas = 3
	if _, err := client.AppsV1().Deployments(ns).UpdateScale(ctx, "web", scale, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitBudget(t, ctx, client, ns, 3, 3, 2, 1)
	victim = readyPods(t, ctx, client, ns)[0]
	if err := evict(ctx, client, ns, victim.Name); err != nil {
		t.Fatalf("eviction the budget allows: %v", err)
	}
	// The budget took the disruption: a second eviction at once is refused
	// (the replacement cannot be Ready yet).
	if err := evict(ctx, client, ns, readyPods(t, ctx, client, ns)[1].Name); err != nil && !apierrors.IsTooManyRequests(err) {
		t.Fatalf("second eviction: %v", err)
	}
	cluster.WaitFor(t, 30*time.Second, "the evicted pod gone", func() (bool, error) {
		_, err := client.CoreV1().Pods(ns).Get(ctx, victim.Name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	// The replacement makes the budget allow one disruption again.
	waitBudget(t, ctx, client, ns, 3, 3, 2, 1)

	// A drain now evicts every pod of the node one at a time, waiting on
	// the budget between them.
	errOut = &syncBuffer{}
	if err := drain.RunNodeDrain(drainer(ctx, client, 60*time.Second, errOut), "node-1"); err != nil {
		t.Fatalf("drain: %v\n%s", err, errOut.String())
	}
}

// TestEvictionStaleBudget: a budget whose status has not observed its
// generation refuses evictions with the "still being processed" cause.
func TestEvictionStaleBudget(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := t.Context()
	client := c.Client
	ns := "default"

	runningReadyPod(t, ctx, client, ns, "p")
	zero := intstr.FromInt32(0)
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &zero,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}
	if _, err := client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitBudget(t, ctx, client, ns, 1, 1, 0, 1)

	// A second budget selecting the pod: kube-apiserver's 500.
	other := pdb.DeepCopy()
	other.Name = "other"
	if _, err := client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, other, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err := evict(ctx, client, ns, "p")
	if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.") {
		t.Fatalf("eviction with two budgets: %v", err)
	}
	if err := client.PolicyV1().PodDisruptionBudgets(ns).Delete(ctx, "other", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	// Write a status that has not observed the generation (as if the
	// controller lagged a spec change).
	cur, err := client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cur.Status.ObservedGeneration = cur.Generation - 1
	if _, err := client.PolicyV1().PodDisruptionBudgets(ns).UpdateStatus(ctx, cur, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = evict(ctx, client, ns, "p")
	var status apierrors.APIStatus
	if !apierrors.IsTooManyRequests(err) || !errors.As(err, &status) {
		// The controller may already have corrected the status: only a
		// 429 or a success are acceptable answers.
		if err != nil {
			t.Fatalf("eviction with a stale budget: %v", err)
		}
		return
	}
	if d := status.Status().Details; d == nil || len(d.Causes) != 1 || d.Causes[0].Message != "The disruption budget web is still being processed by the server." {
		t.Fatalf("status %+v", status.Status())
	}
}

// disruptionTarget returns the pod's DisruptionTarget condition.
func disruptionTarget(p *corev1.Pod) *corev1.PodCondition {
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.DisruptionTarget {
			return &p.Status.Conditions[i]
		}
	}
	return nil
}

// TestEvictionMarksDisruptionTarget: an eviction the budget allows, and
// one of a pending pod no budget guards, mark the pod with the
// DisruptionTarget condition (EvictionByEvictionAPI) as they delete it; a
// dry run and a refused eviction leave the pod untouched.
func TestEvictionMarksDisruptionTarget(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := t.Context()
	client := c.Client
	ns := "default"

	// On a node with no kubelet, an evicted pod stays terminating, so its
	// last status can be read.
	runningReadyPod(t, ctx, client, ns, "p")
	one := intstr.FromInt32(1)
	pdb := &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: &one,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}},
	}
	if _, err := client.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitBudget(t, ctx, client, ns, 1, 1, 1, 0)

	// Refused: no condition, no deletion.
	if err := evict(ctx, client, ns, "p"); !apierrors.IsTooManyRequests(err) {
		t.Fatalf("eviction the budget forbids: %v, want 429", err)
	}
	// A dry run the budget allows: nothing written either.
	pdb, err := client.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	zero := intstr.FromInt32(0)
	pdb.Spec.MinAvailable = &zero
	if _, err := client.PolicyV1().PodDisruptionBudgets(ns).Update(ctx, pdb, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitBudget(t, ctx, client, ns, 1, 1, 0, 1)
	dry := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns}, DeleteOptions: &metav1.DeleteOptions{DryRun: []string{metav1.DryRunAll}}}
	if err := client.PolicyV1().Evictions(ns).Evict(ctx, dry); err != nil {
		t.Fatalf("dry-run eviction: %v", err)
	}
	p, err := client.CoreV1().Pods(ns).Get(ctx, "p", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.DeletionTimestamp != nil || disruptionTarget(p) != nil {
		t.Fatalf("refused or dry-run eviction changed the pod: deletionTimestamp %v, conditions %+v", p.DeletionTimestamp, p.Status.Conditions)
	}

	if err := evict(ctx, client, ns, "p"); err != nil {
		t.Fatalf("eviction the budget allows: %v", err)
	}
	p, err = client.CoreV1().Pods(ns).Get(ctx, "p", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cond := disruptionTarget(p)
	if p.DeletionTimestamp == nil || cond == nil || cond.Status != corev1.ConditionTrue || cond.Reason != "EvictionByEvictionAPI" ||
		cond.Message != "Eviction API: evicting" || cond.LastTransitionTime.IsZero() {
		t.Fatalf("evicted pod: deletionTimestamp %v, DisruptionTarget %+v", p.DeletionTimestamp, cond)
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status != corev1.ConditionTrue {
			t.Fatalf("the eviction changed other conditions: %+v", p.Status.Conditions)
		}
	}

	// A pending pod (never scheduled, held by a finalizer) needs no budget;
	// it is marked too.
	pending := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "pending", Namespace: ns, Finalizers: []string{"example.com/hold"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}},
			NodeSelector: map[string]string{"no-such": "node"}},
	}
	if _, err := client.CoreV1().Pods(ns).Create(ctx, pending, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := evict(ctx, client, ns, "pending"); err != nil {
		t.Fatalf("evicting a pending pod: %v", err)
	}
	p, err = client.CoreV1().Pods(ns).Get(ctx, "pending", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cond := disruptionTarget(p); p.DeletionTimestamp == nil || cond == nil || cond.Reason != "EvictionByEvictionAPI" {
		t.Fatalf("evicted pending pod: deletionTimestamp %v, DisruptionTarget %+v", p.DeletionTimestamp, cond)
	}
	p.Finalizers = nil
	if _, err := client.CoreV1().Pods(ns).Update(ctx, p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
}
