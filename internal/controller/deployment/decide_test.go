package deployment

import (
	"fmt"
	"sort"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func i32(n int32) *int32 { return &n }

func ios(s string) *intstr.IntOrString {
	v := intstr.Parse(s)
	return &v
}

func newDeployment(replicas int32, surge, unavailable string) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "d-uid", Generation: 1},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx:1"}}},
			},
			Strategy: appsv1.DeploymentStrategy{Type: appsv1.RollingUpdateDeploymentStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDeployment{MaxSurge: ios(surge), MaxUnavailable: ios(unavailable)}},
			RevisionHistoryLimit:    i32(10),
			ProgressDeadlineSeconds: i32(600),
		},
	}
}

func withImage(d *appsv1.Deployment, image string) *appsv1.Deployment {
	d = d.DeepCopy()
	d.Spec.Template.Spec.Containers[0].Image = image
	d.Generation++
	return d
}

// rsFor builds the set a Deployment with this template would have, at the
// revision, with spec replicas and available (= ready = status) replicas.
func rsFor(d *appsv1.Deployment, image string, revision int, spec, available int32, age time.Duration) *appsv1.ReplicaSet {
	dd := d.DeepCopy()
	dd.Spec.Template.Spec.Containers[0].Image = image
	rs := NewReplicaSet(dd, spec)
	rs.UID = types.UID("uid-" + rs.Name)
	rs.CreationTimestamp = metav1.NewTime(t0.Add(-age))
	rs.Annotations = map[string]string{RevisionAnnotation: strconv.Itoa(revision),
		DesiredReplicasAnnotation: strconv.Itoa(int(replicas(d))), MaxReplicasAnnotation: strconv.Itoa(int(replicas(d) + MaxSurge(d)))}
	rs.Status = appsv1.ReplicaSetStatus{Replicas: spec, ReadyReplicas: available, AvailableReplicas: available}
	return rs
}

func TestFenceposts(t *testing.T) {
	cases := []struct {
		surge, unavailable string
		desired            int32
		wantS, wantU       int32
	}{
		{"25%", "25%", 10, 3, 2}, // surge rounds up, unavailable down
		{"25%", "25%", 4, 1, 1},
		{"25%", "25%", 1, 1, 0},
		{"25%", "25%", 0, 0, 1}, // both zero: unavailable 1
		{"0", "0", 5, 0, 1},
		{"0%", "10%", 5, 0, 1}, // 10% of 5 rounds down to 0: then 1
		{"10%", "10%", 5, 1, 0},
		{"50%", "50%", 3, 2, 1},
		{"2", "10%", 5, 2, 0},
		{"100%", "0", 3, 3, 0},
		{"0", "100%", 3, 0, 3},
		{"1", "1", 10, 1, 1},
	}
	for _, tc := range cases {
		s, u := Fenceposts(intstr.Parse(tc.surge), intstr.Parse(tc.unavailable), tc.desired)
		if s != tc.wantS || u != tc.wantU {
			t.Errorf("Fenceposts(%s, %s, %d) = %d, %d; want %d, %d", tc.surge, tc.unavailable, tc.desired, s, u, tc.wantS, tc.wantU)
		}
	}
	// maxUnavailable is never more than replicas, and 0 without replicas
	// or for Recreate.
	d := newDeployment(2, "0", "5")
	if got := MaxUnavailable(d); got != 2 {
		t.Errorf("MaxUnavailable = %d, want 2", got)
	}
	d.Spec.Replicas = i32(0)
	if got := MaxUnavailable(d); got != 0 {
		t.Errorf("MaxUnavailable with 0 replicas = %d", got)
	}
	r := newDeployment(3, "1", "1")
	r.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	if MaxSurge(r) != 0 || MaxUnavailable(r) != 0 {
		t.Error("Recreate has surge or unavailability")
	}
	// The API's default when rollingUpdate is absent: 25%/25%.
	nd := newDeployment(8, "0", "0")
	nd.Spec.Strategy.RollingUpdate = nil
	if MaxSurge(nd) != 2 || MaxUnavailable(nd) != 2 {
		t.Errorf("defaults: surge %d unavailable %d", MaxSurge(nd), MaxUnavailable(nd))
	}
}

