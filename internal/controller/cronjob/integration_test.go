package cronjob_test

import (
	"log/slog"
	"strconv"
	"sync"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/record"

	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/controller/cronjob"
	"github.com/headway/headway/internal/testing/cluster"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time)     { c.mu.Lock(); defer c.mu.Unlock(); c.t = t }
func minuteOf(t time.Time) time.Time { return t.Truncate(time.Minute) }

// TestCronJobFakeClock runs the controller alone (no other controller, so
// the Jobs it creates stay as created) on a clock the test moves: an
// "every minute" CronJob creates <name>-<minutes> Jobs with itself as
// controller, Forbid skips while one is active, and a finished Job counts
// as the last success and leaves history beyond the limit.
func TestCronJobFakeClock(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS(), func(o *app.Options) { o.NoControllers = true })
	ctx := t.Context()
	client := c.Client
	ns := "default"

	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "tick", Namespace: ns},
		Spec: batchv1.CronJobSpec{
			Schedule: "* * * * *", ConcurrencyPolicy: batchv1.ForbidConcurrent,
			SuccessfulJobsHistoryLimit: ptr(int32(1)),
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}},
		},
	}
	cj, err := client.BatchV1().CronJobs(ns).Create(ctx, cj, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: minuteOf(cj.CreationTimestamp.Time).Add(2*time.Minute + 5*time.Second)}
	factory := informers.NewSharedInformerFactory(client, 0)
	ctrl := cronjob.New(client, factory, record.NewFakeRecorder(100), slog.New(slog.DiscardHandler))
	ctrl.Now = clk.now
	factory.Start(ctx.Done())
	done := make(chan struct{})
	go func() { defer close(done); ctrl.Run(ctx) }()
	t.Cleanup(func() { <-done; factory.Shutdown() })

	// touch makes the controller look again (the real next time is a
	// minute away in real time).
	touch := func() {
		patch := `{"metadata":{"annotations":{"touch":"` + strconv.FormatInt(time.Now().UnixNano(), 10) + `"}}}`
		if _, err := client.BatchV1().CronJobs(ns).Patch(ctx, "tick", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	jobNames := func() map[string]*batchv1.Job {
		list, err := client.BatchV1().Jobs(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]*batchv1.Job{}
		for i := range list.Items {
			out[list.Items[i].Name] = &list.Items[i]
		}
		return out
	}

	first := "tick-" + strconv.FormatInt(minuteOf(clk.now()).Unix()/60, 10)
	cluster.WaitFor(t, 20*time.Second, "the first Job "+first, func() (bool, error) {
		got, err := client.BatchV1().CronJobs(ns).Get(ctx, "tick", metav1.GetOptions{})
		return err == nil && jobNames()[first] != nil && len(got.Status.Active) == 1 && got.Status.LastScheduleTime != nil, err
	})
	j := jobNames()[first]
	if ref := metav1.GetControllerOf(j); ref == nil || ref.UID != cj.UID || ref.Kind != "CronJob" {
		t.Fatalf("job owner %+v", ref)
	}

	// A minute later with the first still active: Forbid skips.
	clk.set(clk.now().Add(time.Minute))
	touch()
	time.Sleep(500 * time.Millisecond) // nothing to wait for: a skip writes nothing
	if n := len(jobNames()); n != 1 {
		t.Fatalf("%d Jobs with Forbid and one active", n)
	}

	// The first finishes: the skipped minute runs, and history keeps one.
	now := metav1.NewTime(clk.now())
	j.Status.StartTime = &now
	j.Status.CompletionTime = &now
	j.Status.Succeeded = 1
	j.Status.Conditions = []batchv1.JobCondition{
		{Type: batchv1.JobSuccessCriteriaMet, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastTransitionTime: now, LastProbeTime: now},
		{Type: batchv1.JobComplete, Status: corev1.ConditionTrue, Reason: "CompletionsReached", LastTransitionTime: now, LastProbeTime: now},
	}
	if _, err := client.BatchV1().Jobs(ns).UpdateStatus(ctx, j, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	// The clock is past the next minute already: it runs at once.
	second := "tick-" + strconv.FormatInt(minuteOf(clk.now()).Unix()/60, 10)
	cluster.WaitFor(t, 20*time.Second, "lastSuccessfulTime and the second Job "+second, func() (bool, error) {
		got, err := client.BatchV1().CronJobs(ns).Get(ctx, "tick", metav1.GetOptions{})
		return err == nil && got.Status.LastSuccessfulTime != nil && len(got.Status.Active) == 1 && got.Status.Active[0].Name == second &&
			jobNames()[second] != nil, err
	})
	// Finish the second too: the first goes (successfulJobsHistoryLimit 1).
	j2 := jobNames()[second]
	j2.Status = j.Status
	if _, err := client.BatchV1().Jobs(ns).UpdateStatus(ctx, j2, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 20*time.Second, "the older finished Job deleted", func() (bool, error) {
		names := jobNames()
		return names[first] == nil && names[second] != nil, nil
	})
}

func ptr[T any](v T) *T { return &v }
