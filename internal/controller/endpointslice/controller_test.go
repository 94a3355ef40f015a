package endpointslice

import (
	"context"
	"log/slog"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes/fake"
)

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond wait.ConditionFunc) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(t.Context(), 5*time.Millisecond, 10*time.Second, true, cond.WithContext()); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// failingEndpoints is the client writer whose Endpoints creates fail while
// fail is set, as when the Endpoints cache is behind; it names slices the
// way the API server would.
type failingEndpoints struct {
	ClientWriter
	fail *bool
}

func (w failingEndpoints) CreateSlice(ctx context.Context, s *discoveryv1.EndpointSlice) (*discoveryv1.EndpointSlice, error) {
	if s.Name == "" {
		s = s.DeepCopy()
		s.Name = s.GenerateName + "abcde"
	}
	return w.ClientWriter.CreateSlice(ctx, s)
}

func (w failingEndpoints) CreateEndpoints(ctx context.Context, e *corev1.Endpoints) error {
	if *w.fail {
		return apierrors.NewAlreadyExists(schema.GroupResource{Resource: "endpoints"}, e.Name)
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
	c := NewWithWriter(failingEndpoints{ClientWriter{Client: client}, &fail}, factory, slog.New(slog.DiscardHandler))
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
