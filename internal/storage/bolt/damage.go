package bolt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/headway/headway/internal/atomicfile"
	"github.com/headway/headway/internal/storage"
	bbolt "go.etcd.io/bbolt"
)

// ErrDamaged marks an error caused by a damaged store file (a page that is
// not what the file's structure says, a read past the end of a truncated
// file, an undecodable record). Such errors name the file and what to do.
var ErrDamaged = errors.New("store file is damaged")

// DamagedError is a damaged-file error: the file, what was found and where.
type DamagedError struct {
	Path   string
	Detail string
}

func (e *DamagedError) Error() string {
	dir := filepath.Dir(e.Path)
	return fmt.Sprintf("storage/bolt: %s is damaged (%s). With the server stopped, run `headway store check --data-dir %s` to see what is readable, "+
		"then `headway store restore --data-dir %s` to go back to the newest backup (the server keeps them in %s), "+
		"or `headway store salvage --data-dir %s` to copy every readable object into a new file", e.Path, e.Detail, dir, dir, filepath.Join(dir, "backups"), dir)
}

// Unwrap lets errors.Is(err, ErrDamaged) match.
func (e *DamagedError) Unwrap() error { return ErrDamaged }

// guard runs fn, turning a panic inside bbolt (its page checks panic on a
// damaged page) or a memory fault (SIGBUS reading past the end of a
// truncated file) into a DamagedError. It is for the calling goroutine only.
func guard(path string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if v := recover(); v != nil {
			err = &DamagedError{Path: path, Detail: fmt.Sprint(v)}
		}
	}()
	return fn()
}

// verifyPages reads every page of an existing store file read-only in this
// goroutine before the file is opened for writing: bbolt rebuilds its free
// list at open by walking the pages in a goroutine of its own, where a
// damaged page would crash the process.
func verifyPages(path string, timeout time.Duration) error {
	var db *bbolt.DB
	err := guard(path, func() error {
		var err error
		db, err = bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true, Timeout: timeout})
		return err
	})
	if err != nil {
		return err
	}
	defer db.Close()
	return guard(path, func() error {
		return db.View(func(tx *bbolt.Tx) error {
			return tx.ForEach(func(_ []byte, b *bbolt.Bucket) error {
				c := b.Cursor()
				for k, _ := c.First(); k != nil; k, _ = c.Next() {
				}
				return nil
			})
		})
	})
}

// CheckReport is what Check found in a store file.
type CheckReport struct {
	Path     string
	Keys     int   // objects readable in the current state
	Log      int   // change-log records readable
	Revision int64 // the file's revision
	// Logged is how many writes after Revision the write-ahead log holds
	// (a server that stopped without closing the store): the next Open
	// commits them into the file.
	Logged   int
	Problems []string
}

// OK reports whether the file has no problems.
func (r *CheckReport) OK() bool { return len(r.Problems) == 0 }

// Check opens the store file read-only (the server must not have it open)
// and reads every page and record, in this goroutine, so that damage is
// reported instead of crashing the process. decode, when set, is also called
// on every current value (to find values that are not valid objects).
func Check(path string, decode func(key string, value []byte) error) (*CheckReport, error) {
	rep := &CheckReport{Path: path}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("storage/bolt: %w", err)
	}
	var db *bbolt.DB
	err := guard(path, func() error {
		var err error
		db, err = bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
		return err
	})
	if err != nil {
		if errors.Is(err, ErrDamaged) {
			rep.Problems = append(rep.Problems, err.(*DamagedError).Detail)
			return rep, nil
		}
		return nil, fmt.Errorf("storage/bolt: open %s read-only (is a server using it?): %w", path, err)
	}
	defer db.Close()
	err = guard(path, func() error {
		return db.View(func(tx *bbolt.Tx) error {
			meta := tx.Bucket(bucketMeta)
			if meta == nil {
				rep.Problems = append(rep.Problems, "not a headway store (no meta bucket)")
				return nil
			}
			rev, _, err := readMeta(tx)
			if err != nil {
				rep.Problems = append(rep.Problems, "meta: "+err.Error())
			}
			rep.Revision = rev
			checkBucket(path, tx.Bucket(bucketKV), "kv", rep, func(k, v []byte) error {
				_, _, value, err := decodeItem(v)
				if err == nil && decode != nil {
					err = decode(string(k), value)
				}
				if err == nil {
					rep.Keys++
				}
				return err
			})
			checkBucket(path, tx.Bucket(bucketLog), "log", rep, func(k, v []byte) error {
				if len(k) != 8 {
					return errCorrupt
				}
				_, err := decodeChange(keyRev(k), v)
				if err == nil {
					rep.Log++
				}
				return err
			})
			return nil
		})
	})
	if err != nil {
		rep.Problems = append(rep.Problems, err.(*DamagedError).Detail)
	}
	err = readLog(walDir(path), rep.Revision, func(int64, byte, []byte, []byte) error {
		rep.Logged++
		return nil
	})
	var de *DamagedError
	switch {
	case errors.As(err, &de):
		rep.Problems = append(rep.Problems, de.Path+": "+de.Detail)
	case err != nil:
		rep.Problems = append(rep.Problems, err.Error())
	}
	return rep, nil
}

