package dns

import (
	"runtime/debug"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
)

// builder is the informer side: it folds cluster changes into the model
// and publishes each new Index to the handler, which only ever reads a
// published one. One goroutine at a time uses it (run's, or apply's
// caller).
type builder struct {
	cfg     *Config
	model   *model
	metrics *Metrics
	publish func(*Index)
}

// newBuilder returns the builder of an empty cluster over zones, and
// publishes its first (unsynced) Index.
func newBuilder(cfg *Config, zones []*zone, metrics *Metrics, publish func(*Index)) *builder {
	b := &builder{cfg: cfg, model: newModel(cfg, zones), metrics: metrics, publish: publish}
	publish(b.model.cur)
	return b
}

// update folds a batch of informer events in and publishes the result.
func (b *builder) update(evs []event) {
	start := time.Now()
	wasSynced := b.model.synced
	ix := b.model.apply(evs)
	b.publish(ix)
	b.metrics.IndexUpdate.Observe(time.Since(start).Seconds())
	b.metrics.Names.Set(float64(ix.names))
	if ix.synced && !wasSynced {
		// The initial lists decoded every object whole before the
		// informers slimmed them: give that garbage back to the system
		// once, rather than keep the peak resident.
		debug.FreeOSMemory()
	}
}

// apply folds Services, EndpointSlices, Namespaces and Pods in directly,
// without informers (converted as the informers convert them); other
// objects are ignored. The index is marked synced.
func (b *builder) apply(objs []any) {
	evs := make([]event, 0, len(objs)+1)
	for _, o := range objs {
		var kind eventKind
		switch o.(type) {
		case *corev1.Service:
			kind = evService
		case *discoveryv1.EndpointSlice:
			kind = evSlice
		case *corev1.Namespace:
			kind = evNamespace
		case *corev1.Pod:
			kind = evPod
		default:
			continue
		}
		c, _ := toCached(o)
		evs = append(evs, toEvent(kind, c, nil, false, time.Now()))
	}
	evs = append(evs, event{kind: evSynced})
	b.publish(b.model.apply(evs))
}
