// Command probe reports what package prefault did in this process (with
// how much of its memory the kernel then maps in transparent huge pages),
// and how many page faults allocating 16 MiB of small objects then takes.
package main

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"github.com/headway/headway/internal/prefault"
)

var keep [][]byte

func minflt() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Minflt
}

// anonHugeKiB is the process's anonymous memory in transparent huge pages
// (AnonHugePages of /proc/self/smaps_rollup), -1 if unread.
func anonHugeKiB() int {
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		return -1
	}
	for line := range bytes.Lines(b) {
		if f := bytes.Fields(line); len(f) >= 2 && string(f[0]) == "AnonHugePages:" {
			if n, err := strconv.Atoi(string(f[1])); err == nil {
				return n
			}
		}
	}
	return -1
}

func main() {
	huge := anonHugeKiB()
	holding := prefault.Holding()
	before := minflt()
	for range 16 << 10 {
		keep = append(keep, make([]byte, 1<<10))
	}
	faults := minflt() - before
	prefault.Release()
	errText := "none"
	if prefault.Stats.Err != nil {
		errText = prefault.Stats.Err.Error()
	}
	fmt.Printf("executable=%d heap=%d huge=%d holding=%v released=%v faults=%d err=%s\n",
		prefault.Stats.ExecutableBytes, prefault.Stats.HeapBytes, huge, holding, !prefault.Holding(), faults, errText)
}
