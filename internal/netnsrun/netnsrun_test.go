package netnsrun

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/headway/headway/internal/agent/nsfile"
)

func nsInode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

// TestDoRunsInTheNamespace: fn runs with its thread in the namespace at
// path, returns its error, and leaves every thread of ours in our own
// namespace; a path that is not there is an error naming it.
func TestDoRunsInTheNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (a network namespace)")
	}
	path := filepath.Join(t.TempDir(), "net")
	if err := nsfile.Create(path, unix.CLONE_NEWNET); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nsfile.Remove(path) })
	own, target := nsInode(t, "/proc/self/ns/net"), nsInode(t, path)
	if own == target {
		t.Fatal("the new namespace is our own")
	}
	sentinel := errors.New("from fn")
	var inside uint64
	err := Do(path, func() error {
		inside = nsInode(t, "/proc/thread-self/ns/net")
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Fatalf("Do returned %v, want fn's error", err)
	}
	if inside != target {
		t.Fatalf("fn ran in namespace %d, want %d", inside, target)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		if ino := nsInode(t, filepath.Join("/proc/self/task", task.Name(), "ns/net")); ino != own {
			t.Fatalf("thread %s is left in namespace %d", task.Name(), ino)
		}
	}

	missing := filepath.Join(t.TempDir(), "none")
	if err := Do(missing, func() error { t.Error("fn ran without a namespace"); return nil }); err == nil || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Do on a missing namespace: %v, want an error naming %s", err, missing)
	}
}
