// Package memory is a storage.Interface kept entirely in memory, for tests and
// throwaway clusters. Nothing survives Close.
//
// The current state is a map plus an ordered key index; every change is also
// appended to an in-memory event log (until compacted), which serves watches
// that start in the past and lists at older revisions (the current state is
// rewound through the log).
//
// Values passed in are copied; values returned by Get and List are copies.
// Events delivered by Watch share their byte slices with the store and with
// other watchers: treat them as read-only.
package memory

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/headway/headway/internal/storage"
)

// Store is an in-memory storage.Interface.
type Store struct {
	bc *storage.Broadcaster

	// rev and compacted mirror the fields guarded by mu, for lock-free reads.
	rev       atomic.Int64
	compacted atomic.Int64

	mu     sync.RWMutex
	closed bool
	items  map[string]*item
	index  keyIndex
	// log holds every change after the compacted revision:
	// log[i].Revision == compacted+1+i.
	log []storage.Change
}

type item struct {
	value     []byte
	createRev int64
	modRev    int64
}

var _ storage.Interface = (*Store)(nil)

// New returns an empty store at revision 0.
func New() *Store {
	s := &Store{items: make(map[string]*item)}
	s.bc = storage.NewBroadcaster(0, storage.DefaultWatchBuffer, s.history)
	return s
}

var errEmptyKey = errors.New("storage/memory: empty key")

func (s *Store) kv(key string, it *item) storage.KV {
	return storage.KV{Key: key, Value: bytes.Clone(it.value), CreateRevision: it.createRev, ModRevision: it.modRev}
}

// record appends a change to the log and publishes it. Called with mu held.
func (s *Store) record(c storage.Change) {
	s.log = append(s.log, c)
	s.rev.Store(c.Revision)
	s.bc.Publish(c.Event)
}

func cloneValue(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return bytes.Clone(v)
}

// Create implements storage.Interface.
func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if key == "" {
		return 0, errEmptyKey
	}
	v := cloneValue(value)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, storage.ErrClosed
	}
	if _, ok := s.items[key]; ok {
		return 0, storage.ErrKeyExists
	}
	rev := s.rev.Load() + 1
	s.items[key] = &item{value: v, createRev: rev, modRev: rev}
	s.index.insert(key)
	s.record(storage.Change{Event: storage.Event{
		Type:     storage.EventPut,
		KV:       storage.KV{Key: key, Value: v, CreateRevision: rev, ModRevision: rev},
		Revision: rev,
		Created:  true,
	}})
	return rev, nil
}

// Get implements storage.Interface.
func (s *Store) Get(ctx context.Context, key string) (storage.KV, error) {
	if err := ctx.Err(); err != nil {
		return storage.KV{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return storage.KV{}, storage.ErrClosed
	}
	it, ok := s.items[key]
	if !ok {
		return storage.KV{}, storage.ErrNotFound
	}
	return s.kv(key, it), nil
}

// Update implements storage.Interface.
func (s *Store) Update(ctx context.Context, key string, value []byte, expectedRevision int64) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	v := cloneValue(value)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, storage.ErrClosed
	}
	it, ok := s.items[key]
	if !ok {
		return 0, storage.ErrNotFound
	}
	if expectedRevision != 0 && expectedRevision != it.modRev {
		return 0, storage.ErrConflict
	}
	rev := s.rev.Load() + 1
	prev, prevMod := it.value, it.modRev
	// Replace rather than mutate: the old item's value lives on in the log.
	s.items[key] = &item{value: v, createRev: it.createRev, modRev: rev}
	s.record(storage.Change{Event: storage.Event{
		Type:      storage.EventPut,
		KV:        storage.KV{Key: key, Value: v, CreateRevision: it.createRev, ModRevision: rev},
		PrevValue: prev,
		Revision:  rev,
	}, PrevModRevision: prevMod})
	return rev, nil
}

// Delete implements storage.Interface. The returned KV is the key as it was
// before the delete (its ModRevision is the last one before the delete).
func (s *Store) Delete(ctx context.Context, key string, expectedRevision int64) (storage.KV, int64, error) {
	if err := ctx.Err(); err != nil {
		return storage.KV{}, 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.KV{}, 0, storage.ErrClosed
	}
	it, ok := s.items[key]
	if !ok {
		return storage.KV{}, 0, storage.ErrNotFound
	}
	if expectedRevision != 0 && expectedRevision != it.modRev {
		return storage.KV{}, 0, storage.ErrConflict
	}
	rev := s.rev.Load() + 1
	delete(s.items, key)
	s.index.remove(key)
	s.record(storage.Change{Event: storage.Event{
		Type:      storage.EventDelete,
		KV:        storage.KV{Key: key, Value: it.value, CreateRevision: it.createRev, ModRevision: rev},
		PrevValue: it.value,
		Revision:  rev,
	}, PrevModRevision: it.modRev})
	return s.kv(key, it), rev, nil
}