func TestTemplateHash(t *testing.T) {
	d := newDeployment(1, "1", "0")
	h1 := TemplateHash(&d.Spec.Template, nil)
	if h1 != TemplateHash(d.DeepCopy().Spec.Template.DeepCopy(), nil) {
		t.Fatal("hash not deterministic")
	}
	for _, r := range h1 {
		if !(r >= 'b' && r <= 'z' || r >= '2' && r <= '9') || r == 'e' || r == 'a' || r == 'i' || r == 'o' || r == 'u' {
			t.Fatalf("hash %q has %q outside the safe alphabet", h1, r)
		}
	}
	if h1 == TemplateHash(&withImage(d, "nginx:2").Spec.Template, nil) {
		t.Error("different templates, same hash")
	}
	if h1 == TemplateHash(&d.Spec.Template, i32(1)) || TemplateHash(&d.Spec.Template, i32(0)) == TemplateHash(&d.Spec.Template, i32(1)) {
		t.Error("collision count does not change the hash")
	}
	rs := NewReplicaSet(d, 3)
	if rs.Name != "web-"+h1 || rs.Labels[HashLabel] != h1 || rs.Spec.Selector.MatchLabels[HashLabel] != h1 ||
		rs.Spec.Template.Labels[HashLabel] != h1 || *rs.Spec.Replicas != 3 {
		t.Errorf("new set %s labels %v selector %v template labels %v", rs.Name, rs.Labels, rs.Spec.Selector, rs.Spec.Template.Labels)
	}
	if _, ok := d.Spec.Template.Labels[HashLabel]; ok {
		t.Error("NewReplicaSet changed the Deployment's template labels")
	}
	if ref := metav1.GetControllerOf(rs); ref == nil || ref.UID != d.UID || !*ref.BlockOwnerDeletion {
		t.Errorf("owner %+v", ref)
	}
	if !EqualIgnoreHash(&rs.Spec.Template, &d.Spec.Template) {
		t.Error("the set's template differs from the Deployment's beyond the hash")
	}
}

// sizes renders the plan's outcome: "new=N old1=N ..." with the sets by
// name as they will be.
func sizes(in Input, plan Plan) string {
	got := map[string]int32{}
	for _, rs := range in.ReplicaSets {
		got[rs.Name] = rsReplicas(rs)
	}
	if plan.Create != nil {
		got[plan.Create.Name+"(created)"] = rsReplicas(plan.Create)
	}
	for _, s := range plan.Scales {
		got[s.ReplicaSet.Name] = s.To
	}
	return render(got)
}

