// Package job is the batch/v1 Job controller: it creates a Job's pods up to
// its parallelism while completions remain (NonIndexed or Indexed), counts
// the pods that succeeded and failed, fails the Job past its backoffLimit or
// activeDeadlineSeconds or a podFailurePolicy FailJob rule (Ignore and
// Count rules too), replaces failed pods after kube's back-off (10s
// doubling, at most 6 minutes), completes it, honours suspend, and deletes
// a finished Job once its ttlSecondsAfterFinished has passed.
//
// controller.go is the queue loop, decide.go the policy (a pure function),
// seam.go the writes. Succeeded and failed pods are counted from the pods
// the informer shows, and the counts never go down. Each pod carries the
// batch.kubernetes.io/job-tracking finalizer until the status counting it
// is written (or it is deleted, or its Job finished or is gone), so a
// finished pod cannot disappear before it was counted.
package job

import (
	"fmt"
	"sort"
	"strconv"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

var controllerKind = batchv1.SchemeGroupVersion.WithKind("Job")

// Condition reasons and messages, as Kubernetes' Job controller writes them.
const (
	ReasonCompletionsReached   = "CompletionsReached"
	ReasonBackoffLimitExceeded = "BackoffLimitExceeded"
	ReasonDeadlineExceeded     = "DeadlineExceeded"
	ReasonSuspended            = "JobSuspended"
	ReasonResumed              = "JobResumed"
	ReasonPodFailurePolicy     = "PodFailurePolicy"

	MessageCompletionsReached   = "Reached expected number of succeeded pods"
	MessageBackoffLimitExceeded = "Job has reached the specified backoff limit"
	MessageDeadlineExceeded     = "Job was active longer than specified deadline"
)

// BurstPods is the most pods one sync creates.
const BurstPods = 500

// The delay before a failed pod is replaced, as kube's Job controller
// waits: BackoffBase after the first failure since the last success,
// doubling with each further one, at most BackoffMax.
const (
	BackoffBase = 10 * time.Second
	BackoffMax  = 6 * time.Minute
)

// Input is what a sync decides from. Nothing in it is modified.
type Input struct {
	Job *batchv1.Job
	// Pods are the pods the Job controls, in every phase.
	Pods []*corev1.Pod
	Now  time.Time
	// BackoffBase replaces the package's BackoffBase when set (tests).
	BackoffBase time.Duration
}

// Plan is the outcome of Decide.
type Plan struct {
	// Create lists the pods to create: completion indexes for an Indexed
	// Job, -1 for each pod of a NonIndexed one.
	Create []int
	// Delete are active pods to delete (finished, failed, suspended or
	// over parallelism).
	Delete []*corev1.Pod
	// Status is the status to write.
	Status batchv1.JobStatus
	// After is when to look again whatever happens (0: on events only).
	After time.Duration
	// Finished is true once the Job has a Complete or Failed condition.
	Finished bool
	// FailedReason is set the sync the Job is found failed.
	FailedReason string
}

// IsActive reports whether a pod still runs or may run.
func IsActive(p *corev1.Pod) bool {
	return p.Status.Phase != corev1.PodSucceeded && p.Status.Phase != corev1.PodFailed && p.DeletionTimestamp == nil
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// Finished returns the Complete or Failed condition that is True, if any.
func Finished(st batchv1.JobStatus) *batchv1.JobCondition {
	for i := range st.Conditions {
		c := &st.Conditions[i]
		if (c.Type == batchv1.JobComplete || c.Type == batchv1.JobFailed) && c.Status == corev1.ConditionTrue {
			return c
		}
	}
	return nil
}

// Condition returns the condition of type t, if any.
func Condition(st batchv1.JobStatus, t batchv1.JobConditionType) *batchv1.JobCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			return &st.Conditions[i]
		}
	}
	return nil
}

