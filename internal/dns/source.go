package dns

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
)

// eventQueue hands informer events to the index builder without blocking
// the informers: the builder takes everything queued at once, so a burst
// of changes becomes one index update.
type eventQueue struct {
	mu     sync.Mutex
	evs    []event
	notify chan struct{}
}

func (q *eventQueue) push(ev event) {
	q.mu.Lock()
	q.evs = append(q.evs, ev)
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
}

func (q *eventQueue) drain() []event {
	q.mu.Lock()
	defer q.mu.Unlock()
	evs := q.evs
	q.evs = nil
	return evs
}

// run keeps the index current from Services, EndpointSlices, Namespaces
// and (pod records mode verified) Pods of the API behind client, until ctx
// ends: informers push events, and the loop folds whatever is queued into
// one index update. It works against any Kubernetes API server.
func (b *builder) run(ctx context.Context, client kubernetes.Interface) error {
	log := b.cfg.Logger
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(slim))
	q := &eventQueue{notify: make(chan struct{}, 1)}
	var synced atomic.Bool
	at := func() time.Time {
		if !synced.Load() {
			return time.Time{} // the initial list: nothing to time
		}
		return time.Now()
	}
	handler := func(kind eventKind) cache.ResourceEventHandlerFuncs {
		return cache.ResourceEventHandlerFuncs{
			AddFunc:    func(obj any) { q.push(toEvent(kind, obj, nil, false, at())) },
			UpdateFunc: func(old, obj any) { q.push(toEvent(kind, obj, old, false, at())) },
			DeleteFunc: func(obj any) {
				if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
					obj = t.Obj
				}
				q.push(toEvent(kind, obj, nil, true, at()))
			},
		}
	}
	// The registrations' sync checkers close a channel when done
	// (cache.WaitForCacheSync would poll every 100 ms, and the first
	// answer would wait for the poll).
	var hasSynced []cache.DoneChecker
	add := func(inf cache.SharedIndexInformer, kind eventKind) error {
		reg, err := inf.AddEventHandler(handler(kind))
		if err != nil {
			return err
		}
		hasSynced = append(hasSynced, reg.HasSyncedChecker())
		return nil
	}
	if err := add(factory.Core().V1().Services().Informer(), evService); err != nil {
		return err
	}
	if err := add(factory.Discovery().V1().EndpointSlices().Informer(), evSlice); err != nil {
		return err
	}
	if err := add(factory.Core().V1().Namespaces().Informer(), evNamespace); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer factory.Shutdown()
	if b.cfg.PodMode == PodsVerified {
		if podsServed(ctx, client) {
			if err := add(factory.Core().V1().Pods().Informer(), evPod); err != nil {
				return err
			}
		} else {
			// Start without pods rather than never: pod records answer
			// NXDOMAIN until the API serves pods.
			log.Warn("the API server does not serve pods; pod records (a-b-c-d.<ns>.pod) stay empty until it does")
			wg.Add(1)
			go func() {
				defer wg.Done()
				t := time.NewTicker(5 * time.Second)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
					}
					if podsServed(ctx, client) {
						inf := factory.Core().V1().Pods().Informer()
						if _, err := inf.AddEventHandler(handler(evPod)); err == nil {
							factory.Start(ctx.Done())
							log.Info("the API server serves pods now; watching them for pod records")
						}
						return
					}
				}
			}()
		}
	}
	factory.Start(ctx.Done())
	wg.Add(1)
	go func() {
		defer wg.Done()
		start := time.Now()
		for _, c := range hasSynced {
			select {
			case <-c.Done():
			case <-ctx.Done():
				return
			}
		}
		q.push(event{kind: evSynced})
		synced.Store(true)
		log.Info("cluster DNS synced with the API", "after", time.Since(start).Round(time.Millisecond))
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-q.notify:
		}
		evs := q.drain()
		if len(evs) == 0 {
			continue
		}
		b.update(evs)
	}
}

