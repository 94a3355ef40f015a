package replicaset

import (
	"sync"
	"time"
)

// ExpectationsTTL is how long the controller waits for the informer to show
// its own writes before it decides again anyway.
const ExpectationsTTL = 5 * time.Minute

// Expectations remember, per set, the pod creations and deletions a sync
// made that the informer has not shown yet. Until they are seen (or
// expire), the set is not resized again: a cache that lags behind the
// writes would otherwise create or delete the same pods twice.
type Expectations struct {
	mu  sync.Mutex
	m   map[string]*expectation
	now func() time.Time
}

type expectation struct {
	adds    int
	deletes map[string]bool // pod keys
	at      time.Time
}

// NewExpectations returns an empty tracker.
func NewExpectations(now func() time.Time) *Expectations {
	if now == nil {
		now = time.Now
	}
	return &Expectations{m: map[string]*expectation{}, now: now}
}

// Satisfied reports whether the set may be resized: nothing is expected,
// everything expected was seen, or the expectations expired.
func (e *Expectations) Satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x, ok := e.m[key]
	if !ok {
		return true
	}
	if x.adds <= 0 && len(x.deletes) == 0 {
		return true
	}
	return e.now().Sub(x.at) > ExpectationsTTL
}

// ExpectCreations records that n pods are being created.
func (e *Expectations) ExpectCreations(key string, n int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.m[key] = &expectation{adds: n, deletes: map[string]bool{}, at: e.now()}
}

// ExpectDeletions records the pods (namespace/name) being deleted.
func (e *Expectations) ExpectDeletions(key string, pods []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := &expectation{deletes: map[string]bool{}, at: e.now()}
	for _, p := range pods {
		x.deletes[p] = true
	}
	e.m[key] = x
}

// CreationObserved counts one expected creation as seen (or as never
// coming, when the create failed or was skipped).
func (e *Expectations) CreationObserved(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok && x.adds > 0 {
		x.adds--
	}
}

// DeletionObserved counts the deletion of a pod as seen, once.
func (e *Expectations) DeletionObserved(key, pod string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if x, ok := e.m[key]; ok {
		delete(x.deletes, pod)
	}
}

// Forget drops the set's expectations (the set is gone).
func (e *Expectations) Forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.m, key)
}
