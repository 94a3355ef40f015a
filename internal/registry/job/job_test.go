package job

import (
	"context"
	"math"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/headway/headway/internal/registry/registrytest"
)

const uid = types.UID("6f1c1e5a-0000-4000-8000-000000000001")

func seed() *batchv1.Job {
	return &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "pi", UID: uid},
		Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{
			RestartPolicy: corev1.RestartPolicyNever,
			Containers:    []corev1.Container{{Name: "pi", Image: "perl:5.34", Command: []string{"perl", "-e", "1"}}},
		}}},
	}
}

// created runs the create pipeline's registry steps.
func created(j *batchv1.Job) *batchv1.Job {
	r := Resource()
	r.Default(j)
	r.PrepareForCreate(context.Background(), j)
	return j
}

func TestDefaults(t *testing.T) {
	for _, tc := range []struct {
		name                     string
		mod                      func(*batchv1.Job)
		completions, parallelism *int32
		backoff                  int32
		replacement              batchv1.PodReplacementPolicy
		completionMode, manual   string
	}{
		{"both unset", func(*batchv1.Job) {}, ptr(1), ptr(1), 6, batchv1.TerminatingOrFailed, "NonIndexed", "false"},
		{"parallelism only", func(j *batchv1.Job) { j.Spec.Parallelism = ptr(3) }, nil, ptr(3), 6, batchv1.TerminatingOrFailed, "NonIndexed", "false"},
		{"completions only", func(j *batchv1.Job) { j.Spec.Completions = ptr(5) }, ptr(5), ptr(1), 6, batchv1.TerminatingOrFailed, "NonIndexed", "false"},
		{"backoff per index", func(j *batchv1.Job) {
			m := batchv1.IndexedCompletion
			j.Spec.CompletionMode, j.Spec.Completions, j.Spec.BackoffLimitPerIndex = &m, ptr(3), ptr(1)
		}, ptr(3), ptr(1), math.MaxInt32, batchv1.TerminatingOrFailed, "Indexed", "false"},
		{"pod failure policy", func(j *batchv1.Job) {
			j.Spec.PodFailurePolicy = &batchv1.PodFailurePolicy{Rules: []batchv1.PodFailurePolicyRule{{
				Action: batchv1.PodFailurePolicyActionIgnore, OnPodConditions: []batchv1.PodFailurePolicyOnPodConditionsPattern{{Type: corev1.DisruptionTarget}}}}}
		}, ptr(1), ptr(1), 6, batchv1.Failed, "NonIndexed", "false"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := seed()
			tc.mod(j)
			Default(j)
			s := j.Spec
			if !eq(s.Completions, tc.completions) || !eq(s.Parallelism, tc.parallelism) || *s.BackoffLimit != tc.backoff ||
				*s.PodReplacementPolicy != tc.replacement || string(*s.CompletionMode) != tc.completionMode || *s.Suspend ||
				*s.ManualSelector {
				t.Errorf("spec %+v", s)
			}
			if pfp := s.PodFailurePolicy; pfp != nil && pfp.Rules[0].OnPodConditions[0].Status != corev1.ConditionTrue {
				t.Errorf("pod condition pattern status %q", pfp.Rules[0].OnPodConditions[0].Status)
			}
		})
	}
}

func ptr(v int32) *int32 { return &v }

func eq(a, b *int32) bool { return (a == nil && b == nil) || (a != nil && b != nil && *a == *b) }

func TestGeneratedSelector(t *testing.T) {
	j := created(seed())
	want := map[string]string{"controller-uid": string(uid), "batch.kubernetes.io/controller-uid": string(uid),
		"job-name": "pi", "batch.kubernetes.io/job-name": "pi"}
	for k, v := range want {
		if j.Spec.Template.Labels[k] != v {
			t.Errorf("template label %s = %q, want %q", k, j.Spec.Template.Labels[k], v)
		}
	}
	if len(j.Spec.Selector.MatchLabels) != 1 || j.Spec.Selector.MatchLabels["batch.kubernetes.io/controller-uid"] != string(uid) {
		t.Errorf("selector %+v", j.Spec.Selector)
	}
	if len(j.Labels) != 0 {
		t.Errorf("a Job whose template has no labels got labels %v", j.Labels)
	}
	registrytest.Errors(t, Validate(j))

	// A template with labels lends them to the Job, generated ones included.
	l := seed()
	l.Spec.Template.Labels = map[string]string{"app": "pi"}
	created(l)
	if l.Labels["app"] != "pi" || l.Labels["batch.kubernetes.io/job-name"] != "pi" {
		t.Errorf("job labels %v", l.Labels)
	}
}

func TestValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*batchv1.Job)
		want []string
	}{
		{"seed", func(*batchv1.Job) {}, nil},
		{"restartPolicy Always", func(j *batchv1.Job) { j.Spec.Template.Spec.RestartPolicy = corev1.RestartPolicyAlways },
			[]string{"spec.template.spec.restartPolicy: Unsupported value: \"Always\""}},
		{"negative parallelism", func(j *batchv1.Job) { j.Spec.Parallelism = ptr(-1) }, []string{"spec.parallelism: Invalid value"}},
		{"negative backoff", func(j *batchv1.Job) { j.Spec.BackoffLimit = ptr(-1) }, []string{"spec.backoffLimit: Invalid value"}},
		{"negative ttl", func(j *batchv1.Job) { j.Spec.TTLSecondsAfterFinished = ptr(-1) }, []string{"spec.ttlSecondsAfterFinished: Invalid value"}},
		{"indexed without completions", func(j *batchv1.Job) {
			m := batchv1.IndexedCompletion
			j.Spec.CompletionMode, j.Spec.Parallelism = &m, ptr(2)
		}, []string{"spec.completions: Required value: when completion mode is Indexed"}},
		{"unknown completion mode", func(j *batchv1.Job) { m := batchv1.CompletionMode("Sometimes"); j.Spec.CompletionMode = &m },
			[]string{"spec.completionMode: Unsupported value"}},
		{"unknown replacement policy", func(j *batchv1.Job) { p := batchv1.PodReplacementPolicy("Never"); j.Spec.PodReplacementPolicy = &p },
			[]string{"spec.podReplacementPolicy: Unsupported value"}},
		{"conflicting uid label", func(j *batchv1.Job) { j.Spec.Template.Labels = map[string]string{"controller-uid": "other"} },
			[]string{"spec.template.metadata.labels[controller-uid]: Invalid value: \"other\": must be '" + string(uid) + "'"}},
		{"manual selector not matching", func(j *batchv1.Job) {
			t := true
			j.Spec.ManualSelector = &t
			j.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "pi"}}
		}, []string{"spec.template.metadata.labels: Invalid value"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			j := seed()
			tc.mod(j)
			registrytest.Errors(t, Validate(created(j)), tc.want...)
		})
	}
}

func TestUpdate(t *testing.T) {
	old := created(seed())
	r := Resource()
	suspended := old.DeepCopy()
	*suspended.Spec.Suspend = true
	registrytest.Errors(t, r.ValidateUpdate(suspended, old))

	image := old.DeepCopy()
	image.Spec.Template.Spec.Containers[0].Image = "perl:5.36"
	registrytest.Errors(t, r.ValidateUpdate(image, old), "spec.template: Invalid value")

	sel := old.DeepCopy()
	sel.Spec.Selector.MatchLabels["extra"] = "x"
	sel.Spec.Template.Labels["extra"] = "x"
	registrytest.Errors(t, r.ValidateUpdate(sel, old),
		"spec.selector: Invalid value", // `selector` not auto-generated
		"spec.selector: Invalid value", // field is immutable
		"spec.template: Invalid value")

	// A suspended Job that never started may move to other nodes.
	susp := created(seed())
	*susp.Spec.Suspend = true
	moved := susp.DeepCopy()
	moved.Spec.Template.Spec.NodeSelector = map[string]string{"zone": "b"}
	registrytest.Errors(t, r.ValidateUpdate(moved, susp))
}

func TestRow(t *testing.T) {
	j := created(seed())
	j.Status.Succeeded = 1
	j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
	row := Row(j)
	if row[1] != "Complete" || row[2] != "1/1" {
		t.Errorf("row %v", row)
	}
	p := seed()
	p.Spec.Parallelism = ptr(3)
	Default(p)
	if row := Row(p); row[1] != "Running" || row[2] != "0/1 of 3" {
		t.Errorf("row %v", row)
	}
}
