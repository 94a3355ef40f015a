// Package bolt is the embedded, durable storage.Interface: one bbolt file
// and its write-ahead log.
//
// Every acknowledged write is on disk. Writes go through one writer
// goroutine that commits whatever is queued together (group commit): each
// request gets its own revision, and a request's own failure (ErrKeyExists,
// ErrConflict, ...) does not fail the others, but they share one record in
// the write-ahead log and one fdatasync (wal.go). The writer then adds them
// to the overlay, the writes bbolt does not hold yet, which every read
// consults before the file; publishes the events to watchers in revision
// order; and answers the callers.
//
// A flusher goroutine commits the overlay into bbolt every FlushInterval in
// one transaction (bbolt's two syncs shared by all those writes), drops what
// it committed from the overlay, and lets the log's segments go. At open,
// what the log holds beyond the file's revision is committed into the file
// first: a crash loses no acknowledged write. bbolt alone needs two syncs
// and a write per dirty page for every commit, during which no other commit
// can start; the log's one sequential sync lets the next group follow
// sooner (bench/results.md).
//
// When the previous commit held more than one write (writers are busy), the
// writer waits a little for more before committing: half the previous
// commit's time, at most Options.MaxLinger, and only until the commit holds
// as many writes as the busiest of the last 8 (then every writer seen lately
// is in). A lone writer never waits.
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
	"cmp"
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
	DefaultFlushInterval   = 20 * time.Millisecond
	DefaultMaxPending      = 50000
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
	// FlushInterval is how long the flusher lets writes gather in the
	// overlay before it commits them into bbolt. 0 means
	// DefaultFlushInterval; negative means commit as soon as possible.
	FlushInterval time.Duration
	// MaxPending is how many writes the overlay may hold before the writer
	// waits for the flusher. 0 means DefaultMaxPending.
	MaxPending int
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

	replayed  int
	rev       atomic.Int64 // revision of the last durable write (set under mu)
	compacted atomic.Int64
	closed    atomic.Bool

	// The overlay: writes durable in the log but not (known to be) in
	// bbolt. Only the writer adds to it and only the flusher removes from
	// it, both under mu. A reader takes the pending slice and begins its
	// bbolt transaction under mu (read), so that whatever its transaction
	// lacks is in its slice; the changes themselves are never modified.
	mu         sync.RWMutex
	pending    []*storage.Change          // in revision order
	latest     map[string]*storage.Change // the newest pending change of each key
	flushedC   *sync.Cond                 // on &mu: a flush landed, or the store failed
	flushMu    sync.Mutex                 // held through a flush
	failure    atomic.Pointer[error]      // set once a log or flush write failed
	wal        *wal
	kick       chan struct{}
	interval   time.Duration
	maxPending int

	reqs        chan *request
	closing     chan struct{}
	writerDone  chan struct{}
	flusherDone chan struct{}
	closeOnce   sync.Once
	closeErr    error

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
	opts.MaxLinger = orDefault(opts.MaxLinger, DefaultMaxLinger)
	if opts.InitialMmapSize <= 0 {
		opts.InitialMmapSize = DefaultInitialMmapSize
	}
	opts.FlushInterval = orDefault(opts.FlushInterval, DefaultFlushInterval)
	if opts.MaxPending <= 0 {
		opts.MaxPending = DefaultMaxPending
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
		db:          db,
		path:        path,
		maxBatch:    opts.MaxBatch,
		maxLinger:   opts.MaxLinger,
		latest:      make(map[string]*storage.Change),
		kick:        make(chan struct{}, 1),
		interval:    opts.FlushInterval,
		maxPending:  opts.MaxPending,
		reqs:        make(chan *request),
		closing:     make(chan struct{}),
		writerDone:  make(chan struct{}),
		flusherDone: make(chan struct{}),
	}
	s.flushedC = sync.NewCond(&s.mu)
	if err := db.Update(s.init); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("storage/bolt: open %s: %w", path, err)
	}
	if err := guard(path, s.replay); err != nil {
		_ = db.Close()
		if errors.Is(err, ErrDamaged) {
			return nil, err
		}
		return nil, fmt.Errorf("storage/bolt: replaying the write-ahead log %s into %s: %w", walDir(path), path, err)
	}
	w, err := openWAL(walDir(path), s.rev.Load()+1)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("storage/bolt: opening the write-ahead log %s: %w", walDir(path), err)
	}
	s.wal = w
	s.bc = storage.NewBroadcaster(s.rev.Load(), opts.WatchBuffer, s.history)
	go s.writer()
	go s.flusher()
	return s, nil
}

