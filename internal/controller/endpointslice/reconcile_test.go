package endpointslice

import (
	"fmt"
	"math/rand"
	"sort"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func headless(name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: "svc-uid", Labels: map[string]string{"app": "nginx"}},
		Spec: corev1.ServiceSpec{
			ClusterIP:  corev1.ClusterIPNone,
			IPFamilies: []corev1.IPFamily{corev1.IPv4Protocol},
			Selector:   map[string]string{"app": "nginx"},
			Ports:      []corev1.ServicePort{{Name: "web", Port: 80, TargetPort: intstr.FromString("web"), Protocol: corev1.ProtocolTCP}},
		},
	}
}

func pod(i int, ready bool) *corev1.Pod {
	name := fmt.Sprintf("web-%d", i)
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name), Labels: map[string]string{"app": "nginx"}},
		Spec: corev1.PodSpec{Hostname: name, Subdomain: "nginx-headless", NodeName: "node-a",
			Containers: []corev1.Container{{Name: "nginx", Ports: []corev1.ContainerPort{{Name: "web", ContainerPort: 8080, Protocol: corev1.ProtocolTCP}}}}},
		Status: corev1.PodStatus{Phase: corev1.PodRunning, PodIP: fmt.Sprintf("198.18.%d.%d", i/250, i%250+2)},
	}
	st := corev1.ConditionFalse
	if ready {
		st = corev1.ConditionTrue
	}
	p.Status.Conditions = []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}
	return p
}

// store applies Changes as the API server would.
type store struct {
	slices map[string]*discoveryv1.EndpointSlice
	n      int
}

func (s *store) list() []*discoveryv1.EndpointSlice {
	var out []*discoveryv1.EndpointSlice
	for _, v := range s.slices {
		out = append(out, v)
	}
	return out
}

func (s *store) apply(t *testing.T, ch Changes) {
	for _, c := range ch.Create {
		s.n++
		c = c.DeepCopy()
		c.Name = fmt.Sprintf("%s%d", c.GenerateName, s.n)
		c.UID = types.UID(c.Name)
		s.slices[c.Name] = c
	}
	for _, u := range ch.Update {
		if _, ok := s.slices[u.Name]; !ok {
			t.Fatalf("update of unknown slice %s", u.Name)
		}
		s.slices[u.Name] = u.DeepCopy()
	}
	for _, d := range ch.Delete {
		if _, ok := s.slices[d.Name]; !ok {
			t.Fatalf("delete of unknown slice %s", d.Name)
		}
		delete(s.slices, d.Name)
	}
}

