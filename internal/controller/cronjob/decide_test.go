package cronjob

import (
	"strconv"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// created is when the CronJob was created; the tests' clock is after it.
var created = time.Date(2026, 1, 1, 12, 0, 30, 0, time.UTC)

func i32(v int32) *int32 { return &v }
func i64(v int64) *int64 { return &v }

func newCJ(schedule string, mods ...func(*batchv1.CronJob)) *batchv1.CronJob {
	f := false
	cj := &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Namespace: "default", UID: "cj-uid", CreationTimestamp: metav1.NewTime(created)},
		Spec: batchv1.CronJobSpec{
			Schedule: schedule, ConcurrencyPolicy: batchv1.AllowConcurrent, Suspend: &f,
			SuccessfulJobsHistoryLimit: i32(3), FailedJobsHistoryLimit: i32(1),
			JobTemplate: batchv1.JobTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "hello"}},
				Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
					RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}},
			},
		},
	}
	for _, m := range mods {
		m(cj)
	}
	return cj
}

func lastRun(t time.Time) func(*batchv1.CronJob) {
	return func(cj *batchv1.CronJob) { ts := metav1.NewTime(t); cj.Status.LastScheduleTime = &ts }
}

func job(name string, state batchv1.JobConditionType, start time.Time) *batchv1.Job {
	j := &batchv1.Job{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID(name), CreationTimestamp: metav1.NewTime(start)}}
	st := metav1.NewTime(start)
	j.Status.StartTime = &st
	if state != "" {
		j.Status.Conditions = []batchv1.JobCondition{{Type: state, Status: corev1.ConditionTrue}}
		if state == batchv1.JobComplete {
			ct := metav1.NewTime(start.Add(10 * time.Second))
			j.Status.CompletionTime = &ct
		}
	}
	return j
}

func at(h, m, s int) time.Time { return time.Date(2026, 1, 1, h, m, s, 0, time.UTC) }

