package main

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"time"
)

// report collects the table rows and notes.
type report struct {
	rows  [][4]string
	notes []string
}

func (r *report) add(bench, measure, value, note string) {
	r.rows = append(r.rows, [4]string{bench, measure, value, note})
}

func (r *report) notef(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *report) markdown() string {
	var sb strings.Builder
	sb.WriteString("| benchmark | measure | value | notes |\n| --- | --- | ---: | --- |\n")
	for _, w := range r.rows {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s |\n", w[0], w[1], w[2], w[3])
	}
	if len(r.notes) > 0 {
		sb.WriteString("\n")
		for _, n := range r.notes {
			fmt.Fprintf(&sb, "- %s\n", n)
		}
	}
	return sb.String()
}

// meter is this process's CPU (the in-process server and the clients) and
// the machine's load over a phase.
type meter struct {
	start time.Time
	cpu   time.Duration
}

func processCPU() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func startMeter() meter { return meter{start: time.Now(), cpu: processCPU()} }

func (m meter) String() string {
	return fmt.Sprintf("this process %.2f CPU-s in %.2f s; load %s", (processCPU() - m.cpu).Seconds(), time.Since(m.start).Seconds(), loadavg())
}

func rate(n int, d time.Duration) string { return fmt.Sprintf("%.0f/s", float64(n)/d.Seconds()) }

// rateOf is the rate of one client's sequential operations.
func rateOf(lat []time.Duration) string {
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	return rate(len(lat), sum)
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[min(i, len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }
