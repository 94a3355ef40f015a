// Package cronjob is the registry entry of batch/v1 CronJobs.
package cronjob

import (
	"context"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	batchv1 "k8s.io/api/batch/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/job"
	"github.com/headway/headway/internal/registry/pod"
)

// MaxNameLength leaves room for the suffix of the Jobs a CronJob creates.
const MaxNameLength = 52

// Resource returns the cronjobs registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: batchv1.SchemeGroupVersion,
		Kind:         "CronJob", ListKind: "CronJobList",
		AllowUnconditionalUpdate: true,
		Plural:                   "cronjobs", Singular: "cronjob",
		ShortNames: []string{"cj"},
		Categories: []string{"all"},
		Namespaced: true,
		New:        func() runtime.Object { return &batchv1.CronJob{} },
		NewList:    func() runtime.Object { return &batchv1.CronJobList{} },
		HasStatus:  true,
		Generation: true,
		Default:    func(obj runtime.Object) { Default(obj.(*batchv1.CronJob)) },
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			registry.ResetStatus(obj)
		},
		Validate: func(obj runtime.Object) field.ErrorList { return Validate(obj.(*batchv1.CronJob), nil) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return Validate(obj.(*batchv1.CronJob), old.(*batchv1.CronJob))
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Schedule", "string", 0, batchv1.CronJobSpec{}.SwaggerDoc()["schedule"]),
			registry.Column("Timezone", "string", 0, batchv1.CronJobSpec{}.SwaggerDoc()["timeZone"]),
			registry.Column("Suspend", "boolean", 0, batchv1.CronJobSpec{}.SwaggerDoc()["suspend"]),
			registry.Column("Active", "integer", 0, batchv1.CronJobStatus{}.SwaggerDoc()["active"]),
			registry.Column("Last Schedule", "string", 0, batchv1.CronJobStatus{}.SwaggerDoc()["lastScheduleTime"]),
			registry.AgeColumn,
			registry.Column("Containers", "string", 1, "Names of each container in the template."),
			registry.Column("Images", "string", 1, "Images referenced by each container in the template."),
			registry.Column("Selector", "string", 1, batchv1.JobSpec{}.SwaggerDoc()["selector"]),
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			cj := obj.(*batchv1.CronJob)
			last := "<none>"
			if t := cj.Status.LastScheduleTime; t != nil {
				last = registry.Age(*t)
			}
			tz := "<none>"
			if cj.Spec.TimeZone != nil {
				tz = *cj.Spec.TimeZone
			}
			suspend := "<unset>"
			if s := cj.Spec.Suspend; s != nil {
				suspend = "False"
				if *s {
					suspend = "True"
				}
			}
			tmpl := cj.Spec.JobTemplate.Spec
			names, images := registry.ContainerCells(tmpl.Template.Spec.Containers)
			return []interface{}{cj.Name, cj.Spec.Schedule, tz, suspend, int64(len(cj.Status.Active)), last,
				registry.Age(cj.CreationTimestamp), names, images, metav1.FormatLabelSelector(tmpl.Selector)}, nil
		},
	}
}

// Default sets what kube-apiserver defaults on a CronJob. Its job template
// gets only pod defaults: the Job defaults apply when a Job is created.
func Default(cj *batchv1.CronJob) {
	if cj.Spec.ConcurrencyPolicy == "" {
		cj.Spec.ConcurrencyPolicy = batchv1.AllowConcurrent
	}
	if cj.Spec.Suspend == nil {
		f := false
		cj.Spec.Suspend = &f
	}
	if cj.Spec.SuccessfulJobsHistoryLimit == nil {
		l := int32(3)
		cj.Spec.SuccessfulJobsHistoryLimit = &l
	}
	if cj.Spec.FailedJobsHistoryLimit == nil {
		l := int32(1)
		cj.Spec.FailedJobsHistoryLimit = &l
	}
	pod.DefaultPodSpec(&cj.Spec.JobTemplate.Spec.Template.Spec)
}

// Validate checks a CronJob (old is nil on create).
func Validate(cj *batchv1.CronJob, old *batchv1.CronJob) field.ErrorList {
	var errs field.ErrorList
	if len(cj.Name) > MaxNameLength {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), cj.Name, "must be no more than 52 characters"))
	}
	spec := field.NewPath("spec")
	sp := spec.Child("schedule")
	switch {
	case cj.Spec.Schedule == "":
		errs = append(errs, field.Required(sp, ""))
	case strings.Contains(cj.Spec.Schedule, "TZ") && (old == nil || old.Spec.Schedule != cj.Spec.Schedule):
		errs = append(errs, field.Invalid(sp, cj.Spec.Schedule, "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"))
	default:
		if _, err := cron.ParseStandard(cj.Spec.Schedule); err != nil {
			errs = append(errs, field.Invalid(sp, cj.Spec.Schedule, err.Error()))
		}
	}
	if tz := cj.Spec.TimeZone; tz != nil {
		tp := spec.Child("timeZone")
		switch {
		case *tz == "":
			errs = append(errs, field.Invalid(tp, *tz, "timeZone must be nil or non-empty string"))
		case strings.EqualFold(*tz, "Local"):
			errs = append(errs, field.Invalid(tp, *tz, "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"))
		default:
			if _, err := time.LoadLocation(*tz); err != nil {
				errs = append(errs, field.Invalid(tp, *tz, err.Error()))
			}
		}
	}
	switch cj.Spec.ConcurrencyPolicy {
	case batchv1.AllowConcurrent, batchv1.ForbidConcurrent, batchv1.ReplaceConcurrent:
	case "":
		errs = append(errs, field.Required(spec.Child("concurrencyPolicy"), ""))
	default:
		errs = append(errs, field.NotSupported(spec.Child("concurrencyPolicy"), cj.Spec.ConcurrencyPolicy, []string{"Allow", "Forbid", "Replace"}))
	}
	if s := cj.Spec.StartingDeadlineSeconds; s != nil {
		errs = append(errs, registry.NonNegative(*s, spec.Child("startingDeadlineSeconds"))...)
	}
	errs = append(errs, registry.NonNegative32(cj.Spec.SuccessfulJobsHistoryLimit, spec.Child("successfulJobsHistoryLimit"))...)
	errs = append(errs, registry.NonNegative32(cj.Spec.FailedJobsHistoryLimit, spec.Child("failedJobsHistoryLimit"))...)

	jt, jp := &cj.Spec.JobTemplate, spec.Child("jobTemplate")
	errs = append(errs, metav1validation.ValidateLabels(jt.Labels, jp.Child("metadata", "labels"))...)
	errs = append(errs, apivalidation.ValidateAnnotations(jt.Annotations, jp.Child("metadata", "annotations"))...)
	errs = append(errs, job.ValidateSpec(&jt.Spec, jp.Child("spec"))...)
	if jt.Spec.Selector != nil {
		errs = append(errs, field.Invalid(jp.Child("spec", "selector"), jt.Spec.Selector, "`selector` will be auto-generated"))
	}
	if m := jt.Spec.ManualSelector; m != nil && *m {
		errs = append(errs, field.NotSupported(jp.Child("spec", "manualSelector"), *m, []string{"nil", "false"}))
	}
	return errs
}
