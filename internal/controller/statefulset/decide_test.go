package statefulset

import (
	"fmt"
	"math/rand"
	"sort"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// world is a simulated cluster: the pods and claims, a kubelet that starts
// and stops pods, and the set. It applies plans as the API server would and
// checks the invariants after every step.
type world struct {
	t         *testing.T
	rng       *rand.Rand
	set       *appsv1.StatefulSet
	pods      map[string]*corev1.Pod
	claims    map[string]*corev1.PersistentVolumeClaim
	status    appsv1.StatefulSetStatus
	updateRev string
	now       time.Time
	uid       int
	// fail makes the kubelet fail running pods now and then.
	fail bool
	// graceful makes deletions leave terminating pods the kubelet removes.
	graceful bool
	// deleted records, in order, the ordinals deleted to scale down.
	scaleDowns []int
	// claimUIDs remembers the first claim of each name, to check reuse.
	claimUIDs map[string]types.UID
}

func newSet(replicas int32, policy appsv1.PodManagementPolicyType, templates int) *appsv1.StatefulSet {
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default", UID: "set-uid", Generation: 1},
		Spec: appsv1.StatefulSetSpec{
			Replicas:            &replicas,
			ServiceName:         "nginx-headless",
			PodManagementPolicy: policy,
			Selector:            &metav1.LabelSelector{MatchLabels: map[string]string{"app": "nginx"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "nginx"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:alpine"}}},
			},
			UpdateStrategy: appsv1.StatefulSetUpdateStrategy{Type: appsv1.RollingUpdateStatefulSetStrategyType},
		},
	}
	for i := 0; i < templates; i++ {
		set.Spec.VolumeClaimTemplates = append(set.Spec.VolumeClaimTemplates, corev1.PersistentVolumeClaim{
			ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("data%d", i)},
			Spec: corev1.PersistentVolumeClaimSpec{
				AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
			},
		})
	}
	return set
}

func newWorld(t *testing.T, set *appsv1.StatefulSet, seed int64) *world {
	return &world{t: t, rng: rand.New(rand.NewSource(seed)), set: set, pods: map[string]*corev1.Pod{},
		claims: map[string]*corev1.PersistentVolumeClaim{}, updateRev: "web-rev1",
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), claimUIDs: map[string]types.UID{}}
}

func (w *world) input() Input {
	var pods []*corev1.Pod
	for _, p := range w.pods {
		pods = append(pods, p)
	}
	current := w.status.CurrentRevision
	if current == "" {
		current = w.updateRev
	}
	set := w.set.DeepCopy()
	set.Status = w.status
	return Input{Set: set, CurrentSet: set, UpdateSet: set, CurrentRevision: current, UpdateRevision: w.updateRev,
		Pods: pods, Claims: w.claims, Now: w.now}
}

func (w *world) ordinalOf(p *corev1.Pod) int { return ordinalOf(w.set, p) }

func healthyExcept(w *world, skip string, pred func(*corev1.Pod) bool) []string {
	var bad []string
	for name, p := range w.pods {
		if name != skip && pred(p) && !isHealthy(p) {
			bad = append(bad, name)
		}
	}
	sort.Strings(bad)
	return bad
}

