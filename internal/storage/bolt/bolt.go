// Package bolt is the embedded, durable storage.Interface: one bbolt file.
//
// Every acknowledged write has been fsync'd. Writes go through one writer
// goroutine that commits whatever is queued together (group commit): each
// request gets its own revision, and a request's own failure (ErrKeyExists,
// ErrConflict, ...) does not fail the others, but they share one bbolt
// transaction and one fsync. After the commit the writer publishes the events
// to watchers in revision order, then answers the callers.
//
// When the previous commit held more than one write (writers are busy), the
// writer waits a little for more before committing: half the previous
// commit's time, at most Options.MaxLinger, and only until the commit holds
// as many writes as the busiest of the last 8 (then every writer seen lately
// is in). A lone writer never waits. With 16 API clients creating at once,
// commits hold about 2 writes without the wait and twice as many with it: a
// fifth more creates/s for less CPU each, and lower latency
// (bench/results.md).
//
// Besides the current keys the file keeps a log of every change (until
// compacted), so that watches from an old revision, and lists at one, work
// across restarts.
//
// Events delivered by Watch are shared between watchers: treat their byte
// slices as read-only.
package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/headway/headway/internal/storage"
)

// Defaults for Options.
const (
	DefaultTimeout         = time.Second
	DefaultMaxBatch        = 256
	DefaultInitialMmapSize = 1 << 30
	DefaultMaxLinger       = 500 * time.Microsecond
)

// compactChunk is how many log entries one compaction transaction deletes.
const compactChunk = 10000

// Options tune a Store. The zero value is the default.
type Options struct {
	// Timeout bounds how long Open waits for the file lock, which another
	// process (or another Open in this one) holds while it has the file
	// open. 0 means DefaultTimeout; negative means wait forever.
	Timeout time.Duration
	// MaxBatch caps how many writes share one transaction and fsync.
	// 0 means DefaultMaxBatch.
	MaxBatch int
	// MaxLinger caps how long the writer waits for more writes to join a
	// commit (see the package doc). 0 means DefaultMaxLinger; negative
	// means never wait.
	MaxLinger time.Duration
	// WatchBuffer is how many events a watcher may fall behind before it is
	// closed. 0 means storage.DefaultWatchBuffer.
	WatchBuffer int
	// InitialMmapSize is the size of the initial memory map (address space,
	// not memory); while the file fits in it, reads never wait for the
	// mapping to grow. 0 means DefaultInitialMmapSize.
	InitialMmapSize int
}

// Store is a storage.Interface kept in one bbolt file.
type Store struct {
	db        *bbolt.DB
	path      string
	maxBatch  int
	maxLinger time.Duration
	bc        *storage.Broadcaster

	rev       atomic.Int64 // revision of the last committed write
	compacted atomic.Int64
	closed    atomic.Bool

	reqs       chan *request
	closing    chan struct{}
	writerDone chan struct{}
	closeOnce  sync.Once
	closeErr   error

	compactMu sync.Mutex
}

var _ storage.Interface = (*Store)(nil)

type opKind uint8

const (
	opCreate opKind = iota
	opUpdate
	opDelete
)

// request is one write waiting for the writer goroutine.
type request struct {
	ctx      context.Context
	op       opKind
	key      string
	value    []byte
	expected int64
	done     chan struct{} // closed when the result is set

	rev  int64
	prev storage.KV // for a delete: the key before it
	err  error
}