func render(got map[string]int32) string {
	var keys []string
	for k := range got {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := ""
	for _, k := range keys {
		out += fmt.Sprintf("%s=%d ", k, got[k])
	}
	return out
}

func TestRollingSteps(t *testing.T) {
	base := func(r int32, s, u string) *appsv1.Deployment { return withImage(newDeployment(r, s, u), "nginx:2") }
	newName := func(d *appsv1.Deployment) string { return d.Name + "-" + TemplateHash(&d.Spec.Template, nil) }
	oldName := func(d *appsv1.Deployment) string {
		return d.Name + "-" + TemplateHash(&withImage(d, "nginx:1").Spec.Template, nil)
	}
	cases := []struct {
		name     string
		d        *appsv1.Deployment
		sets     func(d *appsv1.Deployment) []*appsv1.ReplicaSet
		want     func(d *appsv1.Deployment) string
		wantStep string
	}{
		{
			name: "first rollout creates the set at full size",
			d:    newDeployment(3, "25%", "25%"),
			sets: func(*appsv1.Deployment) []*appsv1.ReplicaSet { return nil },
			want: func(d *appsv1.Deployment) string {
				return fmt.Sprintf("%s(created)=3 ", d.Name+"-"+TemplateHash(&d.Spec.Template, nil))
			},
			wantStep: "waiting",
		},
		{
			name: "25%/25% of 10: new at 3, old down to 8 in the same sync",
			d:    base(10, "25%", "25%"),
			sets: func(d *appsv1.Deployment) []*appsv1.ReplicaSet {
				return []*appsv1.ReplicaSet{rsFor(d, "nginx:1", 1, 10, 10, time.Hour)}
			},
			want:     func(d *appsv1.Deployment) string { return fmt.Sprintf("%s(created)=3 %s=8 ", newName(d), oldName(d)) },
			wantStep: "old sets down",
		},
		{
			name: "maxSurge 0: old down by maxUnavailable first, new created empty",
			d:    base(3, "0", "1"),
			sets: func(d *appsv1.Deployment) []*appsv1.ReplicaSet {
				return []*appsv1.ReplicaSet{rsFor(d, "nginx:1", 1, 3, 3, time.Hour)}
			},
			want:     func(d *appsv1.Deployment) string { return fmt.Sprintf("%s(created)=0 %s=2 ", newName(d), oldName(d)) },
			wantStep: "old sets down",
		},
		{
			name: "maxUnavailable 0: surge one, old stays until it is available",
			d:    base(3, "1", "0"),
			sets: func(d *appsv1.Deployment) []*appsv1.ReplicaSet {
				return []*appsv1.ReplicaSet{rsFor(d, "nginx:1", 1, 3, 3, time.Hour)}
			},
			want:     func(d *appsv1.Deployment) string { return fmt.Sprintf("%s(created)=1 %s=3 ", newName(d), oldName(d)) },
			wantStep: "waiting",
		},
		{
			name: "maxUnavailable 0: the new pod available lets one old go",
			d:    base(3, "1", "0"),
			sets: func(d *appsv1.Deployment) []*appsv1.ReplicaSet {
				return []*appsv1.ReplicaSet{rsFor(d, "nginx:1", 1, 3, 3, time.Hour), rsFor(d, "nginx:2", 2, 1, 1, time.Minute)}
			},
			want:     func(d *appsv1.Deployment) string { return fmt.Sprintf("%s=1 %s=2 ", newName(d), oldName(d)) },
			wantStep: "old sets down",
		},
		{
			name: "room under maxSurge: the new set grows",
			d:    base(10, "25%", "25%"),
			sets: func(d *appsv1.Deployment) []*appsv1.ReplicaSet {
				return []*appsv1.ReplicaSet{rsFor(d, "nginx:1", 1, 8, 8, time.Hour), rsFor(d, "nginx:2", 2, 3, 0, time.Minute)}
			},
			want:     func(d *appsv1.Deployment) string { return fmt.Sprintf("%s=5 %s=8 ", newName(d), oldName(d)) },
			wantStep: "new set up",
		},
		{
			name: "unavailable new pods block scaling old down",
			d:    base(10, "25%", "25%"),
			sets: func(d *appsv1.Deployment) []*appsv1.ReplicaSet {
				return []*appsv1.ReplicaSet{rsFor(d, "nginx:1", 1, 8, 8, time.Hour), rsFor(d, "nginx:2", 2, 5, 0, time.Minute)}
			},
			want:     func(d *appsv1.Deployment) string { return fmt.Sprintf("%s=5 %s=8 ", newName(d), oldName(d)) },
			wantStep: "waiting",
		},
		{
			name: "unhealthy old replicas go first",
			d:    base(10, "25%", "25%"),
			sets: func(d *appsv1.Deployment) []*appsv1.ReplicaSet {
				return []*appsv1.ReplicaSet{rsFor(d, "nginx:1", 1, 10, 7, time.Hour), rsFor(d, "nginx:2", 2, 3, 0, time.Minute)}
			},
			want:     func(d *appsv1.Deployment) string { return fmt.Sprintf("%s=3 %s=8 ", newName(d), oldName(d)) },
			wantStep: "old sets down",
		},
		{
			name: "two old sets: the oldest goes down first",
			d:    base(4, "0", "2"),
			sets: func(d *appsv1.Deployment) []*appsv1.ReplicaSet {
				return []*appsv1.ReplicaSet{rsFor(d, "nginx:0", 1, 1, 1, 2*time.Hour), rsFor(d, "nginx:1", 2, 3, 3, time.Hour), rsFor(d, "nginx:2", 3, 0, 0, time.Minute)}
			},
			want: func(d *appsv1.Deployment) string {
				return render(map[string]int32{d.Name + "-" + TemplateHash(&withImage(d, "nginx:0").Spec.Template, nil): 0, oldName(d): 2, newName(d): 0})
			},
			wantStep: "old sets down",
		},
		{
			name: "replicas lowered below the new set's size",
			d:    base(2, "25%", "25%"),
			sets: func(d *appsv1.Deployment) []*appsv1.ReplicaSet {
				rs := rsFor(d, "nginx:2", 2, 4, 4, time.Minute)
				rs.Annotations[DesiredReplicasAnnotation] = "2" // not a scaling event
				return []*appsv1.ReplicaSet{rsFor(d, "nginx:1", 1, 0, 0, time.Hour), rs}
			},
			want:     func(d *appsv1.Deployment) string { return fmt.Sprintf("%s=2 %s=0 ", newName(d), oldName(d)) },
			wantStep: "new set down to replicas",
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Deployment: tc.d, ReplicaSets: tc.sets(tc.d), Now: t0}
			plan := Decide(in)
			if got, want := sizes(in, plan), tc.want(tc.d); got != want {
				t.Errorf("sizes %q, want %q", got, want)
			}
			if plan.Step != tc.wantStep {
				t.Errorf("step %q, want %q", plan.Step, tc.wantStep)
			}
		})
	}
}