// step runs the controller once, checks the plan, and applies it.
func (w *world) step() Plan {
	t := w.t
	t.Helper()
	in := w.input()
	plan := Decide(in)
	monotonic := w.set.Spec.PodManagementPolicy != appsv1.ParallelPodManagement
	podChanges := 0
	createdClaims := map[string]bool{}
	var deletedCondemned []int
	for _, a := range plan.Actions {
		switch a.Type {
		case CreateClaim:
			if _, ok := w.claims[a.Claim.Name]; ok {
				t.Fatalf("creating claim %s that exists", a.Claim.Name)
			}
			c := a.Claim.DeepCopy()
			w.uid++
			c.UID = types.UID(fmt.Sprintf("claim-%d", w.uid))
			if first, ok := w.claimUIDs[c.Name]; ok && first != c.UID {
				// Only allowed if the first one was deleted; the controller never deletes claims.
				t.Fatalf("claim %s created twice", c.Name)
			}
			w.claimUIDs[c.Name] = c.UID
			w.claims[c.Name] = c
			createdClaims[c.Name] = true
		case UpdateClaim:
			w.claims[a.Claim.Name] = a.Claim.DeepCopy()
		case CreatePod:
			podChanges++
			p := a.Pod.DeepCopy()
			ord := w.ordinalOf(p)
			if ord < 0 || !inRange(w.set, ord) {
				t.Fatalf("created pod %s outside the ordinal range", p.Name)
			}
			if _, ok := w.pods[p.Name]; ok {
				t.Fatalf("INVARIANT: two pods with ordinal %d", ord)
			}
			if p.Spec.Hostname != p.Name || p.Spec.Subdomain != w.set.Spec.ServiceName || p.Labels[PodNameLabel] != p.Name ||
				p.Labels[PodIndexLabel] != fmt.Sprint(ord) || p.Labels[RevisionLabel] == "" || !isControlledBy(p, w.set.UID) {
				t.Fatalf("pod %s lacks its identity: %+v %+v", p.Name, p.Labels, p.Spec)
			}
			for i := range w.set.Spec.VolumeClaimTemplates {
				cn := ClaimName(w.set, &w.set.Spec.VolumeClaimTemplates[i], ord)
				if _, ok := w.claims[cn]; !ok {
					t.Fatalf("pod %s created before its claim %s", p.Name, cn)
				}
				found := false
				for _, v := range p.Spec.Volumes {
					if v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == cn {
						found = true
					}
				}
				if !found {
					t.Fatalf("pod %s does not mount claim %s", p.Name, cn)
				}
			}
			if monotonic {
				if bad := healthyExcept(w, p.Name, func(q *corev1.Pod) bool { o := w.ordinalOf(q); return o < ord }); len(bad) > 0 {
					t.Fatalf("INVARIANT: OrderedReady created %s while %v not Running and Ready", p.Name, bad)
				}
			}
			w.uid++
			p.UID = types.UID(fmt.Sprintf("pod-%d", w.uid))
			p.Status.Phase = corev1.PodPending
			w.pods[p.Name] = p
		case DeletePod:
			podChanges++
			p, ok := w.pods[a.Pod.Name]
			if !ok || p.UID != a.Pod.UID {
				t.Fatalf("deleting pod %s that is not there", a.Pod.Name)
			}
			ord := w.ordinalOf(p)
			if !inRange(w.set, ord) {
				// Scale down: nothing above it may remain.
				for _, q := range w.pods {
					if o := w.ordinalOf(q); o > ord && !inRange(w.set, o) && !isTerminating(q) && !contains(deletedCondemned, o) {
						t.Fatalf("INVARIANT: scale-down deleted %s before %s", p.Name, q.Name)
					}
				}
				if monotonic {
					if bad := healthyExcept(w, p.Name, func(*corev1.Pod) bool { return true }); len(bad) > 0 {
						t.Fatalf("INVARIANT: OrderedReady scaled down %s while %v unhealthy", p.Name, bad)
					}
				}
				deletedCondemned = append(deletedCondemned, ord)
				w.scaleDowns = append(w.scaleDowns, ord)
			} else if a.Why != "" && a.Why[:6] == "update" {
				if p := w.partition(); ord < p+startOrdinal(w.set) {
					t.Fatalf("INVARIANT: updated %s below the partition %d", a.Pod.Name, p)
				}
				if monotonic {
					if bad := healthyExcept(w, p.Name, func(*corev1.Pod) bool { return true }); len(bad) > 0 {
						t.Fatalf("INVARIANT: OrderedReady updated %s while %v unhealthy", p.Name, bad)
					}
				}
			}
			if w.graceful && p.Status.Phase != corev1.PodFailed {
				q := p.DeepCopy()
				ts := metav1.NewTime(w.now)
				q.DeletionTimestamp = &ts
				w.pods[p.Name] = q
			} else {
				w.delete(p)
			}
		case UpdatePod:
			w.pods[a.Pod.Name] = a.Pod.DeepCopy()
		}
	}
	if monotonic && podChanges > 1 {
		t.Fatalf("INVARIANT: OrderedReady made %d pod changes in one step: %s", podChanges, summary(plan.Actions))
	}
	w.status = plan.Status
	w.checkWorld()
	return plan
}

func contains(s []int, v int) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func (w *world) partition() int {
	p, _ := rollingParams(w.set, replicaCount(w.set))
	return p
}

// delete removes a pod and lets the garbage collector act on claims it owns.
func (w *world) delete(p *corev1.Pod) {
	delete(w.pods, p.Name)
	for name, c := range w.claims {
		for _, r := range c.OwnerReferences {
			if r.UID == p.UID {
				delete(w.claims, name)
				delete(w.claimUIDs, name)
			}
		}
	}
}