// check verifies every desired endpoint appears exactly once, in a slice of
// the right family and ports, and no slice is over the limit.
func check(t *testing.T, svc *corev1.Service, pods []*corev1.Pod, s *store, max int) {
	t.Helper()
	want := map[string]bool{}
	for _, p := range pods {
		if includePod(p) && p.Status.PodIP != "" {
			want[p.Name] = true
		}
	}
	seen := map[string]bool{}
	for _, sl := range s.slices {
		if len(sl.Endpoints) > max {
			t.Fatalf("slice %s holds %d endpoints, max %d", sl.Name, len(sl.Endpoints), max)
		}
		if sl.Labels[ServiceNameLabel] != svc.Name || sl.Labels[ManagedByLabel] != ManagedBy {
			t.Fatalf("slice %s labels %v", sl.Name, sl.Labels)
		}
		for _, ep := range sl.Endpoints {
			n := ep.TargetRef.Name
			if seen[n] {
				t.Fatalf("INVARIANT: %s in two slices", n)
			}
			seen[n] = true
			if !want[n] {
				t.Fatalf("INVARIANT: %s should not be in a slice", n)
			}
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("INVARIANT: %d endpoints in slices, want %d", len(seen), len(want))
	}
	if len(want) == 0 && len(s.slices) != 1 {
		t.Fatalf("want one placeholder slice, have %d", len(s.slices))
	}
}

func TestReconcileRandomChanges(t *testing.T) {
	const max = 10
	svc := headless("nginx-headless")
	rng := rand.New(rand.NewSource(1))
	pods := map[int]*corev1.Pod{}
	s := &store{slices: map[string]*discoveryv1.EndpointSlice{}}
	podList := func() []*corev1.Pod {
		var out []*corev1.Pod
		for _, p := range pods {
			out = append(out, p)
		}
		return out
	}
	for step := 0; step < 2000; step++ {
		i := rng.Intn(60)
		var kind string
		switch r := rng.Intn(10); {
		case r < 4:
			pods[i] = pod(i, rng.Intn(2) == 0)
			kind = "set"
		case r < 6:
			delete(pods, i)
			kind = "delete"
		default:
			if p, ok := pods[i]; ok {
				p = p.DeepCopy()
				p.Status.Conditions[0].Status = corev1.ConditionTrue
				if rng.Intn(2) == 0 {
					p.Status.Conditions[0].Status = corev1.ConditionFalse
				}
				before := s.list()
				ch := Reconcile(svc, podList(), before, max, "")
				if !ch.Empty() {
					t.Fatalf("not converged before step %d", step)
				}
				pods[i] = p
				ch = Reconcile(svc, podList(), before, max, "")
				// Minimal: a readiness flip rewrites at most one slice.
				if len(ch.Create)+len(ch.Delete) != 0 || len(ch.Update) > 1 {
					t.Fatalf("INVARIANT: readiness of one pod changed %d/%d/%d slices", len(ch.Create), len(ch.Update), len(ch.Delete))
				}
				s.apply(t, ch)
				check(t, svc, podList(), s, max)
				continue
			}
		}
		ch := Reconcile(svc, podList(), s.list(), max, "")
		s.apply(t, ch)
		check(t, svc, podList(), s, max)
		if again := Reconcile(svc, podList(), s.list(), max, ""); !again.Empty() {
			t.Fatalf("step %d (%s): second reconcile not empty: %+v", step, kind, again)
		}
	}
}

func TestEndpointConditionsAndHostname(t *testing.T) {
	svc := headless("nginx-headless")
	ready, notReady := pod(0, true), pod(1, false)
	terminating := pod(2, true)
	now := metav1.NewTime(time.Now())
	terminating.DeletionTimestamp = &now
	other := pod(3, true)
	other.Spec.Subdomain = "elsewhere"
	noIP := pod(4, true)
	noIP.Status.PodIP = ""
	failed := pod(5, true)
	failed.Status.Phase = corev1.PodFailed

	ch := Reconcile(svc, []*corev1.Pod{ready, notReady, terminating, other, noIP, failed}, nil, 100, "2026-01-01T00:00:00.5Z")
	if len(ch.Create) != 1 {
		t.Fatalf("want one slice, got %+v", ch)
	}
	sl := ch.Create[0]
	if sl.Annotations[TriggerTimeAnnotation] != "2026-01-01T00:00:00.5Z" || sl.Labels[HeadlessLabel] != "" || sl.AddressType != discoveryv1.AddressTypeIPv4 {
		t.Fatalf("slice meta %+v", sl.ObjectMeta)
	}
	if _, ok := sl.Labels[HeadlessLabel]; !ok {
		t.Fatal("no headless label")
	}
	if len(sl.Ports) != 1 || *sl.Ports[0].Port != 8080 || *sl.Ports[0].Name != "web" {
		t.Fatalf("named target port not resolved: %+v", sl.Ports)
	}
	got := map[string]discoveryv1.Endpoint{}
	for _, ep := range sl.Endpoints {
		got[ep.TargetRef.Name] = ep
	}
	if len(got) != 4 {
		t.Fatalf("endpoints %v, want web-0..3", keys(got))
	}
	expect := func(name string, ready, serving, term bool, host string) {
		ep := got[name]
		h := ""
		if ep.Hostname != nil {
			h = *ep.Hostname
		}
		if *ep.Conditions.Ready != ready || *ep.Conditions.Serving != serving || *ep.Conditions.Terminating != term || h != host || *ep.NodeName != "node-a" {
			t.Errorf("%s: ready=%v serving=%v terminating=%v hostname=%q", name, *ep.Conditions.Ready, *ep.Conditions.Serving, *ep.Conditions.Terminating, h)
		}
	}
	expect("web-0", true, true, false, "web-0")
	expect("web-1", false, false, false, "web-1")
	expect("web-2", false, true, true, "web-2")
	expect("web-3", true, true, false, "")

	svc.Spec.PublishNotReadyAddresses = true
	ch = Reconcile(svc, []*corev1.Pod{ready, notReady, terminating}, nil, 100, "")
	for _, ep := range ch.Create[0].Endpoints {
		if !*ep.Conditions.Ready {
			t.Errorf("publishNotReadyAddresses: %s not ready", ep.TargetRef.Name)
		}
	}

	// Legacy Endpoints: ready and not-ready addresses.
	svc.Spec.PublishNotReadyAddresses = false
	e := DesiredEndpoints(svc, []*corev1.Pod{ready, notReady, terminating}, "")
	if len(e.Subsets) != 1 || len(e.Subsets[0].Addresses) != 1 || len(e.Subsets[0].NotReadyAddresses) != 1 ||
		e.Subsets[0].Addresses[0].Hostname != "web-0" || e.Subsets[0].Ports[0].Port != 8080 {
		t.Fatalf("endpoints %+v", e.Subsets)
	}
}

func keys(m map[string]discoveryv1.Endpoint) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestSlicesPerFamilyAndPorts(t *testing.T) {
	svc := headless("db")
	svc.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
	a := pod(0, true)
	a.Status.PodIPs = []corev1.PodIP{{IP: a.Status.PodIP}, {IP: "fd00::2"}}
	b := pod(1, true)
	b.Spec.Containers[0].Ports[0].Name = "other" // the named port does not resolve
	ch := Reconcile(svc, []*corev1.Pod{a, b}, nil, 100, "")
	if len(ch.Create) != 3 {
		t.Fatalf("want v4 with port, v4 without, v6: got %d slices", len(ch.Create))
	}
	for _, s := range ch.Create {
		if s.AddressType == discoveryv1.AddressTypeIPv6 && (len(s.Endpoints) != 1 || s.Endpoints[0].Addresses[0] != "fd00::2") {
			t.Fatalf("v6 slice %+v", s.Endpoints)
		}
	}
}

func TestLargeServiceFillsSlices(t *testing.T) {
	svc := headless("big")
	var pods []*corev1.Pod
	for i := 0; i < 500; i++ {
		pods = append(pods, pod(i, true))
	}
	s := &store{slices: map[string]*discoveryv1.EndpointSlice{}}
	ch := Reconcile(svc, pods, nil, 100, "")
	if len(ch.Create) != 5 {
		t.Fatalf("500 endpoints in %d slices, want 5", len(ch.Create))
	}
	s.apply(t, ch)
	check(t, svc, pods, s, 100)
}

func TestPlaceholderReused(t *testing.T) {
	svc := headless("nginx-headless")
	s := &store{slices: map[string]*discoveryv1.EndpointSlice{}}
	s.apply(t, Reconcile(svc, nil, nil, 100, ""))
	if len(s.slices) != 1 {
		t.Fatalf("want a placeholder")
	}
	var name string
	for n := range s.slices {
		name = n
	}
	ch := Reconcile(svc, []*corev1.Pod{pod(0, true)}, s.list(), 100, "")
	if len(ch.Create)+len(ch.Delete) != 0 || len(ch.Update) != 1 || ch.Update[0].Name != name {
		t.Fatalf("first endpoint: %d creates, %d updates, %d deletes; want the placeholder updated", len(ch.Create), len(ch.Update), len(ch.Delete))
	}
	s.apply(t, ch)
	check(t, svc, []*corev1.Pod{pod(0, true)}, s, 100)
}
