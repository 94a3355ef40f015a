package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
)

// readiness is what a watch saw of a set of pods after an action began.
type readiness struct {
	begin     time.Time
	firstSeen map[string]time.Time
	ready     map[string]time.Time
}

// all is begin → the last pod Ready.
func (r readiness) all() time.Duration {
	var last time.Time
	for _, t := range r.ready {
		if t.After(last) {
			last = t
		}
	}
	return last.Sub(r.begin)
}

// sinceBegin is begin → Ready of each pod.
func (r readiness) sinceBegin() []time.Duration {
	var out []time.Duration
	for _, t := range r.ready {
		out = append(out, t.Sub(r.begin))
	}
	return out
}

// perPod is each pod's first sight in the watch → Ready.
func (r readiness) perPod() []time.Duration {
	var out []time.Duration
	for n, t := range r.ready {
		out = append(out, t.Sub(r.firstSeen[n]))
	}
	return out
}

func isReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// timeReady starts a watch on the pods of selector, runs act while a
// goroutine reads the watch (so events are stamped as they arrive, also
// while act blocks), and returns once every pod in names is Ready, or an
// error after timeout.
func timeReady(ctx context.Context, c kubernetes.Interface, selector string, names []string, timeout time.Duration, act func() error) (readiness, error) {
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	wt, err := c.CoreV1().Pods("default").Watch(wctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return readiness{}, err
	}
	defer wt.Stop()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	r := readiness{firstSeen: map[string]time.Time{}, ready: map[string]time.Time{}}
	done := make(chan error, 1)
	started := make(chan struct{})
	go func() {
		<-started
		for ev := range wt.ResultChan() {
			now := time.Now()
			if ev.Type == watch.Error {
				done <- fmt.Errorf("watch error: %v", ev.Object)
				return
			}
			p, ok := ev.Object.(*corev1.Pod)
			if !ok || !want[p.Name] {
				continue
			}
			if _, ok := r.firstSeen[p.Name]; !ok {
				r.firstSeen[p.Name] = now
			}
			if _, ok := r.ready[p.Name]; !ok && ev.Type != watch.Deleted && isReady(p) {
				r.ready[p.Name] = now
			}
			if len(r.ready) == len(names) {
				done <- nil
				return
			}
		}
		done <- fmt.Errorf("only %d of %d pods Ready within %s", len(r.ready), len(names), timeout)
	}()
	r.begin = time.Now()
	close(started)
	if err := act(); err != nil {
		cancel()
		<-done
		return r, err
	}
	err = <-done
	return r, err
}

// waitGone waits until no pod matches selector.
func waitGone(ctx context.Context, c kubernetes.Interface, selector string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pods, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil && len(pods.Items) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			n := -1
			if err == nil {
				n = len(pods.Items)
			}
			return fmt.Errorf("%d pods %s still there after %s", n, selector, timeout)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// statusKB reads a "Field:   N kB" line of /proc/<pid>/status in bytes.
func statusKB(pid int, field string) int64 {
	return procKB(fmt.Sprintf("/proc/%d/status", pid), field)
}

func procKB(path, field string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// rss is a process's resident set in bytes.
func rss(pid int) int64 { return statusKB(pid, "VmRSS") }

// pss is a process's proportional set size in bytes (shared pages divided
// among the processes that map them).
func pss(pid int) int64 { return procKB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss") }

// mem is the RSS and PSS of a set of processes.
type mem struct {
	procs    int
	rss, pss int64
}

func memOf(pids []int) mem {
	m := mem{procs: len(pids)}
	for _, p := range pids {
		m.rss += rss(p)
		m.pss += pss(p)
	}
	return m
}

// processPodPIDs are the containers' pids the process runtime records.
func processPodPIDs(dataDir string) []int {
	files, _ := filepath.Glob(filepath.Join(dataDir, "pods", "*", "containers", "*.pid"))
	var out []int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || len(strings.Fields(string(data))) == 0 {
			continue
		}
		if pid, err := strconv.Atoi(strings.Fields(string(data))[0]); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// cpuTicks is the machine's busy and total jiffies (/proc/stat).
func cpuTicks() (busy, total int64) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line := strings.SplitN(string(data), "\n", 2)[0]
	f := strings.Fields(line)
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		total += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy, total
}

// procCPU is the user+system CPU time of a process, and of the children
// it has waited for.
func procCPU(pid int) (self, children time.Duration) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0
	}
	s := string(data)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	ticks := func(i int) time.Duration {
		n, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(n) * 10 * time.Millisecond // USER_HZ is 100 on Linux
	}
	// utime, stime, cutime, cstime: fields 14-17 of stat(5).
	return ticks(11) + ticks(12), ticks(13) + ticks(14)
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[min(i, len(s)-1)]
}

func ms(d time.Duration) string {
	switch {
	case d >= 10*time.Second:
		return fmt.Sprintf("%.1f s", d.Seconds())
	case d >= 100*time.Millisecond:
		return fmt.Sprintf("%.0f ms", float64(d.Microseconds())/1000)
	default:
		return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000)
	}
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}

// helperPeak is the most helper processes (by command name) seen at once
// while a sampler ran, and the largest summed RSS of those it weighed.
type helperPeak struct {
	count map[string]int
	rss   map[string]int64
}