// checkWorld checks what must hold between steps.
func (w *world) checkWorld() {
	t := w.t
	t.Helper()
	seen := map[int]string{}
	notReady := 0
	for name, p := range w.pods {
		o := w.ordinalOf(p)
		if other, ok := seen[o]; ok {
			t.Fatalf("INVARIANT: %s and %s share ordinal %d", name, other, o)
		}
		seen[o] = name
		if !isHealthy(p) {
			notReady++
		}
	}
	if w.set.Spec.PodManagementPolicy != appsv1.ParallelPodManagement && !w.fail && notReady > 1 {
		t.Fatalf("INVARIANT: OrderedReady has %d pods not Ready: %v", notReady, w.podSummary())
	}
	st := w.status
	if st.ReadyReplicas > st.Replicas || st.AvailableReplicas > st.ReadyReplicas || st.UpdatedReplicas > st.Replicas || st.CurrentReplicas > st.Replicas {
		t.Fatalf("inconsistent status %+v", st)
	}
}

func (w *world) podSummary() string {
	var names []string
	for n, p := range w.pods {
		names = append(names, fmt.Sprintf("%s(%s,ready=%v,term=%v,%s)", n, p.Status.Phase, isRunningAndReady(p), isTerminating(p), revisionOf(p)))
	}
	sort.Strings(names)
	return fmt.Sprint(names)
}

// kubelet makes one random change a node would: start a pod, finish a
// termination, or (with fail) fail a running pod.
func (w *world) kubelet() {
	w.now = w.now.Add(time.Second)
	var names []string
	for n := range w.pods {
		names = append(names, n)
	}
	sort.Strings(names)
	w.rng.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	for _, n := range names {
		p := w.pods[n]
		switch {
		case isTerminating(p):
			w.delete(p)
			return
		case p.Status.Phase == corev1.PodPending:
			q := p.DeepCopy()
			q.Status.Phase = corev1.PodRunning
			q.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionTrue, LastTransitionTime: metav1.NewTime(w.now)}}
			w.pods[n] = q
			return
		case w.fail && w.rng.Intn(10) == 0:
			q := p.DeepCopy()
			q.Status.Phase = corev1.PodFailed
			q.Status.Conditions = nil
			w.pods[n] = q
			return
		}
	}
}

// converge alternates controller and kubelet until the set is done.
func (w *world) converge(what string) {
	w.t.Helper()
	for i := 0; i < 2000; i++ {
		w.step()
		if w.done() {
			return
		}
		if w.rng.Intn(3) > 0 {
			w.kubelet()
		}
	}
	w.t.Fatalf("%s: no convergence; pods %s status %+v", what, w.podSummary(), w.status)
}

func (w *world) done() bool {
	n := replicaCount(w.set)
	if len(w.pods) != n {
		return false
	}
	for _, p := range w.pods {
		if !inRange(w.set, w.ordinalOf(p)) || !isHealthy(p) {
			return false
		}
		if w.set.Spec.UpdateStrategy.Type != appsv1.OnDeleteStatefulSetStrategyType && w.ordinalOf(p) >= startOrdinal(w.set)+w.partition() && revisionOf(p) != w.updateRev {
			return false
		}
	}
	return int(w.status.ReadyReplicas) == n && int(w.status.Replicas) == n
}

func (w *world) scale(n int32) {
	w.set.Spec.Replicas = &n
	w.set.Generation++
}