// Open opens (creating if needed) the store in the bbolt file at path.
func Open(path string, opts Options) (*Store, error) {
	timeout := opts.Timeout
	switch {
	case timeout == 0:
		timeout = DefaultTimeout
	case timeout < 0:
		timeout = 0 // bbolt: wait forever
	}
	if opts.MaxBatch <= 0 {
		opts.MaxBatch = DefaultMaxBatch
	}
	switch {
	case opts.MaxLinger == 0:
		opts.MaxLinger = DefaultMaxLinger
	case opts.MaxLinger < 0:
		opts.MaxLinger = 0
	}
	if opts.InitialMmapSize <= 0 {
		opts.InitialMmapSize = DefaultInitialMmapSize
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("storage/bolt: %w", err)
		}
	}
	if fi, err := os.Stat(path); err == nil && fi.Size() > 0 {
		if err := verifyPages(path, timeout); err != nil {
			return nil, openError(path, timeout, err)
		}
	}
	db, err := bbolt.Open(path, 0o600, &bbolt.Options{
		Timeout: timeout,
		// The free list is rebuilt by scanning at open instead of being
		// written at every commit: commits write (and sync) less.
		NoFreelistSync:  true,
		FreelistType:    bbolt.FreelistMapType,
		InitialMmapSize: opts.InitialMmapSize,
	})
	if err != nil {
		return nil, openError(path, timeout, err)
	}
	s := &Store{
		db:         db,
		path:       path,
		maxBatch:   opts.MaxBatch,
		maxLinger:  opts.MaxLinger,
		reqs:       make(chan *request),
		closing:    make(chan struct{}),
		writerDone: make(chan struct{}),
	}
	if err := db.Update(s.init); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("storage/bolt: open %s: %w", path, err)
	}
	s.bc = storage.NewBroadcaster(s.rev.Load(), opts.WatchBuffer, s.history)
	go s.writer()
	return s, nil
}

func openError(path string, timeout time.Duration, err error) error {
	switch {
	case errors.Is(err, ErrDamaged):
		return err
	case errors.Is(err, bolterrors.ErrTimeout):
		return fmt.Errorf("storage/bolt: %s is locked by another process using it (waited %v): %w", path, timeout, err)
	case errors.Is(err, bolterrors.ErrInvalid), errors.Is(err, bolterrors.ErrChecksum), errors.Is(err, bolterrors.ErrVersionMismatch):
		return &DamagedError{Path: path, Detail: err.Error()}
	}
	return fmt.Errorf("storage/bolt: open %s: %w", path, err)
}

// init creates the buckets of a new file, or checks an existing one and
// loads its revisions.
func (s *Store) init(tx *bbolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		var err error
		if meta, err = tx.CreateBucket(bucketMeta); err != nil {
			return err
		}
		if err := meta.Put(metaVersion, encodeUint(formatVersion)); err != nil {
			return err
		}
	}
	if v := meta.Get(metaVersion); v == nil {
		return errors.New("not a headway store (no format version)")
	} else if ver, err := decodeUint(v); err != nil || ver != formatVersion {
		return fmt.Errorf("unsupported store format version %d (want %d)", ver, formatVersion)
	}
	for _, name := range [][]byte{bucketKV, bucketLog} {
		if _, err := tx.CreateBucketIfNotExists(name); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		key []byte
		dst *atomic.Int64
	}{{metaRevision, &s.rev}, {metaCompacted, &s.compacted}} {
		if v := meta.Get(f.key); v != nil {
			n, err := decodeUint(v)
			if err != nil {
				return err
			}
			f.dst.Store(n)
		}
	}
	return nil
}

// Path returns the file the store lives in.
func (s *Store) Path() string { return s.path }

func checkKey(key string) error {
	switch {
	case key == "":
		return errors.New("storage/bolt: empty key")
	case len(key) > bbolt.MaxKeySize:
		return fmt.Errorf("storage/bolt: key of %d bytes is longer than %d", len(key), bbolt.MaxKeySize)
	}
	return nil
}

// maxValue keeps a log record (key, value and previous value) within bbolt's
// value size limit.
const maxValue = (bbolt.MaxValueSize - bbolt.MaxKeySize - 64) / 2

func checkValue(value []byte) error {
	if len(value) > maxValue {
		return fmt.Errorf("storage/bolt: value of %d bytes is larger than %d", len(value), maxValue)
	}
	return nil
}

// submit hands a write to the writer goroutine and waits for its result.
func (s *Store) submit(ctx context.Context, r *request) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if s.closed.Load() {
		return storage.ErrClosed
	}
	r.ctx = ctx
	r.done = make(chan struct{})
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-s.closing:
		return storage.ErrClosed
	}
	// The writer answers every request it has taken, even while closing.
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		// The write may still be applied, as with any store when the
		// caller gives up mid-request.
		return ctx.Err()
	}
}

