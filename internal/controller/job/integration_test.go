package job_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/headway/headway/internal/controller/job"
	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/internal/testing/kubeletsim"
)

// finishPods ends the Running pods of a Job the way a container exiting
// would (the simulated kubelet runs nothing), and returns the largest
// number of pods it saw running at once.
func finishPods(ctx context.Context, client kubernetes.Interface, ns, jobName string, phase corev1.PodPhase) (maxActive int, err error) {
	list, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + jobName})
	if err != nil {
		return 0, err
	}
	for _, p := range list.Items {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || p.DeletionTimestamp != nil {
			continue
		}
		maxActive++
		if p.Status.Phase != corev1.PodRunning {
			continue
		}
		p.Status.Phase = phase
		p.Status.Conditions = nil
		if _, err := client.CoreV1().Pods(ns).UpdateStatus(ctx, &p, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
			return maxActive, err
		}
	}
	return maxActive, nil
}

func newJob(name string, completions, parallelism, backoff int32) *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
		Spec: batchv1.JobSpec{
			Completions: &completions, Parallelism: &parallelism, BackoffLimit: &backoff,
			Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
				Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}},
		},
	}
}

// complete is what `kubectl wait --for=condition=complete` waits for.
func complete(j *batchv1.Job) bool {
	c := job.Condition(j.Status, batchv1.JobComplete)
	return c != nil && c.Status == corev1.ConditionTrue
}

