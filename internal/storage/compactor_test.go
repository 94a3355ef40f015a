package storage_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/headway/headway/internal/storage"
	"github.com/headway/headway/internal/storage/memory"
)

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling interval, not synchronisation
	}
}

func TestRunCompactor(t *testing.T) {
	before := runtime.NumGoroutine()
	s := memory.New()
	defer s.Close()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		storage.RunCompactor(ctx, s, time.Millisecond, 10)
	}()
	for i := range 5 {
		if _, err := s.Create(ctx, fmt.Sprintf("/k/%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	// Fewer revisions than keep: nothing to compact yet. Then more writes.
	for i := 5; i < 25; i++ {
		if _, err := s.Create(ctx, fmt.Sprintf("/k/%d", i), nil); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "compaction to revision 15", func() bool { return s.CompactedRevision() == 15 })
	if _, err := s.Watch(ctx, "", 14); !errors.Is(err, storage.ErrCompacted) {
		t.Fatalf("Watch from below the kept window: %v, want ErrCompacted", err)
	}
	ch, err := s.Watch(ctx, "", 15)
	if err != nil {
		t.Fatalf("Watch from inside the kept window: %v", err)
	}
	_ = ch
	cancel()
	<-done
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}

func TestRunCompactorStopsWhenStoreCloses(t *testing.T) {
	s := memory.New()
	if _, err := s.Create(t.Context(), "/k", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Create(t.Context(), "/k2", nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		storage.RunCompactor(t.Context(), s, time.Millisecond, 0)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("RunCompactor did not return after the store closed")
	}
}

func TestPrefixEnd(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", ""},
		{"/a/", "/a0"},
		{"a", "b"},
		{"a\xff", "b"},
		{"\xff\xff", ""},
	} {
		if got := storage.PrefixEnd(tc.in); got != tc.want {
			t.Errorf("PrefixEnd(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