func TestRecreateSteps(t *testing.T) {
	d := withImage(newDeployment(3, "0", "0"), "nginx:2")
	d.Spec.Strategy = appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType}
	newName := d.Name + "-" + TemplateHash(&d.Spec.Template, nil)
	old := func(spec, status int32) *appsv1.ReplicaSet {
		rs := rsFor(d, "nginx:1", 1, spec, status, time.Hour)
		rs.Status.Replicas = status
		return rs
	}
	runningPod := func(rs *appsv1.ReplicaSet, ph corev1.PodPhase, terminating bool) map[types.UID][]*corev1.Pod {
		p := &corev1.Pod{Status: corev1.PodStatus{Phase: ph}}
		if terminating {
			ts := metav1.NewTime(t0)
			p.DeletionTimestamp = &ts
		}
		return map[types.UID][]*corev1.Pod{rs.UID: {p}}
	}
	o1, o2, o3, o4 := old(3, 3), old(0, 2), old(0, 0), old(0, 0)
	cases := []struct {
		name   string
		sets   []*appsv1.ReplicaSet
		pods   map[types.UID][]*corev1.Pod
		want   string
		create bool
	}{
		{name: "old scaled to zero, nothing new yet", sets: []*appsv1.ReplicaSet{o1}, want: fmt.Sprintf("%s=0 ", o1.Name)},
		{name: "old pods still counted", sets: []*appsv1.ReplicaSet{o2}, want: fmt.Sprintf("%s=0 ", o2.Name)},
		{name: "a terminating old pod holds the new set", sets: []*appsv1.ReplicaSet{o3}, pods: runningPod(o3, corev1.PodRunning, true), want: fmt.Sprintf("%s=0 ", o3.Name)},
		{name: "finished old pods do not", sets: []*appsv1.ReplicaSet{o4}, pods: runningPod(o4, corev1.PodSucceeded, false),
			want: fmt.Sprintf("%s(created)=3 %s=0 ", newName, o4.Name), create: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := Input{Deployment: d, ReplicaSets: tc.sets, Pods: tc.pods, Now: t0}
			plan := Decide(in)
			if got := sizes(in, plan); got != tc.want {
				t.Errorf("sizes %q, want %q", got, tc.want)
			}
			if (plan.Create != nil) != tc.create {
				t.Errorf("create %v, want %v", plan.Create != nil, tc.create)
			}
		})
	}
}

