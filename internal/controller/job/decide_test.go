package job

import (
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func i32(v int32) *int32 { return &v }
func i64(v int64) *int64 { return &v }

func newJob(completions, parallelism int32) *batchv1.Job {
	m := batchv1.NonIndexedCompletion
	f := false
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "pi", Namespace: "default", UID: "job-uid"},
		Spec: batchv1.JobSpec{
			Completions: i32(completions), Parallelism: i32(parallelism), BackoffLimit: i32(2),
			CompletionMode: &m, Suspend: &f,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"job-name": "pi"}},
				Spec:       corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
}

func pod(name string, ph corev1.PodPhase, index int) *corev1.Pod {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name), CreationTimestamp: metav1.NewTime(t0.Add(-time.Minute))},
		Status: corev1.PodStatus{Phase: ph}}
	if index >= 0 {
		p.Annotations = map[string]string{batchv1.JobCompletionIndexAnnotation: itoa(index)}
	}
	return p
}

func itoa(i int) string { return string(rune('0' + i)) }

func started(j *batchv1.Job) *batchv1.Job {
	t := metav1.NewTime(t0.Add(-time.Minute))
	j.Status.StartTime = &t
	return j
}

func condStatus(st batchv1.JobStatus, t batchv1.JobConditionType) string {
	if c := Condition(st, t); c != nil {
		return string(c.Status) + "/" + c.Reason
	}
	return ""
}

func TestDecide(t *testing.T) {
	indexedJob := func(completions, parallelism int32) *batchv1.Job {
		j := newJob(completions, parallelism)
		m := batchv1.IndexedCompletion
		j.Spec.CompletionMode = &m
		return j
	}
	for _, tc := range []struct {
		name                string
		job                 *batchv1.Job
		pods                []*corev1.Pod
		create              []int
		deletes             int
		active, succ, fail  int32
		conds               map[batchv1.JobConditionType]string
		finished, startTime bool
		completed           string
	}{
		{name: "new job starts parallelism pods", job: newJob(3, 2), create: []int{-1, -1}, startTime: true},
		{name: "one succeeded, one running: one more", job: started(newJob(3, 2)),
			pods: []*corev1.Pod{pod("a", corev1.PodSucceeded, -1), pod("b", corev1.PodRunning, -1)}, create: []int{-1}, active: 1, succ: 1, startTime: true},
		{name: "two succeeded, one running: no more than remaining", job: started(newJob(3, 2)),
			pods: []*corev1.Pod{pod("a", corev1.PodSucceeded, -1), pod("b", corev1.PodSucceeded, -1), pod("c", corev1.PodRunning, -1)}, active: 1, succ: 2, startTime: true},
		{name: "completions reached: SuccessCriteriaMet then Complete", job: started(newJob(2, 2)),
			pods: []*corev1.Pod{pod("a", corev1.PodSucceeded, -1), pod("b", corev1.PodSucceeded, -1)}, succ: 2, startTime: true, finished: true,
			conds: map[batchv1.JobConditionType]string{batchv1.JobSuccessCriteriaMet: "True/CompletionsReached", batchv1.JobComplete: "True/CompletionsReached"}},
		{name: "failures up to the limit are replaced", job: started(newJob(1, 1)),
			pods: []*corev1.Pod{pod("a", corev1.PodFailed, -1), pod("b", corev1.PodFailed, -1)}, create: []int{-1}, fail: 2, startTime: true},
		{name: "backoff limit exceeded", job: started(newJob(1, 1)),
			pods: []*corev1.Pod{pod("a", corev1.PodFailed, -1), pod("b", corev1.PodFailed, -1), pod("c", corev1.PodFailed, -1)}, fail: 3, startTime: true, finished: true,
			conds: map[batchv1.JobConditionType]string{batchv1.JobFailureTarget: "True/BackoffLimitExceeded", batchv1.JobFailed: "True/BackoffLimitExceeded"}},
		{name: "deadline exceeded deletes the running pods, Failed after they are gone", job: func() *batchv1.Job {
			j := started(newJob(1, 1))
			j.Spec.ActiveDeadlineSeconds = i64(30)
			return j
		}(), pods: []*corev1.Pod{pod("a", corev1.PodRunning, -1)}, deletes: 1, startTime: true,
			conds: map[batchv1.JobConditionType]string{batchv1.JobFailureTarget: "True/DeadlineExceeded", batchv1.JobFailed: ""}},
		{name: "suspended: pods deleted, no start time", job: func() *batchv1.Job {
			j := started(newJob(3, 2))
			tr := true
			j.Spec.Suspend = &tr
			return j
		}(), pods: []*corev1.Pod{pod("a", corev1.PodRunning, -1)}, deletes: 1,
			conds: map[batchv1.JobConditionType]string{batchv1.JobSuspended: "True/JobSuspended"}},
		{name: "parallelism lowered: extra pods deleted", job: started(newJob(5, 1)),
			pods: []*corev1.Pod{pod("a", corev1.PodRunning, -1), pod("b", corev1.PodRunning, -1)}, deletes: 1, active: 2, startTime: true},
		{name: "indexed: missing indexes created lowest first", job: started(indexedJob(4, 2)),
			pods: []*corev1.Pod{pod("a", corev1.PodSucceeded, 0), pod("b", corev1.PodRunning, 2)}, create: []int{1}, active: 1, succ: 1, startTime: true, completed: "0"},
		{name: "indexed: done when every index succeeded", job: started(indexedJob(3, 3)),
			pods: []*corev1.Pod{pod("a", corev1.PodSucceeded, 0), pod("b", corev1.PodSucceeded, 1), pod("c", corev1.PodSucceeded, 2), pod("d", corev1.PodSucceeded, 1)},
			succ: 3, startTime: true, finished: true, completed: "0-2",
			conds: map[batchv1.JobConditionType]string{batchv1.JobComplete: "True/CompletionsReached"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := Decide(Input{Job: tc.job, Pods: tc.pods, Now: t0})
			if len(plan.Create) != len(tc.create) {
				t.Fatalf("create %v, want %v", plan.Create, tc.create)
			}
			for i := range tc.create {
				if plan.Create[i] != tc.create[i] {
					t.Fatalf("create %v, want %v", plan.Create, tc.create)
				}
			}
			st := plan.Status
			if len(plan.Delete) != tc.deletes || st.Active != tc.active || st.Succeeded != tc.succ || st.Failed != tc.fail || plan.Finished != tc.finished ||
				(st.StartTime != nil) != tc.startTime || st.CompletedIndexes != tc.completed {
				t.Fatalf("delete %d active %d succeeded %d failed %d finished %v start %v indexes %q", len(plan.Delete), st.Active, st.Succeeded, st.Failed, plan.Finished, st.StartTime, st.CompletedIndexes)
			}
			for ct, want := range tc.conds {
				if got := condStatus(st, ct); got != want {
					t.Errorf("condition %s = %q, want %q", ct, got, want)
				}
			}
			if tc.finished && Condition(st, batchv1.JobComplete) != nil && st.CompletionTime == nil {
				t.Error("complete without completionTime")
			}
		})
	}
}

