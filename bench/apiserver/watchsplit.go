package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// The split watch fan-out: the same client-go watchers, in a process of
// their own pinned to one CPU, while the server and the writers have the
// other CPUs. The in-process fan-out charges the watchers' decoding (about
// 5 µs of CPU per event and watcher, in client-go) to the writers' cores;
// here it is what a deployment has, the watchers' work on their own CPU,
// and the slowdown is the server's cost of serving them.

// nsWatchSplit is the namespace the watcher process watches.
const nsWatchSplit = "bench-watch-split"

// splitEnv carries the watcher process's spec; its presence makes this
// program the watcher process.
const splitEnv = "HEADWAY_BENCH_WATCH_CHILD"

// splitSpec is what the watcher process is told.
type splitSpec struct {
	Host        string
	CAData      []byte
	CertData    []byte
	KeyData     []byte
	BearerToken string
	Namespace   string
	RV          string
	Watchers    int
	CPUs        []int
	Prefixes    []string
	Total       int
}

// splitReply is the watcher process's answer to "wait <phase>".
type splitReply struct {
	Delivered int
	Missing   int
	Closed    int
	Last      int64 // unix ns of the phase's last event
	Errors    []string
}

// watchSplit runs rounds of the 16-client burst with the client-go
// watchers in a process pinned to the last CPU and this process (server
// and writers) pinned to the others, each round beside a reference burst
// into a namespace nobody watches under the same pinning.
func (b *apiBench) watchSplit(ctx context.Context, writers []kubernetes.Interface) error {
	ncpu := runtime.NumCPU()
	if ncpu < 2 {
		b.r.notef("Watch fan-out with the watchers on a CPU of their own: skipped, this machine has one CPU.")
		return nil
	}
	own, theirs := cpuRange(0, ncpu-1), []int{ncpu - 1}
	rounds := max(1, b.o.splitRounds)
	spec := splitSpec{
		Host: b.cl.base.Host, CAData: b.cl.base.CAData, CertData: b.cl.base.CertData, KeyData: b.cl.base.KeyData,
		BearerToken: b.cl.base.BearerToken, Namespace: nsWatchSplit, Watchers: b.o.watchers, CPUs: theirs, Total: b.o.watchBurst,
	}
	for r := range rounds {
		spec.Prefixes = append(spec.Prefixes, fmt.Sprintf("s%d", r+1))
	}
	l, err := writers[0].CoreV1().ConfigMaps(nsWatchSplit).List(ctx, metav1.ListOptions{Limit: 1})
	if err != nil {
		return err
	}
	spec.RV = l.ResourceVersion
	js, err := json.Marshal(spec)
	if err != nil {
		return err
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cmd := exec.CommandContext(cctx, exe)
	cmd.Env = append(os.Environ(), splitEnv+"="+string(js))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting the watcher process: %w", err)
	}
	done := false
	defer func() {
		stdin.Close()
		if !done {
			cancel()
		}
		cmd.Wait()
	}()
	lines := bufio.NewScanner(stdout)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	if !lines.Scan() || lines.Text() != "ready" {
		return fmt.Errorf("the watcher process did not start its watchers: %q %v", lines.Text(), lines.Err())
	}
	log.Printf("watch (split): %d watchers started in process %d on CPU %v; this process on CPUs %v", b.o.watchers, cmd.Process.Pid, theirs, own)

	unpin, err := pinProcess(own)
	if err != nil {
		return fmt.Errorf("pinning this process to CPUs %v: %w", own, err)
	}
	defer unpin()
	procs := len(own)
	if b.o.spareProc {
		procs++ // as headway server sets it (internal/procs)
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))

	label := fmt.Sprintf("watch fan-out, %d client-go watchers in another process on CPU %s (server and clients on CPU %s), %d creates by %d clients, %d rounds",
		b.o.watchers, joinInts(theirs), joinInts(own), b.o.watchBurst, len(writers), rounds)
	var with, without []float64
	var delivered, missing, closed int
	var span, creating time.Duration
	var errs []string
	childCPU0 := procCPU(cmd.Process.Pid)
	m := startMeter()
	var refCPU, withCPU time.Duration
	reference := func(r int) (float64, error) {
		t, c := time.Now(), selfCPU()
		if _, err := creates(ctx, writers, nsUnwatched, fmt.Sprintf("rs%d", r), b.o.watchBurst); err != nil {
			return 0, fmt.Errorf("watch (split) round %d: the reference burst: %w", r, err)
		}
		refCPU += selfCPU() - c
		return rateValue(b.o.watchBurst, time.Since(t)), nil
	}
	for r := 1; r <= rounds; r++ {
		var ref float64
		if r%2 == 1 { // odd rounds measure the reference first, even ones after
			if ref, err = reference(r); err != nil {
				return err
			}
		}
		start, c := time.Now(), selfCPU()
		if _, err := creates(ctx, writers, nsWatchSplit, spec.Prefixes[r-1], b.o.watchBurst); err != nil {
			return fmt.Errorf("watch (split) round %d: %w", r, err)
		}
		took := time.Since(start)
		withCPU += selfCPU() - c
		if _, err := fmt.Fprintf(stdin, "wait %d\n", r-1); err != nil {
			return fmt.Errorf("the watcher process: %w", err)
		}
		if !lines.Scan() {
			return fmt.Errorf("the watcher process ended: %v", lines.Err())
		}
		var rep splitReply
		if err := json.Unmarshal(lines.Bytes(), &rep); err != nil {
			return fmt.Errorf("the watcher process answered %q: %w", lines.Text(), err)
		}
		if r%2 == 0 {
			if ref, err = reference(r); err != nil {
				return err
			}
		}
		w := rateValue(b.o.watchBurst, took)
		log.Printf("%s: round %d: %.0f creates/s with the watchers, %.0f/s without (%.2f×); %d events delivered, %d missing, %d watchers closed",
			label, r, w, ref, ref/w, rep.Delivered, rep.Missing, rep.Closed)
		with, without = append(with, w), append(without, ref)
		delivered, missing, closed = delivered+rep.Delivered, missing+rep.Missing, max(closed, rep.Closed)
		creating += took
		if rep.Last > 0 {
			span += time.Unix(0, rep.Last).Sub(start)
		}
		errs = append(errs, rep.Errors...)
	}
	wall := time.Since(m.start)
	childCPU := procCPU(cmd.Process.Pid) - childCPU0
	stdin.Close()
	done = true

	ratio := make([]float64, rounds)
	perCreate := func(d time.Duration) float64 {
		return float64(d) / float64(time.Microsecond) / float64(rounds*b.o.watchBurst)
	}
	for i := range ratio {
		ratio[i] = without[i] / with[i]
	}
	slow := medianOf(ratio)
	b.r.add(label, "slowdown of 16-client creates (no watchers / with watchers)", fmt.Sprintf("%.2f×", slow)).
		goal("≤ 1.3×", slow <= 1.3).
		with(fmt.Sprintf("median of %d rounds' own ratios (lowest %.2f×, highest %.2f×); each round %d creates into a namespace nobody watches (%s/s) and into the watched one (%s/s), in turn, both with this process on CPU %s; this process's CPU per create %.0f µs with the watchers over %.0f µs without: %.2f×",
			rounds, slices.Min(ratio), slices.Max(ratio), b.o.watchBurst, joinRates(without), joinRates(with), joinInts(own), perCreate(withCPU), perCreate(refCPU), float64(withCPU)/float64(refCPU)))
	b.r.add(label, "events delivered/s (all watchers)", rate(delivered, span)).
		with(fmt.Sprintf("%d events in %v; the watched creates took %v; the watcher process used %.2f cores over the rounds, this process %s",
			delivered, span.Round(time.Millisecond), creating.Round(time.Millisecond), float64(childCPU)/float64(wall), strings.TrimPrefix(m.String(), "CPU: this process ")))
	b.reportLost(label, delivered, missing, closed, errs)
	return nil
}