func TestJobs(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := t.Context()
	client := c.Client
	ns := "default"
	kubeletsim.Start(t, ctx, client)
	jobs := client.BatchV1().Jobs(ns)

	t.Run("completions 3 parallelism 2 completes", func(t *testing.T) {
		if _, err := jobs.Create(ctx, newJob("pi", 3, 2, 6), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		most := 0
		var got *batchv1.Job
		cluster.WaitFor(t, 30*time.Second, "Job complete", func() (bool, error) {
			n, err := finishPods(ctx, client, ns, "pi", corev1.PodSucceeded)
			most = max(most, n)
			if err != nil {
				return false, err
			}
			got, err = jobs.Get(ctx, "pi", metav1.GetOptions{})
			return err == nil && complete(got), err
		})
		if most > 2 {
			t.Fatalf("%d pods at once, parallelism 2", most)
		}
		st := got.Status
		if st.Succeeded != 3 || st.Failed != 0 || st.Active != 0 || st.StartTime == nil || st.CompletionTime == nil || st.Ready == nil || *st.Ready != 0 {
			t.Fatalf("status %+v", st)
		}
		if c := job.Condition(st, batchv1.JobSuccessCriteriaMet); c == nil || c.Status != corev1.ConditionTrue || c.Reason != "CompletionsReached" {
			t.Fatalf("SuccessCriteriaMet %+v", c)
		}
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=pi"})
		if err != nil {
			t.Fatal(err)
		}
		if len(pods.Items) != 3 {
			t.Fatalf("%d pods for 3 completions", len(pods.Items))
		}
		for _, p := range pods.Items {
			if ref := metav1.GetControllerOf(&p); ref == nil || ref.UID != got.UID || !strings.HasPrefix(p.Name, "pi-") {
				t.Fatalf("pod %s owner %+v", p.Name, ref)
			}
		}
	})

	t.Run("failing pods hit backoffLimit", func(t *testing.T) {
		if _, err := jobs.Create(ctx, newJob("fails", 1, 1, 1), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var got *batchv1.Job
		cluster.WaitFor(t, 30*time.Second, "Job failed", func() (bool, error) {
			if _, err := finishPods(ctx, client, ns, "fails", corev1.PodFailed); err != nil {
				return false, err
			}
			var err error
			got, err = jobs.Get(ctx, "fails", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			c := job.Condition(got.Status, batchv1.JobFailed)
			return c != nil && c.Status == corev1.ConditionTrue, nil
		})
		if c := job.Condition(got.Status, batchv1.JobFailed); c.Reason != "BackoffLimitExceeded" {
			t.Fatalf("Failed %+v", c)
		}
		if c := job.Condition(got.Status, batchv1.JobFailureTarget); c == nil || c.Reason != "BackoffLimitExceeded" {
			t.Fatalf("FailureTarget %+v", c)
		}
		if got.Status.Failed != 2 || got.Status.Succeeded != 0 || complete(got) {
			t.Fatalf("status %+v", got.Status)
		}
	})

	t.Run("indexed with ttl: hostnames, then deleted", func(t *testing.T) {
		j := newJob("idx", 2, 2, 6)
		mode := batchv1.IndexedCompletion
		ttl := int32(1)
		j.Spec.CompletionMode, j.Spec.TTLSecondsAfterFinished = &mode, &ttl
		j, err := jobs.Create(ctx, j, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, 20*time.Second, "two indexed pods", func() (bool, error) {
			pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=idx"})
			if err != nil || len(pods.Items) != 2 {
				return false, err
			}
			hosts := map[string]bool{}
			for _, p := range pods.Items {
				hosts[p.Spec.Hostname] = p.Annotations[batchv1.JobCompletionIndexAnnotation] != ""
			}
			return hosts["idx-0"] && hosts["idx-1"], nil
		})
		// The Job goes one second after it completes: under load a poll
		// may never see it complete, so a watch from its creation does.
		w, err := jobs.Watch(ctx, metav1.ListOptions{FieldSelector: "metadata.name=idx", ResourceVersion: j.ResourceVersion})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Stop()
		var seen atomic.Bool
		go func() {
			for ev := range w.ResultChan() {
				if got, ok := ev.Object.(*batchv1.Job); ok && got.UID == j.UID && complete(got) && got.Status.CompletedIndexes == "0-1" {
					seen.Store(true)
				}
			}
		}()
		cluster.WaitFor(t, 20*time.Second, "Job complete", func() (bool, error) {
			if _, err := finishPods(ctx, client, ns, "idx", corev1.PodSucceeded); err != nil {
				return false, err
			}
			return seen.Load(), nil
		})
		cluster.WaitFor(t, 20*time.Second, "Job deleted after its TTL", func() (bool, error) {
			got, err := jobs.Get(ctx, "idx", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return true, nil
			}
			return err == nil && got.UID != j.UID, err
		})
	})

	t.Run("suspend", func(t *testing.T) {
		j := newJob("later", 1, 1, 6)
		tr := true
		j.Spec.Suspend = &tr
		if _, err := jobs.Create(ctx, j, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, 20*time.Second, "Suspended condition", func() (bool, error) {
			got, err := jobs.Get(ctx, "later", metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			c := job.Condition(got.Status, batchv1.JobSuspended)
			return c != nil && c.Status == corev1.ConditionTrue && got.Status.StartTime == nil, nil
		})
		pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=later"})
		if err != nil || len(pods.Items) != 0 {
			t.Fatalf("suspended Job has %d pods (%v)", len(pods.Items), err)
		}
	})

	t.Run("job-tracking finalizer", func(t *testing.T) {
		if _, err := jobs.Create(ctx, newJob("tracked", 1, 1, 6), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		podsOf := func(name string) []corev1.Pod {
			pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: batchv1.JobNameLabel + "=" + name})
			if err != nil {
				t.Fatal(err)
			}
			return pods.Items
		}
		cluster.WaitFor(t, 20*time.Second, "a running pod", func() (bool, error) {
			p := podsOf("tracked")
			return len(p) == 1 && p[0].Status.Phase == corev1.PodRunning, nil
		})
		if p := podsOf("tracked")[0]; !job.HasTracking(p.Finalizers) {
			t.Fatalf("running pod finalizers %v, want %s", p.Finalizers, batchv1.JobTrackingFinalizer)
		}
		// Once counted, the finished pod loses the finalizer (and only it).
		cluster.WaitFor(t, 20*time.Second, "Job complete, pod untracked", func() (bool, error) {
			if _, err := finishPods(ctx, client, ns, "tracked", corev1.PodSucceeded); err != nil {
				return false, err
			}
			got, err := jobs.Get(ctx, "tracked", metav1.GetOptions{})
			p := podsOf("tracked")
			return err == nil && complete(got) && got.Status.Succeeded == 1 && len(p) == 1 && len(p[0].Finalizers) == 0, err
		})
		got, err := jobs.Get(ctx, "tracked", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if u := got.Status.UncountedTerminatedPods; u == nil || len(u.Succeeded)+len(u.Failed) != 0 {
			t.Fatalf("uncountedTerminatedPods %+v, want {}", u)
		}

		// A Job deleted while its pod runs: the pod is deleted and not held
		// by the finalizer.
		if _, err := jobs.Create(ctx, newJob("gone", 1, 1, 6), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, 20*time.Second, "a running pod", func() (bool, error) {
			p := podsOf("gone")
			return len(p) == 1 && p[0].Status.Phase == corev1.PodRunning && job.HasTracking(p[0].Finalizers), nil
		})
		bg := metav1.DeletePropagationBackground
		if err := jobs.Delete(ctx, "gone", metav1.DeleteOptions{PropagationPolicy: &bg}); err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, 30*time.Second, "the deleted Job's pod gone", func() (bool, error) {
			return len(podsOf("gone")) == 0, nil
		})

		// Orphaned (--cascade=orphan): the pod stays, without the finalizer.
		if _, err := jobs.Create(ctx, newJob("orphan", 1, 1, 6), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, 20*time.Second, "a running pod", func() (bool, error) {
			p := podsOf("orphan")
			return len(p) == 1 && p[0].Status.Phase == corev1.PodRunning && job.HasTracking(p[0].Finalizers), nil
		})
		orphan := metav1.DeletePropagationOrphan
		if err := jobs.Delete(ctx, "orphan", metav1.DeleteOptions{PropagationPolicy: &orphan}); err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, 30*time.Second, "the orphaned pod untracked", func() (bool, error) {
			p := podsOf("orphan")
			if len(p) != 1 {
				return false, fmt.Errorf("%d pods of the orphaned Job", len(p))
			}
			if metav1.GetControllerOf(&p[0]) != nil || len(p[0].Finalizers) != 0 || p[0].DeletionTimestamp != nil {
				_, jerr := jobs.Get(ctx, "orphan", metav1.GetOptions{})
				return false, fmt.Errorf("pod %s: ownerReferences %v, finalizers %v, deletionTimestamp %v (the Job: %v)",
					p[0].Name, p[0].OwnerReferences, p[0].Finalizers, p[0].DeletionTimestamp, jerr)
			}
			return true, nil
		})
	})
}
