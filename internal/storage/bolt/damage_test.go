package bolt_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/headway/headway/internal/storage"
	"github.com/headway/headway/internal/storage/bolt"
	bbolt "go.etcd.io/bbolt"
)

// fill writes n objects of about 300 bytes and closes the store.
func fill(t *testing.T, dir string, n int) string {
	t.Helper()
	s := open(t, dir)
	ctx := context.Background()
	// 16 writers, so that writes share commits.
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 16 {
				if _, err := s.Create(ctx, fmt.Sprintf("/registry/configmaps/default/cm-%05d", i), []byte(strings.Repeat("x", 300))); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, "state.db")
}

// damagePages overwrites whole pages with a pattern no page has.
func damagePages(t *testing.T, path string, pages ...int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	garbage := make([]byte, os.Getpagesize())
	for i := range garbage {
		garbage[i] = byte(i*7 + 3)
	}
	for _, pg := range pages {
		if _, err := f.WriteAt(garbage, pg*int64(len(garbage))); err != nil {
			t.Fatal(err)
		}
	}
}

// notRoots moves each page number past the pages that must stay whole for
// salvage to find anything: the meta pages and the roots of the buckets.
// Where they lie depends on how the writes were grouped into commits.
func notRoots(t *testing.T, path string, pages ...int64) []int64 {
	t.Helper()
	db, err := bbolt.Open(path, 0o400, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	keep := map[int64]bool{0: true, 1: true}
	err = db.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bbolt.Bucket) error {
			keep[int64(b.Root())] = true
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	out := make([]int64, len(pages))
	for i, pg := range pages {
		for keep[pg] {
			pg++
		}
		out[i] = pg
	}
	return out
}

func wantDamaged(t *testing.T, err error, path string) {
	t.Helper()
	var de *bolt.DamagedError
	if !errors.As(err, &de) || !errors.Is(err, bolt.ErrDamaged) {
		t.Fatalf("want a DamagedError, got %v", err)
	}
	for _, want := range []string{path, "headway store check", "headway store restore", "headway store salvage"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("error does not say %q: %v", want, err)
		}
	}
}

// A damaged page is an error naming the file and the way out, not a crash
// (bbolt's own page walk at open panics in a goroutine of its own); check
// reports it, salvage keeps every readable object and the result opens.
func TestDamagedPage(t *testing.T) {
	dir := t.TempDir()
	path := fill(t, dir, 3000)
	damagePages(t, path, notRoots(t, path, 10, 50, 100, 200)...)

	_, err := bolt.Open(path, bolt.Options{})
	wantDamaged(t, err, path)

	rep, err := bolt.Check(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() || rep.Keys >= 3000 {
		t.Fatalf("check of a damaged file: ok=%v keys=%d problems=%v", rep.OK(), rep.Keys, rep.Problems)
	}
	saved, kept, problems, err := bolt.Salvage(path)
	if err != nil {
		t.Fatal(err)
	}
	if saved == 0 || saved >= 3000 || len(problems) == 0 {
		t.Fatalf("salvage saved %d of 3000, problems %v", saved, problems)
	}
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("the damaged file was not kept: %v", err)
	}
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatalf("open after salvage: %v", err)
	}
	defer s.Close()
	res, err := s.List(context.Background(), "/registry/configmaps/", storage.ListOptions{})
	if err != nil || len(res.Items) != saved {
		t.Fatalf("after salvage: %d objects (%v), want %d", len(res.Items), err, saved)
	}
	// Revisions go on from the old file's: nothing reuses an old revision.
	rev, err := s.Create(context.Background(), "/registry/configmaps/default/after", []byte("x"))
	if err != nil || rev <= 3000 {
		t.Fatalf("create after salvage: rev %d, %v", rev, err)
	}
	if _, err := s.List(context.Background(), "/", storage.ListOptions{Revision: 5}); !errors.Is(err, storage.ErrCompacted) {
		t.Fatalf("history before the salvage should be compacted, got %v", err)
	}
}

// A file cut short (a copy that ran out of disk) is an error, not SIGBUS.
func TestTruncatedFile(t *testing.T) {
	dir := t.TempDir()
	path := fill(t, dir, 3000)
	if err := os.Truncate(path, 16*int64(os.Getpagesize())); err != nil {
		t.Fatal(err)
	}
	_, err := bolt.Open(path, bolt.Options{})
	wantDamaged(t, err, path)
	rep, err := bolt.Check(path, nil)
	if err != nil || rep.OK() {
		t.Fatalf("check of a truncated file: %+v, %v", rep, err)
	}
}

// A record whose bytes are damaged is reported by check with its key, and
// decode (the caller's object decoder) is called on every value.
func TestCheckReportsBadValues(t *testing.T) {
	dir := t.TempDir()
	path := fill(t, dir, 20)
	rep, err := bolt.Check(path, func(key string, value []byte) error {
		if strings.HasSuffix(key, "cm-00007") {
			return errors.New("cannot decode")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Keys != 19 || rep.Log != 20 || len(rep.Problems) != 1 || !strings.Contains(rep.Problems[0], "cm-00007") {
		t.Fatalf("report: %+v", rep)
	}
}

// Backups are consistent copies taken while the store serves, and restore
// puts one in place (keeping the replaced file).
func TestBackupAndRestore(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := context.Background()
	for i := 0; i < 50; i++ {
		if _, err := s.Create(ctx, fmt.Sprintf("/registry/secrets/default/s-%02d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	backup := filepath.Join(dir, "backups", bolt.BackupName(timeNow()))
	if err := os.MkdirAll(filepath.Dir(backup), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := s.Backup(backup); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(ctx, "/registry/secrets/default/after-backup", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if files, err := bolt.Backups(filepath.Join(dir, "backups")); err != nil || len(files) != 1 || files[0] != backup {
		t.Fatalf("backups: %v %v", files, err)
	}
	path := filepath.Join(dir, "state.db")
	damagePages(t, path, 3, 4, 5)
	kept, err := bolt.Restore(path, backup)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(kept); err != nil {
		t.Fatalf("replaced file not kept: %v", err)
	}
	s = open(t, dir)
	defer s.Close()
	res, err := s.List(ctx, "/registry/secrets/", storage.ListOptions{})
	if err != nil || len(res.Items) != 50 {
		t.Fatalf("after restore: %d objects, %v; want the 50 of the backup", len(res.Items), err)
	}
	// A damaged backup is refused and changes nothing.
	damagePages(t, backup, 3, 4, 5)
	s.Close()
	if _, err := bolt.Restore(path, backup); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("restore of a damaged backup: %v", err)
	}
}

func timeNow() time.Time { return time.Now() }

// A backup holds every acknowledged write, also those still only in the
// write-ahead log and the overlay (a flusher that would wait an hour), and
// takes no longer for it.
func TestBackupHoldsLoggedWrites(t *testing.T) {
	dir := t.TempDir()
	s, err := bolt.Open(filepath.Join(dir, "state.db"), bolt.Options{FlushInterval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := range 10 {
		if _, err := s.Create(t.Context(), fmt.Sprintf("/registry/secrets/default/s-%d", i), []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	backup := filepath.Join(dir, "backup.db")
	start := time.Now()
	if err := s.Backup(backup); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("backup took %v: it waited for the flusher", took)
	}
	rep, err := bolt.Check(backup, nil)
	if err != nil || rep.Keys != 10 || rep.Revision != 10 {
		t.Fatalf("backup: %d keys at revision %d (%v), want 10 at 10", rep.Keys, rep.Revision, err)
	}
}