// watchChild is the watcher process: it opens the watchers, says "ready",
// then answers each "wait <phase>" line with a splitReply once every
// watcher has the phase's events (or has ended), within a minute.
func watchChild(js string) int {
	var spec splitSpec
	if err := json.Unmarshal([]byte(js), &spec); err != nil {
		log.Printf("watcher process: %v", err)
		return 2
	}
	if _, err := pinProcess(spec.CPUs); err != nil {
		log.Printf("watcher process: pinning to CPUs %v: %v", spec.CPUs, err)
		return 1
	}
	runtime.GOMAXPROCS(len(spec.CPUs))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	cl := newClients(&rest.Config{Host: spec.Host, BearerToken: spec.BearerToken,
		TLSClientConfig: rest.TLSClientConfig{CAData: spec.CAData, CertData: spec.CertData, KeyData: spec.KeyData}}, false)
	defer cl.close()
	phases := make([]*watchPhase, len(spec.Prefixes))
	for i, p := range spec.Prefixes {
		phases[i] = &watchPhase{prefix: p, total: spec.Total}
	}
	states := make([]*watcherState, spec.Watchers)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	for i := range states {
		st := newWatcherState(phases)
		states[i] = st
		c, err := cl.clientset(contentProtobuf)
		if err != nil {
			log.Printf("watcher process: %v", err)
			return 1
		}
		w, err := c.CoreV1().ConfigMaps(spec.Namespace).Watch(ctx, metav1.ListOptions{ResourceVersion: spec.RV})
		if err != nil {
			log.Printf("watcher process: watcher %d: %v", i, err)
			return 1
		}
		wg.Go(func() { st.follow(ctx, w, phases, func() int64 { return time.Now().UnixNano() }) })
	}
	out := bufio.NewWriter(os.Stdout)
	fmt.Fprintln(out, "ready")
	out.Flush()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		f := strings.Fields(in.Text())
		if len(f) != 2 || f[0] != "wait" {
			log.Printf("watcher process: unknown command %q", in.Text())
			return 2
		}
		pi, err := strconv.Atoi(f[1])
		if err != nil || pi < 0 || pi >= len(phases) {
			log.Printf("watcher process: no phase %q", f[1])
			return 2
		}
		waitDelivered(states, pi, spec.Total)
		var rep splitReply
		for _, st := range states {
			if st.closed.Load() {
				rep.Closed++
			}
			if e, ok := st.err.Load().(string); ok {
				rep.Errors = append(rep.Errors, e)
			}
			for i := range st.recv[pi] {
				at := st.recv[pi][i].Load()
				if at == 0 {
					rep.Missing++
					continue
				}
				rep.Delivered++
				rep.Last = max(rep.Last, at)
			}
		}
		js, _ := json.Marshal(rep)
		out.Write(append(js, '\n'))
		out.Flush()
	}
	if err := in.Err(); err != nil && !errors.Is(err, io.EOF) {
		log.Printf("watcher process: %v", err)
		return 1
	}
	return 0
}

