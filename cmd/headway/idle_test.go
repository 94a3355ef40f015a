package main

import (
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// rssFileKB is this process's RssFile (mapped file pages) in KiB.
func rssFileKB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.Fields(v)[0])
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

// TestReleaseStartupMemory: releasing drops most of the executable's mapped
// pages, and the process keeps running its code and reading its data (the
// pages come back from the file as they are used).
func TestReleaseStartupMemory(t *testing.T) {
	before := rssFileKB(t)
	released := releaseStartupMemory()
	after := rssFileKB(t)
	if released <= 0 {
		t.Fatalf("released %d bytes of the executable's mappings", released)
	}
	if after >= before {
		t.Errorf("RssFile %d KiB before, %d KiB after releasing", before, after)
	}
	t.Logf("RssFile %d KiB before, %d KiB after releasing %d MiB of mappings", before, after, released>>20)
	// New OS threads still start (a dynamically linked binary creates them
	// through its relocated GOT, which must not be released).
	locked := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			<-locked
		}()
	}
	close(locked)
	wg.Wait()
	// Code and read-only data still work: the command tree's help and the
	// version text come from both.
	var out strings.Builder
	root := newRootCommand()
	root.SetOut(&out)
	root.SetArgs([]string{"version"})
	if err := root.Execute(); err != nil || !strings.Contains(out.String(), "kubernetes v1.") {
		t.Fatalf("headway version after releasing: %v %q", err, out.String())
	}
}

// TestCleanExecutableMappings: only the executable's mappings that are
// neither writable nor hold anonymous pages are released (dirty page cache
// pages of a freshly written binary are no reason to keep a mapping).
func TestCleanExecutableMappings(t *testing.T) {
	const smaps = `00400000-01ae1000 r--p 00000000 fe:00 10764833                           /bin/headway
Rss:                3460 kB
Anonymous:             0 kB
Private_Dirty:         0 kB
VmFlags: rd mr mw me sd
01ae1000-0450b000 r-xp 016e1000 fe:00 10764833                           /bin/headway
Private_Dirty:     67500 kB
Anonymous:             0 kB
07a28000-07a29000 r--p 07627000 fe:00 10764833                           /bin/headway
Anonymous:             4 kB
Private_Dirty:         4 kB
07a29000-07b5b000 rw-p 07628000 fe:00 10764833                           /bin/headway
Anonymous:             0 kB
Private_Dirty:         0 kB
07b5b000-07c00000 r--p 00000000 fe:00 42                                 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f0360009000-7f0360129000 rw-p 00000000 00:00 0 
Anonymous:          1152 kB
`
	got := cleanExecutableMappings(smaps, "/bin/headway")
	want := []mapping{{0x400000, 0x1ae1000}, {0x1ae1000, 0x450b000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("cleanExecutableMappings = %x, want %x (read-only, file pages only, of the executable)", got, want)
	}
}

// releaseTimes runs quietRelease over 40 one-second windows whose CPU use
// busy gives, and returns the windows at whose end it released.
func releaseTimes(busy func(sec int) time.Duration) []int {
	start := time.Now()
	q := &quietRelease{start: start, after: idleSettle}
	var used time.Duration
	var released []int
	for sec := 1; sec <= 40; sec++ {
		used += busy(sec)
		if q.window(start.Add(time.Duration(sec)*time.Second), used) {
			released = append(released, sec)
			used += 500 * time.Millisecond // the release's own CPU
			q.released(used)
		}
	}
	if q.done() != (len(released) == len(idleSettle)) {
		panic("done disagrees with the releases")
	}
	return released
}

// TestReleaseWaitsForQuiet: the start's memory is released 5 s and 30 s
// after ready when the server is quiet, and while it is busy (pods
// starting) only once it has been quiet for two windows.
func TestReleaseWaitsForQuiet(t *testing.T) {
	for _, tc := range []struct {
		name string
		busy func(sec int) time.Duration
		want []int
	}{
		{"quiet", func(int) time.Duration { return 20 * time.Millisecond }, []int{5, 30}},
		{"busy from 3 s to 12 s", func(sec int) time.Duration {
			if sec >= 3 && sec <= 12 {
				return 900 * time.Millisecond
			}
			return 20 * time.Millisecond
		}, []int{14, 30}},
		{"busy around 30 s", func(sec int) time.Duration {
			if sec >= 29 && sec <= 33 {
				return 300 * time.Millisecond
			}
			return 0
		}, []int{5, 35}},
		{"never quiet", func(int) time.Duration { return 150 * time.Millisecond }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := releaseTimes(tc.busy); !slices.Equal(got, tc.want) {
				t.Errorf("released after windows %v, want %v", got, tc.want)
			}
		})
	}
}
