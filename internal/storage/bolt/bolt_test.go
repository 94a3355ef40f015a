package bolt_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/headway/headway/internal/storage"
	"github.com/headway/headway/internal/storage/bolt"
	"github.com/headway/headway/internal/storage/storagetest"
)

func open(t testing.TB, dir string) *bolt.Store {
	t.Helper()
	s, err := bolt.Open(filepath.Join(dir, "state.db"), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// flushModes are the ways the conformance suite runs: writes reach the
// file at the default pace, as soon as possible (reads find nearly all in
// the file), or only at Close (reads find all of them in the overlay), with
// segments small enough that the write-ahead log rotates.
var flushModes = []struct {
	name     string
	interval time.Duration
	segment  int64
}{
	{"default", 0, 0},
	{"at-once", -1, 4096},
	{"at-close", time.Hour, 4096},
}

func TestConformance(t *testing.T) {
	for _, m := range flushModes {
		t.Run(m.name, func(t *testing.T) {
			if m.segment > 0 {
				defer bolt.SetSegmentSize(m.segment)()
			}
			storagetest.Run(t, func(t *testing.T) storage.Interface {
				s, err := bolt.Open(filepath.Join(t.TempDir(), "state.db"), bolt.Options{FlushInterval: m.interval})
				if err != nil {
					t.Fatal(err)
				}
				return s
			})
		})
	}
}

func TestPersistent(t *testing.T) {
	for _, m := range flushModes {
		t.Run(m.name, func(t *testing.T) {
			if m.segment > 0 {
				defer bolt.SetSegmentSize(m.segment)()
			}
			storagetest.RunPersistent(t, func(t *testing.T, dir string) storage.Interface {
				s, err := bolt.Open(filepath.Join(dir, "state.db"), bolt.Options{FlushInterval: m.interval})
				if err != nil {
					t.Fatal(err)
				}
				return s
			})
		})
	}
}

// A second server on the same data dir fails at once, naming the file.
func TestOpenLocked(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	path := filepath.Join(dir, "state.db")
	_, err := bolt.Open(path, bolt.Options{Timeout: 50 * time.Millisecond})
	if err == nil {
		t.Fatal("second Open of a locked file succeeded")
	}
	if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("error does not say which file is locked: %v", err)
	}
	// Once the first store closes, the file opens.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := bolt.Open(path, bolt.Options{Timeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s2.Close()
}

func TestOpenNotAStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "junk.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("not a bolt file ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := bolt.Open(path, bolt.Options{})
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of a file that is not a store: %v", err)
	}
}

func TestOpenCreatesDir(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "state.db")
	s, err := bolt.Open(path, bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Path() != path {
		t.Fatalf("Path() = %q, want %q", s.Path(), path)
	}
}

// Writes racing on one key in the same batch: each gets its own answer.
func TestBatchPerRequestErrors(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	ctx := t.Context()
	const n = 32
	for round := range 5 {
		key := fmt.Sprintf("/race/%d", round)
		var wins, exists atomic.Int32
		var wg sync.WaitGroup
		for range n {
			wg.Go(func() {
				_, err := s.Create(ctx, key, []byte("v"))
				switch {
				case err == nil:
					wins.Add(1)
				case errors.Is(err, storage.ErrKeyExists):
					exists.Add(1)
				default:
					t.Error(err)
				}
			})
		}
		wg.Wait()
		if wins.Load() != 1 || exists.Load() != n-1 {
			t.Fatalf("round %d: %d creates succeeded, %d got ErrKeyExists; want 1 and %d", round, wins.Load(), exists.Load(), n-1)
		}
	}
	if got := s.Revision(); got != 5 {
		t.Fatalf("revision %d after 5 successful creates", got)
	}
}

func TestKeyLimits(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	ctx := t.Context()
	if _, err := s.Create(ctx, "", []byte("v")); err == nil {
		t.Fatal("Create with an empty key succeeded")
	}
	if _, err := s.Create(ctx, strings.Repeat("k", 40000), []byte("v")); err == nil {
		t.Fatal("Create with a 40,000-byte key succeeded")
	}
	if s.Revision() != 0 {
		t.Fatalf("rejected writes advanced the revision to %d", s.Revision())
	}
}

