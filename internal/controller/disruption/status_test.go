package disruption

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var now = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

type podSpec struct {
	name        string
	ready       bool
	terminating bool
	owned       bool // has a controller reference
}

func pods(specs ...podSpec) []*corev1.Pod {
	var out []*corev1.Pod
	for _, s := range specs {
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: s.name, Namespace: "ns", Labels: map[string]string{"app": "db"}}}
		st := corev1.ConditionFalse
		if s.ready {
			st = corev1.ConditionTrue
		}
		p.Status.Phase = corev1.PodRunning
		p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
		if s.terminating {
			t := metav1.NewTime(now)
			p.DeletionTimestamp = &t
		}
		if s.owned {
			yes := true
			p.OwnerReferences = []metav1.OwnerReference{{APIVersion: "apps/v1", Kind: "StatefulSet", Name: "db", UID: "ss", Controller: &yes}}
		}
		out = append(out, p)
	}
	return out
}

func pdb(minAvailable, maxUnavailable *intstr.IntOrString, disrupted map[string]metav1.Time) *policyv1.PodDisruptionBudget {
	return &policyv1.PodDisruptionBudget{
		ObjectMeta: metav1.ObjectMeta{Name: "db", Namespace: "ns", Generation: 3},
		Spec: policyv1.PodDisruptionBudgetSpec{MinAvailable: minAvailable, MaxUnavailable: maxUnavailable,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "db"}}},
		Status: policyv1.PodDisruptionBudgetStatus{DisruptedPods: disrupted},
	}
}

func counts(s policyv1.PodDisruptionBudgetStatus) [4]int32 {
	return [4]int32{s.ExpectedPods, s.DesiredHealthy, s.CurrentHealthy, s.DisruptionsAllowed}
}

func ptr(v intstr.IntOrString) *intstr.IntOrString { return &v }

func scales(replicas int32, names ...string) map[string]Scale {
	out := map[string]Scale{}
	for _, n := range names {
		out[n] = Scale{UID: types.UID("ss"), Replicas: replicas}
	}
	return out
}