func TestPause(t *testing.T) {
	d := withImage(newDeployment(3, "25%", "25%"), "nginx:2")
	d.Spec.Paused = true
	old := rsFor(d, "nginx:1", 1, 3, 3, time.Hour)
	in := Input{Deployment: d, ReplicaSets: []*appsv1.ReplicaSet{old}, Now: t0}
	plan := Decide(in)
	if plan.Create != nil || len(plan.Scales) != 0 {
		t.Fatalf("paused deployment rolled out: %s", sizes(in, plan))
	}
	c := Condition(plan.Status, appsv1.DeploymentProgressing)
	if c == nil || c.Status != corev1.ConditionUnknown || c.Reason != ReasonPaused {
		t.Fatalf("progressing %+v", c)
	}
	// Scaling while paused still works.
	d.Spec.Replicas = i32(5)
	d.Status = plan.Status
	in = Input{Deployment: d, ReplicaSets: []*appsv1.ReplicaSet{old}, Now: t0}
	plan = Decide(in)
	if got, want := sizes(in, plan), old.Name+"=5 "; got != want || plan.Create != nil {
		t.Fatalf("paused scale %q, want %q", got, want)
	}
	if plan.Scales[0].ReplicaSet.Annotations[DesiredReplicasAnnotation] != "5" {
		t.Errorf("desired-replicas not updated: %v", plan.Scales[0].ReplicaSet.Annotations)
	}
	// Resumed: the condition says so and the rollout starts.
	d.Spec.Paused = false
	d.Spec.Replicas = i32(3)
	in = Input{Deployment: d, ReplicaSets: []*appsv1.ReplicaSet{old}, Now: t0.Add(time.Hour)}
	plan = Decide(in)
	if plan.Create == nil {
		t.Fatal("resumed deployment did not create its new set")
	}
	if c := Condition(plan.Status, appsv1.DeploymentProgressing); c == nil || c.Reason != ReasonNewRSCreated {
		t.Errorf("progressing after resume %+v", c)
	}
}

func TestProportionalScaling(t *testing.T) {
	// Mid-rollout with 10 replicas (surge 3): old 8, new 5. Scaled to 20
	// (surge 5, 25 allowed): the 12 extra are shared 7/5 by size.
	d := withImage(newDeployment(10, "25%", "25%"), "nginx:2")
	old := rsFor(d, "nginx:1", 1, 8, 8, time.Hour)
	nw := rsFor(d, "nginx:2", 2, 5, 0, time.Minute)
	d.Spec.Replicas = i32(20)
	in := Input{Deployment: d, ReplicaSets: []*appsv1.ReplicaSet{old, nw}, Now: t0}
	plan := Decide(in)
	if plan.Step != "scaling" {
		t.Fatalf("step %q, want scaling", plan.Step)
	}
	if got, want := sizes(in, plan), fmt.Sprintf("%s=10 %s=15 ", nw.Name, old.Name); got != want {
		t.Errorf("sizes %q, want %q", got, want)
	}
	for _, s := range plan.Scales {
		if s.ReplicaSet.Annotations[DesiredReplicasAnnotation] != "20" || s.ReplicaSet.Annotations[MaxReplicasAnnotation] != "25" {
			t.Errorf("%s annotations %v", s.ReplicaSet.Name, s.ReplicaSet.Annotations)
		}
	}
	// Down to 5 (surge 2, 7 allowed): 13 → 7, older sets lose first.
	d.Spec.Replicas = i32(5)
	plan = Decide(Input{Deployment: d, ReplicaSets: []*appsv1.ReplicaSet{old, nw}, Now: t0})
	total := int32(0)
	for _, s := range plan.Scales {
		total += s.To
	}
	if total != 7 {
		t.Errorf("scaled down to %d in all (%s), want 7", total, sizes(in, plan))
	}
}

