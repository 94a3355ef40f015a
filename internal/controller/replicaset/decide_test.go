package replicaset

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/types"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func newRS(replicas int32) *appsv1.ReplicaSet {
	return &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web-5d8f9c", Namespace: "default", UID: "rs-uid", Generation: 2},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web", "tier": "front"}, Annotations: map[string]string{"a": "b"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "nginx"}}},
			},
		},
	}
}

// pod is a pod of the set; the options describe its state.
type podOpt func(*corev1.Pod)

func node(n string) podOpt            { return func(p *corev1.Pod) { p.Spec.NodeName = n } }
func phase(ph corev1.PodPhase) podOpt { return func(p *corev1.Pod) { p.Status.Phase = ph } }
func created(ago time.Duration) podOpt {
	return func(p *corev1.Pod) { p.CreationTimestamp = metav1.NewTime(t0.Add(-ago)) }
}
func restartCount(n int32) podOpt {
	return func(p *corev1.Pod) { p.Status.ContainerStatuses[0].RestartCount = n }
}
func cost(c string) podOpt {
	return func(p *corev1.Pod) { p.Annotations = map[string]string{DeletionCostAnnotation: c} }
}
func withLabels(l map[string]string) podOpt { return func(p *corev1.Pod) { p.Labels = l } }
func ownedBy(uid types.UID) podOpt {
	return func(p *corev1.Pod) {
		t := true
		p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "x", UID: uid, Controller: &t}}
	}
}
func orphan() podOpt { return func(p *corev1.Pod) { p.OwnerReferences = nil } }
func deleting() podOpt {
	return func(p *corev1.Pod) { ts := metav1.NewTime(t0); p.DeletionTimestamp = &ts }
}

// ready makes the pod Ready since ago.
func ready(ago time.Duration) podOpt {
	return func(p *corev1.Pod) {
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(t0.Add(-ago))}}
	}
}

func mkPod(name string, opts ...podOpt) *corev1.Pod {
	t := true
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name),
			Labels:            map[string]string{"app": "web", "tier": "front"},
			CreationTimestamp: metav1.NewTime(t0.Add(-time.Hour)),
			OwnerReferences:   []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "ReplicaSet", Name: "web-5d8f9c", UID: "rs-uid", Controller: &t}}},
		Spec:   corev1.PodSpec{NodeName: "n1"},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, ContainerStatuses: []corev1.ContainerStatus{{Name: "c"}}},
	}
	ready(time.Hour)(p)
	for _, o := range opts {
		o(p)
	}
	return p
}

func names(pods []*corev1.Pod) []string {
	out := []string{}
	for _, p := range pods {
		out = append(out, p.Name)
	}
	return out
}

func TestDecide(t *testing.T) {
	many := func(n int) []*corev1.Pod {
		var out []*corev1.Pod
		for i := 0; i < n; i++ {
			out = append(out, mkPod(fmt.Sprintf("p%d", i)))
		}
		return out
	}
	cases := []struct {
		name       string
		replicas   int32
		pods       []*corev1.Pod
		related    []*corev1.Pod
		wantCreate int
		wantDelete []string
	}{
		{name: "from zero", replicas: 3, wantCreate: 3},
		{name: "steady", replicas: 2, pods: many(2)},
		{name: "one missing", replicas: 3, pods: many(2), wantCreate: 1},
		{name: "burst limit on create", replicas: 700, wantCreate: BurstReplicas},
		{name: "burst limit on delete", replicas: 0, pods: many(600), wantDelete: names(many(600)[:BurstReplicas])},
		{name: "to zero deletes all", replicas: 0, pods: many(3), wantDelete: []string{"p0", "p1", "p2"}},
		{name: "unscheduled goes first", replicas: 2,
			pods:       []*corev1.Pod{mkPod("a"), mkPod("b", node(""), phase(corev1.PodPending)), mkPod("c")},
			wantDelete: []string{"b"}},
		{name: "pending before running", replicas: 1,
			pods:       []*corev1.Pod{mkPod("run"), mkPod("pend", phase(corev1.PodPending))},
			wantDelete: []string{"pend"}},
		{name: "not ready before ready", replicas: 1,
			pods:       []*corev1.Pod{mkPod("ok"), mkPod("notready", func(p *corev1.Pod) { p.Status.Conditions = nil })},
			wantDelete: []string{"notready"}},
		{name: "lower deletion cost first", replicas: 1,
			pods:       []*corev1.Pod{mkPod("cheap", cost("-5"), created(time.Minute)), mkPod("dear", cost("10"))},
			wantDelete: []string{"cheap"}},
		{name: "doubled-up node first", replicas: 2,
			pods:       []*corev1.Pod{mkPod("alone", node("n2")), mkPod("crowded1", node("n1")), mkPod("single", node("n3"))},
			related:    []*corev1.Pod{mkPod("crowded1", node("n1")), mkPod("sibling", node("n1")), mkPod("alone", node("n2")), mkPod("single", node("n3"))},
			wantDelete: []string{"crowded1"}},
		{name: "ready more recently first (different age buckets)", replicas: 1,
			pods:       []*corev1.Pod{mkPod("old", ready(10*time.Hour)), mkPod("young", ready(time.Minute))},
			wantDelete: []string{"young"}},
		{name: "more restarts first", replicas: 1,
			pods:       []*corev1.Pod{mkPod("calm"), mkPod("flappy", restartCount(4))},
			wantDelete: []string{"flappy"}},
		{name: "newer first", replicas: 2,
			pods:       []*corev1.Pod{mkPod("old", created(48*time.Hour)), mkPod("new", created(time.Minute)), mkPod("mid", created(5*time.Hour))},
			wantDelete: []string{"new"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			plan := Decide(Input{ReplicaSet: newRS(tc.replicas), Pods: tc.pods, Related: tc.related, Now: t0})
			if plan.Create != tc.wantCreate {
				t.Errorf("create %d, want %d", plan.Create, tc.wantCreate)
			}
			got := names(plan.Delete)
			if fmt.Sprint(got) != fmt.Sprint(append([]string{}, tc.wantDelete...)) {
				t.Errorf("delete %v, want %v", got, tc.wantDelete)
			}
			if plan.Create > 0 && len(plan.Delete) > 0 {
				t.Error("a plan both creates and deletes")
			}
		})
	}
}

