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
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/informers"
	coreinformers "k8s.io/client-go/informers/core/v1"
	discoveryinformers "k8s.io/client-go/informers/discovery/v1"
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
	// The informers cache the model's records (toCached), and index
	// nothing: the builder looks objects up in the model, never in them.
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithTransform(toCached))
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
	if err := add(informerOf(factory, &corev1.Service{}), evService); err != nil {
		return err
	}
	if err := add(informerOf(factory, &discoveryv1.EndpointSlice{}), evSlice); err != nil {
		return err
	}
	if err := add(informerOf(factory, &corev1.Namespace{}), evNamespace); err != nil {
		return err
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer factory.Shutdown()
	if b.cfg.PodMode == PodsVerified {
		if podsServed(ctx, client) {
			if err := add(informerOf(factory, &corev1.Pod{}), evPod); err != nil {
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
						inf := informerOf(factory, &corev1.Pod{})
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

// toEvent is the event of an object the informers cached (toCached);
// old is its previous version on an update. Anything else is an event of
// no kind.
func toEvent(kind eventKind, obj, old any, deleted bool, at time.Time) event {
	c, ok := obj.(*cached)
	if !ok {
		return event{kind: 255}
	}
	ev := event{kind: kind, deleted: deleted, at: at, namespace: c.namespace, name: c.name,
		svc: c.svc, slice: c.slice, pod: c.pod}
	switch kind {
	case evNamespace:
		ev.namespace = ""
	case evSlice:
		if !at.IsZero() && !deleted && c.trigger != 0 {
			// Time the change from when it was made, when the writer says.
			var prev int64
			if o, ok := old.(*cached); ok {
				prev = o.trigger
			}
			if t := time.Unix(0, c.trigger); c.trigger != prev && t.Before(at) {
				ev.at = t
			}
		}
	}
	return ev
}

// informerOf is the factory's informer of obj's kind (a Service,
// EndpointSlice, Namespace or Pod), made without the namespace index the
// factory's own informers keep.
func informerOf(factory informers.SharedInformerFactory, obj runtime.Object) cache.SharedIndexInformer {
	return factory.InformerFor(obj, func(c kubernetes.Interface, resync time.Duration) cache.SharedIndexInformer {
		none := cache.Indexers{}
		switch obj.(type) {
		case *corev1.Service:
			return coreinformers.NewServiceInformer(c, metav1.NamespaceAll, resync, none)
		case *discoveryv1.EndpointSlice:
			return discoveryinformers.NewEndpointSliceInformer(c, metav1.NamespaceAll, resync, none)
		case *corev1.Namespace:
			return coreinformers.NewNamespaceInformer(c, resync, none)
		default:
			return coreinformers.NewPodInformer(c, metav1.NamespaceAll, resync, none)
		}
	})
}

// podsServed tells whether the API serves pods (Headway grows resources
// over time; any real cluster does).
func podsServed(ctx context.Context, client kubernetes.Interface) bool {
	_, err := client.CoreV1().Pods("").List(ctx, metav1.ListOptions{Limit: 1})
	return err == nil || !apierrors.IsNotFound(err)
}
