// Command apiserver benchmarks Headway's API server on the bolt store: durable
// creates, gets, full lists, watch fan-out, and the real binary's start to
// /readyz. It prints a markdown table of figures (and writes it to -out).
//
// Everything talks to 127.0.0.1 only. The in-process cluster and its clients
// share this process (and the machine's cores): client-side encoding,
// decoding and TLS are part of every in-process figure, as they are for a real
// client on the same machine.
//
//	go run ./bench/apiserver -out bench/results-apiserver.md
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/gcpace"
	"github.com/headway/headway/internal/procs"
	"github.com/headway/headway/internal/storage/bolt"
	"github.com/headway/headway/internal/testing/cluster"
)

type options struct {
	out        string
	cpuprofile string
	trace      string
	memprofile string
	profile    string

	creates1     int
	creates16    int
	createsShare int
	gets         int
	list1k       int
	list10k      int
	listRuns     int
	watchers     int
	watchQuiet   int
	watchBurst   int
	watchRounds  int
	splitRounds  int
	startRuns    int
	bigStartRuns int
	memRef       int
	storeRef     bool
	bin          string
	serverArgs   string
	skipStart    bool
	startOnly    bool
	netns        bool
	idleRuns     int
	idleSettle   time.Duration
	sharedAll    bool
	gcPace       bool
	spareProc    bool
	watchMode    string
}

func main() {
	log.SetFlags(0)
	log.SetPrefix("bench/apiserver: ")
	if spec := os.Getenv(splitEnv); spec != "" {
		log.SetPrefix("bench/apiserver (watcher process): ")
		os.Exit(watchChild(spec))
	}
	var o options
	defBin := os.Getenv("HEADWAY_BIN")
	if defBin == "" {
		defBin = "./bin/headway"
	}
	flag.StringVar(&o.out, "out", "", "also write the markdown table to this file")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of one phase (see -profile) to this file")
	flag.StringVar(&o.memprofile, "memprofile", "", "write the allocations of one phase (see -profile) to this file (and FILE.base before it: go tool pprof -sample_index=alloc_space -base FILE.base FILE)")
	flag.StringVar(&o.trace, "trace", "", "write an execution trace of one phase (see -profile) to this file")
	flag.StringVar(&o.profile, "profile", "create16", "phase -cpuprofile and -memprofile cover: create1, create16, get16, list, watch, memref (the memory-store reference)")
	flag.IntVar(&o.creates1, "creates1", 2000, "creates by the single client")
	flag.IntVar(&o.creates16, "creates16", 10000, "creates by the 16 clients (this namespace is also the 10k list)")
	flag.IntVar(&o.createsShare, "creates-shared", 5000, "creates by 16 clients over one shared HTTP/2 connection (0 skips)")
	flag.IntVar(&o.gets, "gets", 20000, "gets by the 16 clients")
	flag.IntVar(&o.list1k, "list-small", 1000, "objects in the small list namespace")
	flag.IntVar(&o.listRuns, "list-runs", 7, "full lists per size and format (median reported)")
	flag.IntVar(&o.watchers, "watchers", 100, "watchers on one namespace")
	flag.IntVar(&o.watchQuiet, "watch-quiet", 500, "creates by one client, one at a time, while the watchers watch")
	flag.IntVar(&o.watchBurst, "watch-burst", 2000, "creates by 16 clients at once while the watchers watch")
	flag.IntVar(&o.splitRounds, "watch-split-rounds", 11, "rounds of the split fan-out (-watch-mode split), whose single-CPU bursts are short and drift more")
	flag.IntVar(&o.watchRounds, "watch-rounds", 5, "rounds of the 16-client burst, each beside as many creates by the same clients into a namespace nobody watches (the slowdown is the median of the rounds' ratios)")
	flag.IntVar(&o.startRuns, "start-runs", 10, "server starts per data-dir kind (median reported)")
	flag.IntVar(&o.bigStartRuns, "big-start-runs", 5, "server starts on the data dir the in-process benchmarks filled (0 skips)")
	flag.IntVar(&o.memRef, "memory-reference", 5000, "creates by 16 clients on a memory-store cluster, for reference (0 skips)")
	flag.BoolVar(&o.storeRef, "store-reference", true, "also run the 16-client creates on the bolt store alone (no API server), with the bytes the server stored")
	flag.StringVar(&o.bin, "bin", defBin, "headway binary for the start benchmark ($HEADWAY_BIN, else ./bin/headway)")
	flag.StringVar(&o.serverArgs, "server-args", "--runtime none", "extra flags for `headway server` in the start benchmark")
	flag.BoolVar(&o.skipStart, "skip-start", false, "skip the server start benchmark")
	flag.BoolVar(&o.startOnly, "start-only", false, "only the real binary's start and idle memory (no in-process benchmarks)")
	flag.BoolVar(&o.netns, "netns", false, "run in new network and mount namespaces (root; for -server-args with a node agent, whose bridge and rules stay in them)")
	flag.IntVar(&o.idleRuns, "idle-runs", 3, "server starts measured for idle memory (median reported; 0 skips)")
	flag.DurationVar(&o.idleSettle, "idle-settle", 35*time.Second, "how long after ready the idle server's memory is read (the server releases the start's memory 5 s and 30 s after ready)")
	flag.BoolVar(&o.spareProc, "spare-proc", true, "GOMAXPROCS one more than the CPUs, as headway server sets it with the bolt store (internal/procs; a GOMAXPROCS environment variable wins); false: Go's default")
	flag.BoolVar(&o.gcPace, "gc-pace", true, "pace garbage collection as headway server does (internal/gcpace: a 128 MiB heap goal while allocating fast); false: plain GOGC")
	flag.BoolVar(&o.sharedAll, "shared-transport", false, "every client shares one HTTP/2 transport (default: one transport, so one connection, per client)")
	flag.StringVar(&o.watchMode, "watch-mode", "client-go,raw,split", "watchers of the fan-out benchmark, a comma-separated list of: client-go (in this process, decoding every event as informers do), raw (HTTP/2 streams that only read frames: the server's cost), split (the client-go watchers in another process pinned to the last CPU, this one to the others)")
	flag.Parse()
	o.list10k = o.creates16
	if o.netns {
		if code, done := inOwnNamespaces(); done {
			os.Exit(code)
		}
	}

	r, err := run(o)
	if r != nil {
		table := r.markdown()
		fmt.Print(table)
		if o.out != "" {
			if werr := os.WriteFile(o.out, []byte(table), 0o644); werr != nil {
				log.Printf("writing %s: %v", o.out, werr)
				os.Exit(1)
			}
		}
	}
	if err != nil {
		log.Printf("%v", err)
		os.Exit(1)
	}
}