// setCondition sets a condition, keeping its transition time when its
// status does not change.
func setCondition(st *batchv1.JobStatus, t batchv1.JobConditionType, s corev1.ConditionStatus, reason, msg string, now time.Time) {
	ts := metav1.NewTime(now)
	if c := Condition(*st, t); c != nil {
		if c.Status == s && c.Reason == reason && c.Message == msg {
			return
		}
		if c.Status != s {
			c.LastTransitionTime = ts
		}
		c.Status, c.Reason, c.Message, c.LastProbeTime = s, reason, msg, ts
		return
	}
	st.Conditions = append(st.Conditions, batchv1.JobCondition{Type: t, Status: s, Reason: reason, Message: msg, LastProbeTime: ts, LastTransitionTime: ts})
}

// Index returns the completion index of a pod of an Indexed Job (-1 if
// absent or invalid).
func Index(p *corev1.Pod) int {
	v, ok := p.Annotations[batchv1.JobCompletionIndexAnnotation]
	if !ok {
		v, ok = p.Labels[batchv1.JobCompletionIndexAnnotation]
	}
	if !ok {
		return -1
	}
	i, err := strconv.Atoi(v)
	if err != nil || i < 0 {
		return -1
	}
	return i
}

func indexed(j *batchv1.Job) bool {
	return j.Spec.CompletionMode != nil && *j.Spec.CompletionMode == batchv1.IndexedCompletion
}