// Create implements storage.Interface.
func (s *Store) Create(ctx context.Context, key string, value []byte) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if err := checkValue(value); err != nil {
		return 0, err
	}
	// Copied here: the caller may reuse its buffer once it stops waiting.
	r := &request{op: opCreate, key: key, value: cloneValue(value)}
	if err := s.submit(ctx, r); err != nil {
		return 0, err
	}
	return r.rev, nil
}

// Update implements storage.Interface.
func (s *Store) Update(ctx context.Context, key string, value []byte, expectedRevision int64) (int64, error) {
	if err := checkKey(key); err != nil {
		return 0, err
	}
	if err := checkValue(value); err != nil {
		return 0, err
	}
	r := &request{op: opUpdate, key: key, value: cloneValue(value), expected: expectedRevision}
	if err := s.submit(ctx, r); err != nil {
		return 0, err
	}
	return r.rev, nil
}

// Delete implements storage.Interface. The returned KV is the key as it was
// before the delete (its ModRevision is the last one before the delete).
func (s *Store) Delete(ctx context.Context, key string, expectedRevision int64) (storage.KV, int64, error) {
	if err := checkKey(key); err != nil {
		return storage.KV{}, 0, err
	}
	r := &request{op: opDelete, key: key, expected: expectedRevision}
	if err := s.submit(ctx, r); err != nil {
		return storage.KV{}, 0, err
	}
	return r.prev, r.rev, nil
}

