package main

import (
	"context"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/headway/headway/internal/prefault"
)

// releaseStartupMemory hands back what only the start needed, once the
// server has settled: the heap the start left as garbage and the heap
// mapped ahead (prefault's ballast dropped, a collection, and the freed
// spans returned to the kernel) and this executable's read-only
// mappings (code, read-only data, the function tables), which the start
// touched nearly whole and the kernel maps in 2 MiB pages where the page
// cache holds large folios. Only mappings that hold nothing but the file's
// own pages are released (no anonymous pages: the relocated, then
// write-protected, GOT of a dynamically linked binary is not): the kernel
// drops the mappings, keeps the page cache, and faults back in (4 KiB pages
// from now on) what the server still runs. It returns the bytes of mappings
// it released.
func releaseStartupMemory() (released int64) {
	prefault.Release() // the heap goal follows the live heap again
	debug.FreeOSMemory()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0
	}
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		return 0
	}
	for _, m := range cleanExecutableMappings(string(smaps), exe) {
		if madvise(m.start, m.end-m.start, unix.MADV_NOHUGEPAGE) != nil {
			continue
		}
		if madvise(m.start, m.end-m.start, unix.MADV_DONTNEED) == nil {
			released += int64(m.end - m.start)
		}
	}
	return released
}

// mapping is an address range of /proc/self/smaps.
type mapping struct{ start, end uintptr }

// cleanExecutableMappings returns the mappings of exe in smaps that are not
// writable and hold no anonymous (copied-on-write) pages: dropping their
// pages loses nothing, the file (or the page cache, for pages not yet
// written back, which smaps counts as Private_Dirty) has them.
func cleanExecutableMappings(smaps, exe string) []mapping {
	var out []mapping
	var cur *mapping
	anonymous := false
	flush := func() {
		if cur != nil && !anonymous {
			out = append(out, *cur)
		}
		cur, anonymous = nil, false
	}
	for _, line := range strings.Split(smaps, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") { // a mapping's header
			flush()
			// start-end perms offset dev inode [path]
			if len(fields) != 6 || fields[5] != exe || len(fields[1]) < 2 || fields[1][1] == 'w' {
				continue
			}
			start, end, ok := strings.Cut(fields[0], "-")
			s, err1 := strconv.ParseUint(start, 16, 64)
			e, err2 := strconv.ParseUint(end, 16, 64)
			if !ok || err1 != nil || err2 != nil || e <= s {
				continue
			}
			cur = &mapping{uintptr(s), uintptr(e)}
			continue
		}
		if cur != nil && fields[0] == "Anonymous:" && len(fields) > 1 && fields[1] != "0" {
			anonymous = true
		}
	}
	flush()
	return out
}

// madvise advises on a mapping this process did not make (no Go slice
// covers it), by address.
func madvise(addr, length uintptr, advice int) error {
	if _, _, e := unix.Syscall(unix.SYS_MADVISE, addr, length, uintptr(advice)); e != 0 {
		return e
	}
	return nil
}

// idleSettle is when, after ready, the server releases the start's
// memory: the controllers' and the DNS's first lists are done after the
// first; the node's first rounds (with a node agent, they touch some 50 MB
// of the executable's pages a few seconds later) after the second.
var idleSettle = []time.Duration{5 * time.Second, 30 * time.Second}

// A release waits for the process to be quiet: less than quietCPU of CPU
// time in each of quietWindows windows of quietWindow in a row. Released
// while busy (a user's first StatefulSet, a few seconds after the start),
// the pages would come straight back, a page fault each (12–24 µs on a
// host whose page tables the hypervisor manages), and the collection and
// the scavenging would take their CPU from the work.
const (
	quietWindow  = time.Second
	quietWindows = 2
	quietCPU     = 100 * time.Millisecond // 10 % of one CPU
)

// quietRelease decides, window by window, when the releases at after
// (from start) run: each once the process has been quiet (quietWindows
// windows in a row with less than quietCPU of CPU time) and its time has
// come.
type quietRelease struct {
	start time.Time
	after []time.Duration
	next  int           // the release due next
	quiet int           // quiet windows in a row
	last  time.Duration // the process's CPU time at the last window's end
}

// window takes the end of a window (now, the process's CPU time so far)
// and says whether to release now.
func (q *quietRelease) window(now time.Time, cpu time.Duration) bool {
	if q.done() {
		return false
	}
	if cpu-q.last < quietCPU {
		q.quiet++
	} else {
		q.quiet = 0
	}
	q.last = cpu
	if q.quiet < quietWindows || now.Sub(q.start) < q.after[q.next] {
		return false
	}
	q.next++
	q.quiet = 0
	return true
}

// released takes the process's CPU time after a release (the release's
// own CPU is not the work's).
func (q *quietRelease) released(cpu time.Duration) { q.last = cpu }

// done says whether every release has run.
func (q *quietRelease) done() bool { return q.next >= len(q.after) }

// releaseWhenQuiet calls release at each of the times after (from now),
// each once the process has been quiet, until ctx ends.
func releaseWhenQuiet(ctx context.Context, after []time.Duration, release func()) {
	q := &quietRelease{start: time.Now(), after: after, last: processCPU()}
	tick := time.NewTicker(quietWindow)
	defer tick.Stop()
	for !q.done() {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			if q.window(now, processCPU()) {
				release()
				q.released(processCPU())
			}
		}
	}
}

// processCPU is this process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru unix.Rusage
	if unix.Getrusage(unix.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
