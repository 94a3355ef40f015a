// Command probe reports what package prefault did in this process, and
// how many page faults allocating 16 MiB of small objects then takes.
package main

import (
	"fmt"
	"syscall"

	"github.com/headway/headway/internal/prefault"
)

var keep [][]byte

func minflt() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Minflt
}

func main() {
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
	fmt.Printf("executable=%d heap=%d holding=%v released=%v faults=%d err=%s\n",
		prefault.Stats.ExecutableBytes, prefault.Stats.HeapBytes, holding, !prefault.Holding(), faults, errText)
}