func TestDecide(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cj      *batchv1.CronJob
		jobs    []*batchv1.Job
		now     time.Time
		create  string
		deletes []string
		active  int
		after   time.Duration
		skipped string
	}{
		{name: "before the first time: wait for it", cj: newCJ("* * * * *"), now: at(12, 0, 40), after: 20*time.Second + 100*time.Millisecond},
		{name: "due: create <name>-<minutes>", cj: newCJ("* * * * *"), now: at(12, 1, 5),
			create: "hello-" + itoa(at(12, 1, 0).Unix()/60), active: 1, after: 55*time.Second + 100*time.Millisecond},
		{name: "missed several: only the most recent", cj: newCJ("*/5 * * * *"), now: at(12, 17, 0),
			create: "hello-" + itoa(at(12, 15, 0).Unix()/60), active: 1, after: 3*time.Minute + 100*time.Millisecond},
		{name: "already run for that time", cj: newCJ("* * * * *", lastRun(at(12, 1, 0))), now: at(12, 1, 30), after: 30*time.Second + 100*time.Millisecond},
		{name: "Job exists though the status was not written", cj: newCJ("* * * * *"), now: at(12, 1, 30),
			jobs: []*batchv1.Job{job("hello-"+itoa(at(12, 1, 0).Unix()/60), "", at(12, 1, 0))}, active: 1, after: 30*time.Second + 100*time.Millisecond},
		{name: "suspended: nothing, no requeue", cj: newCJ("* * * * *", func(cj *batchv1.CronJob) { tr := true; cj.Spec.Suspend = &tr }), now: at(12, 5, 0)},
		{name: "starting deadline passed: skipped", cj: newCJ("0 * * * *", func(cj *batchv1.CronJob) { cj.Spec.StartingDeadlineSeconds = i64(60) }), now: at(13, 2, 0),
			after: 58*time.Minute + 100*time.Millisecond},
		{name: "within the starting deadline: run", cj: newCJ("0 * * * *", func(cj *batchv1.CronJob) { cj.Spec.StartingDeadlineSeconds = i64(300) }), now: at(13, 2, 0),
			create: "hello-" + itoa(at(13, 0, 0).Unix()/60), active: 1, after: 58*time.Minute + 100*time.Millisecond},
		{name: "Allow runs beside an active Job", cj: newCJ("* * * * *", lastRun(at(12, 1, 0))), now: at(12, 2, 1),
			jobs: []*batchv1.Job{job("hello-old", "", at(12, 1, 0))}, create: "hello-" + itoa(at(12, 2, 0).Unix()/60), active: 2, after: 59*time.Second + 100*time.Millisecond},
		{name: "Forbid skips while a Job runs", cj: newCJ("* * * * *", lastRun(at(12, 1, 0)), func(cj *batchv1.CronJob) { cj.Spec.ConcurrencyPolicy = batchv1.ForbidConcurrent }), now: at(12, 2, 1),
			jobs: []*batchv1.Job{job("hello-old", "", at(12, 1, 0))}, active: 1, skipped: "JobAlreadyActive", after: 59*time.Second + 100*time.Millisecond},
		{name: "Replace deletes the running Job", cj: newCJ("* * * * *", lastRun(at(12, 1, 0)), func(cj *batchv1.CronJob) { cj.Spec.ConcurrencyPolicy = batchv1.ReplaceConcurrent }), now: at(12, 2, 1),
			jobs: []*batchv1.Job{job("hello-old", "", at(12, 1, 0))}, create: "hello-" + itoa(at(12, 2, 0).Unix()/60), deletes: []string{"hello-old"}, active: 1, after: 59*time.Second + 100*time.Millisecond},
		{name: "history limits: oldest finished Jobs deleted", cj: newCJ("0 0 1 1 *", lastRun(at(12, 0, 0))), now: at(12, 30, 0),
			jobs: []*batchv1.Job{
				job("s1", batchv1.JobComplete, at(12, 1, 0)), job("s2", batchv1.JobComplete, at(12, 2, 0)), job("s3", batchv1.JobComplete, at(12, 3, 0)), job("s4", batchv1.JobComplete, at(12, 4, 0)),
				job("f1", batchv1.JobFailed, at(12, 1, 0)), job("f2", batchv1.JobFailed, at(12, 2, 0)),
			}, deletes: []string{"s1", "f1"}, after: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC).Sub(at(12, 30, 0)) + 100*time.Millisecond},
		{name: "time zone: 09:00 in Tokyo is 00:00 UTC", cj: newCJ("0 9 * * *", func(cj *batchv1.CronJob) {
			tz := "Asia/Tokyo"
			cj.Spec.TimeZone = &tz
			cj.CreationTimestamp = metav1.NewTime(time.Date(2025, 12, 31, 23, 0, 0, 0, time.UTC))
		}), now: time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC),
			create: "hello-" + itoa(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Unix()/60), active: 1, after: 24*time.Hour - 30*time.Second + 100*time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			plan := Decide(Input{CronJob: tc.cj, Jobs: tc.jobs, Now: tc.now})
			if plan.Err != nil {
				t.Fatal(plan.Err)
			}
			got := ""
			if plan.Create != nil {
				got = plan.Create.Name
				if ref := metav1.GetControllerOf(plan.Create); ref == nil || ref.UID != "cj-uid" || ref.Kind != "CronJob" {
					t.Fatalf("owner %+v", ref)
				}
				if plan.Create.Labels["app"] != "hello" || plan.Create.Annotations[ScheduledTimestampAnnotation] == "" {
					t.Fatalf("job meta %+v", plan.Create.ObjectMeta)
				}
				if plan.Status.LastScheduleTime == nil {
					t.Fatal("no lastScheduleTime")
				}
				plan.Status.Active = append(plan.Status.Active, corev1.ObjectReference{Name: got})
			}
			if got != tc.create {
				t.Fatalf("create %q, want %q", got, tc.create)
			}
			var dels []string
			for _, j := range plan.Delete {
				dels = append(dels, j.Name)
			}
			if len(dels) != len(tc.deletes) || (len(dels) > 0 && (len(dels) != len(tc.deletes) || !same(dels, tc.deletes))) {
				t.Fatalf("delete %v, want %v", dels, tc.deletes)
			}
			if len(plan.Status.Active) != tc.active || plan.After != tc.after || plan.Skipped != tc.skipped {
				t.Fatalf("active %d after %v skipped %q", len(plan.Status.Active), plan.After, plan.Skipped)
			}
		})
	}
}

func same(a, b []string) bool {
	m := map[string]bool{}
	for _, x := range a {
		m[x] = true
	}
	for _, x := range b {
		if !m[x] {
			return false
		}
	}
	return len(a) == len(b)
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

func TestLastSuccessfulTime(t *testing.T) {
	plan := Decide(Input{CronJob: newCJ("0 0 1 1 *"), Now: at(12, 30, 0),
		Jobs: []*batchv1.Job{job("a", batchv1.JobComplete, at(12, 1, 0)), job("b", batchv1.JobComplete, at(12, 5, 0))}})
	if plan.Status.LastSuccessfulTime == nil || !plan.Status.LastSuccessfulTime.Time.Equal(at(12, 5, 10)) {
		t.Fatalf("lastSuccessfulTime %v", plan.Status.LastSuccessfulTime)
	}
}

func TestBadSchedule(t *testing.T) {
	if plan := Decide(Input{CronJob: newCJ("not a schedule"), Now: at(12, 0, 0)}); plan.Err == nil {
		t.Fatal("no error")
	}
	tz := "Mars/Olympus"
	if plan := Decide(Input{CronJob: newCJ("* * * * *", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = &tz }), Now: at(12, 0, 0)}); plan.Err == nil {
		t.Fatal("no error for an unknown time zone")
	}
}