// orDefault is an Options duration: 0 means the default, negative means none.
func orDefault(d, def time.Duration) time.Duration {
	switch {
	case d == 0:
		return def
	case d < 0:
		return 0
	}
	return d
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

// Replayed is how many writes Open found in the write-ahead log that the
// file lacked (the previous process stopped without closing the store) and
// committed into the file.
func (s *Store) Replayed() int { return s.replayed }

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

// commit decides a batch's writes against the current state, makes them
// durable in the log, adds them to the overlay, publishes their events and
// answers the requests.
func (s *Store) commit(batch []*request) {
	fail := func(err error) {
		for _, r := range batch {
			r.err, r.rev, r.prev = err, 0, storage.KV{}
			close(r.done)
		}
	}
	if err := s.failed(); err != nil {
		fail(err)
		return
	}
	base := s.rev.Load()
	var changes []*storage.Change
	err := guard(s.path, func() error {
		var err error
		changes, err = s.decide(batch, base)
		return err
	})
	if err != nil {
		if !errors.Is(err, ErrDamaged) {
			err = fmt.Errorf("storage/bolt: reading %s: %w", s.path, err)
		}
		fail(err)
		return
	}
	if len(changes) > 0 {
		if err := s.wal.append(base+1, changes); err != nil {
			// What reached the disk is unknown: no write is taken after this.
			err = s.setFailed(fmt.Errorf("storage/bolt: writing the write-ahead log in %s: %w; stop the server, see that the disk is writable and has space, and start it again", s.wal.dir, err))
			fail(err)
			return
		}
		last := changes[len(changes)-1].Revision
		events := make([]storage.Event, len(changes))
		s.mu.Lock()
		for len(s.pending) >= s.maxPending && s.failure.Load() == nil {
			s.flushedC.Wait() // the flusher is behind: wait instead of growing
		}
		s.pending = append(s.pending, changes...)
		for i, c := range changes {
			s.latest[c.KV.Key] = c
			events[i] = c.Event
		}
		s.rev.Store(last)
		s.mu.Unlock()
		select {
		case s.kick <- struct{}{}:
		default:
		}
		s.bc.Publish(events...)
	}
	for _, r := range batch {
		close(r.done)
	}
}

// decide works out each request's change (or its own error) with revisions
// from base+1, reading keys from the batch's earlier writes, the overlay,
// then bbolt.
func (s *Store) decide(batch []*request, base int64) ([]*storage.Change, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var tx *bbolt.Tx
	defer func() {
		if tx != nil {
			_ = tx.Rollback()
		}
	}()
	var local map[string]*storage.Change
	if len(batch) > 1 {
		local = make(map[string]*storage.Change, len(batch))
	}
	lookup := func(key string) (item, error) {
		if c := local[key]; c != nil {
			return itemOf(c), nil
		}
		if c := s.latest[key]; c != nil {
			return itemOf(c), nil
		}
		if tx == nil {
			var err error
			if tx, err = s.db.Begin(false); err != nil {
				return item{}, err
			}
		}
		return boltItem(tx.Bucket(bucketKV), key)
	}
	rev := base
	var changes []*storage.Change
	for _, r := range batch {
		r.err = nil
		if err := r.ctx.Err(); err != nil {
			r.err = err // the caller gave up before the write began
			continue
		}
		cur, err := lookup(r.key)
		if err != nil {
			return nil, err
		}
		c, err := change(cur, r, rev+1)
		if err != nil {
			r.err = err
			continue
		}
		rev = c.Revision
		r.rev = rev
		if local != nil {
			local[r.key] = c
		}
		changes = append(changes, c)
	}
	return changes, nil
}

// item is a key's state before a write: absent, or its revisions and value.
type item struct {
	exists            bool
	createRev, modRev int64
	value             []byte
}

func itemOf(c *storage.Change) item {
	if c.Type == storage.EventDelete {
		return item{}
	}
	return item{exists: true, createRev: c.KV.CreateRevision, modRev: c.KV.ModRevision, value: c.KV.Value}
}

// boltItem reads a key from bbolt; the value aliases the transaction's memory.
func boltItem(kvb *bbolt.Bucket, key string) (item, error) {
	v := kvb.Get([]byte(key))
	if v == nil {
		return item{}, nil
	}
	createRev, modRev, value, err := decodeItem(v)
	if err != nil {
		return item{}, err
	}
	return item{exists: true, createRev: createRev, modRev: modRev, value: value}, nil
}

// change is the change request r makes to a key in state cur as revision
// rev, or the request's own error (ErrKeyExists, ErrNotFound, ErrConflict).
// Values from cur are copied: they may alias a transaction's memory.
func change(cur item, r *request, rev int64) (*storage.Change, error) {
	switch {
	case r.op == opCreate && cur.exists:
		return nil, storage.ErrKeyExists
	case r.op != opCreate && !cur.exists:
		return nil, storage.ErrNotFound
	case r.op != opCreate && r.expected != 0 && r.expected != cur.modRev:
		return nil, storage.ErrConflict
	}
	c := &storage.Change{PrevModRevision: cur.modRev}
	c.Revision = rev
	switch r.op {
	case opCreate:
		c.Type, c.Created = storage.EventPut, true
		c.KV = storage.KV{Key: r.key, Value: r.value, CreateRevision: rev, ModRevision: rev}
	case opUpdate:
		c.Type, c.PrevValue = storage.EventPut, bytes.Clone(cur.value)
		c.KV = storage.KV{Key: r.key, Value: r.value, CreateRevision: cur.createRev, ModRevision: rev}
	default:
		old := bytes.Clone(cur.value)
		c.Type, c.PrevValue = storage.EventDelete, old
		c.KV = storage.KV{Key: r.key, Value: old, CreateRevision: cur.createRev, ModRevision: rev}
		r.prev = storage.KV{Key: r.key, Value: old, CreateRevision: cur.createRev, ModRevision: cur.modRev}
	}
	return c, nil
}

// store writes a change into bbolt: the key's new state and its log entry.
func store(kvb, logb *bbolt.Bucket, c *storage.Change) error {
	var err error
	if c.Type == storage.EventDelete {
		err = kvb.Delete([]byte(c.KV.Key))
	} else {
		err = kvb.Put([]byte(c.KV.Key), encodeItem(c.KV.CreateRevision, c.KV.ModRevision, c.KV.Value))
	}
	if err != nil {
		return err
	}
	return logb.Put(revKey(c.Revision), encodeChange(c))
}

func (s *Store) failed() error {
	if p := s.failure.Load(); p != nil {
		return *p
	}
	return nil
}

// setFailed records the store's first failure (later writes are refused
// with it) and returns the one recorded.
func (s *Store) setFailed(err error) error {
	s.failure.CompareAndSwap(nil, &err)
	s.mu.Lock()
	s.flushedC.Broadcast()
	s.mu.Unlock()
	return s.failed()
}

func cloneValue(v []byte) []byte {
	if v == nil {
		return []byte{}
	}
	return bytes.Clone(v)
}

// snapshot is what a read sees: a bbolt transaction and the overlay's
// writes, which together hold every write up to rev. The transaction holds
// the writes up to its own revision; pending holds every later one (and may
// hold some it has).
type snapshot struct {
	tx      *bbolt.Tx
	rev     int64
	pending []*storage.Change
}

// read runs fn on a snapshot.
func (s *Store) read(fn func(sn *snapshot) error) error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	s.mu.RLock()
	sn := &snapshot{rev: s.rev.Load(), pending: s.pending}
	return s.viewLocked(func(tx *bbolt.Tx) error {
		sn.tx = tx
		return fn(sn)
	})
}

