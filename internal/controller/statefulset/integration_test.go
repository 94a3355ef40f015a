package statefulset_test

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/kubectl/pkg/polymorphichelpers"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/headway/headway/internal/controller/statefulset"
	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/internal/testing/kubeletsim"
)

// podLog records pod watch events in order.
type podLog struct {
	mu     sync.Mutex
	events []podEvent
}

type podEvent struct {
	typ   watch.EventType
	name  string
	uid   types.UID
	ready bool
	term  bool
}

func watchPods(t *testing.T, ctx context.Context, client kubernetes.Interface, ns string) *podLog {
	t.Helper()
	w, err := client.CoreV1().Pods(ns).Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	l := &podLog{}
	go func() {
		for ev := range w.ResultChan() {
			p, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			ready := false
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					ready = true
				}
			}
			l.mu.Lock()
			l.events = append(l.events, podEvent{ev.Type, p.Name, p.UID, ready && p.Status.Phase == corev1.PodRunning, p.DeletionTimestamp != nil})
			l.mu.Unlock()
		}
	}()
	t.Cleanup(w.Stop)
	return l
}

func (l *podLog) snapshot() []podEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]podEvent(nil), l.events...)
}

// checkOrdered replays the log: under OrderedReady a pod is only added
// when every lower ordinal is Running and Ready, and at most one pod is not
// Ready at any time.
func (l *podLog) checkOrdered(t *testing.T) {
	t.Helper()
	state := map[string]podEvent{}
	for i, ev := range l.snapshot() {
		if ev.typ == watch.Added {
			var ord int
			fmt.Sscanf(ev.name[strings.LastIndex(ev.name, "-")+1:], "%d", &ord)
			for j := 0; j < ord; j++ {
				lower, ok := state[fmt.Sprintf("web-%d", j)]
				if !ok || !lower.ready || lower.term {
					t.Fatalf("event %d: %s added while web-%d not Running and Ready", i, ev.name, j)
				}
			}
		}
		if ev.typ == watch.Deleted {
			delete(state, ev.name)
		} else {
			state[ev.name] = ev
		}
		notReady := 0
		for _, s := range state {
			if !s.ready || s.term {
				notReady++
			}
		}
		if notReady > 1 {
			t.Fatalf("event %d: %d pods not Ready at once: %+v", i, notReady, state)
		}
	}
}

func (l *podLog) deletions() []string {
	var out []string
	for _, ev := range l.snapshot() {
		if ev.typ == watch.Deleted {
			out = append(out, ev.name)
		}
	}
	return out
}

func (l *podLog) additions() []string {
	var out []string
	for _, ev := range l.snapshot() {
		if ev.typ == watch.Added {
			out = append(out, ev.name)
		}
	}
	return out
}

// seed is the seed's headless Service and StatefulSet.
func seed() (*corev1.Service, *appsv1.StatefulSet) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "nginx-headless", Labels: map[string]string{"app": "nginx"}},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{"app": "nginx"},
			Ports:     []corev1.ServicePort{{Name: "web", Port: 80, TargetPort: intstr.FromInt32(80)}},
		},
	}
	replicas := int32(3)
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: "nginx-headless",
			Replicas:    &replicas,
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "nginx"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "nginx"}},
				Spec: corev1.PodSpec{
					Containers:       []corev1.Container{{Name: "nginx", Image: "nginx:alpine", Ports: []corev1.ContainerPort{{ContainerPort: 80, Name: "web"}}}},
					ImagePullSecrets: []corev1.LocalObjectReference{{Name: "default-secret"}},
				},
			},
		},
	}
	return svc, set
}

