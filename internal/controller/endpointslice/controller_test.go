package endpointslice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond wait.ConditionFunc) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 5*time.Millisecond, 10*time.Second, true, cond.WithContext()); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// namingWriter is the client writer that names created slices the way the
// API server would (the fake clientset leaves GenerateName alone).
type namingWriter struct{ ClientWriter }

func (w namingWriter) CreateSlice(ctx context.Context, s *discoveryv1.EndpointSlice) (*discoveryv1.EndpointSlice, error) {
	if s.Name == "" {
		s = s.DeepCopy()
		s.Name = s.GenerateName + "abcde"
	}
	return w.ClientWriter.CreateSlice(ctx, s)
}

// failingEndpoints is the client writer whose Endpoints creates fail while
// fail is set, as when the Endpoints cache is behind.
type failingEndpoints struct {
	namingWriter
	fail *bool
}

func (w failingEndpoints) CreateEndpoints(ctx context.Context, e *corev1.Endpoints) (*corev1.Endpoints, error) {
	if *w.fail {
		return nil, apierrors.NewAlreadyExists(schema.GroupResource{Resource: "endpoints"}, e.Name)
	}
	return w.ClientWriter.CreateEndpoints(ctx, e)
}

// A sync that wrote the slices but failed on the Endpoints keeps its change
// time for the Endpoints alone: the slices' next write carries the next
// change's time, not the one they already show (the flake of
// TestPublishNotReadyAndMinimalUpdates).
func TestTriggerTimeAfterEndpointsFailure(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web-0", Labels: map[string]string{"app": "web"}},
		Spec:       corev1.PodSpec{NodeName: "node-1"},
		Status: corev1.PodStatus{PodIP: "198.18.0.5", PodIPs: []corev1.PodIP{{IP: "198.18.0.5"}},
			Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: corev1.ConditionFalse}}},
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", UID: "svc-uid"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "web"}},
	}
	client := fake.NewClientset(pod, svc)
	factory := informers.NewSharedInformerFactory(client, 0)
	fail := true
	c := NewWithWriter(failingEndpoints{namingWriter{ClientWriter{Client: client}}, &fail}, factory, slog.New(slog.DiscardHandler))
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	defer cancel()
	factory.WaitForCacheSync(ctx.Done())

	const key = "default/web"
	if err := c.Sync(ctx, key); err == nil {
		t.Fatal("the first sync succeeded; the writer should have failed its Endpoints create")
	}
	slice := func() *discoveryv1.EndpointSlice {
		l, _ := c.slices.EndpointSlices("default").List(labels.Everything())
		if len(l) != 1 {
			return nil
		}
		return l[0]
	}
	waitFor(t, "the slice in the informer", func() (bool, error) { return slice() != nil, nil })
	first := slice().Annotations[TriggerTimeAnnotation]
	if first == "" {
		t.Fatal("the first slice has no trigger time")
	}

	// The pod becomes ready after the failed sync.
	fail = false
	up := pod.DeepCopy()
	up.Status.Conditions[0].Status = corev1.ConditionTrue
	if _, err := client.CoreV1().Pods("default").UpdateStatus(ctx, up, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the ready pod in the informer", func() (bool, error) {
		p, err := c.pods.Pods("default").Get("web-0")
		return err == nil && p.Status.Conditions[0].Status == corev1.ConditionTrue, nil
	})
	if err := c.Sync(ctx, key); err != nil {
		t.Fatal(err)
	}
	s, err := client.DiscoveryV1().EndpointSlices("default").Get(ctx, slice().Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !*s.Endpoints[0].Conditions.Ready {
		t.Fatal("the slice's endpoint is not ready after the second sync")
	}
	second := s.Annotations[TriggerTimeAnnotation]
	t0, _ := time.Parse(time.RFC3339Nano, first)
	t1, err := time.Parse(time.RFC3339Nano, second)
	if err != nil || !t1.After(t0) {
		t.Fatalf("slice trigger time %s → %s; want the pod change's later time", first, second)
	}
	ep, err := client.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// The Endpoints were never written: they carry the oldest change they
	// have not shown, the one the failed sync took.
	if got := ep.Annotations[TriggerTimeAnnotation]; got != first {
		t.Fatalf("Endpoints trigger time %s; want the failed sync's %s", got, first)
	}
}

// splitWriter writes slices where the informers see them and Endpoints to
// another client the informers never see: the Endpoints informer stays
// behind every write the controller makes, as it is for a moment after
// each write on a busy server.
type splitWriter struct {
	namingWriter
	endpoints ClientWriter
	conflicts *int // Endpoints writes the API refused as stale
}

func (w splitWriter) CreateEndpoints(ctx context.Context, e *corev1.Endpoints) (*corev1.Endpoints, error) {
	out, err := w.endpoints.CreateEndpoints(ctx, e)
	if apierrors.IsAlreadyExists(err) {
		*w.conflicts++
	}
	return out, err
}

func (w splitWriter) UpdateEndpoints(ctx context.Context, e *corev1.Endpoints) (*corev1.Endpoints, error) {
	out, err := w.endpoints.UpdateEndpoints(ctx, e)
	if apierrors.IsConflict(err) {
		*w.conflicts++
	}
	return out, err
}