// viewLocked begins a bbolt read transaction, lets go of mu (which the
// caller holds for reading, so that the transaction has every write the
// overlay no longer holds) and runs fn in it, reporting a closed store as
// ErrClosed.
func (s *Store) viewLocked(fn func(tx *bbolt.Tx) error) error {
	err := guard(s.path, func() error {
		tx, err := func() (*bbolt.Tx, error) {
			defer s.mu.RUnlock()
			return s.db.Begin(false)
		}()
		if err != nil {
			return err
		}
		defer tx.Rollback()
		return fn(tx)
	})
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
	if s.closed.Load() {
		return storage.KV{}, storage.ErrClosed
	}
	s.mu.RLock()
	c := s.latest[key]
	if c == nil {
		// Not in the overlay: bbolt has the key's newest state, also if a
		// flush lands before the transaction begins (it leaves the overlay
		// only after), so the transaction begins before mu is let go.
		var kv storage.KV
		err := s.viewLocked(func(tx *bbolt.Tx) error {
			cur, err := boltItem(tx.Bucket(bucketKV), key)
			if err != nil || !cur.exists {
				return cmp.Or(err, storage.ErrNotFound)
			}
			kv = storage.KV{Key: key, Value: bytes.Clone(cur.value), CreateRevision: cur.createRev, ModRevision: cur.modRev}
			return nil
		})
		return kv, err
	}
	s.mu.RUnlock()
	if c.Type == storage.EventDelete {
		return storage.KV{}, storage.ErrNotFound
	}
	kv := c.KV
	kv.Value = bytes.Clone(kv.Value)
	return kv, nil
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
	err := s.read(func(sn *snapshot) error {
		cur := sn.rev
		_, compacted, err := readMeta(sn.tx)
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
			res, err = listAt(sn, start, end, opts.Limit, opts.Revision)
			return err
		}
		res, err = listNow(sn, start, end, opts.Limit)
		res.Revision = cur
		return err
	})
	return res, err
}