// writer is the single goroutine that writes: it takes a request, gathers
// whatever else is queued (up to maxBatch), waits a little for more while
// writers are busy (linger) and commits them together.
func (s *Store) writer() {
	defer close(s.writerDone)
	batch := make([]*request, 0, s.maxBatch)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	var (
		recent   [8]int // the last commits' sizes
		n        int    // commits so far
		lastTook time.Duration
	)
	for {
		select {
		case r := <-s.reqs:
			batch = append(batch[:0], r)
		case <-s.closing:
			return
		}
	gather:
		for len(batch) < s.maxBatch {
			select {
			case r := <-s.reqs:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		// As many writes as the busiest recent commit held means every
		// writer seen lately is in: nobody else to wait for.
		peak := min(slices.Max(recent[:]), s.maxBatch)
		if wait := linger(recent[(n+len(recent)-1)%len(recent)], lastTook, s.maxLinger); wait > 0 && len(batch) < peak {
			timer.Reset(wait)
		wait:
			for len(batch) < peak {
				select {
				case r := <-s.reqs:
					batch = append(batch, r)
				case <-timer.C:
					break wait
				case <-s.closing:
					break wait // commit what was taken: every taken request is answered
				}
			}
			timer.Stop()
		}
		start := time.Now()
		s.commit(batch)
		recent[n%len(recent)], lastTook = len(batch), time.Since(start)
		n++
		clear(batch)
	}
}

// linger is how long the writer waits for more writes after the previous
// commit held size writes and took took: not at all after a lone write,
// else half that commit's time, at most limit. Waiting longer than a commit
// costs would lose more than the shared commit saves.
func linger(size int, took, limit time.Duration) time.Duration {
	if size < 2 {
		return 0
	}
	return min(took/2, limit)
}

// commit applies a batch in one transaction, publishes its events and
// answers its requests.
func (s *Store) commit(batch []*request) {
	base := s.rev.Load()
	rev := base
	var events []storage.Event
	err := guard(s.path, func() error { return s.commitTx(batch, base, &rev, &events) })
	if errors.Is(err, errNoWrites) {
		err = nil
	}
	if err != nil {
		if !errors.Is(err, ErrDamaged) {
			err = fmt.Errorf("storage/bolt: commit to %s: %w", s.path, err)
		}
		for _, r := range batch {
			r.err, r.rev, r.prev = err, 0, storage.KV{}
			close(r.done)
		}
		return
	}
	s.rev.Store(rev)
	s.bc.Publish(events...)
	for _, r := range batch {
		close(r.done)
	}
}

// commitTx is commit's transaction.
func (s *Store) commitTx(batch []*request, base int64, revp *int64, eventsp *[]storage.Event) error {
	rev, events := base, *eventsp
	defer func() { *revp, *eventsp = rev, events }()
	return s.db.Update(func(tx *bbolt.Tx) error {
		kvb, logb := tx.Bucket(bucketKV), tx.Bucket(bucketLog)
		logb.FillPercent = 1 // the log is appended to in key order
		for _, r := range batch {
			r.err = nil
			if err := r.ctx.Err(); err != nil {
				r.err = err // the caller gave up before the write began
				continue
			}
			c, err := apply(kvb, r, rev+1)
			if err != nil {
				if isRequestError(err) {
					r.err = err
					continue
				}
				return err
			}
			if err := logb.Put(revKey(c.Revision), encodeChange(&c)); err != nil {
				return err
			}
			rev = c.Revision
			r.rev = rev
			events = append(events, c.Event)
		}
		if rev == base {
			return errNoWrites // roll back: nothing to commit or sync
		}
		return tx.Bucket(bucketMeta).Put(metaRevision, encodeUint(rev))
	})
}

var errNoWrites = errors.New("no writes in batch")

func isRequestError(err error) bool {
	return errors.Is(err, storage.ErrKeyExists) || errors.Is(err, storage.ErrNotFound) || errors.Is(err, storage.ErrConflict)
}

// apply performs one write inside the batch's transaction as revision rev
// and returns the change to log.
func apply(kvb *bbolt.Bucket, r *request, rev int64) (storage.Change, error) {
	key := []byte(r.key)
	cur := kvb.Get(key)
	var c storage.Change
	var createRev, modRev int64
	var old []byte
	if cur != nil {
		var err error
		if createRev, modRev, old, err = decodeItem(cur); err != nil {
			return c, err
		}
	}
	switch {
	case r.op == opCreate && cur != nil:
		return c, storage.ErrKeyExists
	case r.op != opCreate && cur == nil:
		return c, storage.ErrNotFound
	case r.op != opCreate && r.expected != 0 && r.expected != modRev:
		return c, storage.ErrConflict
	}
	c.Revision = rev
	c.PrevModRevision = modRev
	switch r.op {
	case opCreate:
		value := r.value
		c.Type, c.Created = storage.EventPut, true
		c.KV = storage.KV{Key: r.key, Value: value, CreateRevision: rev, ModRevision: rev}
		return c, kvb.Put(key, encodeItem(rev, rev, value))
	case opUpdate:
		value := r.value
		c.Type, c.PrevValue = storage.EventPut, bytes.Clone(old)
		c.KV = storage.KV{Key: r.key, Value: value, CreateRevision: createRev, ModRevision: rev}
		return c, kvb.Put(key, encodeItem(createRev, rev, value))
	default:
		old = bytes.Clone(old)
		c.Type, c.PrevValue = storage.EventDelete, old
		c.KV = storage.KV{Key: r.key, Value: old, CreateRevision: createRev, ModRevision: rev}
		r.prev = storage.KV{Key: r.key, Value: bytes.Clone(old), CreateRevision: createRev, ModRevision: modRev}
		return c, kvb.Delete(key)
	}
}

func cloneValue(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return bytes.Clone(v)
}

// view runs a read transaction, reporting a closed store as ErrClosed.
func (s *Store) view(fn func(tx *bbolt.Tx) error) error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	err := guard(s.path, func() error { return s.db.View(fn) })
	if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
		return storage.ErrClosed
	}
	return err
}

// Get implements storage.Interface.
func (s *Store) Get(ctx context.Context, key string) (storage.KV, error) {
	if err := ctx.Err(); err != nil {
		return storage.KV{}, err
	}
	if key == "" {
		return storage.KV{}, storage.ErrNotFound
	}
	var kv storage.KV
	err := s.view(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketKV).Get([]byte(key))
		if v == nil {
			return storage.ErrNotFound
		}
		createRev, modRev, value, err := decodeItem(v)
		if err != nil {
			return err
		}
		kv = storage.KV{Key: key, Value: bytes.Clone(value), CreateRevision: createRev, ModRevision: modRev}
		return nil
	})
	return kv, err
}

// readMeta returns the revision and compacted revision a transaction sees.
func readMeta(tx *bbolt.Tx) (rev, compacted int64, err error) {
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(metaRevision); v != nil {
		if rev, err = decodeUint(v); err != nil {
			return 0, 0, err
		}
	}
	if v := meta.Get(metaCompacted); v != nil {
		if compacted, err = decodeUint(v); err != nil {
			return 0, 0, err
		}
	}
	return rev, compacted, nil
}