func TestStatus(t *testing.T) {
	ready := func(n string) podSpec { return podSpec{name: n, ready: true, owned: true} }
	three := pods(ready("a"), ready("b"), ready("c"))
	tests := []struct {
		name   string
		in     Input
		want   policyv1.PodDisruptionBudgetStatus // conditions and disruptedPods checked apart
		reason string
		// disrupted are the names expected in status.disruptedPods.
		disrupted []string
		recheck   bool
		expired   []string
		failed    string // substring of the SyncFailed message
	}{
		{
			name:   "minAvailable int counts matching pods",
			in:     Input{PDB: pdb(ptr(intstr.FromInt32(2)), nil, nil), Pods: three},
			want:   policyv1.PodDisruptionBudgetStatus{ExpectedPods: 3, DesiredHealthy: 2, CurrentHealthy: 3, DisruptionsAllowed: 1},
			reason: ReasonSufficientPods,
		},
		{
			name:   "minAvailable equal to the pods allows nothing",
			in:     Input{PDB: pdb(ptr(intstr.FromInt32(2)), nil, nil), Pods: pods(ready("a"), ready("b"))},
			want:   policyv1.PodDisruptionBudgetStatus{ExpectedPods: 2, DesiredHealthy: 2, CurrentHealthy: 2, DisruptionsAllowed: 0},
			reason: ReasonInsufficientPods,
		},
		{
			name: "unready and terminating pods are not healthy",
			in: Input{PDB: pdb(ptr(intstr.FromInt32(1)), nil, nil),
				Pods: pods(ready("a"), podSpec{name: "b", owned: true}, podSpec{name: "c", ready: true, terminating: true, owned: true})},
			want:   policyv1.PodDisruptionBudgetStatus{ExpectedPods: 3, DesiredHealthy: 1, CurrentHealthy: 1, DisruptionsAllowed: 0},
			reason: ReasonInsufficientPods,
		},
		{
			name:   "minAvailable percent of the controller's scale, rounded up",
			in:     Input{PDB: pdb(ptr(intstr.FromString("50%")), nil, nil), Pods: three, Scales: scales(5, "a", "b", "c")},
			want:   policyv1.PodDisruptionBudgetStatus{ExpectedPods: 5, DesiredHealthy: 3, CurrentHealthy: 3, DisruptionsAllowed: 0},
			reason: ReasonInsufficientPods,
		},
		{
			name:   "maxUnavailable int from the scale",
			in:     Input{PDB: pdb(nil, ptr(intstr.FromInt32(1)), nil), Pods: three, Scales: scales(3, "a", "b", "c")},
			want:   policyv1.PodDisruptionBudgetStatus{ExpectedPods: 3, DesiredHealthy: 2, CurrentHealthy: 3, DisruptionsAllowed: 1},
			reason: ReasonSufficientPods,
		},
		{
			name:   "maxUnavailable percent rounds up the unavailable",
			in:     Input{PDB: pdb(nil, ptr(intstr.FromString("34%")), nil), Pods: three, Scales: scales(3, "a", "b", "c")},
			want:   policyv1.PodDisruptionBudgetStatus{ExpectedPods: 3, DesiredHealthy: 1, CurrentHealthy: 3, DisruptionsAllowed: 2},
			reason: ReasonSufficientPods,
		},
		{
			name:   "maxUnavailable above the scale desires zero",
			in:     Input{PDB: pdb(nil, ptr(intstr.FromInt32(5)), nil), Pods: three, Scales: scales(3, "a", "b", "c")},
			want:   policyv1.PodDisruptionBudgetStatus{ExpectedPods: 3, DesiredHealthy: 0, CurrentHealthy: 3, DisruptionsAllowed: 3},
			reason: ReasonSufficientPods,
		},
		{
			name:   "maxUnavailable with no pods allows nothing",
			in:     Input{PDB: pdb(nil, ptr(intstr.FromInt32(1)), nil)},
			want:   policyv1.PodDisruptionBudgetStatus{},
			reason: ReasonInsufficientPods,
		},
		{
			name:   "pods without a controller are left out of the scale",
			in:     Input{PDB: pdb(nil, ptr(intstr.FromInt32(1)), nil), Pods: append(pods(podSpec{name: "bare", ready: true}), three...), Scales: scales(3, "a", "b", "c")},
			want:   policyv1.PodDisruptionBudgetStatus{ExpectedPods: 3, DesiredHealthy: 2, CurrentHealthy: 4, DisruptionsAllowed: 2},
			reason: ReasonSufficientPods,
		},
		{
			name:   "a controller not found fails safe",
			in:     Input{PDB: pdb(nil, ptr(intstr.FromInt32(1)), nil), Pods: three, Scales: scales(3, "a", "b")},
			want:   policyv1.PodDisruptionBudgetStatus{DisruptionsAllowed: 0},
			reason: ReasonSyncFailed,
			failed: `found no controllers for pod "c"`,
		},
		{
			name: "a recently evicted pod is not healthy and is rechecked",
			in: Input{PDB: pdb(ptr(intstr.FromInt32(1)), nil, map[string]metav1.Time{"a": metav1.NewTime(now.Add(-time.Minute))}),
				Pods: three},
			want:      policyv1.PodDisruptionBudgetStatus{ExpectedPods: 3, DesiredHealthy: 1, CurrentHealthy: 2, DisruptionsAllowed: 1},
			reason:    ReasonSufficientPods,
			disrupted: []string{"a"},
			recheck:   true,
		},
		{
			name: "expired, deleted and gone evictions are dropped",
			in: Input{PDB: pdb(ptr(intstr.FromInt32(1)), nil, map[string]metav1.Time{
				"a": metav1.NewTime(now.Add(-3 * time.Minute)), "c": metav1.NewTime(now), "gone": metav1.NewTime(now)}),
				Pods: pods(ready("a"), ready("b"), podSpec{name: "c", ready: true, terminating: true, owned: true})},
			want:    policyv1.PodDisruptionBudgetStatus{ExpectedPods: 3, DesiredHealthy: 1, CurrentHealthy: 2, DisruptionsAllowed: 1},
			reason:  ReasonSufficientPods,
			expired: []string{"a"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Now = now
			before := tc.in.PDB.DeepCopy()
			res := Status(tc.in)
			st := res.Status
			if st.ObservedGeneration != 3 {
				t.Errorf("observedGeneration %d, want 3", st.ObservedGeneration)
			}
			got := policyv1.PodDisruptionBudgetStatus{ExpectedPods: st.ExpectedPods, DesiredHealthy: st.DesiredHealthy, CurrentHealthy: st.CurrentHealthy, DisruptionsAllowed: st.DisruptionsAllowed}
			if counts(got) != counts(tc.want) && tc.failed == "" {
				t.Errorf("status %+v, want %+v", got, tc.want)
			}
			if st.DisruptionsAllowed != tc.want.DisruptionsAllowed {
				t.Errorf("disruptionsAllowed %d, want %d", st.DisruptionsAllowed, tc.want.DisruptionsAllowed)
			}
			c := apimeta.FindStatusCondition(st.Conditions, policyv1.DisruptionAllowedCondition)
			if c == nil || c.Reason != tc.reason {
				t.Fatalf("DisruptionAllowed %+v, want reason %s", c, tc.reason)
			}
			if wantStatus := metav1.ConditionStatus(map[bool]string{true: "True", false: "False"}[st.DisruptionsAllowed > 0]); c.Status != wantStatus {
				t.Errorf("condition status %s, want %s", c.Status, wantStatus)
			}
			if tc.failed != "" && !strings.Contains(c.Message, tc.failed) {
				t.Errorf("message %q, want %q", c.Message, tc.failed)
			}
			if tc.failed == "" {
				if len(st.DisruptedPods) != len(tc.disrupted) {
					t.Errorf("disruptedPods %v, want %v", st.DisruptedPods, tc.disrupted)
				}
				for _, n := range tc.disrupted {
					if _, ok := st.DisruptedPods[n]; !ok {
						t.Errorf("disruptedPods %v lacks %s", st.DisruptedPods, n)
					}
				}
			}
			if (res.Recheck > 0) != tc.recheck || res.Recheck > DeletionTimeout {
				t.Errorf("recheck %v, want one: %v", res.Recheck, tc.recheck)
			}
			if strings.Join(res.Expired, ",") != strings.Join(tc.expired, ",") {
				t.Errorf("expired %v, want %v", res.Expired, tc.expired)
			}
			if before.Status.DisruptedPods != nil && len(tc.in.PDB.Status.DisruptedPods) != len(before.Status.DisruptedPods) {
				t.Error("Status changed its input")
			}
		})
	}
}

