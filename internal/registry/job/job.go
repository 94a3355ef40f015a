// Package job is the registry entry of batch/v1 Jobs: defaults, the
// selector and labels generated on create, validation and the table.
package job

import (
	"context"
	"fmt"
	"math"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/duration"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/pod"
	"github.com/headway/headway/internal/registry/podtemplate"
)

// The labels kube-apiserver generated before the batch.kubernetes.io/ ones.
const (
	legacyJobNameLabel       = "job-name"
	legacyControllerUIDLabel = "controller-uid"
)

// Resource returns the jobs registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: batchv1.SchemeGroupVersion,
		Kind:         "Job", ListKind: "JobList",
		AllowUnconditionalUpdate: true,
		Plural:                   "jobs", Singular: "job",
		Categories: []string{"all"},
		Namespaced: true,
		New:        func() runtime.Object { return &batchv1.Job{} },
		NewList:    func() runtime.Object { return &batchv1.JobList{} },
		HasStatus:  true,
		Generation: true,
		Default:    func(obj runtime.Object) { Default(obj.(*batchv1.Job)) },
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			j := obj.(*batchv1.Job)
			j.Status = batchv1.JobStatus{}
			if j.Spec.ManualSelector == nil || !*j.Spec.ManualSelector {
				GenerateSelector(j)
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return Validate(obj.(*batchv1.Job)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return ValidateUpdate(obj.(*batchv1.Job), old.(*batchv1.Job))
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Status", "string", 0, "Status of the job."),
			registry.Column("Completions", "string", 0, batchv1.JobStatus{}.SwaggerDoc()["succeeded"]),
			registry.Column("Duration", "string", 0, "Time required to complete the job."),
			registry.AgeColumn,
			registry.Column("Containers", "string", 1, "Names of each container in the template."),
			registry.Column("Images", "string", 1, "Images referenced by each container in the template."),
			registry.Column("Selector", "string", 1, batchv1.JobSpec{}.SwaggerDoc()["selector"]),
		},
		Row: func(obj runtime.Object) ([]interface{}, error) { return Row(obj.(*batchv1.Job)), nil },
	}
}

// Default sets what kube-apiserver defaults on a Job.
func Default(j *batchv1.Job) {
	DefaultSpec(&j.Spec)
	// As in kube-apiserver, a Job without labels takes its template's: the
	// same map, so the labels generated on create show on both.
	if tl := j.Spec.Template.Labels; tl != nil && len(j.Labels) == 0 {
		j.Labels = tl
	}
	if j.Spec.ManualSelector == nil {
		f := false
		j.Spec.ManualSelector = &f
	}
}

// DefaultSpec sets the defaults of a Job's spec that do not depend on the
// Job object itself.
func DefaultSpec(s *batchv1.JobSpec) {
	one := func() *int32 { v := int32(1); return &v }
	if s.Completions == nil && s.Parallelism == nil {
		s.Completions, s.Parallelism = one(), one()
	}
	if s.Parallelism == nil {
		s.Parallelism = one()
	}
	if s.BackoffLimit == nil {
		l := int32(6)
		if s.BackoffLimitPerIndex != nil {
			l = math.MaxInt32
		}
		s.BackoffLimit = &l
	}
	if s.CompletionMode == nil {
		m := batchv1.NonIndexedCompletion
		s.CompletionMode = &m
	}
	if s.Suspend == nil {
		f := false
		s.Suspend = &f
	}
	if s.PodFailurePolicy != nil {
		for _, r := range s.PodFailurePolicy.Rules {
			for i := range r.OnPodConditions {
				if r.OnPodConditions[i].Status == "" {
					r.OnPodConditions[i].Status = corev1.ConditionTrue
				}
			}
		}
	}
	if s.PodReplacementPolicy == nil {
		p := batchv1.TerminatingOrFailed
		if s.PodFailurePolicy != nil {
			p = batchv1.Failed
		}
		s.PodReplacementPolicy = &p
	}
	pod.DefaultPodSpec(&s.Template.Spec)
}