// versioned is a fake clientset that gives every write a new
// resourceVersion and refuses updates from an old one, as the API server
// does (the fake tracker checks neither).
func versioned(objs ...runtime.Object) *fake.Clientset {
	c := fake.NewClientset(objs...)
	rv := 100
	c.PrependReactor("*", "endpoints", func(a k8stesting.Action) (bool, runtime.Object, error) {
		var e *corev1.Endpoints
		switch a := a.(type) {
		case k8stesting.CreateAction:
			e = a.GetObject().(*corev1.Endpoints).DeepCopy()
		case k8stesting.UpdateAction:
			e = a.GetObject().(*corev1.Endpoints).DeepCopy()
			old, err := c.Tracker().Get(a.GetResource(), e.Namespace, e.Name)
			if err != nil {
				return true, nil, err
			}
			if old.(*corev1.Endpoints).ResourceVersion != e.ResourceVersion {
				return true, nil, apierrors.NewConflict(schema.GroupResource{Resource: "endpoints"}, e.Name, errors.New("the object has been modified"))
			}
		default:
			return false, nil, nil
		}
		rv++
		e.ResourceVersion = strconv.Itoa(rv)
		var err error
		if a.GetVerb() == "create" {
			err = c.Tracker().Create(a.GetResource(), e, e.Namespace)
		} else {
			err = c.Tracker().Update(a.GetResource(), e, e.Namespace)
		}
		if err != nil {
			return true, nil, err
		}
		return true, e, nil
	})
	return c
}

// Syncs that run before the Endpoints informer shows the controller's
// previous writes build on what those writes returned: no AlreadyExists,
// no Conflict, and the Endpoints follow every change. Once the informer
// shows a version the controller did not write, that one counts.
func TestEndpointsAfterOwnWrites(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	pod := func(name, ip string, ready bool) *corev1.Pod {
		st := corev1.ConditionFalse
		if ready {
			st = corev1.ConditionTrue
		}
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, Labels: map[string]string{"app": "web"}},
			Spec:       corev1.PodSpec{NodeName: "node-1"},
			Status: corev1.PodStatus{PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}},
				Conditions: []corev1.PodCondition{{Type: corev1.PodReady, Status: st}}},
		}
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "web", UID: "svc-uid"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "web"}},
	}
	client := fake.NewClientset(pod("web-0", "198.18.0.5", false), svc)
	epClient := versioned()
	factory := informers.NewSharedInformerFactory(client, 0)
	conflicts := 0
	c := NewWithWriter(splitWriter{namingWriter{ClientWriter{Client: client}}, ClientWriter{Client: epClient}, &conflicts}, factory, slog.New(slog.DiscardHandler))
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	defer cancel()
	factory.WaitForCacheSync(ctx.Done())

	const key = "default/web"
	addresses := func() (ready, notReady int) {
		t.Helper()
		ep, err := epClient.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range ep.Subsets {
			ready += len(s.Addresses)
			notReady += len(s.NotReadyAddresses)
		}
		return ready, notReady
	}
	// sync waits until the informers show the pods' change, then syncs
	// (twice: the second one must find nothing to write).
	sync := func(what string, ready, notReady int) {
		t.Helper()
		waitFor(t, what+" in the pod informer", func() (bool, error) {
			pods, _ := c.pods.Pods("default").List(labels.Everything())
			r, n := 0, 0
			for _, p := range pods {
				if podReady(p) {
					r++
				} else {
					n++
				}
			}
			return r == ready && n == notReady, nil
		})
		waitFor(t, what+": the slices written", func() (bool, error) {
			err := c.Sync(ctx, key)
			if conflicts != 0 {
				return false, fmt.Errorf("%d Endpoints writes refused as stale", conflicts)
			}
			if errors.Is(err, errStale) {
				return false, nil // the slice informer has not shown the slice writes yet
			}
			return err == nil, err
		})
		if r, n := addresses(); r != ready || n != notReady {
			t.Fatalf("%s: Endpoints have %d ready and %d not-ready addresses; want %d and %d", what, r, n, ready, notReady)
		}
		if conflicts != 0 {
			t.Fatalf("%s: %d Endpoints writes refused as stale", what, conflicts)
		}
	}
	sync("the first pod", 0, 1)
	if _, err := client.CoreV1().Pods("default").UpdateStatus(ctx, pod("web-0", "198.18.0.5", true), metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	sync("the first pod ready", 1, 0)
	if _, err := client.CoreV1().Pods("default").Create(ctx, pod("web-1", "198.18.0.6", false), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sync("a second pod", 1, 1)

	// Another writer changes the Endpoints, and the informer shows that
	// version: the controller goes by it (and puts its addresses back).
	ep, err := epClient.CoreV1().Endpoints("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ep.Subsets = nil
	if ep, err = epClient.CoreV1().Endpoints("default").Update(ctx, ep, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := factory.Core().V1().Endpoints().Informer().GetIndexer().Add(ep); err != nil {
		t.Fatal(err)
	}
	if err := c.Sync(ctx, key); err != nil {
		t.Fatalf("sync after another writer: %v", err)
	}
	if r, n := addresses(); r != 1 || n != 1 {
		t.Fatalf("after another writer: %d ready and %d not-ready addresses; want 1 and 1", r, n)
	}
	if conflicts != 0 {
		t.Fatalf("after another writer: %d Endpoints writes refused as stale", conflicts)
	}
}