// List implements storage.Interface.
func (s *Store) List(ctx context.Context, prefix string, opts storage.ListOptions) (storage.ListResult, error) {
	if err := ctx.Err(); err != nil {
		return storage.ListResult{}, err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return storage.ListResult{}, storage.ErrClosed
	}
	cur := s.rev.Load()
	switch {
	case opts.Revision < 0:
		return storage.ListResult{}, errors.New("storage/memory: negative list revision")
	case opts.Revision > cur:
		return storage.ListResult{}, storage.ErrFutureRevision
	case opts.Revision != 0 && opts.Revision < s.compacted.Load():
		return storage.ListResult{}, storage.ErrCompacted
	}
	start, end, ok := storage.KeyRange(prefix, opts.StartKey)
	if !ok {
		if opts.Revision != 0 {
			cur = opts.Revision
		}
		return storage.ListResult{Revision: cur}, nil
	}
	if opts.Revision != 0 && opts.Revision < cur {
		return s.listAt(start, end, opts.Limit, opts.Revision), nil
	}

	res := storage.ListResult{Revision: cur}
	var next string
	s.index.ascend(start, func(key string) bool {
		if end != "" && key >= end {
			return false
		}
		if opts.Limit > 0 && int64(len(res.Items)) == opts.Limit {
			next = key
			return false
		}
		res.Items = append(res.Items, s.kv(key, s.items[key]))
		return true
	})
	if next != "" {
		hi := s.index.n
		if end != "" {
			hi = s.index.rank(end)
		}
		res.Remaining = int64(hi - s.index.rank(next))
		res.More = res.Remaining > 0
	}
	return res, nil
}

// listAt rewinds the keys in [start, end) to revision rev. Called with mu held.
func (s *Store) listAt(start, end string, limit, rev int64) storage.ListResult {
	state := make(map[string]storage.KV)
	s.index.ascend(start, func(key string) bool {
		if end != "" && key >= end {
			return false
		}
		it := s.items[key]
		state[key] = storage.KV{Key: key, Value: it.value, CreateRevision: it.createRev, ModRevision: it.modRev}
		return true
	})
	base := s.compacted.Load()
	for i := len(s.log) - 1; i >= 0 && base+1+int64(i) > rev; i-- {
		if c := &s.log[i]; storage.InRange(c.KV.Key, start, end) {
			c.Undo(state)
		}
	}
	res := storage.PageOf(state, limit, rev)
	for i := range res.Items {
		res.Items[i].Value = bytes.Clone(res.Items[i].Value)
	}
	return res
}

// Watch implements storage.Interface.
func (s *Store) Watch(ctx context.Context, prefix string, fromRevision int64) (<-chan storage.Event, error) {
	s.mu.RLock()
	closed, cur, compacted := s.closed, s.rev.Load(), s.compacted.Load()
	s.mu.RUnlock()
	switch {
	case closed:
		return nil, storage.ErrClosed
	case fromRevision > cur:
		return nil, storage.ErrFutureRevision
	case fromRevision != 0 && fromRevision < compacted:
		return nil, storage.ErrCompacted
	}
	return s.bc.Watch(ctx, prefix, fromRevision)
}

// history serves the broadcaster's replays from the log.
func (s *Store) history(prefix string, after, upTo int64, limit int) ([]storage.Event, int64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, after, storage.ErrClosed
	}
	base := s.compacted.Load()
	if after < base {
		return nil, after, storage.ErrCompacted
	}
	upTo = min(upTo, s.rev.Load())
	var out []storage.Event
	for n := 0; n < limit && after < upTo; n++ {
		c := &s.log[after-base]
		after++
		if strings.HasPrefix(c.KV.Key, prefix) {
			out = append(out, c.Event)
		}
	}
	return out, after, nil
}

// Compact implements storage.Interface. Compacting to a revision at or below
// the compacted one does nothing; beyond the current one is ErrFutureRevision.
func (s *Store) Compact(ctx context.Context, revision int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return storage.ErrClosed
	}
	base := s.compacted.Load()
	if revision > s.rev.Load() {
		return storage.ErrFutureRevision
	}
	if revision <= base {
		return nil
	}
	// Copy what is kept so the dropped changes can be collected.
	s.log = append([]storage.Change(nil), s.log[revision-base:]...)
	s.compacted.Store(revision)
	return nil
}

// Revision implements storage.Interface.
func (s *Store) Revision() int64 { return s.rev.Load() }

// CompactedRevision implements storage.Interface.
func (s *Store) CompactedRevision() int64 { return s.compacted.Load() }

// Close implements storage.Interface: open watches are closed and later
// calls fail with storage.ErrClosed. Closing twice is harmless.
func (s *Store) Close() error {
	s.mu.Lock()
	s.closed = true
	s.items = nil
	s.index = keyIndex{}
	s.log = nil
	s.mu.Unlock()
	s.bc.Close()
	return nil
}