// TestCrash: a process that dies without closing the store loses no
// acknowledged write. The test binary runs itself as the process that dies:
// with the flusher committing into the file every millisecond and the log
// rotating through small segments, and with nothing committed into the file
// (every write only in the log, whose last segment then gets a torn record).
func TestCrash(t *testing.T) {
	if dir := os.Getenv("HEADWAY_BOLT_CRASH_DIR"); dir != "" {
		crashChild(dir, os.Getenv("HEADWAY_BOLT_CRASH_MODE"))
		return
	}
	for _, mode := range []string{"flushing", "log-only"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			acked := crash(t, dir, mode)
			path := filepath.Join(dir, "state.db")
			if mode == "log-only" {
				rep, err := bolt.Check(path, nil)
				if err != nil || rep.Revision != 0 || rep.Logged != len(acked) || !rep.OK() {
					t.Fatalf("the file alone: revision %d, %d writes in the log, problems %v, %v; want 0 and %d (every write only in the log)", rep.Revision, rep.Logged, rep.Problems, err, len(acked))
				}
				tearLastRecord(t, dir)
			}
			for round := range 2 {
				s := open(t, dir)
				if mode == "log-only" && round == 0 && s.Replayed() != len(acked) {
					t.Fatalf("Replayed %d, want %d", s.Replayed(), len(acked))
				}
				if got := s.Revision(); got < int64(len(acked)) {
					t.Fatalf("round %d: revision after the crash %d, want >= %d", round, got, len(acked))
				}
				for _, key := range acked {
					if _, err := s.Get(t.Context(), key); err != nil {
						t.Fatalf("round %d: acknowledged key %s after the crash: %v", round, key, err)
					}
				}
				res, err := s.List(t.Context(), "/crash/", storage.ListOptions{})
				if err != nil || len(res.Items) != len(acked) {
					t.Fatalf("round %d: list after the crash: %d keys, %v; want %d", round, len(res.Items), err, len(acked))
				}
				// The store carries on.
				if _, err := s.Create(t.Context(), fmt.Sprintf("/after/%d", round), []byte("x")); err != nil {
					t.Fatal(err)
				}
				if err := s.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// crash runs the child that writes and dies, and returns the keys it
// acknowledged.
func crash(t *testing.T, dir, mode string, env ...string) []string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrash$")
	cmd.Env = append(os.Environ(), "HEADWAY_BOLT_CRASH_DIR="+dir, "HEADWAY_BOLT_CRASH_MODE="+mode)
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.Output()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("child: %v (want exit status 3)\n%s", err, out)
	}
	var acked []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(line, "acked ") {
			acked = append(acked, strings.TrimPrefix(line, "acked "))
		}
	}
	if len(acked) != 16*50 {
		t.Fatalf("child acknowledged %d writes, want %d:\n%s", len(acked), 16*50, out)
	}
	return acked
}

// tearLastRecord appends to the log's newest segment the start of a record
// that never finished: a header promising more bytes than follow.
func tearLastRecord(t *testing.T, dir string) {
	t.Helper()
	segs, err := filepath.Glob(filepath.Join(dir, "state.db.wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no log segments: %v", err)
	}
	slices.Sort(segs)
	f, err := os.OpenFile(segs[len(segs)-1], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte{200, 0, 0, 0, 1, 2, 3, 4, 1, 2, 3}); err != nil {
		t.Fatal(err)
	}
}