func getSet(t *testing.T, ctx context.Context, client kubernetes.Interface, ns, name string) *appsv1.StatefulSet {
	t.Helper()
	s, err := client.AppsV1().StatefulSets(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func podNames(t *testing.T, ctx context.Context, client kubernetes.Interface, ns string) []string {
	t.Helper()
	pods, err := client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=nginx"})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, p := range pods.Items {
		if p.DeletionTimestamp == nil {
			out = append(out, p.Name)
		}
	}
	slices.Sort(out)
	return out
}

// readyEndpoints lists the hostnames of ready endpoints in the service's slices.
func readyEndpoints(ctx context.Context, client kubernetes.Interface, ns, svc string) ([]string, error) {
	list, err := client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, s := range list.Items {
		for _, ep := range s.Endpoints {
			if ep.Conditions.Ready != nil && *ep.Conditions.Ready && ep.Hostname != nil {
				out = append(out, *ep.Hostname)
			}
		}
	}
	slices.Sort(out)
	return out, nil
}

func rolledOut(t *testing.T, ctx context.Context, client kubernetes.Interface, set *appsv1.StatefulSet) (string, bool) {
	t.Helper()
	viewer, err := polymorphichelpers.StatusViewerFor(appsv1.SchemeGroupVersion.WithKind("StatefulSet").GroupKind())
	if err != nil {
		t.Fatal(err)
	}
	s := getSet(t, ctx, client, set.Namespace, set.Name)
	u, err := runtime.DefaultUnstructuredConverter.ToUnstructured(s)
	if err != nil {
		t.Fatal(err)
	}
	msg, done, err := viewer.Status(&unstructured.Unstructured{Object: u}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return msg, done
}

func TestSeedStatefulSet(t *testing.T) {
	c := cluster.Start(t)
	ctx := t.Context()
	client := c.Client
	ns := "default"
	log := watchPods(t, ctx, client, ns)
	kubeletsim.Start(t, ctx, client)

	svc, set := seed()
	if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	set, err := client.AppsV1().StatefulSets(ns).Create(ctx, set, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("web-0..2 in order, trusted by DNS", func(t *testing.T) {
		want := []string{"web-0", "web-1", "web-2"}
		cluster.WaitFor(t, 20*time.Second, "web-0..2 ready in the slices", func() (bool, error) {
			eps, err := readyEndpoints(ctx, client, ns, "nginx-headless")
			return slices.Equal(eps, want), err
		})
		if got := log.additions(); !slices.Equal(got, want) {
			t.Fatalf("pods added %v, want %v", got, want)
		}
		log.checkOrdered(t)
		for _, name := range want {
			p, err := client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ref := metav1.GetControllerOf(p)
			if p.Spec.Hostname != name || p.Spec.Subdomain != "nginx-headless" || p.Labels[statefulset.PodNameLabel] != name ||
				p.Labels[statefulset.PodIndexLabel] != name[4:] || p.Labels[statefulset.RevisionLabel] == "" || ref == nil || ref.UID != set.UID {
				t.Fatalf("%s identity: labels %v hostname %q subdomain %q owner %+v", name, p.Labels, p.Spec.Hostname, p.Spec.Subdomain, ref)
			}
		}
		cluster.WaitFor(t, 10*time.Second, "status", func() (bool, error) {
			s := getSet(t, ctx, client, ns, "web")
			st := s.Status
			return st.ObservedGeneration == s.Generation && st.Replicas == 3 && st.ReadyReplicas == 3 && st.AvailableReplicas == 3 &&
				st.CurrentReplicas == 3 && st.UpdatedReplicas == 3 && st.CurrentRevision != "" && st.CurrentRevision == st.UpdateRevision, nil
		})
		if msg, done := rolledOut(t, ctx, client, set); !done {
			t.Fatalf("rollout status: %s", msg)
		}
		// The slice DNS reads.
		list, err := client.DiscoveryV1().EndpointSlices(ns).List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=nginx-headless"})
		if err != nil || len(list.Items) != 1 {
			t.Fatalf("slices: %v %v", list, err)
		}
		s := list.Items[0]
		if s.Labels[discoveryv1.LabelManagedBy] != "endpointslice-controller.k8s.io" || s.Annotations[corev1.EndpointsLastChangeTriggerTime] == "" {
			t.Fatalf("slice metadata %+v", s.ObjectMeta)
		}
		if _, ok := s.Labels[corev1.IsHeadlessService]; !ok {
			t.Fatalf("slice lacks the headless label: %v", s.Labels)
		}
		for _, ep := range s.Endpoints {
			if ep.TargetRef == nil || ep.TargetRef.Kind != "Pod" || ep.NodeName == nil || *ep.NodeName != "node-1" || len(ep.Addresses) != 1 {
				t.Fatalf("endpoint %+v", ep)
			}
		}
		e, err := client.CoreV1().Endpoints(ns).Get(ctx, "nginx-headless", metav1.GetOptions{})
		if err != nil || len(e.Subsets) != 1 || len(e.Subsets[0].Addresses) != 3 {
			t.Fatalf("legacy Endpoints %+v %v", e, err)
		}
		// Events for every create.
		evs, err := client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=web"})
		if err == nil {
			n := 0
			for _, ev := range evs.Items {
				if ev.Reason == "SuccessfulCreate" {
					n++
				}
			}
			if n != 3 {
				t.Logf("note: %d SuccessfulCreate events (the recorder may still be writing)", n)
			}
		}
	})

	t.Run("scale to 5 and back to 2 in reverse", func(t *testing.T) {
		scale(t, ctx, client, ns, 5)
		cluster.WaitFor(t, 20*time.Second, "5 ready endpoints", func() (bool, error) {
			eps, err := readyEndpoints(ctx, client, ns, "nginx-headless")
			return len(eps) == 5, err
		})
		before := len(log.deletions())
		scale(t, ctx, client, ns, 2)
		cluster.WaitFor(t, 20*time.Second, "2 pods", func() (bool, error) {
			return slices.Equal(podNames(t, ctx, client, ns), []string{"web-0", "web-1"}) && len(log.deletions()) >= before+3, nil
		})
		if got := log.deletions()[before:]; !slices.Equal(got, []string{"web-4", "web-3", "web-2"}) {
			t.Fatalf("scale-down deleted %v, want web-4, web-3, web-2", got)
		}
		log.checkOrdered(t)
		cluster.WaitFor(t, 10*time.Second, "2 ready endpoints", func() (bool, error) {
			eps, err := readyEndpoints(ctx, client, ns, "nginx-headless")
			return slices.Equal(eps, []string{"web-0", "web-1"}), err
		})
	})

	t.Run("rolling update, history and undo", func(t *testing.T) {
		scale(t, ctx, client, ns, 3)
		cluster.WaitFor(t, 20*time.Second, "3 ready", func() (bool, error) {
			s := getSet(t, ctx, client, ns, "web")
			return s.Status.ReadyReplicas == 3 && s.Status.ObservedGeneration == s.Generation, nil
		})
		old := getSet(t, ctx, client, ns, "web").Status.CurrentRevision
		before := len(log.deletions())
		patch := `{"spec":{"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.27"}]}}}}`
		if _, err := client.AppsV1().StatefulSets(ns).Patch(ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		if msg, done := rolledOut(t, ctx, client, set); done {
			t.Fatalf("rollout reported done at once: %s", msg)
		}
		cluster.WaitFor(t, 30*time.Second, "rollout complete", func() (bool, error) {
			_, done := rolledOut(t, ctx, client, set)
			return done, nil
		})
		s := getSet(t, ctx, client, ns, "web")
		if s.Status.CurrentRevision == old || s.Status.UpdatedReplicas != 3 {
			t.Fatalf("status after update %+v", s.Status)
		}
		if got := log.deletions()[before:]; !slices.Equal(got, []string{"web-2", "web-1", "web-0"}) {
			t.Fatalf("update replaced %v, want web-2, web-1, web-0", got)
		}
		log.checkOrdered(t)
		for _, n := range []string{"web-0", "web-1", "web-2"} {
			p, _ := client.CoreV1().Pods(ns).Get(ctx, n, metav1.GetOptions{})
			if p.Spec.Containers[0].Image != "nginx:1.27" || p.Labels[statefulset.RevisionLabel] != s.Status.UpdateRevision {
				t.Fatalf("%s not updated: %s %s", n, p.Spec.Containers[0].Image, p.Labels[statefulset.RevisionLabel])
			}
		}

		gk := appsv1.SchemeGroupVersion.WithKind("StatefulSet").GroupKind()
		hv, err := polymorphichelpers.HistoryViewerFor(gk, client)
		if err != nil {
			t.Fatal(err)
		}
		hist, err := hv.ViewHistory(ns, "web", 0)
		if err != nil || !strings.Contains(hist, "REVISION") || !strings.Contains(hist, "\n1 ") || !strings.Contains(hist, "\n2 ") {
			t.Fatalf("rollout history:\n%s\n%v", hist, err)
		}
		rb, err := polymorphichelpers.RollbackerFor(gk, client)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := rb.Rollback(getSet(t, ctx, client, ns, "web"), nil, 0, cmdutil.DryRunNone)
		if err != nil || msg != "rolled back" {
			t.Fatalf("rollout undo: %q %v", msg, err)
		}
		cluster.WaitFor(t, 30*time.Second, "undo rolled out", func() (bool, error) {
			s := getSet(t, ctx, client, ns, "web")
			_, done := rolledOut(t, ctx, client, set)
			return done && s.Status.CurrentRevision == old, nil
		})
		p, _ := client.CoreV1().Pods(ns).Get(ctx, "web-0", metav1.GetOptions{})
		if p.Spec.Containers[0].Image != "nginx:alpine" {
			t.Fatalf("after undo web-0 runs %s", p.Spec.Containers[0].Image)
		}
		revs, _ := client.AppsV1().ControllerRevisions(ns).List(ctx, metav1.ListOptions{LabelSelector: "app=nginx"})
		nums := map[string]int64{}
		for _, r := range revs.Items {
			nums[r.Name] = r.Revision
		}
		if len(revs.Items) != 2 || nums[old] != 3 {
			t.Fatalf("revisions after undo %v, want 2 with %s at revision 3", nums, old)
		}
		// Undo again: the skip message when the template already matches.
		msg, err = rb.Rollback(getSet(t, ctx, client, ns, "web"), nil, 3, cmdutil.DryRunNone)
		if err != nil || !strings.Contains(msg, "skipped rollback") {
			t.Fatalf("undo to the current revision: %q %v", msg, err)
		}
	})

	t.Run("partition", func(t *testing.T) {
		patch := `{"spec":{"updateStrategy":{"rollingUpdate":{"partition":2}},"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.28"}]}}}}`
		if _, err := client.AppsV1().StatefulSets(ns).Patch(ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, 30*time.Second, "partitioned rollout", func() (bool, error) {
			msg, done := rolledOut(t, ctx, client, set)
			return done && strings.Contains(msg, "partitioned roll out complete: 1 new pods"), nil
		})
		for n, img := range map[string]string{"web-0": "nginx:alpine", "web-1": "nginx:alpine", "web-2": "nginx:1.28"} {
			p, _ := client.CoreV1().Pods(ns).Get(ctx, n, metav1.GetOptions{})
			if p.Spec.Containers[0].Image != img {
				t.Fatalf("%s runs %s, want %s", n, p.Spec.Containers[0].Image, img)
			}
		}
	})
}

// scale sets replicas through the scale subresource with a merge patch.
// (client-go's UpdateScale sends protobuf, which the API server's scale
// update does not decode yet; see the report.)
func scale(t *testing.T, ctx context.Context, client kubernetes.Interface, ns string, n int32) {
	t.Helper()
	patch := fmt.Sprintf(`{"spec":{"replicas":%d}}`, n)
	_, err := client.AppsV1().StatefulSets(ns).Patch(ctx, "web", types.MergePatchType, []byte(patch), metav1.PatchOptions{}, "scale")
	if err != nil {
		t.Fatal(err)
	}
}

func TestDeletedPodKeepsNameAndClaim(t *testing.T) {
	c := cluster.Start(t)
	ctx := t.Context()
	client := c.Client
	ns := "default"
	kubeletsim.Start(t, ctx, client)
	svc, set := seed()
	set.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
	set.Spec.VolumeClaimTemplates = []corev1.PersistentVolumeClaim{{
		ObjectMeta: metav1.ObjectMeta{Name: "www"},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources:   corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")}},
		},
	}}
	set.Spec.Template.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "www", MountPath: "/usr/share/nginx/html"}}
	if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.AppsV1().StatefulSets(ns).Create(ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 20*time.Second, "3 ready, claims bound", func() (bool, error) {
		s := getSet(t, ctx, client, ns, "web")
		if s.Status.ReadyReplicas != 3 {
			return false, nil
		}
		for i := 0; i < 3; i++ {
			cl, err := client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, fmt.Sprintf("www-web-%d", i), metav1.GetOptions{})
			if err != nil || cl.Status.Phase != corev1.ClaimBound {
				return false, err
			}
		}
		return true, nil
	})
	claim, err := client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "www-web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if claim.Spec.StorageClassName == nil || *claim.Spec.StorageClassName != "local-path" {
		t.Fatalf("claim class %v, want the default local-path", claim.Spec.StorageClassName)
	}
	pv, err := client.CoreV1().PersistentVolumes().Get(ctx, claim.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	dir := ""
	if pv.Spec.Local != nil {
		dir = pv.Spec.Local.Path
	}
	if !strings.HasPrefix(dir, c.DataDir+"/volumes/") || pv.Status.Phase != corev1.VolumeBound || pv.Spec.NodeAffinity == nil {
		t.Fatalf("volume %s at %q phase %s affinity %v", pv.Name, dir, pv.Status.Phase, pv.Spec.NodeAffinity)
	}
	if err := os.WriteFile(dir+"/index.html", []byte("web-1 data"), 0o644); err != nil {
		t.Fatal(err)
	}

	old, err := client.CoreV1().Pods(ns).Get(ctx, "web-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := client.CoreV1().Pods(ns).Delete(ctx, "web-1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	var back *corev1.Pod
	cluster.WaitFor(t, 20*time.Second, "web-1 back and ready", func() (bool, error) {
		p, err := client.CoreV1().Pods(ns).Get(ctx, "web-1", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		back = p
		return p.UID != old.UID && p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil, nil
	})
	found := false
	for _, v := range back.Spec.Volumes {
		if v.Name == "www" && v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ClaimName == "www-web-1" {
			found = true
		}
	}
	if !found || back.Spec.Hostname != "web-1" || back.Spec.NodeName != old.Spec.NodeName {
		t.Fatalf("web-1 came back with volumes %+v hostname %q node %q", back.Spec.Volumes, back.Spec.Hostname, back.Spec.NodeName)
	}
	again, err := client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "www-web-1", metav1.GetOptions{})
	if err != nil || again.UID != claim.UID || again.Spec.VolumeName != claim.Spec.VolumeName {
		t.Fatalf("claim replaced: %v %v", again, err)
	}
	if data, err := os.ReadFile(dir + "/index.html"); err != nil || string(data) != "web-1 data" {
		t.Fatalf("data gone: %q %v", data, err)
	}

	// Scale down with whenScaled=Delete: web-2's claim and volume go.
	patch := `{"spec":{"replicas":2,"persistentVolumeClaimRetentionPolicy":{"whenScaled":"Delete","whenDeleted":"Retain"}}}`
	if _, err := client.AppsV1().StatefulSets(ns).Patch(ctx, "web", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	gone, _ := client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "www-web-2", metav1.GetOptions{})
	cluster.WaitFor(t, 20*time.Second, "www-web-2 and its volume deleted", func() (bool, error) {
		_, err1 := client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "www-web-2", metav1.GetOptions{})
		_, err2 := client.CoreV1().PersistentVolumes().Get(ctx, gone.Spec.VolumeName, metav1.GetOptions{})
		return err1 != nil && err2 != nil, nil
	})
	if _, err := client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "www-web-1", metav1.GetOptions{}); err != nil {
		t.Fatalf("www-web-1 should stay: %v", err)
	}
}

