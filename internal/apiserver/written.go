package apiserver

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/headway/headway/internal/storage"
)

// recordingStore is the server's store, noting for each resource's storage
// prefix the revision of the newest write that went through it: admission
// reads its configuration from the object cache once the cache holds that
// revision (serverObjects.List), so a write through this server applies to
// the next request.
type recordingStore struct {
	storage.Interface
	written sync.Map // prefix → *atomic.Int64
}

// writtenUnder is the revision of the newest write under prefix (0: none
// since the server started).
func (s *recordingStore) writtenUnder(prefix string) int64 {
	if w, ok := s.written.Load(prefix); ok {
		return w.(*atomic.Int64).Load()
	}
	return 0
}

func (s *recordingStore) wrote(key string, rev int64) {
	prefix := resourcePrefix(key)
	w, ok := s.written.Load(prefix)
	if !ok {
		w, _ = s.written.LoadOrStore(prefix, new(atomic.Int64))
	}
	last := w.(*atomic.Int64)
	for {
		cur := last.Load()
		if rev <= cur || last.CompareAndSwap(cur, rev) {
			return
		}
	}
}

func (s *recordingStore) Create(ctx context.Context, key string, value []byte) (int64, error) {
	rev, err := s.Interface.Create(ctx, key, value)
	if err == nil {
		s.wrote(key, rev)
	}
	return rev, err
}

func (s *recordingStore) Update(ctx context.Context, key string, value []byte, expectedRevision int64) (int64, error) {
	rev, err := s.Interface.Update(ctx, key, value, expectedRevision)
	if err == nil {
		s.wrote(key, rev)
	}
	return rev, err
}

func (s *recordingStore) Delete(ctx context.Context, key string, expectedRevision int64) (storage.KV, int64, error) {
	kv, rev, err := s.Interface.Delete(ctx, key, expectedRevision)
	if err == nil {
		s.wrote(key, rev)
	}
	return kv, rev, err
}