// Decide says which pods to create or delete and the status a Job has.
func Decide(in Input) Plan {
	j, now := in.Job, in.Now
	st := *j.Status.DeepCopy()
	if st.UncountedTerminatedPods == nil {
		// Pods are tracked with the finalizer: Kubernetes shows the (empty,
		// here: pods are counted before their finalizer goes) list.
		st.UncountedTerminatedPods = &batchv1.UncountedTerminatedPods{}
	}
	var plan Plan
	if c := Finished(st); c != nil {
		plan.Finished = true
		for _, p := range in.Pods {
			if IsActive(p) {
				plan.Delete = append(plan.Delete, p)
			}
		}
		plan.Status = st
		return plan
	}

	var active, terminating []*corev1.Pod
	var succeeded, failed, ready int32
	var failJob string // the message of the first pod matching a FailJob rule
	var lastSuccess time.Time
	var failures []time.Time // when counted failures finished
	succeededIdx := map[int]bool{}
	completions := -1
	if j.Spec.Completions != nil {
		completions = int(*j.Spec.Completions)
	}
	for _, p := range in.Pods {
		switch {
		case p.Status.Phase == corev1.PodSucceeded:
			if t := finishedAt(p); t.After(lastSuccess) {
				lastSuccess = t
			}
			if indexed(j) {
				if i := Index(p); i >= 0 && i < completions {
					succeededIdx[i] = true
				}
			} else {
				succeeded++
			}
		case p.Status.Phase == corev1.PodFailed:
			action, msg := MatchPodFailurePolicy(j.Spec.PodFailurePolicy, p)
			switch action {
			case batchv1.PodFailurePolicyActionIgnore:
				continue // neither counted nor backed off from: replaced at once
			case batchv1.PodFailurePolicyActionFailJob:
				if failJob == "" {
					failJob = msg
				}
			}
			failed++
			failures = append(failures, finishedAt(p))
		case p.DeletionTimestamp != nil:
			terminating = append(terminating, p)
		default:
			active = append(active, p)
			if isReady(p) {
				ready++
			}
		}
	}
	if indexed(j) {
		succeeded = int32(len(succeededIdx))
		st.CompletedIndexes = formatIndexes(succeededIdx)
	}
	// Counts never go down: a finished pod deleted after it was counted
	// stays counted.
	st.Succeeded = max(st.Succeeded, succeeded)
	st.Failed = max(st.Failed, failed)
	st.Active = int32(len(active))
	st.Ready = &ready
	term := int32(len(terminating))
	st.Terminating = &term

	suspended := j.Spec.Suspend != nil && *j.Spec.Suspend
	parallelism := int32(1)
	if j.Spec.Parallelism != nil {
		parallelism = *j.Spec.Parallelism
	}

	// Already decided to fail or succeed: wait for the pods to go.
	failTarget := Condition(st, batchv1.JobFailureTarget)
	successTarget := Condition(st, batchv1.JobSuccessCriteriaMet)
	if failTarget == nil || failTarget.Status != corev1.ConditionTrue {
		failTarget = nil
	}
	if successTarget == nil || successTarget.Status != corev1.ConditionTrue {
		successTarget = nil
	}
	if failTarget == nil && successTarget == nil {
		backoff := int32(6)
		if j.Spec.BackoffLimit != nil {
			backoff = *j.Spec.BackoffLimit
		}
		switch {
		case failJob != "":
			setCondition(&st, batchv1.JobFailureTarget, corev1.ConditionTrue, ReasonPodFailurePolicy, failJob, now)
		case st.Failed > backoff:
			setCondition(&st, batchv1.JobFailureTarget, corev1.ConditionTrue, ReasonBackoffLimitExceeded, MessageBackoffLimitExceeded, now)
		case !suspended && j.Spec.ActiveDeadlineSeconds != nil && st.StartTime != nil &&
			!now.Before(st.StartTime.Add(time.Duration(*j.Spec.ActiveDeadlineSeconds)*time.Second)):
			setCondition(&st, batchv1.JobFailureTarget, corev1.ConditionTrue, ReasonDeadlineExceeded, MessageDeadlineExceeded, now)
		case completions >= 0 && int(st.Succeeded) >= completions,
			completions < 0 && st.Succeeded > 0 && len(active) == 0:
			setCondition(&st, batchv1.JobSuccessCriteriaMet, corev1.ConditionTrue, ReasonCompletionsReached, MessageCompletionsReached, now)
		}
		failTarget = Condition(st, batchv1.JobFailureTarget)
		successTarget = Condition(st, batchv1.JobSuccessCriteriaMet)
	}
	if failTarget != nil || successTarget != nil {
		plan.Delete = active
		st.Active = 0
		if len(active)+len(terminating) == 0 {
			plan.Finished = true
			if failTarget != nil {
				setCondition(&st, batchv1.JobFailed, corev1.ConditionTrue, failTarget.Reason, failTarget.Message, now)
				plan.FailedReason = failTarget.Reason
			} else {
				setCondition(&st, batchv1.JobComplete, corev1.ConditionTrue, successTarget.Reason, successTarget.Message, now)
				t := metav1.NewTime(now)
				st.CompletionTime = &t
			}
		}
		plan.Status = st
		return plan
	}

	if suspended {
		plan.Delete = active
		st.Active = 0
		if len(active) > 0 || Condition(st, batchv1.JobSuspended) == nil || Condition(st, batchv1.JobSuspended).Status != corev1.ConditionTrue {
			setCondition(&st, batchv1.JobSuspended, corev1.ConditionTrue, ReasonSuspended, "Job suspended", now)
			st.StartTime = nil
		}
		plan.Status = st
		return plan
	}
	if c := Condition(st, batchv1.JobSuspended); c != nil && c.Status == corev1.ConditionTrue {
		setCondition(&st, batchv1.JobSuspended, corev1.ConditionFalse, ReasonResumed, "Job resumed", now)
	}
	if st.StartTime == nil {
		t := metav1.NewTime(now)
		st.StartTime = &t
	}
	if j.Spec.ActiveDeadlineSeconds != nil {
		plan.After = st.StartTime.Add(time.Duration(*j.Spec.ActiveDeadlineSeconds) * time.Second).Sub(now)
	}

	// Failed pods are replaced after a back-off.
	if wait := backoffLeft(in, failures, lastSuccess); wait > 0 {
		if plan.After == 0 || wait < plan.After {
			plan.After = wait
		}
		plan.Status = st
		return plan
	}

	// How many pods should run.
	if indexed(j) {
		running := map[int]bool{}
		var extra []*corev1.Pod
		for _, p := range active {
			i := Index(p)
			if i < 0 || i >= completions || succeededIdx[i] || running[i] {
				extra = append(extra, p) // a duplicate or a stray
				continue
			}
			running[i] = true
		}
		plan.Delete = extra
		room := int(parallelism) - len(running)
		for i := 0; i < completions && room > 0 && len(plan.Create) < BurstPods; i++ {
			if !succeededIdx[i] && !running[i] {
				plan.Create = append(plan.Create, i)
				room--
			}
		}
	} else {
		want := int(parallelism)
		if completions >= 0 {
			want = min(want, completions-int(st.Succeeded))
		} else if st.Succeeded > 0 {
			want = 0 // a work queue: once one pod succeeded no new ones
		}
		diff := want - len(active)
		for i := 0; i < min(diff, BurstPods); i++ {
			plan.Create = append(plan.Create, -1)
		}
		if diff < 0 {
			// Delete the youngest first: they have done the least work.
			sorted := append([]*corev1.Pod(nil), active...)
			sort.SliceStable(sorted, func(a, b int) bool {
				return sorted[b].CreationTimestamp.Before(&sorted[a].CreationTimestamp)
			})
			plan.Delete = sorted[:-diff]
		}
	}
	plan.Status = st
	return plan
}