// TestParallelWritesOnce: a 100-replica Parallel set creates each pod once
// and writes its status without conflicts, although its syncs run while
// the informers still lag the previous sync's writes (each of those would
// be a rejected request: AlreadyExists, or a Conflict retried with backoff).
func TestParallelWritesOnce(t *testing.T) {
	c := cluster.Start(t)
	ctx := t.Context()
	client := c.Client
	ns := "default"
	kubeletsim.Start(t, ctx, client)

	// The API's rejected writes (409) so far, from its request counter.
	rejected := func() (creates, statuses, endpoints float64) {
		body, err := client.CoreV1().RESTClient().Get().AbsPath("/metrics").Stream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer body.Close()
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(body)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range families["apiserver_request_total"].GetMetric() {
			l := map[string]string{}
			for _, p := range m.GetLabel() {
				l[p.GetName()] = p.GetValue()
			}
			switch {
			case l["code"] != "409":
			case l["resource"] == "pods" && l["verb"] == "POST" && l["subresource"] == "":
				creates += m.GetCounter().GetValue()
			case l["resource"] == "statefulsets" && l["subresource"] == "status":
				statuses += m.GetCounter().GetValue()
			case l["resource"] == "endpoints":
				endpoints += m.GetCounter().GetValue()
			}
		}
		return creates, statuses, endpoints
	}
	creates0, statuses0, endpoints0 := rejected()

	svc, set := seed()
	replicas := int32(100)
	set.Spec.Replicas = &replicas
	set.Spec.PodManagementPolicy = appsv1.ParallelPodManagement
	if _, err := client.CoreV1().Services(ns).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.AppsV1().StatefulSets(ns).Create(ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 60*time.Second, "100 ready replicas in the status", func() (bool, error) {
		s := getSet(t, ctx, client, ns, "web")
		return s.Status.ObservedGeneration == s.Generation && s.Status.ReadyReplicas == 100 && s.Status.Replicas == 100, nil
	})
	// The Service's legacy Endpoints follow the pods as fast (the
	// EndpointSlice controller's writes, from its own last write while its
	// informer lags).
	cluster.WaitFor(t, 30*time.Second, "100 ready addresses in the Endpoints", func() (bool, error) {
		ep, err := client.CoreV1().Endpoints(ns).Get(ctx, svc.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		n := 0
		for _, s := range ep.Subsets {
			n += len(s.Addresses)
		}
		return n == 100, nil
	})
	creates, statuses, endpoints := rejected()
	if creates != creates0 || statuses != statuses0 || endpoints != endpoints0 {
		t.Fatalf("rejected writes: %v pod creates (AlreadyExists), %v status updates (Conflict), %v Endpoints writes; want none", creates-creates0, statuses-statuses0, endpoints-endpoints0)
	}
}
