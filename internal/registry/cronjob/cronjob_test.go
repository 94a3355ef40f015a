package cronjob

import (
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/registry/registrytest"
)

func seed() *batchv1.CronJob {
	return &batchv1.CronJob{
		ObjectMeta: metav1.ObjectMeta{Name: "backup"},
		Spec: batchv1.CronJobSpec{
			Schedule: "*/5 * * * *",
			JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
				RestartPolicy: corev1.RestartPolicyOnFailure,
				Containers:    []corev1.Container{{Name: "backup", Image: "busybox:1.36", Command: []string{"date"}}},
			}}}},
		},
	}
}

func TestDefaults(t *testing.T) {
	cj := seed()
	Default(cj)
	s := cj.Spec
	if s.ConcurrencyPolicy != batchv1.AllowConcurrent || *s.Suspend || *s.SuccessfulJobsHistoryLimit != 3 || *s.FailedJobsHistoryLimit != 1 {
		t.Errorf("spec %+v", s)
	}
	// The job template gets pod defaults only; Job defaults come with each Job.
	if jt := s.JobTemplate.Spec; jt.Completions != nil || jt.BackoffLimit != nil || jt.Template.Spec.DNSPolicy != corev1.DNSClusterFirst {
		t.Errorf("job template %+v", jt)
	}
}

func TestValidation(t *testing.T) {
	str := func(s string) *string { return &s }
	for _, tc := range []struct {
		name string
		mod  func(*batchv1.CronJob)
		want []string
	}{
		{"seed", func(*batchv1.CronJob) {}, nil},
		{"macro schedule", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "@hourly" }, nil},
		{"time zone", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = str("Europe/Paris") }, nil},
		{"no schedule", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "" }, []string{"spec.schedule: Required value"}},
		{"bad schedule", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "61 * * * *" },
			[]string{`spec.schedule: Invalid value: "61 * * * *": end of range (61) above maximum (59): 61`}},
		{"six fields", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "0 */5 * * * *" }, []string{"spec.schedule: Invalid value"}},
		{"TZ in schedule", func(cj *batchv1.CronJob) { cj.Spec.Schedule = "CRON_TZ=UTC 0 * * * *" },
			[]string{"spec.schedule: Invalid value: \"CRON_TZ=UTC 0 * * * *\": cannot use TZ or CRON_TZ in schedule"}},
		{"unknown time zone", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = str("Mars/Olympus") }, []string{"spec.timeZone: Invalid value"}},
		{"local time zone", func(cj *batchv1.CronJob) { cj.Spec.TimeZone = str("Local") }, []string{"spec.timeZone: Invalid value"}},
		{"bad concurrency", func(cj *batchv1.CronJob) { cj.Spec.ConcurrencyPolicy = "Sometimes" },
			[]string{"spec.concurrencyPolicy: Unsupported value: \"Sometimes\""}},
		{"negative history", func(cj *batchv1.CronJob) { n := int32(-1); cj.Spec.FailedJobsHistoryLimit = &n },
			[]string{"spec.failedJobsHistoryLimit: Invalid value"}},
		{"long name", func(cj *batchv1.CronJob) { cj.Name = strings.Repeat("a", 53) }, []string{"metadata.name: Invalid value"}},
		{"template restartPolicy Always", func(cj *batchv1.CronJob) {
			cj.Spec.JobTemplate.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways
		}, []string{"spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value"}},
		{"template selector", func(cj *batchv1.CronJob) {
			cj.Spec.JobTemplate.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"a": "b"}}
		}, []string{"spec.jobTemplate.spec.selector: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cj := seed()
			tc.mod(cj)
			Default(cj)
			registrytest.Errors(t, Validate(cj, nil), tc.want...)
		})
	}
}

func TestRow(t *testing.T) {
	cj := seed()
	Default(cj)
	row, _ := Resource().Row(cj)
	if row[1] != "*/5 * * * *" || row[2] != "<none>" || row[3] != "False" || row[4] != int64(0) || row[5] != "<none>" || row[9] != "<none>" {
		t.Errorf("row %v", row)
	}
}
