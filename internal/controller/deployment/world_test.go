package deployment

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// world runs Decide against a simulated API server, ReplicaSet controller
// and kubelet: sets take the plan's sizes at once, new pods become
// available one step after they are asked for, and removed pods take one
// step to terminate.
type world struct {
	t        *testing.T
	d        *appsv1.Deployment
	sets     []*appsv1.ReplicaSet
	lastSpec map[string]int32
	now      time.Time
	uid      int
}

func (w *world) step() Plan {
	w.t.Helper()
	in := Input{Deployment: w.d.DeepCopy(), Now: w.now, Pods: map[types.UID][]*corev1.Pod{}}
	for _, rs := range w.sets {
		in.ReplicaSets = append(in.ReplicaSets, rs.DeepCopy())
	}
	plan := Decide(in)
	if plan.Create != nil {
		rs := plan.Create.DeepCopy()
		for _, o := range w.sets {
			if o.Name == rs.Name {
				w.t.Fatalf("created %s twice", rs.Name)
			}
		}
		w.uid++
		rs.UID = types.UID(fmt.Sprintf("rs-%d", w.uid))
		rs.CreationTimestamp = metav1.NewTime(w.now)
		w.sets = append(w.sets, rs)
	}
	for _, s := range plan.Scales {
		for i, o := range w.sets {
			if o.Name == s.ReplicaSet.Name {
				n := s.ReplicaSet.DeepCopy()
				n.Status = o.Status
				w.sets[i] = n
			}
		}
	}
	for _, del := range plan.Delete {
		var keep []*appsv1.ReplicaSet
		for _, o := range w.sets {
			if o.Name != del.Name {
				keep = append(keep, o)
			}
		}
		w.sets = keep
	}
	if plan.Revision != "" {
		if w.d.Annotations == nil {
			w.d.Annotations = map[string]string{}
		}
		w.d.Annotations[RevisionAnnotation] = plan.Revision
	}
	w.d.Status = plan.Status
	return plan
}

// settle is the ReplicaSet controller and kubelet catching up by one step.
func (w *world) settle() {
	for _, rs := range w.sets {
		spec := rsReplicas(rs)
		prev, seen := w.lastSpec[rs.Name]
		if !seen {
			prev = 0
		}
		// Terminating pods linger one step; new ones start at once.
		if spec < rs.Status.Replicas {
			rs.Status.Replicas = max(spec, min(rs.Status.Replicas, prev))
		} else {
			rs.Status.Replicas = spec
		}
		rs.Status.AvailableReplicas = min(spec, prev, rs.Status.Replicas)
		rs.Status.ReadyReplicas = rs.Status.AvailableReplicas
		rs.Status.ObservedGeneration = rs.Generation
		w.lastSpec[rs.Name] = spec
	}
	w.now = w.now.Add(time.Second)
}

func (w *world) sum(f func(*appsv1.ReplicaSet) int32, newOnly bool) (n int32) {
	newRS := FindNew(w.d, w.sets)
	for _, rs := range w.sets {
		if !newOnly || rs == newRS {
			n += f(rs)
		}
	}
	return n
}