// TestDeletionOrderIsTotal checks the ranking is a strict weak order on a
// mixed population: no pod is less than itself and less is asymmetric.
func TestDeletionOrderIsTotal(t *testing.T) {
	pods := []*corev1.Pod{
		mkPod("a"), mkPod("b", node("")), mkPod("c", phase(corev1.PodPending)), mkPod("d", phase(corev1.PodUnknown)),
		mkPod("e", func(p *corev1.Pod) { p.Status.Conditions = nil }), mkPod("f", cost("3")), mkPod("g", restartCount(2)),
		mkPod("h", created(0)), mkPod("i", ready(2*time.Second)), mkPod("j", func(p *corev1.Pod) { p.CreationTimestamp = metav1.Time{} }),
	}
	for _, a := range pods {
		if deletionLess(a, a, 1, 1, t0) {
			t.Errorf("%s < itself", a.Name)
		}
		for _, b := range pods {
			if a != b && deletionLess(a, b, 1, 1, t0) && deletionLess(b, a, 1, 1, t0) {
				t.Errorf("%s < %s and %s < %s", a.Name, b.Name, b.Name, a.Name)
			}
		}
	}
	order := names(PodsToDelete(pods, nil, len(pods)-1, t0))
	if order[0] != "b" {
		t.Errorf("first to go %s, want the unscheduled pod b (order %v)", order[0], order)
	}
}

func TestClaim(t *testing.T) {
	rs := newRS(3)
	sel, _ := metav1.LabelSelectorAsSelector(rs.Spec.Selector)
	pods := []*corev1.Pod{
		mkPod("mine"),
		mkPod("mine-relabelled", withLabels(map[string]string{"app": "other"})),
		mkPod("orphan", orphan()),
		mkPod("orphan-other", orphan(), withLabels(map[string]string{"app": "other"})),
		mkPod("orphan-deleting", orphan(), deleting()),
		mkPod("someone-elses", ownedBy("other-uid")),
	}
	owned, adopt, release := Claim(rs, sel, pods)
	check := func(what string, got []*corev1.Pod, want ...string) {
		t.Helper()
		if fmt.Sprint(names(got)) != fmt.Sprint(append([]string{}, want...)) {
			t.Errorf("%s = %v, want %v", what, names(got), want)
		}
	}
	check("owned", owned, "mine")
	check("adopt", adopt, "orphan")
	check("release", release, "mine-relabelled")

	gone := rs.DeepCopy()
	ts := metav1.NewTime(t0)
	gone.DeletionTimestamp = &ts
	owned, adopt, release = Claim(gone, sel, pods)
	check("owned while deleting", owned, "mine")
	check("adopt while deleting", adopt)
	check("release while deleting", release)
}

