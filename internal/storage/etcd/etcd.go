// Package etcd is storage.Interface on an etcd cluster (go.etcd.io/etcd
// client v3): one etcd key per stored key under a prefix, etcd's revision as
// the store's revision, guarded writes as transactions, lists at a revision
// and watches from one, etcd compaction.
//
// Revisions: etcd starts at revision 1 with nothing written; the store's
// revision is etcd's minus one, so that a new store is at 0 and its first
// write is 1, as every backend's. Several Headway servers on one etcd see
// one revision order.
package etcd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/headway/headway/internal/storage"
)

// Options configure a Store.
type Options struct {
	// Prefix is prepended to every key in etcd (default "/headway").
	Prefix string
	// WatchBuffer is how many events a watcher may fall behind before it is
	// closed (default storage.DefaultWatchBuffer).
	WatchBuffer int
}

// Store is a storage.Interface on etcd.
type Store struct {
	client *clientv3.Client
	prefix string
	buffer int

	rev       atomic.Int64 // highest etcd revision seen
	compacted atomic.Int64 // highest etcd compact revision known
	closed    atomic.Bool
	ctx       context.Context
	cancel    context.CancelFunc
	watchers  sync.WaitGroup
}

var _ storage.Interface = (*Store)(nil)

// New uses client (which the Store does not close) and reads the current
// and compacted revisions.
func New(ctx context.Context, client *clientv3.Client, opts Options) (*Store, error) {
	if opts.Prefix == "" {
		opts.Prefix = "/headway"
	}
	if opts.WatchBuffer <= 0 {
		opts.WatchBuffer = storage.DefaultWatchBuffer
	}
	s := &Store{client: client, prefix: strings.TrimSuffix(opts.Prefix, "/"), buffer: opts.WatchBuffer}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	resp, err := client.Get(ctx, s.prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return nil, fmt.Errorf("storage/etcd: reading the revision from %s: %w", strings.Join(client.Endpoints(), ","), err)
	}
	s.seen(resp.Header.Revision)
	if err := s.refreshCompacted(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// refreshCompacted learns etcd's compact revision. A read at revision 1
// fails when history was compacted; a watch from revision 1 is then
// answered at once with the compact revision.
func (s *Store) refreshCompacted(ctx context.Context) error {
	probe := s.prefix + "/\x00compact-probe"
	_, err := s.client.Get(ctx, probe, clientv3.WithRev(1), clientv3.WithCountOnly())
	if err == nil {
		return nil // nothing compacted
	}
	if !errors.Is(err, rpctypes.ErrCompacted) {
		return s.mapErr(err)
	}
	wctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(ctx), 10*time.Second)
	defer cancel()
	for resp := range s.client.Watch(wctx, probe, clientv3.WithRev(1)) {
		if resp.CompactRevision > 0 {
			s.compactedAtLeast(resp.CompactRevision)
			return nil
		}
		if err := resp.Err(); err != nil {
			return s.mapErr(err)
		}
	}
	return fmt.Errorf("storage/etcd: no answer from %s about the compacted revision", strings.Join(s.client.Endpoints(), ","))
}

func (s *Store) seen(etcdRev int64) {
	for {
		cur := s.rev.Load()
		if etcdRev <= cur || s.rev.CompareAndSwap(cur, etcdRev) {
			return
		}
	}
}

func (s *Store) compactedAtLeast(etcdRev int64) {
	for {
		cur := s.compacted.Load()
		if etcdRev <= cur || s.compacted.CompareAndSwap(cur, etcdRev) {
			return
		}
	}
}

// toStore and toEtcd convert revisions (etcd's is one more).
func toStore(etcdRev int64) int64 {
	if etcdRev <= 0 {
		return 0
	}
	return etcdRev - 1
}

func toEtcd(rev int64) int64 { return rev + 1 }

func (s *Store) key(k string) string { return s.prefix + k }

func (s *Store) check(ctx context.Context) error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	return ctx.Err()
}

// mapErr turns etcd errors into storage errors.
func (s *Store) mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, rpctypes.ErrCompacted):
		return storage.ErrCompacted
	case errors.Is(err, rpctypes.ErrFutureRev):
		return storage.ErrFutureRevision
	case errors.Is(err, context.Canceled) && s.closed.Load():
		return storage.ErrClosed
	}
	return fmt.Errorf("storage/etcd (%s): %w", strings.Join(s.client.Endpoints(), ","), err)
}

func (s *Store) kv(k *mvccpb.KeyValue) storage.KV {
	return storage.KV{
		Key:            strings.TrimPrefix(string(k.Key), s.prefix),
		Value:          k.Value,
		CreateRevision: toStore(k.CreateRevision),
		ModRevision:    toStore(k.ModRevision),
	}
}

