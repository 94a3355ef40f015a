package endpointslice_test

import (
	"context"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/internal/testing/kubeletsim"
)

type readiness struct {
	mu       sync.Mutex
	notReady map[string]bool
}

func (r *readiness) ready(p *corev1.Pod) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return !r.notReady[p.Name]
}

func (r *readiness) set(name string, notReady bool) {
	r.mu.Lock()
	r.notReady[name] = notReady
	r.mu.Unlock()
}

func slicesOf(ctx context.Context, client kubernetes.Interface, svc string) ([]discoveryv1.EndpointSlice, error) {
	l, err := client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=" + svc})
	if err != nil {
		return nil, err
	}
	return l.Items, nil
}

// conditions maps pod name → ready condition in the service's slices.
func conditions(ctx context.Context, client kubernetes.Interface, svc string) (map[string]bool, error) {
	sl, err := slicesOf(ctx, client, svc)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, s := range sl {
		for _, ep := range s.Endpoints {
			out[ep.TargetRef.Name] = *ep.Conditions.Ready
		}
	}
	return out, nil
}

func TestPublishNotReadyAndMinimalUpdates(t *testing.T) {
	c := cluster.Start(t)
	ctx := t.Context()
	client := c.Client
	r := &readiness{notReady: map[string]bool{"web-1": true, "web-2": true}}
	k := &kubeletsim.Kubelet{Client: client, Node: "node-1", Ready: r.ready}
	if err := k.RegisterNode(ctx); err != nil {
		t.Fatal(err)
	}
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); k.Run(kctx) }()
	t.Cleanup(func() { cancel(); <-done })

	mkSvc := func(name string, publish bool) {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.ServiceSpec{
				ClusterIP: corev1.ClusterIPNone, PublishNotReadyAddresses: publish,
				Selector: map[string]string{"app": "nginx"},
				Ports:    []corev1.ServicePort{{Name: "web", Port: 80, TargetPort: intstr.FromString("web")}},
			},
		}
		if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	mkSvc("nginx-headless", false)
	mkSvc("nginx-all", true)
	replicas := int32(3)
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: "nginx-headless", Replicas: &replicas, PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "nginx"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "nginx"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:alpine",
					Ports: []corev1.ContainerPort{{ContainerPort: 8080, Name: "web"}}}}},
			},
		},
	}
	if _, err := client.AppsV1().StatefulSets("default").Create(ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"web-0": true, "web-1": false, "web-2": false}
	cluster.WaitFor(t, 20*time.Second, "not-ready pods in nginx-headless as not ready", func() (bool, error) {
		got, err := conditions(ctx, client, "nginx-headless")
		return len(got) == 3 && got["web-0"] == want["web-0"] && got["web-1"] == want["web-1"] && got["web-2"] == want["web-2"], err
	})
	cluster.WaitFor(t, 20*time.Second, "every pod ready in nginx-all (publishNotReadyAddresses)", func() (bool, error) {
		got, err := conditions(ctx, client, "nginx-all")
		return len(got) == 3 && got["web-0"] && got["web-1"] && got["web-2"], err
	})
	sl, err := slicesOf(ctx, client, "nginx-all")
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range sl[0].Endpoints {
		// Hostnames only for the service the pods name as subdomain.
		if ep.Hostname != nil {
			t.Fatalf("nginx-all endpoint %s has hostname %q; pods' subdomain is nginx-headless", ep.TargetRef.Name, *ep.Hostname)
		}
		if *sl[0].Ports[0].Port != 8080 {
			t.Fatalf("named port resolved to %d", *sl[0].Ports[0].Port)
		}
	}
	// The legacy Endpoints are written after the slices, in the same sync.
	cluster.WaitFor(t, 20*time.Second, "legacy Endpoints with one ready and two not-ready addresses", func() (bool, error) {
		e, err := client.CoreV1().Endpoints("default").Get(ctx, "nginx-headless", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil && len(e.Subsets) == 1 && len(e.Subsets[0].Addresses) == 1 && len(e.Subsets[0].NotReadyAddresses) == 2, err
	})

	// web-1 becomes Ready: one slice rewritten, its generation +1, the
	// trigger time moves forward.
	before, _ := slicesOf(ctx, client, "nginx-headless")
	if len(before) != 1 {
		t.Fatalf("%d slices", len(before))
	}
	r.set("web-1", false)
	k.Touch("default", "web-1")
	cluster.WaitFor(t, 20*time.Second, "web-1 ready in the slice", func() (bool, error) {
		got, err := conditions(ctx, client, "nginx-headless")
		return got["web-1"], err
	})
	after, _ := slicesOf(ctx, client, "nginx-headless")
	if len(after) != 1 || after[0].Name != before[0].Name || after[0].Generation != before[0].Generation+1 {
		t.Fatalf("slice %s gen %d → %s gen %d; want the same slice, one write", before[0].Name, before[0].Generation, after[0].Name, after[0].Generation)
	}
	t0, err1 := time.Parse(time.RFC3339Nano, before[0].Annotations[corev1.EndpointsLastChangeTriggerTime])
	t1, err2 := time.Parse(time.RFC3339Nano, after[0].Annotations[corev1.EndpointsLastChangeTriggerTime])
	if err1 != nil || err2 != nil || !t1.After(t0) {
		t.Fatalf("trigger times %v → %v (%v %v)", t0, t1, err1, err2)
	}

	// Deleting the service removes its Endpoints; the slices go with the
	// garbage collector.
	if err := client.CoreV1().Services("default").Delete(ctx, "nginx-all", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 20*time.Second, "nginx-all's Endpoints and slices gone", func() (bool, error) {
		_, err := client.CoreV1().Endpoints("default").Get(ctx, "nginx-all", metav1.GetOptions{})
		sl, lerr := slicesOf(ctx, client, "nginx-all")
		return err != nil && len(sl) == 0, lerr
	})
}

func TestServiceWithoutPodsGetsPlaceholder(t *testing.T) {
	c := cluster.Start(t)
	ctx := t.Context()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "empty"},
		Spec:       corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "none"}},
	}
	if _, err := c.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 10*time.Second, "one empty slice", func() (bool, error) {
		sl, err := slicesOf(ctx, c.Client, "empty")
		return len(sl) == 1 && len(sl[0].Endpoints) == 0, err
	})
}