// List implements storage.Interface.
func (s *Store) List(ctx context.Context, prefix string, opts storage.ListOptions) (storage.ListResult, error) {
	if err := ctx.Err(); err != nil {
		return storage.ListResult{}, err
	}
	if opts.Revision < 0 {
		return storage.ListResult{}, errors.New("storage/bolt: negative list revision")
	}
	var res storage.ListResult
	err := s.view(func(tx *bbolt.Tx) error {
		cur, compacted, err := readMeta(tx)
		if err != nil {
			return err
		}
		switch {
		case opts.Revision > cur:
			return storage.ErrFutureRevision
		case opts.Revision != 0 && opts.Revision < compacted:
			return storage.ErrCompacted
		}
		start, end, ok := storage.KeyRange(prefix, opts.StartKey)
		switch {
		case !ok:
			res.Revision = cur
			if opts.Revision != 0 {
				res.Revision = opts.Revision
			}
			return nil
		case opts.Revision != 0 && opts.Revision < cur:
			res, err = listAt(tx, start, end, opts.Limit, opts.Revision)
			return err
		}
		res, err = listNow(tx, start, end, opts.Limit)
		res.Revision = cur
		return err
	})
	return res, err
}

func listNow(tx *bbolt.Tx, start, end string, limit int64) (storage.ListResult, error) {
	var res storage.ListResult
	endB := []byte(end)
	inRange := func(k []byte) bool { return k != nil && (end == "" || bytes.Compare(k, endB) < 0) }
	c := tx.Bucket(bucketKV).Cursor()
	k, v := c.Seek([]byte(start))
	for ; inRange(k); k, v = c.Next() {
		if limit > 0 && int64(len(res.Items)) == limit {
			break
		}
		createRev, modRev, value, err := decodeItem(v)
		if err != nil {
			return res, err
		}
		res.Items = append(res.Items, storage.KV{Key: string(k), Value: bytes.Clone(value), CreateRevision: createRev, ModRevision: modRev})
	}
	for ; inRange(k); k, _ = c.Next() {
		res.Remaining++
	}
	res.More = res.Remaining > 0
	return res, nil
}

// listAt rewinds the keys in [start, end) to revision rev through the log.
func listAt(tx *bbolt.Tx, start, end string, limit, rev int64) (storage.ListResult, error) {
	all, err := listNow(tx, start, end, 0)
	if err != nil {
		return storage.ListResult{}, err
	}
	state := make(map[string]storage.KV, len(all.Items))
	for _, kv := range all.Items {
		state[kv.Key] = kv
	}
	c := tx.Bucket(bucketLog).Cursor()
	for k, v := c.Last(); k != nil && keyRev(k) > rev; k, v = c.Prev() {
		key, err := changeKey(v)
		if err != nil {
			return storage.ListResult{}, err
		}
		if !storage.InRange(string(key), start, end) {
			continue
		}
		ch, err := decodeChange(keyRev(k), v)
		if err != nil {
			return storage.ListResult{}, err
		}
		ch.Undo(state)
	}
	return storage.PageOf(state, limit, rev), nil
}

// committed reports whether rev has been committed. s.rev, set once the
// writer's transaction has returned, can trail what readers already see: a
// commit is visible from the moment bbolt writes its meta page, before the
// final fsync returns. A revision beyond s.rev is checked against the
// committed meta, as List does, so that a revision a read has returned is
// never refused as ErrFutureRevision.
func (s *Store) committed(rev int64) (bool, error) {
	if rev <= s.rev.Load() {
		return true, nil
	}
	cur, err := s.visibleRevision()
	return rev <= cur, err
}

// visibleRevision is the revision a read transaction sees now.
func (s *Store) visibleRevision() (int64, error) {
	var cur int64
	err := s.view(func(tx *bbolt.Tx) error {
		var err error
		cur, _, err = readMeta(tx)
		return err
	})
	return cur, err
}