// GenerateSelector gives a Job the labels and selector kube-apiserver
// generates when the selector is not manual: its template gets the job-name
// and controller-uid labels (plain and batch.kubernetes.io/), and its
// selector matches the controller-uid.
func GenerateSelector(j *batchv1.Job) {
	if j.Spec.Template.Labels == nil {
		j.Spec.Template.Labels = map[string]string{}
	}
	tl := j.Spec.Template.Labels
	for _, k := range []string{legacyJobNameLabel, batchv1.JobNameLabel} {
		if _, ok := tl[k]; !ok {
			tl[k] = j.Name
		}
	}
	for _, k := range []string{legacyControllerUIDLabel, batchv1.ControllerUidLabel} {
		if _, ok := tl[k]; !ok {
			tl[k] = string(j.UID)
		}
	}
	if j.Spec.Selector == nil {
		j.Spec.Selector = &metav1.LabelSelector{}
	}
	if j.Spec.Selector.MatchLabels == nil {
		j.Spec.Selector.MatchLabels = map[string]string{}
	}
	if _, ok := j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel]; !ok {
		j.Spec.Selector.MatchLabels[batchv1.ControllerUidLabel] = string(j.UID)
	}
}

// Validate checks a Job as kube-apiserver does.
func Validate(j *batchv1.Job) field.ErrorList {
	spec := field.NewPath("spec")
	errs := ValidateSpec(&j.Spec, spec)
	if j.Spec.Selector == nil {
		errs = append(errs, field.Required(spec.Child("selector"), ""))
	} else {
		errs = append(errs, metav1validation.ValidateLabelSelector(j.Spec.Selector, metav1validation.LabelSelectorValidationOptions{}, spec.Child("selector"))...)
		errs = append(errs, podtemplate.MatchesTemplate(j.Spec.Selector, &j.Spec.Template, spec.Child("template"))...)
	}
	if j.Spec.ManualSelector == nil || !*j.Spec.ManualSelector {
		errs = append(errs, validateGeneratedSelector(j)...)
	}
	return errs
}

// validateGeneratedSelector checks that a generated selector and the
// template's labels still identify this Job's pods.
func validateGeneratedSelector(j *batchv1.Job) field.ErrorList {
	if j.Spec.Selector == nil {
		return nil
	}
	var errs field.ErrorList
	if j.UID == "" {
		errs = append(errs, field.Required(field.NewPath("metadata", "uid"), ""))
	}
	meta := field.NewPath("spec", "template", "metadata", "labels")
	for _, kv := range [][2]string{
		{legacyControllerUIDLabel, string(j.UID)}, {legacyJobNameLabel, j.Name},
		{batchv1.ControllerUidLabel, string(j.UID)}, {batchv1.JobNameLabel, j.Name},
	} {
		k, want := kv[0], kv[1]
		got, ok := j.Spec.Template.Labels[k]
		switch {
		case !ok:
			errs = append(errs, field.Required(meta.Key(k), "must be '"+want+"'"))
		case got != want:
			errs = append(errs, field.Invalid(meta.Key(k), got, "must be '"+want+"'"))
		}
	}
	sel, err := metav1.LabelSelectorAsSelector(j.Spec.Selector)
	if err == nil && !sel.Matches(labels.Set{legacyControllerUIDLabel: string(j.UID), batchv1.ControllerUidLabel: string(j.UID)}) {
		errs = append(errs, field.Invalid(field.NewPath("spec", "selector"), j.Spec.Selector, "`selector` not auto-generated"))
	}
	return errs
}

