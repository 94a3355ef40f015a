// Package prefault maps, in a few system calls at the very start of the
// process, the memory a start of headway touches page by page: the
// executable's pages the page cache already holds, and the first MiBs of
// the Go heap.
//
// A page fault is an exception and a trip through the kernel for each
// 4 KiB page. On virtual machines whose page tables the hypervisor manages
// (this project's CI and bench machines among them) one costs 12–24 µs, and
// a server start took about 7,400 of them: some 5,100 in the heap, 1,250
// in the executable (bench/results-apiserver.md). madvise(MADV_POPULATE_*)
// maps the same pages at a twentieth of the cost per page, without the
// exceptions.
//
// Until the process has started, a ballast (heap counted as live, never
// touched) holds the collector back: the start runs with fewer
// collections, and the heap mapped ahead stays mapped. The server drops it
// once it is ready; other commands ReleaseAfter their start.
//
// The package imports only the runtime, sync, syscall and time, so that it
// is initialised right after them, before the several hundred packages
// whose initialisation is the first part of the start (Go initialises the
// ready package with the lowest import path first). HEADWAY_NO_PREFAULT=1
// turns it off. Whatever fails (an older kernel without MADV_POPULATE_*, a
// replaced executable) leaves the process as it would be without it: the
// pages fault in as before.
package prefault

import (
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// HeapBytes is how much of the heap is mapped ahead: about what a server
// start or a kubectl command allocates before its first collections.
const HeapBytes = 24 << 20

// BallastBytes is heap the collector counts as live during the start but
// that is never touched (so never mapped): with it the heap goal is at
// least twice as much, the start runs with fewer collections, and the
// scavenger keeps the pages mapped ahead instead of returning them. The
// heap a start leaves behind is more spread out the larger it is: 16 MiB
// costs an idle server 2.5 MB of RSS, 32 MiB 4.3 MB, for 10 ms more of
// start (bench/results-apiserver.md).
const BallastBytes = 16 << 20

// ReleaseAfter: the ballast goes this long after the process started at
// the latest (the server drops it sooner, when it has settled).
const ReleaseAfter = 10 * time.Second

const (
	madvHugePage      = 14
	madvNoHugePage    = 15
	madvPopulateRead  = 22 // Linux 5.14
	madvPopulateWrite = 23
)

// Stats is what init did, for tests and the server's debug log.
var Stats struct {
	// ExecutableBytes: the executable's resident pages mapped ahead.
	ExecutableBytes int
	// HeapBytes: heap mapped ahead (0 when turned off or not possible).
	HeapBytes int
	// Err is the first failure, if any.
	Err error
}

var (
	ballastMu sync.Mutex
	ballast   []byte
)

func init() {
	if !wanted() {
		return
	}
	Stats.ExecutableBytes, Stats.Err = executable()
	ballastMu.Lock()
	ballast = make([]byte, BallastBytes)
	ballastMu.Unlock()
	if n, err := heap(HeapBytes); err == nil {
		Stats.HeapBytes = n
	} else if Stats.Err == nil {
		Stats.Err = err
	}
	time.AfterFunc(ReleaseAfter, Release)
}

// Release drops the ballast: from the next collection on, the heap goal
// follows the live heap alone. A process that has started calls it; it is
// also called ReleaseAfter the start. The heap mapped ahead and not used
// goes back with the process's other free memory (the server's
// debug.FreeOSMemory once it has settled, or the scavenger).
func Release() {
	ballastMu.Lock()
	ballast = nil
	ballastMu.Unlock()
}

// Holding says whether the ballast is still held.
func Holding() bool {
	ballastMu.Lock()
	defer ballastMu.Unlock()
	return ballast != nil
}

// wanted: headway itself (argv[0] named headway...), not the applets and
// the container init it also runs as inside pods (short, or long-lived
// and tiny, and charged to the pod's memory), and not with
// HEADWAY_NO_PREFAULT set.
func wanted() bool {
	if v, _ := syscall.Getenv("HEADWAY_NO_PREFAULT"); v != "" && v != "0" {
		return false
	}
	cmdline, err := readFile("/proc/self/cmdline")
	if err != nil {
		return false
	}
	arg0 := cmdline
	for i, c := range cmdline {
		if c == 0 {
			arg0 = cmdline[:i]
			break
		}
	}
	for i := len(arg0) - 1; i >= 0; i-- {
		if arg0[i] == '/' {
			arg0 = arg0[i+1:]
			break
		}
	}
	return wantedName(string(arg0))
}

// wantedName: the executable's name (argv[0]'s last element) is headway's.
func wantedName(name string) bool {
	return len(name) >= len("headway") && name[:len("headway")] == "headway" && name != "headway-container-init"
}

// heap allocates n bytes, maps them (zeroed pages, in one call), and frees
// them again in a collection (cheap this early: the heap holds almost
// nothing). The freed pages stay mapped and are the ones the allocator
// hands out next.
//
// They are mapped in transparent huge pages (2 MiB) where the kernel has
// them: mapping a page is not all a first use costs. On virtual machines
// that shadow the guest's page tables (this project's CI and bench
// machines), the first touch of each 4 KiB page mapped ahead still exits to
// the hypervisor: touching 24 MiB page by page took 41 ms after
// MADV_POPULATE_WRITE (83 ms without it) and 4 ms in huge pages, and a
// server start to /readyz went from 183–196 to 141–163 ms (medians of 16
// interleaved starts each; bench/results-apiserver.md). The range is marked
// MADV_NOHUGEPAGE afterwards, so that what the runtime later returns to
// the kernel and faults in again comes back in small pages, as the rest of
// the heap (the kernel's default under THP "madvise"; under "always" the
// heap is in huge pages anyway).
func heap(n int) (int, error) {
	b := make([]byte, n)
	addr := uintptr(unsafe.Pointer(&b[0]))
	huge := madvise(addr, uintptr(n), madvHugePage) == nil // EINVAL: a kernel without THP
	err := madvise(addr, uintptr(n), madvPopulateWrite)
	if huge {
		madvise(addr, uintptr(n), madvNoHugePage)
	}
	b = nil
	runtime.GC()
	if err != nil {
		return 0, err
	}
	return n, nil
}

// executable maps the pages of the executable's mappings that the page
// cache holds (mincore): never a read from disk, which a cold start would
// wait for here instead of in the background of its faults. The writable
// mapping (initialised data) is populated for writing, as the runtime and
// package initialisation write most of it.
func executable() (int, error) {
	var exe [4096]byte
	n, err := syscall.Readlink("/proc/self/exe", exe[:])
	if err != nil {
		return 0, err
	}
	maps, err := readFile("/proc/self/maps")
	if err != nil {
		return 0, err
	}
	total := 0
	for line := range lines(maps) {
		m, ok := parse(line, string(exe[:n]))
		if !ok {
			continue
		}
		advice := madvPopulateRead
		if m.writable {
			advice = madvPopulateWrite
		}
		done, err := populateResident(m.start, m.end, advice)
		total += done
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// populateResident populates the runs of pages in [start, end) that the
// page cache holds.
func populateResident(start, end uintptr, advice int) (int, error) {
	const page = 4096
	pages := int((end - start + page - 1) / page)
	vec := make([]byte, pages)
	if _, _, e := syscall.Syscall(syscall.SYS_MINCORE, start, end-start, uintptr(unsafe.Pointer(&vec[0]))); e != 0 {
		return 0, e
	}
	done := 0
	for i := 0; i < pages; {
		if vec[i]&1 == 0 {
			i++
			continue
		}
		j := i
		for j < pages && vec[j]&1 != 0 {
			j++
		}
		addr, size := start+uintptr(i)*page, uintptr(j-i)*page
		if err := madvise(addr, size, advice); err != nil {
			return done, err
		}
		done += int(size)
		i = j
	}
	return done, nil
}

func madvise(addr, length uintptr, advice int) error {
	if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, addr, length, uintptr(advice)); e != 0 {
		return e
	}
	return nil
}

// readFile reads a (small, /proc) file whole.
func readFile(path string) ([]byte, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer syscall.Close(fd)
	buf := make([]byte, 0, 16<<10)
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := syscall.Read(fd, buf[len(buf):cap(buf)])
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n == 0 {
			return buf, nil
		}
		buf = buf[:len(buf)+n]
	}
}

// lines, parse and hex are written out rather than taken from bytes,
// strings and strconv: importing those has about 80 more packages
// initialised before this one (97th instead of 21st, GODEBUG=inittrace=1),
// and their page faults with them.

// lines yields b's lines.
func lines(b []byte) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			i := 0
			for i < len(b) && b[i] != '\n' {
				i++
			}
			if !yield(b[:i]) {
				return
			}
			if i < len(b) {
				i++
			}
			b = b[i:]
		}
	}
}