func run(o options) (*report, error) {
	r := &report{}
	r.notef("Load average at start: %s.", loadavg())
	procsNote := "Go's default (-spare-proc=false)"
	if o.spareProc && !o.startOnly {
		// As headway server does with the bolt store.
		procsNote = "one more than the CPUs, as headway server sets it with the bolt store (internal/procs)"
		if _, users := procs.SpareForSyncs(); users {
			procsNote = "from the GOMAXPROCS environment variable"
		}
	}
	switch {
	case o.startOnly:
		r.notef("Only the real binary's start and idle memory (-start-only).")
	default:
		r.notef("GOMAXPROCS %d (%s); in-process cluster, bolt store (group commit: one write-ahead log record and one fdatasync per batch, committed into the bbolt file every %v); clients in the same process.", runtime.GOMAXPROCS(0), procsNote, bolt.DefaultFlushInterval)
		if o.sharedAll {
			r.notef("Transport: every client shares one HTTP/2 transport (one connection).")
		} else {
			r.notef("Transport: one HTTP/2 transport (one TLS connection) per client, so 16 clients are 16 connections and 100 watchers 100 connections; client-go, protobuf, QPS -1 (no client rate limit).")
		}
	}

	// Everything this program does must end; the deadline is a backstop.
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()

	tmp, err := os.MkdirTemp("", "headway-bench-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(tmp)
	dataDir := filepath.Join(tmp, "inproc")

	if o.startOnly {
		if err := benchStart(ctx, r, o, tmp, ""); err != nil {
			return r, err
		}
		r.notef("Load average at the end: %s.", loadavg())
		return r, nil
	}

	t0 := time.Now()
	c, err := cluster.StartE(dataDir, cluster.WithBolt(dataDir), quietLogs)
	if err != nil {
		return r, fmt.Errorf("starting the in-process cluster (bolt): %w", err)
	}
	log.Printf("in-process cluster (bolt) ready in %v at %s", time.Since(t0).Round(time.Millisecond), c.URL)
	if o.gcPace {
		// As headway server does once started (the pacing is the
		// process's, so the in-process clients' collections too).
		defer gcpace.Start(ctx, gcpace.Options{})()
		r.notef("Garbage collection paced as headway server's (internal/gcpace: heap goal at least 128 MiB while allocating ≥ 32 MiB/s; -gc-pace=false for plain GOGC).")
	} else {
		r.notef("Garbage collection: plain GOGC (-gc-pace=false).")
	}
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		return c.Stop()
	}
	defer stop()

	b := &apiBench{o: o, r: r, cl: newClients(c.Config, o.sharedAll)}
	defer b.cl.close()
	if proto, err := b.cl.protocol(ctx, c.URL+"/readyz"); err != nil {
		return r, fmt.Errorf("probing the API server: %w", err)
	} else if proto != "HTTP/2.0" {
		r.notef("The clients speak %s, not HTTP/2.", proto)
	}
	if err := b.runAll(ctx); err != nil {
		return r, err
	}
	if err := stop(); err != nil {
		return r, fmt.Errorf("stopping the in-process cluster: %w", err)
	}
	if fi, err := os.Stat(filepath.Join(dataDir, "headway.db")); err == nil {
		r.notef("The in-process bolt file ended at %s.", bytesHuman(int(fi.Size())))
	}

	if o.storeRef {
		value, err := storedConfigMap(ctx, dataDir)
		if err != nil {
			return r, fmt.Errorf("reading a stored ConfigMap for the store reference: %w", err)
		}
		if err := storeReference(ctx, r, o, filepath.Join(tmp, "store"), value); err != nil {
			return r, err
		}
	}

	if o.memRef > 0 {
		if err := memoryReference(ctx, r, o, filepath.Join(tmp, "memory")); err != nil {
			return r, err
		}
	}

	if !o.skipStart {
		big := dataDir
		if o.bigStartRuns <= 0 {
			big = ""
		}
		if err := benchStart(ctx, r, o, tmp, big); err != nil {
			return r, err
		}
	}
	r.notef("Load average at the end: %s.", loadavg())
	return r, nil
}