func TestCleanup(t *testing.T) {
	d := newDeployment(2, "25%", "25%")
	d.Spec.RevisionHistoryLimit = i32(2)
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, AvailableReplicas: 2, ReadyReplicas: 2}
	var sets []*appsv1.ReplicaSet
	for i := 1; i <= 5; i++ {
		sets = append(sets, rsFor(d, fmt.Sprintf("nginx:old%d", i), i, 0, 0, time.Duration(10-i)*time.Hour))
	}
	sets[1].Status.Replicas = 1 // still has a pod: kept
	sets = append(sets, rsFor(d, "nginx:1", 6, 2, 2, time.Minute))
	plan := Decide(Input{Deployment: d, ReplicaSets: sets, Now: t0})
	var got []string
	for _, rs := range plan.Delete {
		got = append(got, rs.Annotations[RevisionAnnotation])
	}
	if fmt.Sprint(got) != "[1 3]" {
		t.Errorf("deleted revisions %v, want [1 3] (2 has a pod, 4 and 5 are kept)", got)
	}
	// Without a limit nothing goes; mid-rollout nothing goes.
	d.Spec.RevisionHistoryLimit = nil
	if plan := Decide(Input{Deployment: d, ReplicaSets: sets, Now: t0}); len(plan.Delete) != 0 {
		t.Error("deleted without a limit")
	}
	d.Spec.RevisionHistoryLimit = i32(0)
	d.Status.UpdatedReplicas = 1
	if plan := Decide(Input{Deployment: d, ReplicaSets: sets, Now: t0}); len(plan.Delete) != 0 {
		t.Error("deleted while the rollout is not complete")
	}
}

func TestRollbackRevision(t *testing.T) {
	// Revision 1 (nginx:1) and 2 (nginx:2); the template is back to
	// nginx:1 (kubectl rollout undo): set 1 becomes revision 3.
	d := newDeployment(2, "25%", "25%")
	d.Annotations = map[string]string{RevisionAnnotation: "2", ChangeCauseAnnotation: "undo"}
	one := rsFor(d, "nginx:1", 1, 0, 0, time.Hour)
	two := rsFor(d, "nginx:2", 2, 2, 2, time.Minute)
	plan := Decide(Input{Deployment: d, ReplicaSets: []*appsv1.ReplicaSet{one, two}, Now: t0})
	if plan.Create != nil {
		t.Fatal("created a set instead of reusing revision 1's")
	}
	if plan.Revision != "3" {
		t.Errorf("deployment revision %q, want 3", plan.Revision)
	}
	var w *appsv1.ReplicaSet
	for _, s := range plan.Scales {
		if s.ReplicaSet.Name == one.Name {
			w = s.ReplicaSet
		}
	}
	if w == nil {
		t.Fatalf("set 1 not written: %s", sizes(Input{ReplicaSets: []*appsv1.ReplicaSet{one, two}}, plan))
	}
	if w.Annotations[RevisionAnnotation] != "3" || w.Annotations[RevisionHistoryAnnotation] != "1" || w.Annotations[ChangeCauseAnnotation] != "undo" {
		t.Errorf("annotations %v", w.Annotations)
	}
	if *w.Spec.Replicas == 0 {
		t.Error("the rolled-back-to set was not scaled up")
	}
	if appendHistory("1,2", "4") != "1,2,4" {
		t.Error("appendHistory")
	}
}