// The transition time moves only when the condition's status changes.
func TestStatusConditionTransition(t *testing.T) {
	p := pdb(ptr(intstr.FromInt32(2)), nil, nil)
	p.Status = Status(Input{PDB: p, Pods: pods(podSpec{name: "a", ready: true}, podSpec{name: "b", ready: true}, podSpec{name: "c", ready: true}), Now: now}).Status
	later := now.Add(time.Hour)
	again := Status(Input{PDB: p, Pods: pods(podSpec{name: "a", ready: true}, podSpec{name: "b", ready: true}, podSpec{name: "c", ready: true}), Now: later}).Status
	if c := apimeta.FindStatusCondition(again.Conditions, policyv1.DisruptionAllowedCondition); !c.LastTransitionTime.Time.Equal(now) {
		t.Errorf("unchanged condition moved to %v", c.LastTransitionTime)
	}
	blocked := Status(Input{PDB: p, Pods: pods(podSpec{name: "a", ready: true}, podSpec{name: "b", ready: true}), Now: later}).Status
	if c := apimeta.FindStatusCondition(blocked.Conditions, policyv1.DisruptionAllowedCondition); c.Status != metav1.ConditionFalse || !c.LastTransitionTime.Time.Equal(later) {
		t.Errorf("condition %+v", c)
	}
}