func TestDecideDeadlineRequeue(t *testing.T) {
	j := started(newJob(1, 1))
	j.Spec.ActiveDeadlineSeconds = i64(90)
	plan := Decide(Input{Job: j, Pods: []*corev1.Pod{pod("a", corev1.PodRunning, -1)}, Now: t0})
	if plan.After != 30*time.Second {
		t.Fatalf("after %v", plan.After)
	}
}

func TestFinishedAfterTerminatingPodsGo(t *testing.T) {
	j := started(newJob(1, 1))
	j.Spec.ActiveDeadlineSeconds = i64(30)
	plan := Decide(Input{Job: j, Pods: []*corev1.Pod{pod("a", corev1.PodRunning, -1)}, Now: t0})
	j.Status = plan.Status
	plan = Decide(Input{Job: j, Now: t0.Add(time.Second)})
	if !plan.Finished || condStatus(plan.Status, batchv1.JobFailed) != "True/DeadlineExceeded" {
		t.Fatalf("finished %v conditions %+v", plan.Finished, plan.Status.Conditions)
	}
}

func TestNewPodIndexed(t *testing.T) {
	j := newJob(3, 3)
	p := NewPod(j, 2)
	if p.GenerateName != "pi-2-" || p.Spec.Hostname != "pi-2" || p.Annotations[batchv1.JobCompletionIndexAnnotation] != "2" || p.Labels[batchv1.JobCompletionIndexAnnotation] != "2" {
		t.Fatalf("pod %+v", p.ObjectMeta)
	}
	if e := p.Spec.Containers[0].Env; len(e) != 1 || e[0].Name != "JOB_COMPLETION_INDEX" {
		t.Fatalf("env %+v", e)
	}
	if ref := metav1.GetControllerOf(p); ref == nil || ref.UID != "job-uid" || ref.Kind != "Job" {
		t.Fatalf("owner %+v", ref)
	}
	if j.Spec.Template.Labels[batchv1.JobCompletionIndexAnnotation] != "" {
		t.Fatal("template modified")
	}
}

