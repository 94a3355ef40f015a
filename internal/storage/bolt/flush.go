package bolt

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/headway/headway/internal/storage"
)

// The flusher, and the replay of the write-ahead log at open: the two ways
// writes move from the log into the bbolt file.

// flusher commits the overlay into bbolt: FlushInterval after the first
// write it has not committed, and once more when the writer has stopped.
func (s *Store) flusher() {
	defer close(s.flusherDone)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case <-s.kick:
		case <-s.writerDone:
			s.flush()
			return
		}
		if s.interval > 0 {
			timer.Reset(s.interval)
			select {
			case <-timer.C:
			case <-s.writerDone:
				timer.Stop()
				s.flush()
				return
			}
		}
		s.flush()
	}
}

// flush commits every pending write into bbolt in one transaction, then
// drops them from the overlay and releases the log segments that held them.
func (s *Store) flush() {
	s.flushMu.Lock() // the flusher's and flushAll's: one at a time
	defer s.flushMu.Unlock()
	if s.failure.Load() != nil {
		return
	}
	s.mu.RLock()
	batch := s.pending
	s.mu.RUnlock()
	if len(batch) == 0 {
		return
	}
	last := batch[len(batch)-1].Revision
	err := guard(s.path, func() error {
		return s.db.Update(func(tx *bbolt.Tx) error {
			kvb, logb := tx.Bucket(bucketKV), tx.Bucket(bucketLog)
			logb.FillPercent = 1 // the log is appended to in key order
			for _, c := range batch {
				if err := store(kvb, logb, c); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(metaRevision, encodeUint(last))
		})
	})
	if err != nil {
		if !errors.Is(err, ErrDamaged) {
			err = fmt.Errorf("storage/bolt: committing the write-ahead log into %s: %w; the log in %s keeps the writes: stop the server, see that the disk is writable and has space, and start it again", s.path, err, s.wal.dir)
		}
		s.setFailed(err)
		return
	}
	s.mu.Lock()
	for _, c := range batch {
		if s.latest[c.KV.Key] == c {
			delete(s.latest, c.KV.Key)
		}
	}
	// A new slice: readers may still hold the old one.
	s.pending = append([]*storage.Change(nil), s.pending[len(batch):]...)
	s.flushedC.Broadcast()
	s.mu.Unlock()
	s.wal.release(last)
}

// flushAll commits the overlay into bbolt now: then the file holds every
// write acknowledged so far.
func (s *Store) flushAll() error {
	select {
	case <-s.flusherDone:
		return storage.ErrClosed
	default:
	}
	s.flush()
	return s.failed()
}

// replay commits what the write-ahead log holds beyond the file's revision
// into the file, in chunks of transactions.
func (s *Store) replay() error {
	var chunk []walChange
	apply := func() error {
		if len(chunk) == 0 {
			return nil
		}
		err := s.db.Update(func(tx *bbolt.Tx) error {
			kvb, logb := tx.Bucket(bucketKV), tx.Bucket(bucketLog)
			for _, w := range chunk {
				cur, err := boltItem(kvb, w.key)
				if err != nil {
					return err
				}
				r := &request{key: w.key, value: w.value, op: opDelete}
				if w.typ == logPut {
					r.op = opCreate
					if cur.exists {
						r.op = opUpdate
					}
				}
				c, err := change(cur, r, w.rev)
				if err != nil {
					return &DamagedError{Path: walDir(s.path), Detail: fmt.Sprintf("its change at revision %d to %s does not apply: %v", w.rev, w.key, err)}
				}
				if err := store(kvb, logb, c); err != nil {
					return err
				}
			}
			return tx.Bucket(bucketMeta).Put(metaRevision, encodeUint(chunk[len(chunk)-1].rev))
		})
		if err == nil {
			s.rev.Store(chunk[len(chunk)-1].rev)
			s.replayed += len(chunk)
		}
		chunk = chunk[:0]
		return err
	}
	err := readLog(walDir(s.path), s.rev.Load(), func(rev int64, typ byte, key, value []byte) error {
		chunk = append(chunk, walChange{rev: rev, typ: typ, key: string(key), value: bytes.Clone(value)})
		if len(chunk) == compactChunk {
			return apply()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return apply()
}

type walChange struct {
	rev   int64
	typ   byte
	key   string
	value []byte
}