// checkBucket reads every record of one bucket, reporting bad records; a
// damaged page ends the walk of the bucket (what lies behind it is lost).
func checkBucket(path string, b *bbolt.Bucket, name string, rep *CheckReport, record func(k, v []byte) error) {
	if b == nil {
		rep.Problems = append(rep.Problems, fmt.Sprintf("bucket %q is missing", name))
		return
	}
	var last []byte
	err := guard(path, func() error {
		c := b.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			last = append(last[:0], k...)
			if err := record(k, v); err != nil {
				rep.Problems = append(rep.Problems, fmt.Sprintf("%s record %q: %v", name, printable(k), err))
			}
		}
		return nil
	})
	if err != nil {
		where := "at its start"
		if last != nil {
			where = fmt.Sprintf("after %q", printable(last))
		}
		rep.Problems = append(rep.Problems, fmt.Sprintf("%s bucket, %s: %s", name, where, err.(*DamagedError).Detail))
	}
}

func printable(k []byte) string {
	for _, c := range k {
		if c < 0x20 || c > 0x7e {
			return fmt.Sprintf("%x", k)
		}
	}
	return string(k)
}

// Backup writes a consistent copy of the store to path while it serves
// (one read transaction), through a temporary file renamed into place.
func (s *Store) Backup(path string) error {
	if s.closed.Load() {
		return storage.ErrClosed
	}
	// The copy is of the file alone: it holds every write made so far once
	// the overlay is in it.
	if err := s.flushAll(); err != nil {
		return fmt.Errorf("storage/bolt: backup of %s to %s: %w", s.path, path, err)
	}
	err := guard(s.path, func() error {
		return s.db.View(func(tx *bbolt.Tx) error {
			return atomicfile.WriteFrom(path, 0o600, func(w io.Writer) error {
				_, err := tx.WriteTo(w)
				return err
			})
		})
	})
	if err != nil {
		return fmt.Errorf("storage/bolt: backup of %s to %s: %w", s.path, path, err)
	}
	return nil
}

// BackupName is the file name of a backup taken at t; names sort by time.
func BackupName(t time.Time) string {
	return "headway-" + t.UTC().Format("20060102T150405.000Z") + ".db"
}

// Backups lists the backup files in dir, oldest first.
func Backups(dir string) ([]string, error) {
	return filesIn(dir, func(n string) bool { return strings.HasPrefix(n, "headway-") && strings.HasSuffix(n, ".db") })
}

// BackupEvery takes a backup into dir every interval until ctx ends,
// keeping the newest keep files.
func (s *Store) BackupEvery(ctx context.Context, dir string, interval time.Duration, keep int, log *slog.Logger) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		log.Error("backups disabled: cannot create the backup directory", "dir", dir, "err", err)
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		start := time.Now()
		path := filepath.Join(dir, BackupName(start))
		if err := s.Backup(path); err != nil {
			if errors.Is(err, storage.ErrClosed) {
				return
			}
			log.Error("store backup failed", "file", path, "err", err)
			continue
		}
		log.Info("store backup written", "file", path, "revision", s.Revision(), "took", time.Since(start))
		files, err := Backups(dir)
		if err != nil {
			continue
		}
		for len(files) > keep && keep > 0 {
			if err := os.Remove(files[0]); err != nil {
				log.Warn("removing an old backup", "file", files[0], "err", err)
			}
			files = files[1:]
		}
	}
}

