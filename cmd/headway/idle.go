package main

import (
	"bufio"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// releaseStartupMemory hands back what only the start needed, once the
// server has settled: the heap the start left as garbage (a collection, and
// the freed spans returned to the kernel) and this executable's read-only
// mappings (code, read-only data, the function tables), which the start
// touched nearly whole and the kernel maps in 2 MiB pages where the page
// cache holds large folios. Those pages are clean copies of the file: the
// kernel drops the mappings, keeps the page cache, and faults back in (4 KiB
// pages from now on) what the server still runs. Writable mappings are left
// alone. It returns the bytes of mappings it released.
func releaseStartupMemory() (released int64) {
	debug.FreeOSMemory()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return 0
	}
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		return 0
	}
	defer f.Close()
	type span struct{ start, end uintptr }
	var spans []span
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// start-end perms offset dev inode path
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[5] != exe || fields[1][1] == 'w' {
			continue
		}
		addrs := strings.SplitN(fields[0], "-", 2)
		start, err1 := strconv.ParseUint(addrs[0], 16, 64)
		end, err2 := strconv.ParseUint(addrs[1], 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		spans = append(spans, span{uintptr(start), uintptr(end)})
	}
	for _, s := range spans {
		if madvise(s.start, s.end-s.start, unix.MADV_NOHUGEPAGE) != nil {
			continue
		}
		if madvise(s.start, s.end-s.start, unix.MADV_DONTNEED) == nil {
			released += int64(s.end - s.start)
		}
	}
	return released
}

// madvise advises on a mapping this process did not make (no Go slice
// covers it), by address.
func madvise(addr, length uintptr, advice int) error {
	if _, _, e := unix.Syscall(unix.SYS_MADVISE, addr, length, uintptr(advice)); e != 0 {
		return e
	}
	return nil
}

// idleSettle is how long after ready the server releases the start's
// memory: the controllers' and the DNS's first lists are done by then.
const idleSettle = 5 * time.Second