func TestConditions(t *testing.T) {
	d := newDeployment(2, "25%", "25%")
	nw := rsFor(d, "nginx:1", 1, 2, 2, time.Minute)
	d.Annotations = map[string]string{RevisionAnnotation: "1"}
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2, ReadyReplicas: 1, AvailableReplicas: 1,
		Conditions: []appsv1.DeploymentCondition{newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonRSUpdated, "", t0.Add(-time.Minute))}}
	plan := Decide(Input{Deployment: d, ReplicaSets: []*appsv1.ReplicaSet{nw}, Now: t0})
	p := Condition(plan.Status, appsv1.DeploymentProgressing)
	a := Condition(plan.Status, appsv1.DeploymentAvailable)
	if p == nil || p.Reason != ReasonNewRSAvailable || p.Status != corev1.ConditionTrue || p.Message != fmt.Sprintf("ReplicaSet %q has successfully progressed.", nw.Name) {
		t.Errorf("progressing %+v", p)
	}
	if a == nil || a.Status != corev1.ConditionTrue || a.Reason != ReasonMinimumAvailable {
		t.Errorf("available %+v", a)
	}
	if plan.Status.AvailableReplicas != 2 || plan.Status.UnavailableReplicas != 0 || plan.RequeueAfter != 0 {
		t.Errorf("status %+v requeue %v", plan.Status, plan.RequeueAfter)
	}

	// No progress for longer than the deadline: ProgressDeadlineExceeded.
	stuck := rsFor(d, "nginx:1", 1, 2, 0, time.Hour)
	d.Status = appsv1.DeploymentStatus{ObservedGeneration: 1, Replicas: 2, UpdatedReplicas: 2,
		Conditions: []appsv1.DeploymentCondition{newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonRSUpdated, "", t0.Add(-11*time.Minute))}}
	plan = Decide(Input{Deployment: d, ReplicaSets: []*appsv1.ReplicaSet{stuck}, Now: t0})
	p = Condition(plan.Status, appsv1.DeploymentProgressing)
	if p == nil || p.Reason != ReasonTimedOut || p.Status != corev1.ConditionFalse {
		t.Errorf("progressing after the deadline %+v", p)
	}
	if a := Condition(plan.Status, appsv1.DeploymentAvailable); a == nil || a.Status != corev1.ConditionFalse || a.Reason != ReasonMinimumUnavailable {
		t.Errorf("available %+v", a)
	}
	if plan.Status.UnavailableReplicas != 2 {
		t.Errorf("unavailable %d", plan.Status.UnavailableReplicas)
	}

	// Within the deadline: a recheck when it would pass.
	d.Status.Conditions = []appsv1.DeploymentCondition{newCondition(appsv1.DeploymentProgressing, corev1.ConditionTrue, ReasonRSUpdated, "", t0.Add(-4*time.Minute))}
	plan = Decide(Input{Deployment: d, ReplicaSets: []*appsv1.ReplicaSet{stuck}, Now: t0})
	if want := 6*time.Minute + time.Second; plan.RequeueAfter != want {
		t.Errorf("requeue after %v, want %v", plan.RequeueAfter, want)
	}

	// A ReplicaFailure of the new set shows on the Deployment.
	failing := stuck.DeepCopy()
	failing.Status.Conditions = []appsv1.ReplicaSetCondition{{Type: appsv1.ReplicaSetReplicaFailure, Status: corev1.ConditionTrue, Reason: "FailedCreate", Message: "quota"}}
	plan = Decide(Input{Deployment: d, ReplicaSets: []*appsv1.ReplicaSet{failing}, Now: t0})
	if f := Condition(plan.Status, appsv1.DeploymentReplicaFailure); f == nil || f.Reason != "FailedCreate" || f.Message != "quota" {
		t.Errorf("replica failure %+v", f)
	}

	// An empty selector: a warning, and only the generation observed.
	e := newDeployment(1, "1", "0")
	e.Spec.Selector = &metav1.LabelSelector{}
	e.Generation = 4
	plan = Decide(Input{Deployment: e, Now: t0})
	if plan.Warning[0] != "SelectingAll" || plan.Status.ObservedGeneration != 4 || plan.Create != nil {
		t.Errorf("empty selector plan %+v", plan)
	}
}