// Create implements storage.Interface.
func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	k := s.key(key)
	resp, err := s.client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(k), "=", 0)).Then(clientv3.OpPut(k, string(value))).Commit()
	if err != nil {
		return 0, s.mapErr(err)
	}
	s.seen(resp.Header.Revision)
	if !resp.Succeeded {
		return 0, storage.ErrKeyExists
	}
	return toStore(resp.Header.Revision), nil
}

// Get implements storage.Interface.
func (s *Store) Get(ctx context.Context, key string) (storage.KV, error) {
	if err := s.check(ctx); err != nil {
		return storage.KV{}, err
	}
	if key == "" {
		return storage.KV{}, storage.ErrNotFound
	}
	resp, err := s.client.Get(ctx, s.key(key))
	if err != nil {
		return storage.KV{}, s.mapErr(err)
	}
	s.seen(resp.Header.Revision)
	if len(resp.Kvs) == 0 {
		return storage.KV{}, storage.ErrNotFound
	}
	return s.kv(resp.Kvs[0]), nil
}

// guarded runs op on key if its ModRevision is expected (0: if it exists),
// and says which failure it was otherwise.
func (s *Store) guarded(ctx context.Context, key string, expected int64, op clientv3.Op) (*clientv3.TxnResponse, error) {
	k := s.key(key)
	cond := clientv3.Compare(clientv3.CreateRevision(k), ">", 0)
	if expected != 0 {
		cond = clientv3.Compare(clientv3.ModRevision(k), "=", toEtcd(expected))
	}
	resp, err := s.client.Txn(ctx).If(cond).Then(op).Else(clientv3.OpGet(k, clientv3.WithCountOnly())).Commit()
	if err != nil {
		return nil, s.mapErr(err)
	}
	s.seen(resp.Header.Revision)
	if !resp.Succeeded {
		if r := resp.Responses[0].GetResponseRange(); r == nil || r.Count == 0 {
			return nil, storage.ErrNotFound
		}
		return nil, storage.ErrConflict
	}
	return resp, nil
}

// Update implements storage.Interface.
func (s *Store) Update(ctx context.Context, key string, value []byte, expectedRevision int64) (int64, error) {
	if err := s.check(ctx); err != nil {
		return 0, err
	}
	resp, err := s.guarded(ctx, key, expectedRevision, clientv3.OpPut(s.key(key), string(value)))
	if err != nil {
		return 0, err
	}
	return toStore(resp.Header.Revision), nil
}

// Delete implements storage.Interface.
func (s *Store) Delete(ctx context.Context, key string, expectedRevision int64) (storage.KV, int64, error) {
	if err := s.check(ctx); err != nil {
		return storage.KV{}, 0, err
	}
	resp, err := s.guarded(ctx, key, expectedRevision, clientv3.OpDelete(s.key(key), clientv3.WithPrevKV()))
	if err != nil {
		return storage.KV{}, 0, err
	}
	del := resp.Responses[0].GetResponseDeleteRange()
	if del == nil || len(del.PrevKvs) == 0 {
		return storage.KV{}, 0, storage.ErrNotFound
	}
	return s.kv(del.PrevKvs[0]), toStore(resp.Header.Revision), nil
}

// List implements storage.Interface.
func (s *Store) List(ctx context.Context, prefix string, opts storage.ListOptions) (storage.ListResult, error) {
	if err := s.check(ctx); err != nil {
		return storage.ListResult{}, err
	}
	if opts.Revision < 0 {
		return storage.ListResult{}, errors.New("storage/etcd: negative list revision")
	}
	start, end, ok := storage.KeyRange(prefix, opts.StartKey)
	ropts := []clientv3.OpOption{}
	if opts.Revision != 0 {
		ropts = append(ropts, clientv3.WithRev(toEtcd(opts.Revision)))
	}
	if !ok {
		// An empty range: read the revision only.
		resp, err := s.client.Get(ctx, s.prefix+"/", append(ropts, clientv3.WithCountOnly(), clientv3.WithPrefix())...)
		if err != nil {
			return storage.ListResult{}, s.mapErr(err)
		}
		s.seen(resp.Header.Revision)
		return storage.ListResult{Revision: s.readRevision(opts.Revision, resp.Header.Revision)}, nil
	}
	endKey := clientv3.GetPrefixRangeEnd(s.prefix)
	if end != "" {
		endKey = s.key(end)
	}
	ropts = append(ropts, clientv3.WithRange(endKey))
	if opts.Limit > 0 {
		ropts = append(ropts, clientv3.WithLimit(opts.Limit))
	}
	resp, err := s.client.Get(ctx, s.key(start), ropts...)
	if err != nil {
		if errors.Is(err, rpctypes.ErrCompacted) {
			_ = s.refreshCompacted(ctx)
		}
		return storage.ListResult{}, s.mapErr(err)
	}
	s.seen(resp.Header.Revision)
	res := storage.ListResult{Revision: s.readRevision(opts.Revision, resp.Header.Revision), More: resp.More}
	res.Items = make([]storage.KV, 0, len(resp.Kvs))
	for _, k := range resp.Kvs {
		res.Items = append(res.Items, s.kv(k))
	}
	if resp.More {
		res.Remaining = resp.Count - int64(len(resp.Kvs))
	}
	return res, nil
}

