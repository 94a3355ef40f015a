package apiserver

import (
	"errors"
	"strconv"
	"testing"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestDisruptionAllowed(t *testing.T) {
	budget := func(gen, observed int64, allowed, desired, current int32, disrupted int) *policyv1.PodDisruptionBudget {
		p := &policyv1.PodDisruptionBudget{ObjectMeta: metav1.ObjectMeta{Name: "db", Generation: gen}}
		p.Status = policyv1.PodDisruptionBudgetStatus{ObservedGeneration: observed, DisruptionsAllowed: allowed, DesiredHealthy: desired, CurrentHealthy: current}
		if disrupted > 0 {
			p.Status.DisruptedPods = map[string]metav1.Time{}
			for i := 0; i < disrupted; i++ {
				p.Status.DisruptedPods["pod-"+strconv.Itoa(i)] = metav1.Now()
			}
		}
		return p
	}
	tests := []struct {
		name  string
		pdb   *policyv1.PodDisruptionBudget
		code  int32
		cause string
	}{
		{"allowed", budget(2, 2, 1, 2, 3, 0), 0, ""},
		{"none allowed", budget(2, 2, 0, 2, 2, 0), 429, "The disruption budget db needs 2 healthy pods and has 2 currently"},
		{"stale status", budget(3, 2, 1, 2, 3, 0), 429, "The disruption budget db is still being processed by the server."},
		{"negative", budget(1, 1, -1, 2, 1, 0), 403, ""},
		{"too many unconfirmed", budget(1, 1, 5, 2, 7, maxDisruptedPods+1), 403, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := disruptionAllowed(tc.pdb)
			if tc.code == 0 {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var st apierrors.APIStatus
			if !errors.As(err, &st) || st.Status().Code != tc.code {
				t.Fatalf("err %v, want %d", err, tc.code)
			}
			if tc.code != 429 {
				return
			}
			s := st.Status()
			if s.Reason != metav1.StatusReasonTooManyRequests || s.Message != "Cannot evict pod as it would violate the pod's disruption budget." {
				t.Errorf("status %+v", s)
			}
			if s.Details == nil || len(s.Details.Causes) != 1 || s.Details.Causes[0].Type != policyv1.DisruptionBudgetCause || s.Details.Causes[0].Message != tc.cause {
				t.Errorf("details %+v", s.Details)
			}
		})
	}
}

func TestCanIgnorePDB(t *testing.T) {
	now := metav1.Now()
	for _, tc := range []struct {
		phase    corev1.PodPhase
		deleting bool
		want     bool
	}{
		{corev1.PodRunning, false, false},
		{corev1.PodRunning, true, true},
		{corev1.PodPending, false, true},
		{corev1.PodSucceeded, false, true},
		{corev1.PodFailed, false, true},
	} {
		p := &corev1.Pod{Status: corev1.PodStatus{Phase: tc.phase}}
		if tc.deleting {
			p.DeletionTimestamp = &now
		}
		if got := canIgnorePDB(p); got != tc.want {
			t.Errorf("%s deleting=%v: %v, want %v", tc.phase, tc.deleting, got, tc.want)
		}
	}
}
