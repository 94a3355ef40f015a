// Package kubeletsim is a simulated kubelet for tests and benchmarks: it
// registers a Ready node, renews the node's Lease while it runs (so the node
// lifecycle controller keeps the node Ready), and, for every pod bound to
// it, writes the status a kubelet would (Running, an IP, Ready) and
// finishes graceful deletions. It runs nothing.
package kubeletsim

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/headway/headway/internal/controller/workloop"
)

// Kubelet is a simulated node.
type Kubelet struct {
	Client kubernetes.Interface
	// Node is the node's name.
	Node string
	// Ready decides whether a pod becomes Ready (nil: every pod does). It
	// gets a copy of the pod with its IP (status.podIP) already chosen.
	Ready func(*corev1.Pod) bool
	// PodCIDR is where pod IPs come from, the first two addresses left out
	// (the zero value: 198.18.0.0/16, as 198.18.N.M with M from 2 to 251).
	// A range inside 127.0.0.0/8 lets simulated pods serve on loopback.
	PodCIDR netip.Prefix
	// TerminationDelay is how long a deleted pod stays terminating (its
	// status unchanged, as a pod shutting down gracefully serves on) before
	// the kubelet finishes the deletion; 0 finishes it at once.
	TerminationDelay time.Duration
	// Workers is how many pods are handled at once (default 8).
	Workers int
	// LeaseDuration is the node Lease's duration, renewed every quarter of
	// it while Run runs (default 40s, the kubelet's).
	LeaseDuration time.Duration

	// Writes counts the API writes the simulated kubelet made.
	Writes atomic.Int64

	mu     sync.Mutex
	queue  *workloop.Loop[string]
	nextIP int
	ips    map[string]string
	// deleted is when each deleted pod (by UID) was first seen deleted.
	deleted map[string]time.Time
}

// RegisterNode creates the node and marks it Ready.
func (k *Kubelet) RegisterNode(ctx context.Context) error {
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: k.Node, Labels: map[string]string{corev1.LabelHostname: k.Node}}}
	created, err := k.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		created, err = k.Client.CoreV1().Nodes().Get(ctx, k.Node, metav1.GetOptions{})
	}
	if err != nil {
		return err
	}
	created.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		LastHeartbeatTime: metav1.Now(), LastTransitionTime: metav1.Now()}}
	_, err = k.Client.CoreV1().Nodes().UpdateStatus(ctx, created, metav1.UpdateOptions{})
	return err
}

func (k *Kubelet) ip(pod *corev1.Pod) string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ips == nil {
		k.ips = map[string]string{}
	}
	key := string(pod.UID)
	if ip, ok := k.ips[key]; ok {
		return ip
	}
	k.nextIP++
	ip := fmt.Sprintf("198.18.%d.%d", k.nextIP/250, k.nextIP%250+2)
	if k.PodCIDR.IsValid() {
		a := k.PodCIDR.Masked().Addr()
		for range k.nextIP + 1 {
			a = a.Next()
		}
		ip = a.String()
	}
	k.ips[key] = ip
	return ip
}

// Run handles the node's pods until ctx ends.
func (k *Kubelet) Run(ctx context.Context) {
	factory := informers.NewSharedInformerFactoryWithOptions(k.Client, 0, informers.WithTweakListOptions(func(o *metav1.ListOptions) {
		o.FieldSelector = fields.OneTermEqualSelector("spec.nodeName", k.Node).String()
	}))
	inf := factory.Core().V1().Pods()
	queue := workloop.New("kubeletsim", nil, func(ctx context.Context, key string) error {
		ns, name, _ := cache.SplitMetaNamespaceKey(key)
		pod, err := inf.Lister().Pods(ns).Get(name)
		if err == nil {
			err = k.sync(ctx, pod)
		}
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
	k.mu.Lock()
	k.queue = queue
	k.mu.Unlock()
	add := func(obj any) {
		if key, err := cache.DeletionHandlingMetaNamespaceKeyFunc(obj); err == nil {
			queue.Add(key)
		}
	}
	inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: add, UpdateFunc: func(_, o any) { add(o) }})
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	leaseDone := make(chan struct{})
	go func() { defer close(leaseDone); k.renewLease(ctx) }()
	defer func() { <-leaseDone }()
	workers := k.Workers
	if workers <= 0 {
		workers = 8
	}
	queue.Run(ctx, workers, inf.Informer().HasSynced)
}

