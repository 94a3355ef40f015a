// Package procs sizes GOMAXPROCS for a process whose store commits to a
// local file (internal/storage/bolt).
//
// The store's one writer goroutine blocks in fdatasync twice per commit
// (about 100 µs each on a virtio disk). While it is blocked, Go hands its P
// to another thread; when the sync returns, the writer needs a P again, and
// with as many Ps as CPUs and every CPU busy serving requests it waits in the
// run queue behind them. Every write of the next commit waits with it: the
// writer is the one place all writes pass through.
//
// One P more than CPUs lets the writer's thread run as soon as its sync
// returns (the kernel shares the CPUs between the threads). On 2 CPUs, 16
// API clients creating at once got 1–28 % more creates/s in 8 interleaved
// pairs (median +17 %), for less CPU per create: the commits are fewer and
// larger (docs/architecture.md). A memory store gains nothing from it, so
// only the bolt store asks for it.
package procs

import (
	"os"
	"runtime"
	"sync"
)

var once sync.Once

// SpareForSyncs sets GOMAXPROCS to one more than it is now, unless the
// user set it (the GOMAXPROCS environment variable), and returns the value
// in effect and whether it is the user's. Only the first call changes it.
// Go no longer follows a change of the process's CPU limit (cgroup) after
// it.
func SpareForSyncs() (gomaxprocs int, users bool) {
	users = os.Getenv("GOMAXPROCS") != ""
	once.Do(func() {
		if !users {
			runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + 1)
		}
	})
	return runtime.GOMAXPROCS(0), users
}