func TestTTLExpiry(t *testing.T) {
	j := started(newJob(1, 1))
	j.Spec.TTLSecondsAfterFinished = i32(10)
	if _, ok := TTLExpiry(j); ok {
		t.Fatal("unfinished job expires")
	}
	plan := Decide(Input{Job: j, Pods: []*corev1.Pod{pod("a", corev1.PodSucceeded, -1)}, Now: t0})
	j.Status = plan.Status
	if at, ok := TTLExpiry(j); !ok || !at.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("expiry %v %v", at, ok)
	}
}

// finishedPod is a pod whose container ended with exit code at t0-ago.
func finishedPod(name string, ph corev1.PodPhase, exit int32, ago time.Duration) *corev1.Pod {
	p := pod(name, ph, -1)
	p.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "c", State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
		ExitCode: exit, FinishedAt: metav1.NewTime(t0.Add(-ago))}}}}
	return p
}

func TestBackoffBeforeReplacingFailedPods(t *testing.T) {
	for _, tc := range []struct {
		name   string
		pods   []*corev1.Pod
		wait   time.Duration // 0: a pod is created now
		create int
	}{
		{name: "first failure 4s ago: 10s back-off, 6s left",
			pods: []*corev1.Pod{finishedPod("a", corev1.PodFailed, 1, 4*time.Second)}, wait: 6 * time.Second},
		{name: "first failure 11s ago: replaced", pods: []*corev1.Pod{finishedPod("a", corev1.PodFailed, 1, 11*time.Second)}, create: 1},
		{name: "second failure 15s ago: 20s back-off",
			pods: []*corev1.Pod{finishedPod("a", corev1.PodFailed, 1, 40*time.Second), finishedPod("b", corev1.PodFailed, 1, 15*time.Second)}, wait: 5 * time.Second},
		{name: "failures before a success do not count",
			pods: []*corev1.Pod{finishedPod("a", corev1.PodFailed, 1, 40*time.Second), finishedPod("b", corev1.PodSucceeded, 0, 30*time.Second),
				finishedPod("c", corev1.PodFailed, 1, 15*time.Second)}, create: 1},
		{name: "capped at 6 minutes",
			pods: func() []*corev1.Pod {
				var ps []*corev1.Pod
				for i := range 7 {
					ps = append(ps, finishedPod(itoa(i), corev1.PodFailed, 1, time.Duration(7-i)*time.Second))
				}
				return ps
			}(), wait: 6*time.Minute - time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := started(newJob(3, 1))
			j.Spec.BackoffLimit = i32(10)
			plan := Decide(Input{Job: j, Pods: tc.pods, Now: t0})
			if len(plan.Create) != tc.create || (tc.wait > 0 && plan.After != tc.wait) {
				t.Fatalf("create %v after %v; want %d pods, after %v", plan.Create, plan.After, tc.create, tc.wait)
			}
		})
	}
}