type mapping struct {
	start, end uintptr
	writable   bool
}

// parse reads a /proc/self/maps line ("start-end perms offset dev inode
// path") and says whether it maps exe.
func parse(line []byte, exe string) (mapping, bool) {
	var fields [6][]byte
	n := 0
	for i := 0; i < len(line) && n < 6; {
		for i < len(line) && line[i] == ' ' {
			i++
		}
		j := i
		if n == 5 {
			j = len(line) // the path may hold spaces
		} else {
			for j < len(line) && line[j] != ' ' {
				j++
			}
		}
		if j > i {
			fields[n] = line[i:j]
			n++
		}
		i = j
	}
	if n != 6 || string(fields[5]) != exe || len(fields[1]) < 2 {
		return mapping{}, false
	}
	var m mapping
	var ok bool
	dash := 0
	for dash < len(fields[0]) && fields[0][dash] != '-' {
		dash++
	}
	if m.start, ok = hex(fields[0][:dash]); !ok || dash == len(fields[0]) {
		return mapping{}, false
	}
	if m.end, ok = hex(fields[0][dash+1:]); !ok || m.end <= m.start {
		return mapping{}, false
	}
	m.writable = fields[1][1] == 'w'
	return m, true
}

func hex(b []byte) (uintptr, bool) {
	if len(b) == 0 || len(b) > 16 {
		return 0, false
	}
	var v uintptr
	for _, c := range b {
		switch {
		case '0' <= c && c <= '9':
			v = v<<4 | uintptr(c-'0')
		case 'a' <= c && c <= 'f':
			v = v<<4 | uintptr(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}