// ValidateSpec checks the parts of a Job spec that a CronJob's job template
// shares with a Job.
func ValidateSpec(s *batchv1.JobSpec, path *field.Path) field.ErrorList {
	errs := registry.NonNegative32(s.Parallelism, path.Child("parallelism"))
	errs = append(errs, registry.NonNegative32(s.Completions, path.Child("completions"))...)
	if s.ActiveDeadlineSeconds != nil {
		errs = append(errs, registry.NonNegative(*s.ActiveDeadlineSeconds, path.Child("activeDeadlineSeconds"))...)
	}
	errs = append(errs, registry.NonNegative32(s.BackoffLimit, path.Child("backoffLimit"))...)
	errs = append(errs, registry.NonNegative32(s.TTLSecondsAfterFinished, path.Child("ttlSecondsAfterFinished"))...)
	if s.CompletionMode != nil {
		switch *s.CompletionMode {
		case batchv1.NonIndexedCompletion:
		case batchv1.IndexedCompletion:
			if s.Completions == nil {
				errs = append(errs, field.Required(path.Child("completions"), "when completion mode is Indexed"))
			}
		default:
			errs = append(errs, field.NotSupported(path.Child("completionMode"), *s.CompletionMode, []string{"NonIndexed", "Indexed"}))
		}
	}
	if s.BackoffLimitPerIndex != nil {
		errs = append(errs, registry.NonNegative32(s.BackoffLimitPerIndex, path.Child("backoffLimitPerIndex"))...)
		if s.CompletionMode == nil || *s.CompletionMode != batchv1.IndexedCompletion {
			errs = append(errs, field.Forbidden(path.Child("backoffLimitPerIndex"), "requires indexed completion mode"))
		}
	}
	if p := s.PodReplacementPolicy; p != nil {
		switch {
		case *p != batchv1.Failed && *p != batchv1.TerminatingOrFailed:
			errs = append(errs, field.NotSupported(path.Child("podReplacementPolicy"), *p, []string{"Failed", "TerminatingOrFailed"}))
		case s.PodFailurePolicy != nil && *p != batchv1.Failed:
			errs = append(errs, field.NotSupported(path.Child("podReplacementPolicy"), *p, []string{"Failed"}))
		}
	}
	if s.PodFailurePolicy != nil {
		errs = append(errs, validatePodFailurePolicy(s.PodFailurePolicy, path.Child("podFailurePolicy"))...)
	}
	tp := path.Child("template")
	errs = append(errs, podtemplate.ValidateTemplate(&s.Template, tp)...)
	if rp := s.Template.Spec.RestartPolicy; rp != corev1.RestartPolicyOnFailure && rp != corev1.RestartPolicyNever {
		errs = append(errs, field.NotSupported(tp.Child("spec", "restartPolicy"), rp, []string{"OnFailure", "Never"}))
	}
	return errs
}

func validatePodFailurePolicy(p *batchv1.PodFailurePolicy, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(p.Rules) > 20 {
		errs = append(errs, field.TooMany(path.Child("rules"), len(p.Rules), 20))
	}
	for i, r := range p.Rules {
		rp := path.Child("rules").Index(i)
		switch r.Action {
		case batchv1.PodFailurePolicyActionFailJob, batchv1.PodFailurePolicyActionFailIndex,
			batchv1.PodFailurePolicyActionIgnore, batchv1.PodFailurePolicyActionCount:
		default:
			errs = append(errs, field.NotSupported(rp.Child("action"), r.Action, []string{"Count", "FailIndex", "FailJob", "Ignore"}))
		}
		if (r.OnExitCodes == nil) == (len(r.OnPodConditions) == 0) {
			errs = append(errs, field.Invalid(rp, field.OmitValueType{}, "specifying one of OnExitCodes and OnPodConditions is required"))
		}
		if ec := r.OnExitCodes; ec != nil {
			switch ec.Operator {
			case batchv1.PodFailurePolicyOnExitCodesOpIn, batchv1.PodFailurePolicyOnExitCodesOpNotIn:
			default:
				errs = append(errs, field.NotSupported(rp.Child("onExitCodes", "operator"), ec.Operator, []string{"In", "NotIn"}))
			}
			if len(ec.Values) == 0 {
				errs = append(errs, field.Required(rp.Child("onExitCodes", "values"), "at least one value is required"))
			}
		}
	}
	return errs
}