// finishedAt is when a finished pod ended: its containers' last
// termination, else its Ready condition's last change, else its creation.
func finishedAt(p *corev1.Pod) time.Time {
	var t time.Time
	for _, cs := range p.Status.ContainerStatuses {
		if term := cs.State.Terminated; term != nil && term.FinishedAt.After(t) {
			t = term.FinishedAt.Time
		}
	}
	if t.IsZero() {
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodReady {
				t = c.LastTransitionTime.Time
			}
		}
	}
	if t.IsZero() {
		t = p.CreationTimestamp.Time
	}
	return t
}

// backoffLeft is how long new pods still wait after the failures counted
// since the last success: base·2^(n-1) from the last of them, at most
// BackoffMax.
func backoffLeft(in Input, failures []time.Time, lastSuccess time.Time) time.Duration {
	base := in.BackoffBase
	if base <= 0 {
		base = BackoffBase
	}
	n := 0
	var last time.Time
	for _, t := range failures {
		if !t.Before(lastSuccess) {
			n++
			if t.After(last) {
				last = t
			}
		}
	}
	if n == 0 {
		return 0
	}
	delay := base
	for i := 1; i < n && delay < BackoffMax; i++ {
		delay *= 2
	}
	delay = min(delay, BackoffMax)
	return last.Add(delay).Sub(in.Now)
}