func TestStatus(t *testing.T) {
	rs := newRS(4)
	rs.Spec.MinReadySeconds = 30
	pods := []*corev1.Pod{
		mkPod("available", ready(time.Minute)),
		mkPod("ready-not-yet-available", ready(10*time.Second)),
		mkPod("not-ready", func(p *corev1.Pod) { p.Status.Conditions = nil }),
		mkPod("partly-labelled", withLabels(map[string]string{"app": "web"})),
	}
	st := Status(rs, pods, nil, t0)
	want := appsv1.ReplicaSetStatus{Replicas: 4, FullyLabeledReplicas: 3, ReadyReplicas: 3, AvailableReplicas: 2, ObservedGeneration: 2}
	if fmt.Sprint(st) != fmt.Sprint(want) {
		t.Errorf("status %+v, want %+v", st, want)
	}

	// A failed creation adds ReplicaFailure with the reason; a later success
	// removes it; an existing one is kept as it is.
	failed := Status(rs, pods[:2], errors.New("quota exceeded"), t0)
	c := condition(failed.Conditions, appsv1.ReplicaSetReplicaFailure)
	if c == nil || c.Status != corev1.ConditionTrue || c.Reason != FailedCreate || c.Message != "quota exceeded" {
		t.Fatalf("failure condition %+v", c)
	}
	rs.Status = failed
	again := Status(rs, pods[:2], errors.New("still"), t0.Add(time.Minute))
	if c2 := condition(again.Conditions, appsv1.ReplicaSetReplicaFailure); c2 == nil || !c2.LastTransitionTime.Equal(&c.LastTransitionTime) || c2.Message != "quota exceeded" {
		t.Errorf("existing failure condition changed: %+v", c2)
	}
	if ok := Status(rs, pods[:2], nil, t0); condition(ok.Conditions, appsv1.ReplicaSetReplicaFailure) != nil {
		t.Error("failure condition kept after success")
	}
	over := newRS(1)
	if c := condition(Status(over, pods, errors.New("x"), t0).Conditions, appsv1.ReplicaSetReplicaFailure); c == nil || c.Reason != FailedDelete {
		t.Errorf("delete failure condition %+v", c)
	}
}

func TestNewPod(t *testing.T) {
	rs := newRS(1)
	p := NewPod(rs)
	if p.GenerateName != "web-5d8f9c-" || p.Name != "" {
		t.Errorf("name %q generateName %q", p.Name, p.GenerateName)
	}
	ref := metav1.GetControllerOf(p)
	if ref == nil || ref.UID != rs.UID || ref.Kind != "ReplicaSet" || ref.APIVersion != "apps/v1" || ref.BlockOwnerDeletion == nil || !*ref.BlockOwnerDeletion {
		t.Errorf("controller ref %+v", ref)
	}
	if !labels.SelectorFromSet(rs.Spec.Template.Labels).Matches(labels.Set(p.Labels)) || p.Annotations["a"] != "b" {
		t.Errorf("labels %v annotations %v", p.Labels, p.Annotations)
	}
	p.Labels["x"] = "y"
	if rs.Spec.Template.Labels["x"] != "" {
		t.Error("NewPod shares the template's labels")
	}
}

func TestSlowStart(t *testing.T) {
	cases := []struct {
		count, failAt, wantOK, wantCalls int
	}{
		{count: 0, failAt: -1, wantOK: 0, wantCalls: 0},
		{count: 10, failAt: -1, wantOK: 10, wantCalls: 10}, // batches 1,2,4,3
		{count: 10, failAt: 1, wantOK: 0, wantCalls: 1},    // the first batch fails: stop
		{count: 10, failAt: 3, wantOK: 2, wantCalls: 3},    // second batch (calls 2,3) has a failure
		{count: 10, failAt: 5, wantOK: 6, wantCalls: 7},    // third batch (4..7) has a failure
	}
	for _, tc := range cases {
		var calls atomic.Int64
		ok, err := SlowStart(tc.count, 1, func() error {
			if n := calls.Add(1); int(n) == tc.failAt {
				return errors.New("quota")
			}
			return nil
		})
		if ok != tc.wantOK || int(calls.Load()) != tc.wantCalls || (err != nil) != (tc.failAt > 0) {
			t.Errorf("count %d failAt %d: ok %d calls %d err %v; want ok %d calls %d", tc.count, tc.failAt, ok, calls.Load(), err, tc.wantOK, tc.wantCalls)
		}
	}
}

func TestExpectations(t *testing.T) {
	now := t0
	e := NewExpectations(func() time.Time { return now })
	if !e.Satisfied("ns/a") {
		t.Fatal("unknown key not satisfied")
	}
	e.ExpectCreations("ns/a", 2)
	e.CreationObserved("ns/a")
	if e.Satisfied("ns/a") {
		t.Fatal("satisfied with one creation outstanding")
	}
	e.CreationObserved("ns/a")
	e.CreationObserved("ns/a") // extra observations do not go negative
	if !e.Satisfied("ns/a") {
		t.Fatal("not satisfied after both creations")
	}
	e.ExpectDeletions("ns/a", []string{"ns/p1", "ns/p2"})
	e.DeletionObserved("ns/a", "ns/p1")
	e.DeletionObserved("ns/a", "ns/p1")
	e.DeletionObserved("ns/a", "ns/other")
	if e.Satisfied("ns/a") {
		t.Fatal("satisfied with p2 outstanding (a pod seen twice or a stranger counted)")
	}
	now = now.Add(ExpectationsTTL + time.Second)
	if !e.Satisfied("ns/a") {
		t.Fatal("expired expectations still hold the set")
	}
	e.Forget("ns/a")
	if !e.Satisfied("ns/a") {
		t.Fatal("forgotten key not satisfied")
	}
}