// sampleHelpers counts the processes named in count every interval until
// stop is closed, sums the RSS of those named in weigh as well, and returns
// the peaks. A pass reads every process's comm, and an RSS costs a read of
// /proc/<pid>/status more: the sampler runs next to the start it measures,
// so it weighs only what the report shows (100 shims weighed 4 times a
// second cost more CPU than the rest of the sampler).
func sampleHelpers(count, weigh []string, interval time.Duration, stop <-chan struct{}) helperPeak {
	p := helperPeak{count: map[string]int{}, rss: map[string]int64{}}
	want := map[string]bool{}
	for _, n := range count {
		want[n] = true
	}
	weighed := map[string]bool{}
	for _, n := range weigh {
		want[n], weighed[n] = true, true
	}
	buf := make([]byte, 64)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n := map[string]int{}
		sum := map[string]int64{}
		for _, pid := range allPIDs() {
			comm, ok := readComm(pid, buf)
			if !ok {
				continue
			}
			if want[comm] {
				n[comm]++
				if weighed[comm] {
					sum[comm] += rss(pid)
				}
			}
		}
		for name := range want {
			p.count[name] = max(p.count[name], n[name])
			p.rss[name] = max(p.rss[name], sum[name])
		}
		select {
		case <-stop:
			return p
		case <-t.C:
		}
	}
}

// readComm reads /proc/<pid>/comm into buf with three system calls (open,
// read, close; os.ReadFile makes five and allocates): the sampler reads it
// for every process on the machine four times a second.
func readComm(pid int, buf []byte) (string, bool) {
	fd, err := syscall.Open("/proc/"+strconv.Itoa(pid)+"/comm", syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return "", false
	}
	n, err := syscall.Read(fd, buf)
	syscall.Close(fd)
	if err != nil || n <= 0 {
		return "", false
	}
	return strings.TrimSuffix(string(buf[:n]), "\n"), true
}

// waitQuiet waits, up to limit, for a 2-second window in which less than
// half of the machine's CPU is busy; it returns the busy share of the last
// window (the neighbours' load, before this runtime's server starts).
func waitQuiet(limit time.Duration) float64 {
	deadline := time.Now().Add(limit)
	for {
		b0, t0 := cpuTicks()
		time.Sleep(2 * time.Second)
		b1, t1 := cpuTicks()
		busy := 0.0
		if t1 > t0 {
			busy = float64(b1-b0) / float64(t1-t0)
		}
		if busy < 0.5 || time.Now().After(deadline) {
			return busy
		}
	}
}

// stackCPU is the CPU time (user+system) of the processes that run pods,
// by component, at one moment; a phase's figures are the difference of two
// (sub). A process's children count once it has waited for them, so
// short-lived helpers land with the process that ran them.
type stackCPU struct {
	server, serverChildren         time.Duration // process runtime: children are the pods that ended
	containerd, containerdChildren time.Duration // children: CNI plugins, `containerd-shim-runc-v2 start`/`delete`
	shims, shimChildren            time.Duration // children: runc create, start, kill, delete
	// pods: the pods' own processes (CRI: pause and the containers, with
	// runc init's work before it executed them).
	pods time.Duration
	// machine is every CPU's busy time, neighbours included.
	machine time.Duration
	// bench is this program's own CPU and that of the commands it waited
	// for (kubectl): the measuring's share of machine.
	bench time.Duration
	at    time.Time
	wall  time.Duration // set by sub
	// shimPIDs and podPIDs hold each process's figure (self, children),
	// so that sub counts a process that was already running only for its
	// use since.
	shimPIDs, podPIDs map[int][2]time.Duration
}

func readStackCPU(s *server, socket string) stackCPU {
	c := stackCPU{at: time.Now(), shimPIDs: map[int][2]time.Duration{}, podPIDs: map[int][2]time.Duration{}}
	c.server, c.serverChildren = procCPU(s.pid())
	if cd := s.containerdPID(); cd > 0 {
		c.containerd, c.containerdChildren = procCPU(cd)
	}
	var pods []int
	switch s.runtime {
	case "cri":
		sh := shims(socket)
		for _, p := range sh {
			self, children := procCPU(p)
			c.shimPIDs[p] = [2]time.Duration{self, children}
		}
		pods = descendants(sh)
	case "process":
		pods = processPodPIDs(s.dir)
	}
	for _, p := range pods {
		self, children := procCPU(p)
		c.podPIDs[p] = [2]time.Duration{self, children}
	}
	busy, _ := cpuTicks()
	c.machine = time.Duration(busy) * 10 * time.Millisecond
	c.bench = ownCPU()
	return c
}

// ownCPU is the CPU (user+system) of this process and of the children it
// has waited for.
func ownCPU() time.Duration {
	var d time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var u syscall.Rusage
		if syscall.Getrusage(who, &u) == nil {
			d += time.Duration(u.Utime.Nano() + u.Stime.Nano())
		}
	}
	return d
}

// sub is the CPU used between before and c.
func (c stackCPU) sub(before stackCPU) stackCPU {
	d := stackCPU{at: c.at, wall: c.at.Sub(before.at),
		server: c.server - before.server, serverChildren: c.serverChildren - before.serverChildren,
		containerd: c.containerd - before.containerd, containerdChildren: c.containerdChildren - before.containerdChildren,
		machine: c.machine - before.machine, bench: c.bench - before.bench}
	for p, v := range c.shimPIDs {
		b := before.shimPIDs[p]
		d.shims += v[0] - b[0]
		d.shimChildren += v[1] - b[1]
	}
	for p, v := range c.podPIDs {
		b := before.podPIDs[p]
		d.pods += v[0] + v[1] - b[0] - b[1]
	}
	return d
}

func (c stackCPU) total() time.Duration {
	return c.server + c.serverChildren + c.containerd + c.containerdChildren + c.shims + c.shimChildren + c.pods
}