func crashChild(dir, mode string) {
	segment := int64(4096)
	if v, err := strconv.ParseInt(os.Getenv("HEADWAY_BOLT_CRASH_SEGMENT"), 10, 64); err == nil {
		segment = v
	}
	bolt.SetSegmentSize(segment)
	opts := bolt.Options{FlushInterval: time.Millisecond}
	if mode == "log-only" {
		opts.FlushInterval = time.Hour
	}
	s, err := bolt.Open(filepath.Join(dir, "state.db"), opts)
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				key := fmt.Sprintf("/crash/%d/%d", g, i)
				if _, err := s.Create(context.Background(), key, []byte(strings.Repeat("v", 100))); err != nil {
					fmt.Println("create:", err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Println("acked", key)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	os.Exit(3) // no Close
}

// A log that lacks revisions the file does not have (a segment lost) stops
// the open with an error naming the log, and changes nothing; salvage puts
// the log aside with the file and the store opens again.
func TestLogGap(t *testing.T) {
	dir := t.TempDir()
	crash(t, dir, "log-only")
	segs, err := filepath.Glob(filepath.Join(dir, "state.db.wal", "*.wal"))
	if err != nil || len(segs) < 3 {
		t.Fatalf("want several log segments, got %v (%v)", segs, err)
	}
	slices.Sort(segs)
	if err := os.Remove(segs[1]); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "state.db")
	_, err = bolt.Open(path, bolt.Options{})
	if !errors.Is(err, bolt.ErrDamaged) || !strings.Contains(err.Error(), "state.db.wal") || !strings.Contains(err.Error(), "lacks revisions") {
		t.Fatalf("open with a gap in the log: %v", err)
	}
	if rep, err := bolt.Check(path, nil); err != nil || rep.Revision != 0 || rep.OK() || !strings.Contains(strings.Join(rep.Problems, " "), "lacks revisions") {
		t.Fatalf("check after the refused open: revision %d (want 0: unchanged), problems %v (want the gap), %v", rep.Revision, rep.Problems, err)
	}
	_, kept, _, err := bolt.Salvage(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(kept + ".wal"); err != nil {
		t.Fatalf("the log was not kept beside the replaced file: %v", err)
	}
	s := open(t, dir)
	defer s.Close()
	if _, err := s.Create(t.Context(), "/after", []byte("x")); err != nil {
		t.Fatal(err)
	}
}

// A damaged record in the middle of the log's last segment (records after
// it continue the log) stops the open with an error naming the segment: it
// is not taken for a write torn by the crash, which would drop the writes
// after it silently.
func TestLogDamagedRecord(t *testing.T) {
	dir := t.TempDir()
	crash(t, dir, "log-only", "HEADWAY_BOLT_CRASH_SEGMENT=1048576")
	segs, err := filepath.Glob(filepath.Join(dir, "state.db.wal", "*.wal"))
	if err != nil || len(segs) != 1 {
		t.Fatalf("want one log segment, got %v (%v)", segs, err)
	}
	data, err := os.ReadFile(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	if n := binary.LittleEndian.Uint32(data); n == 0 || int(n)+8 >= len(data) {
		t.Fatalf("the segment's first record (%d bytes) is not followed by others (%d bytes in all)", n, len(data))
	}
	data[8+4] ^= 0xff // in the first record's payload
	if err := os.WriteFile(segs[0], data, 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "state.db")
	_, err = bolt.Open(path, bolt.Options{})
	if !errors.Is(err, bolt.ErrDamaged) || !strings.Contains(err.Error(), segs[0]) || !strings.Contains(err.Error(), "records after it go on") {
		t.Fatalf("open with a damaged record: %v", err)
	}
	rep, err := bolt.Check(path, nil)
	if err != nil || rep.Revision != 0 || rep.OK() {
		t.Fatalf("check: revision %d (want 0: unchanged), problems %v (want the damaged record), %v", rep.Revision, rep.Problems, err)
	}
}

func benchmarkCreate(b *testing.B, writers int) {
	s := open(b, b.TempDir())
	defer s.Close()
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((writers + procs - 1) / procs)
	value := []byte(strings.Repeat("x", 1024))
	var n atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			key := fmt.Sprintf("/registry/pods/default/pod-%09d", n.Add(1))
			if _, err := s.Create(ctx, key, value); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
}

// BenchmarkCreate: durable creates of 1 KiB values from 16 concurrent callers.
func BenchmarkCreate(b *testing.B) { benchmarkCreate(b, 16) }

// BenchmarkCreateSerial: one caller, one fsync per create.
func BenchmarkCreateSerial(b *testing.B) { benchmarkCreate(b, 1) }

// TestCloseAnswersEveryWrite: writers busy enough that the writer waits for
// more before committing (see the package doc) are all answered when the
// store closes, with their write committed or ErrClosed, and every write
// acknowledged is in the file after it is opened again.
func TestCloseAnswersEveryWrite(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	ctx := t.Context()
	const writers = 16
	var (
		mu    sync.Mutex
		acked []string
		done  atomic.Int64
		wg    sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for i := 0; ; i++ {
				key := fmt.Sprintf("/close/%d/%d", w, i)
				_, err := s.Create(ctx, key, []byte("v"))
				if errors.Is(err, storage.ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("create %s: %v", key, err)
					return
				}
				mu.Lock()
				acked = append(acked, key)
				mu.Unlock()
				done.Add(1)
			}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for done.Load() < 500 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-time.After(10 * time.Second):
		t.Fatal("writers still waiting 10s after Close")
	}
	s = open(t, dir)
	defer s.Close()
	for _, key := range acked {
		if _, err := s.Get(ctx, key); err != nil {
			t.Fatalf("acknowledged %s: %v after reopening (%d acknowledged)", key, err, len(acked))
		}
	}
	t.Logf("%d writes acknowledged before Close", len(acked))
}

// After a clean close the file holds every write, and the log's segments
// (the one written last and the one kept for reuse) begin with an empty
// header: the next start reads nothing of them, however much they held.
func TestCleanCloseLeavesNothingToRead(t *testing.T) {
	defer bolt.SetSegmentSize(4096)()
	dir := t.TempDir()
	s, err := bolt.Open(filepath.Join(dir, "state.db"), bolt.Options{FlushInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		if _, err := s.Create(t.Context(), fmt.Sprintf("/k/%03d", i), []byte(strings.Repeat("v", 100))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	segs, err := filepath.Glob(filepath.Join(dir, "state.db.wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no log segments: %v", err)
	}
	for _, p := range segs {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if len(data) >= 8 && binary.LittleEndian.Uint32(data) != 0 {
			t.Errorf("%s (%d bytes) still begins with a record after a clean close", filepath.Base(p), len(data))
		}
	}
	rep, err := bolt.Check(filepath.Join(dir, "state.db"), nil)
	if err != nil || rep.Revision != 300 || rep.Keys != 300 || rep.Logged != 0 {
		t.Fatalf("the file after a clean close: revision %d, %d keys, %d logged (%v); want 300, 300, 0", rep.Revision, rep.Keys, rep.Logged, err)
	}
}