// MatchPodFailurePolicy returns the action of the first rule of policy a
// failed pod matches (Count when none does or there is no policy) and, for
// FailJob, the message kube's Job controller writes.
func MatchPodFailurePolicy(policy *batchv1.PodFailurePolicy, p *corev1.Pod) (batchv1.PodFailurePolicyAction, string) {
	if policy == nil {
		return batchv1.PodFailurePolicyActionCount, ""
	}
	for i, rule := range policy.Rules {
		if req := rule.OnExitCodes; req != nil {
			for _, cs := range append(append([]corev1.ContainerStatus(nil), p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
				term := cs.State.Terminated
				if term == nil || (req.ContainerName != nil && *req.ContainerName != cs.Name) {
					continue
				}
				in := false
				for _, v := range req.Values {
					in = in || v == term.ExitCode
				}
				match := in
				if req.Operator == batchv1.PodFailurePolicyOnExitCodesOpNotIn {
					match = !in && term.ExitCode != 0
				}
				if match {
					return rule.Action, fmt.Sprintf("Container %s for pod %s/%s failed with exit code %d matching %s rule at index %d",
						cs.Name, p.Namespace, p.Name, term.ExitCode, rule.Action, i)
				}
			}
		}
		for _, pat := range rule.OnPodConditions {
			for _, c := range p.Status.Conditions {
				status := pat.Status
				if status == "" {
					status = corev1.ConditionTrue
				}
				if c.Type == pat.Type && c.Status == status {
					return rule.Action, fmt.Sprintf("Pod %s/%s has condition %s matching %s rule at index %d",
						p.Namespace, p.Name, c.Type, rule.Action, i)
				}
			}
		}
	}
	return batchv1.PodFailurePolicyActionCount, ""
}

// formatIndexes writes the indexes as Kubernetes does: sorted, runs of
// consecutive numbers as "a-b", separated by commas.
func formatIndexes(set map[int]bool) string {
	idx := make([]int, 0, len(set))
	for i := range set {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	out := ""
	for k := 0; k < len(idx); {
		e := k
		for e+1 < len(idx) && idx[e+1] == idx[e]+1 {
			e++
		}
		if out != "" {
			out += ","
		}
		out += strconv.Itoa(idx[k])
		if e > k {
			out += "-" + strconv.Itoa(idx[e])
		}
		k = e + 1
	}
	return out
}

// ControllerRef is the owner reference a Job puts on its pods.
func ControllerRef(j *batchv1.Job) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{
		APIVersion: controllerKind.GroupVersion().String(), Kind: controllerKind.Kind,
		Name: j.Name, UID: j.UID, Controller: &t, BlockOwnerDeletion: &t,
	}
}

// NewPod builds a pod of the Job from its template. For an Indexed Job
// (index >= 0) the pod carries its completion index as an annotation and a
// label, the JOB_COMPLETION_INDEX variable, and the hostname <job>-<index>.
func NewPod(j *batchv1.Job, index int) *corev1.Pod {
	t := j.Spec.Template.DeepCopy()
	prefix := j.Name + "-"
	if index >= 0 {
		prefix = j.Name + "-" + strconv.Itoa(index) + "-"
	}
	if len(apivalidation.NameIsDNSSubdomain(prefix, true)) != 0 {
		prefix = j.Name
	}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName:    prefix,
			Namespace:       j.Namespace,
			Labels:          t.Labels,
			Annotations:     t.Annotations,
			Finalizers:      withTracking(t.Finalizers),
			OwnerReferences: []metav1.OwnerReference{ControllerRef(j)},
		},
		Spec: t.Spec,
	}
	if index >= 0 {
		v := strconv.Itoa(index)
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		if pod.Labels == nil {
			pod.Labels = map[string]string{}
		}
		pod.Annotations[batchv1.JobCompletionIndexAnnotation] = v
		pod.Labels[batchv1.JobCompletionIndexAnnotation] = v
		if pod.Spec.Hostname == "" {
			pod.Spec.Hostname = j.Name + "-" + v
		}
		env := corev1.EnvVar{Name: "JOB_COMPLETION_INDEX", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{
			APIVersion: "v1", FieldPath: "metadata.labels['" + batchv1.JobCompletionIndexAnnotation + "']"}}}
		for _, cs := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
			for i := range cs {
				has := false
				for _, e := range cs[i].Env {
					has = has || e.Name == env.Name
				}
				if !has {
					cs[i].Env = append(cs[i].Env, env)
				}
			}
		}
	}
	return pod
}

// withTracking returns finalizers with the job-tracking finalizer added.
func withTracking(finalizers []string) []string {
	if HasTracking(finalizers) {
		return finalizers
	}
	return append(append([]string(nil), finalizers...), batchv1.JobTrackingFinalizer)
}

// HasTracking reports whether the job-tracking finalizer is among
// finalizers.
func HasTracking(finalizers []string) bool {
	for _, f := range finalizers {
		if f == batchv1.JobTrackingFinalizer {
			return true
		}
	}
	return false
}

// Untrack returns the pods whose job-tracking finalizer is to be removed
// once the status Decide returned is written: those that finished (and
// are counted in it), are being deleted, or every pod when the Job
// finished or is being deleted.
func Untrack(j *batchv1.Job, pods []*corev1.Pod, finished bool) []*corev1.Pod {
	var out []*corev1.Pod
	done := finished || j.DeletionTimestamp != nil
	for _, p := range pods {
		if HasTracking(p.Finalizers) && (done || !IsActive(p)) {
			out = append(out, p)
		}
	}
	return out
}

// TTLExpiry returns when a finished Job with ttlSecondsAfterFinished is to
// be deleted.
func TTLExpiry(j *batchv1.Job) (time.Time, bool) {
	c := Finished(j.Status)
	if c == nil || j.Spec.TTLSecondsAfterFinished == nil {
		return time.Time{}, false
	}
	at := c.LastTransitionTime.Time
	if c.Type == batchv1.JobComplete && j.Status.CompletionTime != nil {
		at = j.Status.CompletionTime.Time
	}
	return at.Add(time.Duration(*j.Spec.TTLSecondsAfterFinished) * time.Second), true
}
