// Package cronjob is the batch/v1 CronJob controller: at each time its
// schedule (in its time zone) names, it creates a Job named
// <cronjob>-<scheduled minutes since the epoch>, honouring suspend,
// startingDeadlineSeconds and the concurrency policy, keeps the history
// limits of finished Jobs, reports the active Jobs and the last schedule and
// success times, and looks again at the next scheduled time.
//
// controller.go is the queue loop, decide.go the policy (a pure function of
// the CronJob, its Jobs and the time), seam.go the writes.
package cronjob

import (
	"fmt"
	"sort"
	"time"

	"github.com/robfig/cron/v3"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var controllerKind = batchv1.SchemeGroupVersion.WithKind("CronJob")

// ScheduledTimestampAnnotation is the annotation with the scheduled time a
// Job was created for.
const ScheduledTimestampAnnotation = "batch.kubernetes.io/cronjob-scheduled-timestamp"

// Input is what a sync decides from. Nothing in it is modified.
type Input struct {
	CronJob *batchv1.CronJob
	// Jobs are the Jobs the CronJob controls.
	Jobs []*batchv1.Job
	Now  time.Time
}

// Plan is the outcome of Decide.
type Plan struct {
	// Create is the Job to create, if any.
	Create *batchv1.Job
	// Delete are Jobs to delete: the active ones with the Replace policy,
	// and the finished ones past the history limits.
	Delete []*batchv1.Job
	// Status is the status to write (with Create counted in).
	Status batchv1.CronJobStatus
	// After is when to look again (the next scheduled time); 0 for never.
	After time.Duration
	// Skipped says why a scheduled time was not run (an event reason:
	// JobAlreadyActive, MissSchedule), empty otherwise.
	Skipped string
	// Err is an invalid schedule or time zone (event UnparseableSchedule /
	// UnknownTimeZone).
	Err error
}

// Finished returns the type of a Job's Complete or Failed condition, if
// true.
func Finished(j *batchv1.Job) batchv1.JobConditionType {
	for _, c := range j.Status.Conditions {
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return c.Type
		}
	}
	return ""
}

// JobName is the name of the Job for a scheduled time.
func JobName(cj *batchv1.CronJob, scheduled time.Time) string {
	return fmt.Sprintf("%s-%d", cj.Name, scheduled.Unix()/60)
}

// Schedule parses the CronJob's schedule in its time zone.
func Schedule(cj *batchv1.CronJob) (cron.Schedule, error) {
	spec := cj.Spec.Schedule
	if cj.Spec.TimeZone != nil {
		if _, err := time.LoadLocation(*cj.Spec.TimeZone); err != nil {
			return nil, fmt.Errorf("unknown time zone %s: %w", *cj.Spec.TimeZone, err)
		}
		spec = "CRON_TZ=" + *cj.Spec.TimeZone + " " + spec
	}
	s, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, fmt.Errorf("unparseable schedule %q: %w", cj.Spec.Schedule, err)
	}
	return s, nil
}

// MostRecent returns the latest scheduled time in (earliest, now], and how
// many there were (at most limit counted).
func MostRecent(s cron.Schedule, earliest, now time.Time) (time.Time, int) {
	var last time.Time
	n := 0
	for t := s.Next(earliest); !t.IsZero() && !t.After(now); t = s.Next(t) {
		last = t
		n++
	}
	return last, n
}

func ref(j *batchv1.Job) corev1.ObjectReference {
	return corev1.ObjectReference{Kind: "Job", APIVersion: "batch/v1", Namespace: j.Namespace, Name: j.Name, UID: j.UID, ResourceVersion: j.ResourceVersion}
}