// readRevision is the revision a read was made at.
func (s *Store) readRevision(asked, header int64) int64 {
	if asked != 0 {
		return asked
	}
	return toStore(header)
}

// Watch implements storage.Interface.
func (s *Store) Watch(ctx context.Context, prefix string, fromRevision int64) (<-chan storage.Event, error) {
	if s.closed.Load() {
		return nil, storage.ErrClosed
	}
	if ctx.Err() != nil {
		// A watch whose context is done is closed at once.
		out := make(chan storage.Event)
		close(out)
		return out, nil
	}
	if fromRevision < 0 {
		return nil, errors.New("storage/etcd: negative watch revision")
	}
	if fromRevision == 0 {
		// "From now": the revision etcd is at, read linearizably, so that
		// no write acknowledged after Watch returns can be missed.
		resp, err := s.client.Get(ctx, s.prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return nil, s.mapErr(err)
		}
		s.seen(resp.Header.Revision)
		fromRevision = toStore(resp.Header.Revision)
	} else {
		if toEtcd(fromRevision) < s.compacted.Load() {
			return nil, storage.ErrCompacted
		}
		if cur := s.rev.Load(); toEtcd(fromRevision) > cur {
			// Maybe another server wrote: read the revision again.
			resp, err := s.client.Get(ctx, s.prefix+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
			if err != nil {
				return nil, s.mapErr(err)
			}
			s.seen(resp.Header.Revision)
			if toEtcd(fromRevision) > resp.Header.Revision {
				return nil, storage.ErrFutureRevision
			}
		}
	}
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	stop := context.AfterFunc(s.ctx, cancel)
	wch := s.client.Watch(wctx, s.key(prefix), clientv3.WithPrefix(), clientv3.WithPrevKV(), clientv3.WithRev(toEtcd(fromRevision)+1))
	out := make(chan storage.Event, s.buffer)
	s.watchers.Add(1)
	go func() {
		defer s.watchers.Done()
		defer close(out)
		defer stop()
		defer cancel()
		for resp := range wch {
			if resp.CompactRevision > 0 {
				s.compactedAtLeast(resp.CompactRevision)
				return // the caller relists
			}
			if resp.Err() != nil || resp.Canceled {
				return
			}
			for _, ev := range resp.Events {
				e := s.event(ev)
				s.seen(ev.Kv.ModRevision)
				select {
				case out <- e:
				default:
					return // too far behind: the caller relists
				}
			}
		}
	}()
	return out, nil
}

func (s *Store) event(ev *clientv3.Event) storage.Event {
	e := storage.Event{Revision: toStore(ev.Kv.ModRevision)}
	if ev.PrevKv != nil {
		e.PrevValue = ev.PrevKv.Value
	}
	if ev.Type == clientv3.EventTypeDelete {
		e.Type = storage.EventDelete
		e.KV = storage.KV{Key: strings.TrimPrefix(string(ev.Kv.Key), s.prefix), ModRevision: e.Revision}
		if ev.PrevKv != nil {
			e.KV.Value = ev.PrevKv.Value
			e.KV.CreateRevision = toStore(ev.PrevKv.CreateRevision)
		}
		return e
	}
	e.Type = storage.EventPut
	e.KV = s.kv(ev.Kv)
	e.Created = ev.IsCreate()
	return e
}

// Compact implements storage.Interface.
func (s *Store) Compact(ctx context.Context, revision int64) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if toEtcd(revision) <= s.compacted.Load() {
		return nil
	}
	_, err := s.client.Compact(ctx, toEtcd(revision), clientv3.WithCompactPhysical())
	if errors.Is(err, rpctypes.ErrCompacted) {
		_ = s.refreshCompacted(ctx)
		return nil
	}
	if err != nil {
		return s.mapErr(err)
	}
	s.compactedAtLeast(toEtcd(revision))
	return nil
}

// Revision implements storage.Interface: the newest revision this store has
// seen (its own writes and reads, and its watches' events).
func (s *Store) Revision() int64 { return toStore(s.rev.Load()) }

// CompactedRevision implements storage.Interface.
func (s *Store) CompactedRevision() int64 { return toStore(s.compacted.Load()) }

// Close implements storage.Interface: open watches end; the client stays
// open (its owner closes it).
func (s *Store) Close() error {
	if s.closed.Swap(true) {
		return nil
	}
	s.cancel()
	s.watchers.Wait()
	return nil
}