func TestLifecycleInvariants(t *testing.T) {
	for _, policy := range []appsv1.PodManagementPolicyType{appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement} {
		for _, templates := range []int{0, 2} {
			for _, graceful := range []bool{false, true} {
				for seed := int64(1); seed <= 5; seed++ {
					name := fmt.Sprintf("%s/claims=%d/graceful=%v/seed=%d", policy, templates, graceful, seed)
					t.Run(name, func(t *testing.T) {
						w := newWorld(t, newSet(3, policy, templates), seed)
						w.graceful = graceful
						w.converge("create 3")
						if policy == appsv1.OrderedReadyPodManagement && !w.fail {
							// Created strictly in order is checked per action; all three exist.
							for i := 0; i < 3; i++ {
								if _, ok := w.pods[fmt.Sprintf("web-%d", i)]; !ok {
									t.Fatalf("web-%d missing", i)
								}
							}
						}
						w.scale(5)
						w.converge("scale to 5")
						firstClaims := map[string]types.UID{}
						for n, c := range w.claims {
							firstClaims[n] = c.UID
						}
						w.scaleDowns = nil
						w.scale(2)
						w.converge("scale to 2")
						if policy == appsv1.OrderedReadyPodManagement && fmt.Sprint(w.scaleDowns) != "[4 3 2]" {
							t.Fatalf("scale-down order %v, want [4 3 2]", w.scaleDowns)
						}
						if templates > 0 && len(w.claims) != 5*templates {
							t.Fatalf("claims after scale-down (Retain): %d, want %d", len(w.claims), 5*templates)
						}
						// A rolling update.
						w.updateRev = "web-rev2"
						w.set.Generation++
						w.converge("rolling update")
						if w.status.CurrentRevision != "web-rev2" || w.status.UpdatedReplicas != 2 {
							t.Fatalf("after update status %+v", w.status)
						}
						// Scale back up: the claims come back the same.
						w.scale(4)
						w.converge("scale to 4")
						for n, uid := range firstClaims {
							if c, ok := w.claims[n]; ok && c.UID != uid {
								t.Fatalf("claim %s replaced", n)
							}
						}
					})
				}
			}
		}
	}
}

func TestFailedPodsRecreated(t *testing.T) {
	for _, policy := range []appsv1.PodManagementPolicyType{appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement} {
		for seed := int64(1); seed <= 10; seed++ {
			t.Run(fmt.Sprintf("%s/%d", policy, seed), func(t *testing.T) {
				w := newWorld(t, newSet(4, policy, 1), seed)
				w.fail = true
				for i := 0; i < 300; i++ {
					w.step()
					w.kubelet()
				}
				w.fail = false
				w.converge("after failures")
				if len(w.claims) != 4 {
					t.Fatalf("claims %d, want 4 (one per pod, reused)", len(w.claims))
				}
			})
		}
	}
}

func TestPartitionAndOnDelete(t *testing.T) {
	w := newWorld(t, newSet(5, appsv1.OrderedReadyPodManagement, 0), 7)
	w.converge("create")
	p := int32(3)
	w.set.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: &p}
	w.updateRev = "web-rev2"
	w.converge("partitioned update")
	for n, pod := range w.pods {
		want := "web-rev1"
		if w.ordinalOf(pod) >= 3 {
			want = "web-rev2"
		}
		if revisionOf(pod) != want {
			t.Fatalf("%s at %s, want %s", n, revisionOf(pod), want)
		}
	}
	if w.status.CurrentRevision != "web-rev1" || w.status.UpdatedReplicas != 2 || w.status.CurrentReplicas != 3 {
		t.Fatalf("partitioned status %+v", w.status)
	}
	// A deleted pod below the partition comes back at the current revision.
	w.delete(w.pods["web-1"])
	w.converge("recreate below partition")
	if revisionOf(w.pods["web-1"]) != "web-rev1" {
		t.Fatalf("web-1 recreated at %s", revisionOf(w.pods["web-1"]))
	}
	zero := int32(0)
	w.set.Spec.UpdateStrategy.RollingUpdate.Partition = &zero
	w.converge("finish")
	if w.status.CurrentRevision != "web-rev2" {
		t.Fatalf("status %+v", w.status)
	}

	// OnDelete: nothing is replaced until deleted.
	w.set.Spec.UpdateStrategy = appsv1.StatefulSetUpdateStrategy{Type: appsv1.OnDeleteStatefulSetStrategyType}
	w.updateRev = "web-rev3"
	for i := 0; i < 50; i++ {
		for _, a := range w.step().Actions {
			t.Fatalf("OnDelete acted: %s", summary([]Action{a}))
		}
		w.kubelet()
	}
	w.delete(w.pods["web-2"])
	w.converge("OnDelete recreate")
	if revisionOf(w.pods["web-2"]) != "web-rev3" || revisionOf(w.pods["web-1"]) != "web-rev2" {
		t.Fatalf("OnDelete revisions: %s", w.podSummary())
	}
}