// memoryReference runs the 16-client create benchmark on the memory store:
// the same API server without bolt and fsync, to show what durability costs.
func memoryReference(ctx context.Context, r *report, o options, dir string) error {
	c, err := cluster.StartE(dir, quietLogs)
	if err != nil {
		return fmt.Errorf("starting the in-process cluster (memory): %w", err)
	}
	defer c.Stop()
	b := &apiBench{o: o, r: r, cl: newClients(c.Config, o.sharedAll)}
	defer b.cl.close()
	cs, err := b.cl.clientsets(16, contentProtobuf)
	if err != nil {
		return err
	}
	for _, ns := range []string{nsWarm, nsMany} {
		if _, err := cs[0].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating namespace %s: %w", ns, err)
		}
	}
	if _, err := creates(ctx, cs, nsWarm, "warm", 320); err != nil {
		return fmt.Errorf("warm-up (memory): %w", err)
	}
	return withProfile(o, "memref", func() error {
		return b.create(ctx, cs, nsMany, o.memRef, "reference: create, 16 clients, memory store (not durable)", "")
	})
}

// quietLogs keeps the in-process server's logs to errors only.
func quietLogs(o *app.Options) {
	if os.Getenv("HEADWAY_TEST_DEBUG") == "" && o.Logger != nil {
		o.Logger = newErrorLogger()
	}
}

// withProfile runs fn under the CPU profiler, and between two snapshots of
// the allocation profile, when phase is the profiled one.
func withProfile(o options, phase string, fn func() error) error {
	if o.profile != phase || (o.cpuprofile == "" && o.memprofile == "" && o.trace == "") {
		return fn()
	}
	if o.trace != "" {
		f, err := os.Create(o.trace)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return err
		}
		defer func() {
			trace.Stop()
			log.Printf("execution trace of %s written to %s (go tool trace -pprof=sched %s)", phase, o.trace, o.trace)
		}()
	}
	if o.memprofile != "" {
		if err := writeAllocs(o.memprofile + ".base"); err != nil {
			return err
		}
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
	}
	err := fn()
	if o.cpuprofile != "" {
		pprof.StopCPUProfile()
		log.Printf("CPU profile of %s written to %s (go tool pprof -top %s)", phase, o.cpuprofile, o.cpuprofile)
	}
	if o.memprofile != "" {
		if werr := writeAllocs(o.memprofile); werr != nil && err == nil {
			err = werr
		}
		log.Printf("allocations of %s written to %s (go tool pprof -sample_index=alloc_space -base %s.base %s)", phase, o.memprofile, o.memprofile, o.memprofile)
	}
	return err
}

// writeAllocs writes the allocation profile as of now (after a GC, which is
// when the runtime brings it up to date).
func writeAllocs(path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// report collects the table rows and notes.
type report struct {
	rows  []row
	notes []string
}

type row struct {
	bench, measure, value, target, meets, note string
}

func (r *report) add(bench, measure, value string) *row {
	r.rows = append(r.rows, row{bench: bench, measure: measure, value: value})
	return &r.rows[len(r.rows)-1]
}

func (r *report) notef(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// goal records the target a row is held to and whether it meets it.
func (w *row) goal(target string, ok bool) *row {
	w.target = target
	w.meets = "no"
	if ok {
		w.meets = "yes"
	}
	return w
}

func (w *row) with(note string) *row { w.note = note; return w }

func (r *report) markdown() string {
	var sb strings.Builder
	sb.WriteString("| benchmark | measure | value | target | meets | notes |\n")
	sb.WriteString("| --- | --- | ---: | --- | --- | --- |\n")
	for _, w := range r.rows {
		fmt.Fprintf(&sb, "| %s | %s | %s | %s | %s | %s |\n", w.bench, w.measure, w.value, w.target, w.meets, w.note)
	}
	if len(r.notes) > 0 {
		sb.WriteString("\n")
		for _, n := range r.notes {
			fmt.Fprintf(&sb, "- %s\n", n)
		}
	}
	return sb.String()
}