// converge runs steps until the rollout is complete, checking the
// strategy's guarantees after each.
func (w *world) converge(steadyBefore bool) int {
	w.t.Helper()
	d := w.d
	for i := 0; i < 200; i++ {
		w.step()
		spec := w.sum(rsReplicas, false)
		avail := int32(0)
		for _, rs := range w.sets {
			avail += min(rs.Status.AvailableReplicas, rsReplicas(rs))
		}
		if isRollingUpdate(d) {
			if limit := replicas(d) + MaxSurge(d); spec > limit {
				w.t.Fatalf("step %d: %d pods asked for, over replicas+maxSurge %d", i, spec, limit)
			}
			if floor := replicas(d) - MaxUnavailable(d); steadyBefore && avail < floor {
				w.t.Fatalf("step %d: %d available, under replicas-maxUnavailable %d", i, avail, floor)
			}
		} else {
			newRS := FindNew(d, w.sets)
			for _, rs := range w.sets {
				if rs != newRS && rs.Status.Replicas > 0 && newRS != nil && rsReplicas(newRS) > 0 {
					w.t.Fatalf("step %d: Recreate runs old pods of %s with the new set at %d", i, rs.Name, rsReplicas(newRS))
				}
			}
		}
		w.settle()
		p := Condition(w.d.Status, appsv1.DeploymentProgressing)
		if Complete(d, &w.d.Status) && p != nil && p.Reason == ReasonNewRSAvailable {
			for _, rs := range w.sets {
				if rs != FindNew(d, w.sets) && rsReplicas(rs) != 0 {
					w.t.Fatalf("complete with old set %s at %d", rs.Name, rsReplicas(rs))
				}
			}
			return i
		}
	}
	w.t.Fatalf("no convergence: status %+v, sets %s", w.d.Status, w.describe())
	return 0
}

func (w *world) describe() string {
	out := ""
	for _, rs := range w.sets {
		out += fmt.Sprintf("%s(rev %s) spec=%d status=%d avail=%d; ", rs.Name, rs.Annotations[RevisionAnnotation], rsReplicas(rs), rs.Status.Replicas, rs.Status.AvailableReplicas)
	}
	return out
}

func TestRolloutsConverge(t *testing.T) {
	type combo struct{ surge, unavailable string }
	combos := []combo{{"25%", "25%"}, {"0", "1"}, {"1", "0"}, {"50%", "0"}, {"0", "100%"}, {"3", "2"}, {"10%", "10%"}, {"100%", "0"}}
	for _, strategy := range []appsv1.DeploymentStrategyType{appsv1.RollingUpdateDeploymentStrategyType, appsv1.RecreateDeploymentStrategyType} {
		for _, c := range combos {
			for _, n := range []int32{1, 3, 10} {
				if strategy == appsv1.RecreateDeploymentStrategyType && c != combos[0] {
					continue
				}
				t.Run(fmt.Sprintf("%s/%s-%s/%d", strategy, c.surge, c.unavailable, n), func(t *testing.T) {
					d := newDeployment(n, c.surge, c.unavailable)
					d.Spec.RevisionHistoryLimit = i32(1)
					if strategy == appsv1.RecreateDeploymentStrategyType {
						d.Spec.Strategy = appsv1.DeploymentStrategy{Type: strategy}
					}
					w := &world{t: t, d: d, lastSpec: map[string]int32{}, now: t0}
					w.converge(false)
					if w.d.Annotations[RevisionAnnotation] != "1" || len(w.sets) != 1 {
						t.Fatalf("after the first rollout: revision %q, sets %s", w.d.Annotations[RevisionAnnotation], w.describe())
					}
					// Two template changes in a row, each to completion.
					for rev, image := range []string{"nginx:2", "nginx:3"} {
						w.d = withImage(w.d, image)
						w.converge(true)
						if got := w.d.Annotations[RevisionAnnotation]; got != strconv.Itoa(rev+2) {
							t.Errorf("revision %s after %s, want %d", got, image, rev+2)
						}
					}
					// One more step: history is cut to revisionHistoryLimit.
					w.step()
					w.settle()
					if len(w.sets) != 2 {
						t.Errorf("sets after cleanup: %s", w.describe())
					}
					if a := Condition(w.d.Status, appsv1.DeploymentAvailable); a == nil || a.Status != corev1.ConditionTrue {
						t.Errorf("available %+v", a)
					}
					if w.d.Status.ObservedGeneration != w.d.Generation || w.d.Status.UpdatedReplicas != n || w.d.Status.Replicas != n {
						t.Errorf("status %+v", w.d.Status)
					}
				})
			}
		}
	}
}