// overlayRange returns the newest pending change of each key in
// [start, end), in key order.
func overlayRange(pending []*storage.Change, start, end string) []*storage.Change {
	var newest map[string]*storage.Change
	for _, c := range pending {
		if storage.InRange(c.KV.Key, start, end) {
			if newest == nil {
				newest = make(map[string]*storage.Change)
			}
			newest[c.KV.Key] = c
		}
	}
	out := make([]*storage.Change, 0, len(newest))
	for _, c := range newest {
		out = append(out, c)
	}
	slices.SortFunc(out, func(a, b *storage.Change) int { return strings.Compare(a.KV.Key, b.KV.Key) })
	return out
}

// listNow lists [start, end) as of the snapshot: bbolt's keys with the
// overlay's newest changes put over them.
func listNow(sn *snapshot, start, end string, limit int64) (storage.ListResult, error) {
	var res storage.ListResult
	over := overlayRange(sn.pending, start, end)
	endB := []byte(end)
	inRange := func(k []byte) bool { return k != nil && (end == "" || bytes.Compare(k, endB) < 0) }
	c := sn.tx.Bucket(bucketKV).Cursor()
	k, v := c.Seek([]byte(start))
	full := func() bool { return limit > 0 && int64(len(res.Items)) == limit }
	// Each round takes the next key in order, from bbolt or the overlay
	// (which wins for a key both have).
	for inRange(k) || len(over) > 0 {
		var kv storage.KV
		var present bool
		switch {
		case len(over) > 0 && (!inRange(k) || over[0].KV.Key <= string(k)):
			o := over[0]
			over = over[1:]
			if inRange(k) && o.KV.Key == string(k) {
				k, v = c.Next()
			}
			if o.Type != storage.EventDelete {
				kv, present = o.KV, true
			}
		default:
			createRev, modRev, value, err := decodeItem(v)
			if err != nil {
				return res, err
			}
			kv, present = storage.KV{Key: string(k), Value: value, CreateRevision: createRev, ModRevision: modRev}, true
			k, v = c.Next()
		}
		if !present {
			continue
		}
		if full() {
			res.Remaining++
			continue
		}
		kv.Value = bytes.Clone(kv.Value)
		res.Items = append(res.Items, kv)
	}
	res.More = res.Remaining > 0
	return res, nil
}