// pinProcess sets every thread of this process to run on cpus only, and
// returns what restores every CPU. A thread started meanwhile inherits its
// creator's set, so the walk over the threads repeats until it finds none
// it has not set.
func pinProcess(cpus []int) (func(), error) {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	if err := setAllThreads(&set); err != nil {
		return func() {}, err
	}
	return func() {
		var all unix.CPUSet
		for c := range runtime.NumCPU() {
			all.Set(c)
		}
		if err := setAllThreads(&all); err != nil {
			log.Printf("restoring this process's CPUs: %v", err)
		}
	}, nil
}

func setAllThreads(set *unix.CPUSet) error {
	done := map[int]bool{}
	for range 10 {
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			return err
		}
		fresh := 0
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil || done[tid] {
				continue
			}
			if err := unix.SchedSetaffinity(tid, set); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("thread %d: %w", tid, err)
			}
			done[tid] = true
			fresh++
		}
		if fresh == 0 {
			return nil
		}
	}
	return nil
}

// procCPU is the CPU time process pid has used (user and system).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+1:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	// After the name: state is field 0, utime 11, stime 12 (in clock ticks).
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(ut+st) * time.Second / 100
}

func cpuRange(from, to int) []int {
	var out []int
	for c := from; c < to; c++ {
		out = append(out, c)
	}
	return out
}

func joinInts(xs []int) string {
	parts := make([]string, len(xs))
	for i, x := range xs {
		parts[i] = strconv.Itoa(x)
	}
	return strings.Join(parts, ",")
}
