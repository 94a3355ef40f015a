package statefulset

import (
	"slices"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

// TestPendingCreates: a create sent and not yet shown by the pod informer
// keeps the next syncs from creating the pod again, until the informer
// shows the pod (or its deletion), the create failed, or pendingTTL passed.
func TestPendingCreates(t *testing.T) {
	now := time.Unix(1000, 0)
	c := &Controller{now: func() time.Time { return now }, pending: map[string]map[string]time.Time{}, wrote: map[string]wroteStatus{}}
	pod := func(name string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: name, OwnerReferences: []metav1.OwnerReference{{
			APIVersion: "apps/v1", Kind: "StatefulSet", Name: "web", Controller: ptr.To(true)}}}}
	}
	plan := func() []string {
		var out []string
		for _, a := range c.skipPending("ns/web", []Action{{Type: CreatePod, Pod: pod("web-0")}, {Type: CreatePod, Pod: pod("web-1")}, {Type: DeletePod, Pod: pod("web-2")}}) {
			out = append(out, string(a.Type)+" "+a.Pod.Name)
		}
		return out
	}
	all := []string{string(CreatePod) + " web-0", string(CreatePod) + " web-1", string(DeletePod) + " web-2"}

	c.expectCreate("ns/web", "web-0")
	c.expectCreate("ns/web", "web-1")
	c.forgetCreate("ns/web", "web-1") // its create failed
	if got, want := plan(), all[1:]; !slices.Equal(got, want) {
		t.Fatalf("with web-0 created, web-1 failed: %v, want %v", got, want)
	}
	c.observed(pod("web-0"))
	if got := plan(); !slices.Equal(got, all) {
		t.Fatalf("with web-0 shown by the informer: %v, want %v", got, all)
	}
	if len(c.pending) != 0 {
		t.Fatalf("pending left: %v", c.pending)
	}
	c.expectCreate("ns/web", "web-0")
	now = now.Add(pendingTTL)
	if got := plan(); !slices.Equal(got, all) {
		t.Fatalf("after pendingTTL: %v, want %v", got, all)
	}
}

// TestLatestAfterStatusWrites: while the informer shows the set as it was
// before any of a run of status writes, the sync starts from what the last
// write returned; once it shows something else, from the informer's set.
func TestLatestAfterStatusWrites(t *testing.T) {
	c := &Controller{pending: map[string]map[string]time.Time{}, wrote: map[string]wroteStatus{}}
	set := func(rv string, ready int32) *appsv1.StatefulSet {
		return &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{UID: "u1", ResourceVersion: rv}, Status: appsv1.StatefulSetStatus{ReadyReplicas: ready}}
	}
	s, before := c.latest("ns/web", set("10", 0))
	if s.ResourceVersion != "10" || before != nil {
		t.Fatalf("no writes yet: %s %v", s.ResourceVersion, before)
	}
	c.wroteAfter("ns/web", before, "10", set("11", 1))
	s, before = c.latest("ns/web", set("10", 0))
	if s.ResourceVersion != "11" || s.Status.ReadyReplicas != 1 {
		t.Fatalf("informer at 10 after the write 10→11: synced from %s", s.ResourceVersion)
	}
	c.wroteAfter("ns/web", before, "11", set("12", 2))
	for _, rv := range []string{"10", "11"} {
		if s, _ := c.latest("ns/web", set(rv, 0)); s.ResourceVersion != "12" {
			t.Fatalf("informer at %s after the writes 10→11→12: synced from %s", rv, s.ResourceVersion)
		}
	}
	if s, _ := c.latest("ns/web", set("13", 0)); s.ResourceVersion != "13" || len(c.wrote) != 0 {
		t.Fatalf("informer at 13 (someone else wrote): synced from %s, record %v", s.ResourceVersion, c.wrote)
	}
	c.wroteAfter("ns/web", nil, "13", set("14", 3))
	other := set("13", 0)
	other.UID = "u2"
	if s, _ := c.latest("ns/web", other); s.UID != "u2" {
		t.Fatal("a new set of the same name synced from the old one's write")
	}
}