func TestPodFailurePolicy(t *testing.T) {
	policy := &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{
		{Action: batchv1.PodFailurePolicyActionFailJob, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
			ContainerName: ptr("c"), Operator: batchv1.PodFailurePolicyOnExitCodesOpIn, Values: []int32{42}}},
		{Action: batchv1.PodFailurePolicyActionIgnore, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{
			{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}}},
		{Action: batchv1.PodFailurePolicyActionCount, OnExitCodes: &batchv1.PodFailurePolicyOnExitCodesRequirement{
			Operator: batchv1.PodFailurePolicyOnExitCodesOpNotIn, Values: []int32{42}}},
	}}
	disrupted := finishedPod("evicted", corev1.PodFailed, 137, time.Second)
	disrupted.Status.Conditions = []corev1.PodCondition{{Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue}}
	for _, tc := range []struct {
		name     string
		pods     []*corev1.Pod
		failed   int32
		target   string
		create   int
		deletes  int
		finished bool
	}{
		{name: "exit code 42: FailJob, the running pod is deleted", pods: []*corev1.Pod{finishedPod("a", corev1.PodFailed, 42, time.Second), pod("b", corev1.PodRunning, -1)},
			failed: 1, target: "True/PodFailurePolicy", deletes: 1},
		{name: "disrupted: ignored, replaced at once without back-off", pods: []*corev1.Pod{disrupted}, failed: 0, create: 1},
		{name: "exit code 1: counted, backs off", pods: []*corev1.Pod{finishedPod("a", corev1.PodFailed, 1, time.Second)}, failed: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := started(newJob(1, 1))
			j.Spec.PodFailurePolicy = policy
			plan := Decide(Input{Job: j, Pods: tc.pods, Now: t0})
			if plan.Status.Failed != tc.failed || condStatus(plan.Status, batchv1.JobFailureTarget) != tc.target ||
				len(plan.Create) != tc.create || len(plan.Delete) != tc.deletes {
				t.Fatalf("failed %d target %q create %v delete %d", plan.Status.Failed, condStatus(plan.Status, batchv1.JobFailureTarget), plan.Create, len(plan.Delete))
			}
		})
	}
	action, msg := MatchPodFailurePolicy(policy, finishedPod("a", corev1.PodFailed, 42, 0))
	if action != batchv1.PodFailurePolicyActionFailJob || msg != "Container c for pod default/a failed with exit code 42 matching FailJob rule at index 0" {
		t.Fatalf("%s %q", action, msg)
	}
	// The Job fails once the deleted pod is gone.
	j := started(newJob(1, 1))
	j.Spec.PodFailurePolicy = policy
	plan := Decide(Input{Job: j, Pods: []*corev1.Pod{finishedPod("a", corev1.PodFailed, 42, time.Second)}, Now: t0})
	if c := Condition(plan.Status, batchv1.JobFailed); c == nil || c.Reason != ReasonPodFailurePolicy || !plan.Finished || plan.FailedReason != ReasonPodFailurePolicy {
		t.Fatalf("Failed condition %+v finished %v", c, plan.Finished)
	}
}

func ptr[T any](v T) *T { return &v }

func TestTrackingFinalizer(t *testing.T) {
	j := newJob(2, 2)
	j.Spec.Template.Finalizers = []string{"example.com/keep"}
	p := NewPod(j, -1)
	if len(p.Finalizers) != 2 || p.Finalizers[0] != "example.com/keep" || p.Finalizers[1] != batchv1.JobTrackingFinalizer {
		t.Fatalf("pod finalizers %v", p.Finalizers)
	}
	if len(j.Spec.Template.Finalizers) != 1 {
		t.Fatalf("NewPod changed the template: %v", j.Spec.Template.Finalizers)
	}

	pod := func(name string, phase corev1.PodPhase, deleting, tracked bool) *corev1.Pod {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name}, Status: corev1.PodStatus{Phase: phase}}
		if deleting {
			now := metav1.NewTime(t0)
			p.DeletionTimestamp = &now
		}
		if tracked {
			p.Finalizers = []string{batchv1.JobTrackingFinalizer}
		}
		return p
	}
	pods := []*corev1.Pod{
		pod("running", corev1.PodRunning, false, true),
		pod("succeeded", corev1.PodSucceeded, false, true),
		pod("failed", corev1.PodFailed, false, true),
		pod("deleting", corev1.PodRunning, true, true),
		pod("done-before", corev1.PodSucceeded, false, false),
	}
	names := func(ps []*corev1.Pod) string {
		var out []string
		for _, p := range ps {
			out = append(out, p.Name)
		}
		return strings.Join(out, ",")
	}
	for _, tc := range []struct {
		name     string
		finished bool
		deleted  bool
		want     string
	}{
		{"running Job: the finished and the deleted", false, false, "succeeded,failed,deleting"},
		{"finished Job: every tracked pod", true, false, "running,succeeded,failed,deleting"},
		{"deleted Job: every tracked pod", false, true, "running,succeeded,failed,deleting"},
	} {
		jj := j.DeepCopy()
		if tc.deleted {
			now := metav1.NewTime(t0)
			jj.DeletionTimestamp = &now
		}
		if got := names(Untrack(jj, pods, tc.finished)); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
}