// renewLease renews the node's Lease in kube-node-lease every quarter of
// LeaseDuration until ctx ends, as the kubelet does.
func (k *Kubelet) renewLease(ctx context.Context) {
	d := k.LeaseDuration
	if d <= 0 {
		d = 40 * time.Second
	}
	secs := int32(max(d/time.Second, 1))
	leases := k.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	for {
		now := metav1.NewMicroTime(time.Now())
		l, err := leases.Get(ctx, k.Node, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			_, err = leases.Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: k.Node, Namespace: corev1.NamespaceNodeLease},
				Spec: coordinationv1.LeaseSpec{HolderIdentity: &k.Node, LeaseDurationSeconds: &secs, RenewTime: &now}}, metav1.CreateOptions{})
		case err == nil:
			l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &k.Node, &secs, &now
			_, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		}
		_ = err // a failed renewal is tried again at the next tick, as the kubelet does
		select {
		case <-ctx.Done():
			return
		case <-time.After(d / 4):
		}
	}
}

// terminating is how much longer a deleted pod stays terminating: the
// delay from when this kubelet first saw it deleted.
func (k *Kubelet) terminating(pod *corev1.Pod) time.Duration {
	if k.TerminationDelay <= 0 {
		return 0
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.deleted == nil {
		k.deleted = map[string]time.Time{}
	}
	seen, ok := k.deleted[string(pod.UID)]
	if !ok {
		seen = time.Now()
		k.deleted[string(pod.UID)] = seen
	}
	return time.Until(seen.Add(k.TerminationDelay))
}

func condition(pod *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range pod.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func (k *Kubelet) sync(ctx context.Context, pod *corev1.Pod) error {
	if pod.DeletionTimestamp != nil {
		if left := k.terminating(pod); left > 0 {
			k.queue.AddAfter(cache.MetaObjectToName(pod).String(), left)
			return nil
		}
		uid := pod.UID
		zero := int64(0)
		k.Writes.Add(1)
		err := k.Client.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
		if apierrors.IsConflict(err) {
			return nil
		}
		return err
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return nil
	}
	p := pod.DeepCopy()
	ip := k.ip(pod)
	p.Status.PodIP = ip
	ready := k.Ready == nil || k.Ready(p)
	want := corev1.ConditionFalse
	if ready {
		want = corev1.ConditionTrue
	}
	if pod.Status.Phase == corev1.PodRunning && condition(pod, corev1.PodReady) == want {
		return nil
	}
	now := metav1.Now()
	p.Status.Phase = corev1.PodRunning
	p.Status.PodIP = ip
	p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	p.Status.HostIP = "127.0.0.1"
	p.Status.HostIPs = []corev1.HostIP{{IP: "127.0.0.1"}}
	if p.Status.StartTime == nil {
		p.Status.StartTime = &now
	}
	p.Status.Conditions = []corev1.PodCondition{
		{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
		{Type: corev1.ContainersReady, Status: want, LastTransitionTime: now},
		{Type: corev1.PodReady, Status: want, LastTransitionTime: now},
	}
	p.Status.ContainerStatuses = nil
	for _, c := range p.Spec.Containers {
		p.Status.ContainerStatuses = append(p.Status.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, Ready: ready, Started: &ready,
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		})
	}
	k.Writes.Add(1)
	_, err := k.Client.CoreV1().Pods(p.Namespace).UpdateStatus(ctx, p, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return err // retried with the newer pod
	}
	return err
}

// Touch makes the kubelet look at a pod again (after Ready changes its mind).
func (k *Kubelet) Touch(ns, name string) {
	k.mu.Lock()
	q := k.queue
	k.mu.Unlock()
	if q != nil {
		q.Add(ns + "/" + name)
	}
}

// Start registers a kubelet for node-1 and runs it until the test ends.
func Start(t testing.TB, ctx context.Context, client kubernetes.Interface) *Kubelet {
	t.Helper()
	k := &Kubelet{Client: client, Node: "node-1"}
	if err := k.RegisterNode(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	kctx, cancel := context.WithCancel(ctx)
	go func() { defer close(done); k.Run(kctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return k
}
