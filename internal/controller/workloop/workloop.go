// Package workloop is the queue-and-workers loop every controller runs.
//
// A controller's informer event handlers Add keys (usually
// "namespace/name"); Run waits for the informers' caches, then runs workers
// that hand each key to the controller's sync function until the context
// ends:
//
//	type Controller struct {
//		queue *workloop.Loop[string]
//		...
//	}
//
//	func New(...) *Controller {
//		c := &Controller{...}
//		c.queue = workloop.New("statefulset", log, c.sync)
//		informer.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: c.enqueue, ...})
//		return c
//	}
//
//	func (c *Controller) Run(ctx context.Context) { c.queue.Run(ctx, 4, informer.HasSynced) }
//
//	func (c *Controller) sync(ctx context.Context, key string) error { ... }
//
// The loop gives the guarantees controllers rely on:
//
//   - one key is synced by one worker at a time; a key added while it is
//     being synced is synced again afterwards, and a key added many times
//     before a worker takes it is synced once;
//   - a sync that returns an error is retried after a per-key exponential
//     backoff (client-go's default controller rate limiter: 5ms doubling up
//     to 1000s, within an overall 10/s, burst 100 bucket), and the failure is
//     logged at Debug (see LogRetriesAt);
//   - a sync that returns nil has its key's backoff forgotten. To look at a
//     key again later whatever happens (a deadline, minReadySeconds, a cache
//     known to lag a write), the sync returns the delay (NewAfter) or calls
//     AddAfter itself, and returns nil;
//   - when the context ends the queue shuts down, the syncs in flight see
//     their context cancelled, what they return then is not retried, keys
//     still queued are not synced, and Run returns once every worker has
//     stopped. A Loop runs once: it cannot be started again after that.
package workloop

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// SyncFunc brings what key names to its desired state. It returns an error
// to have the key retried with backoff.
type SyncFunc[K comparable] func(ctx context.Context, key K) error

// SyncAfterFunc is a SyncFunc that also returns when it wants its key
// synced again whatever happens (0: only on events).
type SyncAfterFunc[K comparable] func(ctx context.Context, key K) (time.Duration, error)

// Loop is a rate-limited queue of keys and the workers that drain it.
// Its methods are safe for concurrent use.
type Loop[K comparable] struct {
	name  string
	queue workqueue.TypedRateLimitingInterface[K]
	sync  SyncFunc[K]
	log   *slog.Logger
	level slog.Level
}

// New returns a loop that hands keys to sync. The name names the queue (in
// client-go's workqueue metrics) and the loop's log lines; log may be nil.
func New[K comparable](name string, log *slog.Logger, sync SyncFunc[K]) *Loop[K] {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Loop[K]{
		name: name,
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[K](),
			workqueue.TypedRateLimitingQueueConfig[K]{Name: name}),
		sync:  sync,
		log:   log,
		level: slog.LevelDebug,
	}
}

// NewAfter is New for a sync that returns when to look at its key again:
// after a nil error and a positive delay the key is queued again after
// that delay (an error is retried with backoff as with New).
func NewAfter[K comparable](name string, log *slog.Logger, sync SyncAfterFunc[K]) *Loop[K] {
	l := New[K](name, log, nil)
	l.sync = func(ctx context.Context, key K) error {
		after, err := sync(ctx, key)
		if err == nil && after > 0 {
			l.queue.AddAfter(key, after)
		}
		return err
	}
	return l
}

// LogRetriesAt sets the level at which failed syncs are logged (Debug by
// default) and returns l. Call it before Run.
func (l *Loop[K]) LogRetriesAt(level slog.Level) *Loop[K] {
	l.level = level
	return l
}

// Add queues key to be synced as soon as a worker is free.
func (l *Loop[K]) Add(key K) { l.queue.Add(key) }

// AddAfter queues key to be synced once d has passed (at once if d <= 0).
func (l *Loop[K]) AddAfter(key K, d time.Duration) { l.queue.AddAfter(key, d) }

// Len is the number of keys waiting for a worker (not those waiting for a
// delay or a backoff to pass).
func (l *Loop[K]) Len() int { return l.queue.Len() }

// Run waits for the caches of synced, then syncs keys with the given number
// of workers (at least one) until ctx ends. It returns when every worker has
// stopped, or at once if ctx ends before the caches are synced.
func (l *Loop[K]) Run(ctx context.Context, workers int, synced ...cache.InformerSynced) {
	defer l.queue.ShutDown()
	if len(synced) > 0 && !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	workers = max(workers, 1)
	var wg sync.WaitGroup
	wg.Add(workers)
	for range workers {
		go func() {
			defer wg.Done()
			for l.next(ctx) {
			}
		}()
	}
	<-ctx.Done()
	l.queue.ShutDown()
	wg.Wait()
}

// ShutDown stops the queue (and its timers) without running it: for a
// controller whose Run fails before it runs the loop. Run shuts the queue
// down itself.
func (l *Loop[K]) ShutDown() { l.queue.ShutDown() }

// next syncs one key; it returns false once the queue is shut down.
func (l *Loop[K]) next(ctx context.Context) bool {
	key, quit := l.queue.Get()
	if quit {
		return false
	}
	defer l.queue.Done(key)
	if ctx.Err() != nil {
		// Shutting down: what is still queued is not synced.
		l.queue.Forget(key)
		return true
	}
	err := l.sync(ctx, key)
	switch {
	case err == nil, ctx.Err() != nil:
		l.queue.Forget(key)
	default:
		l.log.Log(ctx, l.level, "sync failed, retrying", "queue", l.name, "key", key, "err", err)
		l.queue.AddRateLimited(key)
	}
	return true
}