// Decide says what a CronJob does now.
func Decide(in Input) Plan {
	cj, now := in.CronJob, in.Now
	var plan Plan
	st := *cj.Status.DeepCopy()

	// Status from the Jobs, and the history to keep.
	var active, succeeded, failed []*batchv1.Job
	for _, j := range in.Jobs {
		switch Finished(j) {
		case batchv1.JobComplete:
			succeeded = append(succeeded, j)
			if j.Status.CompletionTime != nil && (st.LastSuccessfulTime == nil || st.LastSuccessfulTime.Before(j.Status.CompletionTime)) {
				t := *j.Status.CompletionTime
				st.LastSuccessfulTime = &t
			}
		case batchv1.JobFailed:
			failed = append(failed, j)
		default:
			if j.DeletionTimestamp == nil {
				active = append(active, j)
			}
		}
	}
	sort.Slice(active, func(a, b int) bool { return active[a].Name < active[b].Name })
	st.Active = nil
	for _, j := range active {
		st.Active = append(st.Active, ref(j))
	}
	keep := func(jobs []*batchv1.Job, limit *int32) {
		if limit == nil || len(jobs) <= int(*limit) {
			return
		}
		sort.Slice(jobs, func(a, b int) bool {
			ta, tb := startOf(jobs[a]), startOf(jobs[b])
			if !ta.Equal(tb) {
				return ta.Before(tb)
			}
			return jobs[a].Name < jobs[b].Name
		})
		for _, j := range jobs[:len(jobs)-int(*limit)] {
			if j.DeletionTimestamp == nil {
				plan.Delete = append(plan.Delete, j)
			}
		}
	}
	keep(succeeded, cj.Spec.SuccessfulJobsHistoryLimit)
	keep(failed, cj.Spec.FailedJobsHistoryLimit)
	plan.Status = st

	if cj.DeletionTimestamp != nil {
		return plan
	}
	sched, err := Schedule(cj)
	if err != nil {
		plan.Err = err
		return plan
	}
	next := sched.Next(now)
	if !next.IsZero() {
		plan.After = next.Sub(now) + 100*time.Millisecond
	}
	if cj.Spec.Suspend != nil && *cj.Spec.Suspend {
		plan.After = 0 // resumed by an update event
		return plan
	}
	earliest := cj.CreationTimestamp.Time
	if st.LastScheduleTime != nil {
		earliest = st.LastScheduleTime.Time
	}
	if d := cj.Spec.StartingDeadlineSeconds; d != nil {
		if e := now.Add(-time.Duration(*d) * time.Second); e.After(earliest) {
			earliest = e
		}
	}
	scheduled, n := MostRecent(sched, earliest, now)
	if n == 0 {
		if d := cj.Spec.StartingDeadlineSeconds; d != nil && st.LastScheduleTime != nil {
			if last, m := MostRecent(sched, st.LastScheduleTime.Time, now); m > 0 && last.After(st.LastScheduleTime.Time) {
				plan.Skipped = "MissSchedule"
			}
		}
		return plan
	}
	name := JobName(cj, scheduled)
	for _, j := range in.Jobs {
		if j.Name == name {
			return plan // already run (the status write was lost)
		}
	}
	switch cj.Spec.ConcurrencyPolicy {
	case batchv1.ForbidConcurrent:
		if len(active) > 0 {
			plan.Skipped = "JobAlreadyActive"
			return plan
		}
	case batchv1.ReplaceConcurrent:
		plan.Delete = append(plan.Delete, active...)
		plan.Status.Active = nil
	}
	plan.Create = NewJob(cj, scheduled)
	t := metav1.NewTime(scheduled)
	plan.Status.LastScheduleTime = &t
	return plan
}

func startOf(j *batchv1.Job) time.Time {
	if j.Status.StartTime != nil {
		return j.Status.StartTime.Time
	}
	return j.CreationTimestamp.Time
}

// ControllerRef is the owner reference a CronJob puts on its Jobs.
func ControllerRef(cj *batchv1.CronJob) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{
		APIVersion: controllerKind.GroupVersion().String(), Kind: controllerKind.Kind,
		Name: cj.Name, UID: cj.UID, Controller: &t, BlockOwnerDeletion: &t,
	}
}

// NewJob builds the Job for a scheduled time from the CronJob's template.
func NewJob(cj *batchv1.CronJob, scheduled time.Time) *batchv1.Job {
	t := cj.Spec.JobTemplate.DeepCopy()
	ann := map[string]string{}
	for k, v := range t.Annotations {
		ann[k] = v
	}
	loc := time.Local
	if cj.Spec.TimeZone != nil {
		if l, err := time.LoadLocation(*cj.Spec.TimeZone); err == nil {
			loc = l
		}
	}
	ann[ScheduledTimestampAnnotation] = scheduled.In(loc).Format(time.RFC3339)
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:            JobName(cj, scheduled),
			Namespace:       cj.Namespace,
			Labels:          t.Labels,
			Annotations:     ann,
			OwnerReferences: []metav1.OwnerReference{ControllerRef(cj)},
		},
		Spec: t.Spec,
	}
}