// ValidateUpdate checks a Job update: the selector never changes, and the
// template only in its scheduling directives while the Job is suspended and
// has not started.
func ValidateUpdate(n, o *batchv1.Job) field.ErrorList {
	errs := Validate(n)
	spec := field.NewPath("spec")
	errs = append(errs, registry.Immutable(n.Spec.Selector, o.Spec.Selector, spec.Child("selector"))...)
	errs = append(errs, registry.Immutable(n.Spec.CompletionMode, o.Spec.CompletionMode, spec.Child("completionMode"))...)
	errs = append(errs, registry.Immutable(n.Spec.PodFailurePolicy, o.Spec.PodFailurePolicy, spec.Child("podFailurePolicy"))...)
	indexedScale := n.Spec.CompletionMode != nil && *n.Spec.CompletionMode == batchv1.IndexedCompletion &&
		n.Spec.Completions != nil && n.Spec.Parallelism != nil && *n.Spec.Completions == *n.Spec.Parallelism
	if !indexedScale {
		errs = append(errs, registry.Immutable(n.Spec.Completions, o.Spec.Completions, spec.Child("completions"))...)
	}
	tmpl := n.Spec.Template.DeepCopy()
	if o.Spec.Suspend != nil && *o.Spec.Suspend && o.Status.StartTime == nil {
		// Scheduling directives of a suspended Job that never started may change.
		tmpl.Labels, tmpl.Annotations = o.Spec.Template.Labels, o.Spec.Template.Annotations
		tmpl.Spec.NodeSelector, tmpl.Spec.Affinity = o.Spec.Template.Spec.NodeSelector, o.Spec.Template.Spec.Affinity
		tmpl.Spec.Tolerations, tmpl.Spec.SchedulingGates = o.Spec.Template.Spec.Tolerations, o.Spec.Template.Spec.SchedulingGates
	}
	if !apiequality.Semantic.DeepEqual(*tmpl, o.Spec.Template) {
		errs = append(errs, field.Invalid(spec.Child("template"), field.OmitValueType{}, "field is immutable"))
	}
	return errs
}

// Row renders a Job the way kubectl get jobs does.
func Row(j *batchv1.Job) []interface{} {
	var completions string
	switch {
	case j.Spec.Completions != nil:
		completions = fmt.Sprintf("%d/%d", j.Status.Succeeded, *j.Spec.Completions)
	case j.Spec.Parallelism != nil && *j.Spec.Parallelism > 1:
		completions = fmt.Sprintf("%d/1 of %d", j.Status.Succeeded, *j.Spec.Parallelism)
	default:
		completions = fmt.Sprintf("%d/1", j.Status.Succeeded)
	}
	var took string
	switch {
	case j.Status.StartTime == nil:
	case j.Status.CompletionTime == nil:
		took = duration.HumanDuration(time.Since(j.Status.StartTime.Time))
	default:
		took = duration.HumanDuration(j.Status.CompletionTime.Sub(j.Status.StartTime.Time))
	}
	status := "Running"
	switch {
	case hasCondition(j, batchv1.JobComplete):
		status = "Complete"
	case hasCondition(j, batchv1.JobFailed):
		status = "Failed"
	case j.DeletionTimestamp != nil:
		status = "Terminating"
	case hasCondition(j, batchv1.JobSuspended):
		status = "Suspended"
	case hasCondition(j, batchv1.JobFailureTarget):
		status = "FailureTarget"
	}
	names, images := registry.ContainerCells(j.Spec.Template.Spec.Containers)
	return []interface{}{j.Name, status, completions, took, registry.Age(j.CreationTimestamp),
		names, images, metav1.FormatLabelSelector(j.Spec.Selector)}
}

func hasCondition(j *batchv1.Job, t batchv1.JobConditionType) bool {
	for _, c := range j.Status.Conditions {
		if c.Type == t {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