// Watch implements storage.Interface. A watch from a revision that is
// committed but not yet published starts after it: the broadcaster skips
// the events up to it when they are published.
func (s *Store) Watch(ctx context.Context, prefix string, fromRevision int64) (<-chan storage.Event, error) {
	if s.closed.Load() {
		return nil, storage.ErrClosed
	}
	ok, err := s.committed(fromRevision)
	switch {
	case err != nil:
		return nil, err
	case !ok:
		return nil, storage.ErrFutureRevision
	case fromRevision != 0 && fromRevision < s.compacted.Load():
		return nil, storage.ErrCompacted
	}
	return s.bc.Watch(ctx, prefix, fromRevision)
}

// history serves the broadcaster's replays from the log.
func (s *Store) history(prefix string, after, upTo int64, limit int) ([]storage.Event, int64, error) {
	var out []storage.Event
	next := after
	err := s.view(func(tx *bbolt.Tx) error {
		_, compacted, err := readMeta(tx)
		if err != nil {
			return err
		}
		if after < compacted {
			return storage.ErrCompacted
		}
		c := tx.Bucket(bucketLog).Cursor()
		n := 0
		for k, v := c.Seek(revKey(after + 1)); k != nil && n < limit; k, v = c.Next() {
			rev := keyRev(k)
			if rev > upTo {
				break
			}
			n++
			next = rev
			key, err := changeKey(v)
			if err != nil {
				return err
			}
			if !strings.HasPrefix(string(key), prefix) {
				continue
			}
			ch, err := decodeChange(rev, v)
			if err != nil {
				return err
			}
			out = append(out, ch.Event)
		}
		return nil
	})
	return out, next, err
}

// Compact implements storage.Interface. Compacting to a revision at or below
// the compacted one does nothing; beyond the current one is ErrFutureRevision.
// The compacted revision is recorded first, then the log is trimmed in
// chunks of transactions; entries left by an interrupted compaction are
// removed by the next one.
func (s *Store) Compact(ctx context.Context, revision int64) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.compactMu.Lock()
	defer s.compactMu.Unlock()
	if s.closed.Load() {
		return storage.ErrClosed
	}
	if ok, err := s.committed(revision); err != nil {
		return err
	} else if !ok {
		return storage.ErrFutureRevision
	}
	if revision <= s.compacted.Load() {
		return nil
	}
	first := true
	for {
		done := false
		err := guard(s.path, func() error { return s.compactTx(revision, first, &done) })
		if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
			return storage.ErrClosed
		}
		if err != nil {
			if errors.Is(err, ErrDamaged) {
				return err
			}
			return fmt.Errorf("storage/bolt: compact %s: %w", s.path, err)
		}
		if first {
			s.compacted.Store(revision)
			first = false
		}
		if done {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if s.closed.Load() {
			return storage.ErrClosed
		}
	}
}

// compactTx deletes one chunk of log entries up to revision.
func (s *Store) compactTx(revision int64, first bool, done *bool) error {
	return s.db.Update(func(tx *bbolt.Tx) error {
		if first {
			if err := tx.Bucket(bucketMeta).Put(metaCompacted, encodeUint(revision)); err != nil {
				return err
			}
		}
		logb := tx.Bucket(bucketLog)
		var keys [][]byte
		c := logb.Cursor()
		for k, _ := c.First(); k != nil && keyRev(k) <= revision && len(keys) < compactChunk; k, _ = c.Next() {
			keys = append(keys, bytes.Clone(k))
		}
		*done = len(keys) < compactChunk
		for _, k := range keys {
			if err := logb.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// Revision implements storage.Interface: the revision readers see, so that
// it is never behind a List or Get that has already returned.
func (s *Store) Revision() int64 {
	rev := s.rev.Load()
	if cur, err := s.visibleRevision(); err == nil && cur > rev {
		return cur
	}
	return rev
}

// CompactedRevision implements storage.Interface.
func (s *Store) CompactedRevision() int64 { return s.compacted.Load() }

// Close implements storage.Interface: the writer finishes the batch it has,
// open watches are closed, and the file is released. Later calls fail with
// storage.ErrClosed; closing twice is harmless.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.closing)
		<-s.writerDone
		s.bc.Close()
		s.compactMu.Lock() // let a running compaction finish its transaction
		defer s.compactMu.Unlock()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("storage/bolt: close %s: %w", s.path, err)
		}
	})
	return s.closeErr
}