func TestMaxUnavailable(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		w := newWorld(t, newSet(6, appsv1.ParallelPodManagement, 0), seed)
		w.graceful = true
		w.converge("create")
		mu := intstr.FromInt32(2)
		zero := int32(0)
		w.set.Spec.UpdateStrategy.RollingUpdate = &appsv1.RollingUpdateStatefulSetStrategy{Partition: &zero, MaxUnavailable: &mu}
		w.updateRev = "web-rev2"
		sawTwo := false
		for i := 0; i < 2000 && !w.done(); i++ {
			w.step()
			unavailable := 0
			for _, p := range w.pods {
				if !isHealthy(p) {
					unavailable++
				}
			}
			unavailable += 6 - len(w.pods)
			if unavailable > 2 {
				t.Fatalf("INVARIANT: %d unavailable with maxUnavailable 2: %s", unavailable, w.podSummary())
			}
			if unavailable == 2 {
				sawTwo = true
			}
			if w.rng.Intn(2) == 0 {
				w.kubelet()
			}
		}
		if !w.done() || !sawTwo {
			t.Fatalf("seed %d: done=%v sawTwo=%v", seed, w.done(), sawTwo)
		}
	}
}

func TestRetentionPolicyDelete(t *testing.T) {
	for _, policy := range []appsv1.PodManagementPolicyType{appsv1.OrderedReadyPodManagement, appsv1.ParallelPodManagement} {
		w := newWorld(t, newSet(4, policy, 1), 3)
		w.set.Spec.PersistentVolumeClaimRetentionPolicy = &appsv1.StatefulSetPersistentVolumeClaimRetentionPolicy{
			WhenDeleted: appsv1.DeletePersistentVolumeClaimRetentionPolicyType,
			WhenScaled:  appsv1.DeletePersistentVolumeClaimRetentionPolicyType,
		}
		w.converge("create")
		for n, c := range w.claims {
			if len(c.OwnerReferences) != 1 || c.OwnerReferences[0].UID != "set-uid" {
				t.Fatalf("claim %s owners %+v, want the set", n, c.OwnerReferences)
			}
		}
		w.scale(2)
		w.converge("scale down")
		if len(w.claims) != 2 {
			t.Fatalf("whenScaled=Delete left %d claims, want 2", len(w.claims))
		}
	}
}

func TestMinReadySeconds(t *testing.T) {
	w := newWorld(t, newSet(2, appsv1.OrderedReadyPodManagement, 0), 1)
	w.set.Spec.MinReadySeconds = 30
	w.step() // creates web-0
	w.kubelet()
	plan := w.step()
	if len(plan.Actions) != 0 || plan.RequeueAfter <= 0 || plan.RequeueAfter > 30*time.Second {
		t.Fatalf("want a wait for minReadySeconds, got %s after %v", summary(plan.Actions), plan.RequeueAfter)
	}
	if plan.Status.ReadyReplicas != 1 || plan.Status.AvailableReplicas != 0 {
		t.Fatalf("status %+v", plan.Status)
	}
	w.now = w.now.Add(plan.RequeueAfter)
	plan = w.step()
	if len(plan.Actions) != 1 || plan.Actions[0].Pod.Name != "web-1" {
		t.Fatalf("want web-1 created once web-0 is available, got %s", summary(plan.Actions))
	}
}

func TestStartOrdinal(t *testing.T) {
	set := newSet(3, appsv1.ParallelPodManagement, 0)
	set.Spec.Ordinals = &appsv1.StatefulSetOrdinals{Start: 5}
	w := newWorld(t, set, 1)
	w.converge("create")
	for _, n := range []string{"web-5", "web-6", "web-7"} {
		if _, ok := w.pods[n]; !ok {
			t.Fatalf("missing %s: %s", n, w.podSummary())
		}
	}
}

func TestParentAndOrdinal(t *testing.T) {
	for _, c := range []struct {
		name   string
		parent string
		ord    int
		ok     bool
	}{
		{"web-0", "web", 0, true}, {"my-db-12", "my-db", 12, true}, {"web", "", 0, false}, {"web-01", "", 0, false}, {"web-x", "", 0, false},
	} {
		p, o, ok := parentAndOrdinal(c.name)
		if p != c.parent || o != c.ord || ok != c.ok {
			t.Errorf("%s: got %q %d %v", c.name, p, o, ok)
		}
	}
}

func summary(actions []Action) string {
	var out []string
	for _, a := range actions {
		switch {
		case a.Pod != nil && a.Claim == nil:
			out = append(out, string(a.Type)+" "+a.Pod.Name+" ("+a.Why+")")
		case a.Claim != nil:
			out = append(out, string(a.Type)+" "+a.Claim.Name)
		}
	}
	return fmt.Sprint(out)
}