// listAt rewinds the keys in [start, end) to revision rev: the overlay's
// changes after it, then the file's log.
func listAt(sn *snapshot, start, end string, limit, rev int64) (storage.ListResult, error) {
	all, err := listNow(sn, start, end, 0)
	if err != nil {
		return storage.ListResult{}, err
	}
	fileRev, _, err := readMeta(sn.tx)
	if err != nil {
		return storage.ListResult{}, err
	}
	state := make(map[string]storage.KV, len(all.Items))
	for _, kv := range all.Items {
		state[kv.Key] = kv
	}
	for i := len(sn.pending) - 1; i >= 0; i-- {
		c := sn.pending[i]
		if c.Revision <= max(rev, fileRev) {
			break
		}
		if storage.InRange(c.KV.Key, start, end) {
			c.Undo(state)
		}
	}
	// The file's log ends at its revision.
	c := sn.tx.Bucket(bucketLog).Cursor()
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

// committed reports whether rev has been written: every read sees it.
func (s *Store) committed(rev int64) bool { return rev <= s.rev.Load() }

// Watch implements storage.Interface. A watch from a revision that is
// written but not yet published starts after it: the broadcaster skips
// the events up to it when they are published.
func (s *Store) Watch(ctx context.Context, prefix string, fromRevision int64) (<-chan storage.Event, error) {
	if s.closed.Load() {
		return nil, storage.ErrClosed
	}
	switch {
	case !s.committed(fromRevision):
		return nil, storage.ErrFutureRevision
	case fromRevision != 0 && fromRevision < s.compacted.Load():
		return nil, storage.ErrCompacted
	}
	return s.bc.Watch(ctx, prefix, fromRevision)
}

// history serves the broadcaster's replays: the file's log up to its
// revision, the overlay after it.
func (s *Store) history(prefix string, after, upTo int64, limit int) ([]storage.Event, int64, error) {
	var out []storage.Event
	next := after
	err := s.read(func(sn *snapshot) error {
		fileRev, compacted, err := readMeta(sn.tx)
		if err != nil {
			return err
		}
		if after < compacted {
			return storage.ErrCompacted
		}
		n := 0
		c := sn.tx.Bucket(bucketLog).Cursor()
		for k, v := c.Seek(revKey(after + 1)); k != nil && n < limit; k, v = c.Next() {
			rev := keyRev(k)
			if rev > upTo || rev > fileRev {
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
		for _, c := range sn.pending {
			if n >= limit || c.Revision > upTo {
				break
			}
			if c.Revision <= max(next, fileRev) {
				continue
			}
			n++
			next = c.Revision
			if strings.HasPrefix(c.KV.Key, prefix) {
				out = append(out, c.Event)
			}
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
	if !s.committed(revision) {
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
func (s *Store) Revision() int64 { return s.rev.Load() }

// CompactedRevision implements storage.Interface.
func (s *Store) CompactedRevision() int64 { return s.compacted.Load() }

// Close implements storage.Interface: the writer finishes the batch it has,
// the flusher commits the overlay into the file, open watches are closed,
// and the file is released. Later calls fail with storage.ErrClosed; closing
// twice is harmless.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.closed.Store(true)
		close(s.closing)
		<-s.writerDone
		<-s.flusherDone
		s.bc.Close()
		s.compactMu.Lock() // let a running compaction finish its transaction
		defer s.compactMu.Unlock()
		// After a failure the log keeps what the file lacks: the next
		// Open commits it.
		err := s.failed()
		clean := err == nil && len(s.pending) == 0 // the flusher has stopped
		if werr := s.wal.close(clean); err == nil && werr != nil {
			err = fmt.Errorf("storage/bolt: close the write-ahead log %s: %w", s.wal.dir, werr)
		}
		if derr := s.db.Close(); err == nil && derr != nil {
			err = fmt.Errorf("storage/bolt: close %s: %w", s.path, derr)
		}
		s.closeErr = err
	})
	return s.closeErr
}