func toEvent(kind eventKind, obj, old any, deleted bool, at time.Time) event {
	ev := event{kind: kind, deleted: deleted, at: at}
	m, ok := obj.(metav1.Object)
	if !ok {
		return event{kind: 255}
	}
	ev.namespace, ev.name = m.GetNamespace(), m.GetName()
	switch o := obj.(type) {
	case *corev1.Service:
		ev.svc = o
	case *discoveryv1.EndpointSlice:
		ev.slice = o
		if !at.IsZero() && !deleted {
			// Time the change from when it was made, when the writer says.
			prev := ""
			if os, ok := old.(*discoveryv1.EndpointSlice); ok {
				prev = os.Annotations[corev1.EndpointsLastChangeTriggerTime]
			}
			if v := o.Annotations[corev1.EndpointsLastChangeTriggerTime]; v != "" && v != prev {
				if t, err := time.Parse(time.RFC3339Nano, v); err == nil && t.Before(at) {
					ev.at = t
				}
			}
		}
	case *corev1.Namespace:
		ev.namespace, ev.name = "", o.Name
	case *corev1.Pod:
		ev.pod = o
	}
	return ev
}

// slim keeps of an object only what the index reads before the informer
// caches it: the informers' copies are most of what the DNS server holds
// (managed fields, owner references, topology, target references and
// most annotations and labels go; pods keep their addresses only).
func slim(obj any) (any, error) {
	meta := func(o metav1.Object, labels map[string]string) metav1.ObjectMeta {
		m := metav1.ObjectMeta{Name: o.GetName(), Namespace: o.GetNamespace(), UID: o.GetUID(), ResourceVersion: o.GetResourceVersion(),
			DeletionTimestamp: o.GetDeletionTimestamp(), Labels: labels}
		if a := o.GetAnnotations(); len(a) > 0 {
			for _, k := range []string{corev1.EndpointsLastChangeTriggerTime, "service.alpha.kubernetes.io/tolerate-unready-endpoints"} {
				if v, ok := a[k]; ok {
					if m.Annotations == nil {
						m.Annotations = map[string]string{}
					}
					m.Annotations[k] = v
				}
			}
		}
		return m
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: o.Name, Namespace: o.Namespace, UID: o.UID, ResourceVersion: o.ResourceVersion, DeletionTimestamp: o.DeletionTimestamp},
			Status:     corev1.PodStatus{PodIP: o.Status.PodIP, PodIPs: o.Status.PodIPs},
		}, nil
	case *discoveryv1.EndpointSlice:
		var labels map[string]string
		if v, ok := o.Labels[discoveryv1.LabelServiceName]; ok {
			labels = map[string]string{discoveryv1.LabelServiceName: v}
		}
		s := &discoveryv1.EndpointSlice{ObjectMeta: meta(o, labels), AddressType: o.AddressType, Ports: o.Ports}
		if len(o.Endpoints) > 0 {
			s.Endpoints = make([]discoveryv1.Endpoint, len(o.Endpoints))
			for i, e := range o.Endpoints {
				s.Endpoints[i] = discoveryv1.Endpoint{Addresses: e.Addresses, Hostname: e.Hostname,
					Conditions: discoveryv1.EndpointConditions{Ready: e.Conditions.Ready}}
			}
		}
		return s, nil
	case *corev1.Service:
		ports := make([]corev1.ServicePort, len(o.Spec.Ports))
		for i, p := range o.Spec.Ports {
			ports[i] = corev1.ServicePort{Name: p.Name, Protocol: p.Protocol, Port: p.Port}
		}
		return &corev1.Service{ObjectMeta: meta(o, nil), Spec: corev1.ServiceSpec{
			Type: o.Spec.Type, ClusterIP: o.Spec.ClusterIP, ClusterIPs: o.Spec.ClusterIPs, ExternalName: o.Spec.ExternalName,
			Ports: ports, PublishNotReadyAddresses: o.Spec.PublishNotReadyAddresses}}, nil
	case *corev1.Namespace:
		return &corev1.Namespace{ObjectMeta: meta(o, nil)}, nil
	case metav1.Object:
		o.SetManagedFields(nil)
		return obj, nil
	}
	return obj, nil
}

// podsServed tells whether the API serves pods (Headway grows resources
// over time; any real cluster does).
func podsServed(ctx context.Context, client kubernetes.Interface) bool {
	_, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 1})
	return err == nil || !apierrors.IsNotFound(err)
}