// Restore replaces the store file at path with the backup at from, after
// checking the backup; the replaced file is kept beside it with the suffix
// returned. The server must be stopped.
func Restore(path, from string) (kept string, err error) {
	rep, err := Check(from, nil)
	if err != nil {
		return "", err
	}
	if !rep.OK() {
		return "", fmt.Errorf("storage/bolt: backup %s is damaged too: %s", from, strings.Join(rep.Problems, "; "))
	}
	data, err := os.ReadFile(from)
	if err != nil {
		return "", err
	}
	return replace(path, func(tmp string) error { return os.WriteFile(tmp, data, 0o600) })
}

// Salvage copies every readable current object of the store at path into a
// new file and puts it in place of the old one (kept beside it): revisions of
// the objects are kept, the change log is not (watchers relist). It returns
// how many objects were saved and the problems met.
func Salvage(path string) (saved int, kept string, problems []string, err error) {
	type item struct {
		key, value []byte
	}
	var items []item
	rep, err := Check(path, nil)
	if err != nil {
		return 0, "", nil, err
	}
	problems = rep.Problems
	rev := rep.Revision
	db, err := bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
	if err != nil {
		return 0, "", problems, fmt.Errorf("storage/bolt: open %s read-only: %w", path, err)
	}
	_ = guard(path, func() error {
		return db.View(func(tx *bbolt.Tx) error {
			b := tx.Bucket(bucketKV)
			if b == nil {
				return nil
			}
			c := b.Cursor()
			for k, v := c.First(); k != nil; k, v = c.Next() {
				_, modRev, _, err := decodeItem(v)
				if err != nil {
					continue
				}
				rev = max(rev, modRev)
				items = append(items, item{bytes.Clone(k), bytes.Clone(v)})
			}
			return nil
		})
	})
	db.Close()
	kept, err = replace(path, func(tmp string) error {
		out, err := bbolt.Open(tmp, 0o600, &bbolt.Options{Timeout: time.Second})
		if err != nil {
			return err
		}
		err = out.Update(func(tx *bbolt.Tx) error {
			meta, err := tx.CreateBucket(bucketMeta)
			if err != nil {
				return err
			}
			for _, kv := range [][2][]byte{{metaVersion, encodeUint(formatVersion)}, {metaRevision, encodeUint(rev)}, {metaCompacted, encodeUint(rev)}} {
				if err := meta.Put(kv[0], kv[1]); err != nil {
					return err
				}
			}
			if _, err := tx.CreateBucket(bucketLog); err != nil {
				return err
			}
			kvb, err := tx.CreateBucket(bucketKV)
			if err != nil {
				return err
			}
			for _, it := range items {
				if err := kvb.Put(it.key, it.value); err != nil {
					return err
				}
			}
			return nil
		})
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		return err
	})
	return len(items), kept, problems, err
}

// replace writes a new file through write and swaps it in for path,
// keeping the old file as path.replaced-<time> (and its write-ahead log,
// whose records only that file can take, as path.replaced-<time>.wal).
func replace(path string, write func(tmp string) error) (string, error) {
	tmp := path + ".new"
	_ = os.Remove(tmp)
	if err := write(tmp); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("storage/bolt: writing %s: %w", tmp, err)
	}
	kept := ""
	if _, err := os.Stat(path); err == nil {
		kept = path + ".replaced-" + time.Now().UTC().Format("20060102T150405Z")
		if err := os.Rename(path, kept); err != nil {
			return "", err
		}
	}
	// The write-ahead log's records follow the replaced file: they go
	// aside with it.
	if err := discardWAL(path, kept); err != nil {
		return kept, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return kept, err
	}
	return kept, nil
}
