package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// meter measures, over one phase, the CPU this process used (cluster and
// clients together) and the CPU the rest of the machine used: the machine is
// shared, and a phase short of CPU is slower for reasons that are not ours.
type meter struct {
	start       time.Time
	self        time.Duration
	mallocs     uint64 // heap allocations so far (cluster and clients)
	allocBytes  uint64
	busy, total uint64
	ok          bool
}

func startMeter() meter {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m := meter{start: time.Now(), self: selfCPU(), mallocs: ms.Mallocs, allocBytes: ms.TotalAlloc}
	m.busy, m.total, m.ok = machineCPU()
	return m
}

// String reads "CPU: this process 0.93 cores, rest of the machine 0.85 of 2".
func (m meter) String() string {
	wall := time.Since(m.start)
	if wall <= 0 {
		return ""
	}
	self := float64(selfCPU()-m.self) / float64(wall)
	s := fmt.Sprintf("CPU: this process %.2f cores", self)
	busy, total, ok := machineCPU()
	if ok && m.ok && total > m.total {
		n := float64(runtime.NumCPU())
		machine := float64(busy-m.busy) / float64(total-m.total) * n
		s += fmt.Sprintf(", rest of the machine %.2f (of %d)", max(machine-self, 0), runtime.NumCPU())
	}
	return s
}

// perOp reads "CPU per op: 412 µs (this process); heap allocations per
// op: 610, 58.2 KiB": the process's CPU time and allocations over the phase
// divided by n, the figures that load on the rest of the machine changes
// least (allocations not at all).
func (m meter) perOp(n int, op string) string {
	if n <= 0 {
		return ""
	}
	cpu := selfCPU() - m.self
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return fmt.Sprintf("CPU per %s: %.0f µs (this process); heap allocations per %s: %d, %.1f KiB", op,
		float64(cpu)/float64(n)/float64(time.Microsecond), op, (ms.Mallocs-m.mallocs)/uint64(n), float64(ms.TotalAlloc-m.allocBytes)/float64(n)/1024)
}

// machine reads "machine busy 1.20 of 2 cores": all processes, for phases
// whose work is in other processes.
func (m meter) machine() string {
	busy, total, ok := machineCPU()
	if !ok || !m.ok || total <= m.total {
		return "machine load n/a"
	}
	return fmt.Sprintf("machine busy %.2f of %d cores", float64(busy-m.busy)/float64(total-m.total)*float64(runtime.NumCPU()), runtime.NumCPU())
}

func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineCPU returns busy and total jiffies from /proc/stat (idle and iowait
// count as not busy).
func machineCPU() (busy, total uint64, ok bool) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0, false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0, 0, false
	}
	var idle uint64
	for i, v := range f[1:] {
		if i >= 8 { // guest time is already in user
			break
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return 0, 0, false
		}
		total += n
		if i == 3 || i == 4 { // idle, iowait
			idle += n
		}
	}
	return total - idle, total, true
}

// loadavg is /proc/loadavg's first three fields.
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "n/a"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "n/a"
	}
	return strings.Join(f[:3], " ")
}
