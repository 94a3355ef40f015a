// Command dns benchmarks Headway's cluster DNS against CoreDNS' kubernetes
// plugin, both following the same Headway API server:
//
//   - queries per second and latency with dnsperf (Debian package) on the
//     same query mix (headless A, per-pod A, SRV, PTR, NXDOMAIN), each server
//     pinned to CPU 0 and dnsperf to CPU 1, with a bare UDP echo loop (this
//     program run with -echo, answering each query with its own bytes
//     flagged as a response) as the limit of the path;
//   - resident memory with 10,000 Services and 100,000 endpoints, and with
//     2,000 headless Services of 50 endpoints (fresh servers per fixture);
//   - DNS programming latency: from an EndpointSlice write (its
//     endpoints.kubernetes.io/last-change-trigger-time) to the first answer
//     that carries it, while 1,000 pods churn.
//
// It writes markdown figures to -out. All traffic goes to 127.0.0.1.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	mdns "github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

var (
	bin            = flag.String("bin", "bin/headway", "headway binary")
	corednsBin     = flag.String("coredns", "", "coredns binary (default: PATH, then $(go env GOPATH)/bin/coredns)")
	out            = flag.String("out", "", "write the markdown figures here (default: stdout)")
	duration       = flag.Duration("duration", 15*time.Second, "each server's saturated dnsperf time in all, split over -rounds")
	rounds         = flag.Int("rounds", 5, "saturated throughput: interleaved rounds, each server (in a rotating order) for -duration/-rounds in each, so a machine whose speed drifts from minute to minute moves every server alike")
	latencyQPS     = flag.Int("latency-qps", 20000, "offered load of the latency runs (queries/s), below both servers' capacity")
	services       = flag.Int("services", 10000, "Services of the memory run")
	endpoints      = flag.Int("endpoints", 100000, "endpoints of the memory run (spread over the Services)")
	churnPods      = flag.Int("churn-pods", 1000, "endpoints of the churning headless Service")
	changes        = flag.Int("changes", 600, "readiness changes timed in each churn run (600: the p99 is then the 6th slowest)")
	skipMemory     = flag.Bool("skip-memory", false, "leave out the memory runs")
	skipThru       = flag.Bool("skip-throughput", false, "leave out the dnsperf throughput and latency runs")
	pollAfterWrite = flag.Bool("poll-after-write", false, "programming latency: start asking the servers when the write has returned (before 2026-11-30 18:00 UTC), not when it is sent")
	churnInTurn    = flag.Bool("churn-in-turn", true, "programming latency: also time each server alone (the others stopped), after the run with all at once")
	churnFlood     = flag.Bool("churn-flood", false, "flood Headway with dnsperf during the churn run")
	hops           = flag.String("hops", "", "write each timed change's moments here (CSV, Unix ns): the write, its answer, the bench's own watch receiving it, each server's first changed answer; the runs of each server alone go to FILE.<server>")
	onlyMemory     = flag.Bool("only-memory", false, "run the memory runs only")
	echo           = flag.String("echo", "", "run only the UDP echo loop on this address (what the benchmark starts as its reference)")
	echoBatch      = flag.Int("echo-batch", 0, "with -echo: read and write up to this many datagrams per system call (recvmmsg, sendmmsg; 0: one at a time)")
	skipChurn      = flag.Bool("skip-churn", false, "leave out the programming latency runs")
)

func main() {
	flag.Parse()
	if *echo != "" {
		loop := echoLoop
		if *echoBatch > 0 {
			loop = func(addr string) error { return echoBatchLoop(addr, *echoBatch) }
		}
		if err := loop(*echo); err != nil {
			fmt.Fprintln(os.Stderr, "bench/dns -echo:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/dns:", err)
		os.Exit(1)
	}
}

type proc struct {
	cmd *exec.Cmd
	log bytes.Buffer
}

func start(name string, args ...string) (*proc, error) {
	p := &proc{cmd: exec.Command(name, args...)}
	p.cmd.Stdout, p.cmd.Stderr = &p.log, &p.log
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *proc) stop() {
	p.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-done
	}
}

// statusMiB is a memory figure of /proc/PID/status (VmRSS, VmHWM) in MiB.
func (p *proc) statusMiB(field string) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	m := regexp.MustCompile(field + `:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		return 0
	}
	kb, _ := strconv.Atoi(string(m[1]))
	return float64(kb) / 1024
}

func freePort() (int, error) {
	for range 50 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		u, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port))
		l.Close()
		if err == nil {
			u.Close()
			return port, nil
		}
	}
	return 0, fmt.Errorf("no free port")
}

func findCoreDNS() string {
	if *corednsBin != "" {
		return *corednsBin
	}
	if p, err := exec.LookPath("coredns"); err == nil {
		return p
	}
	gopath, _ := exec.Command("go", "env", "GOPATH").Output()
	p := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "coredns")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	return ""
}

// waitAnswer waits until addr answers name with n addresses.
func waitAnswer(addr, name string, n int, d time.Duration) error {
	deadline := time.Now().Add(d)
	c := &mdns.Client{Net: "tcp", Timeout: time.Second}
	for {
		m := new(mdns.Msg)
		m.SetQuestion(name, mdns.TypeA)
		r, _, err := c.Exchange(m, addr)
		if err == nil && len(r.Answer) == n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer %s with %d addresses in %v (last: %v %v)", addr, name, n, d, r, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type server struct {
	name string
	addr string
	p    *proc
}

func run() error {
	var md strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&md, format, a...) }
	defer func() {
		if *out == "" {
			fmt.Print(md.String())
			return
		}
		os.WriteFile(*out, []byte(md.String()), 0o644)
	}()
	dnsperf, err := exec.LookPath("dnsperf")
	if err != nil {
		w("dnsperf is not installed (apt-get install dnsperf): no DNS figures.\n")
		return nil
	}
	coredns := findCoreDNS()
	if _, err := exec.LookPath("taskset"); err != nil {
		return fmt.Errorf("taskset (util-linux) is needed to pin the servers")
	}

	dir, err := os.MkdirTemp("", "headway-bench-dns")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	if *onlyMemory {
		return memory(w, dir, coredns)
	}
	// The API server both DNS servers follow; its own DNS is unused.
	api, kubeconfig, client, err := startAPI(filepath.Join(dir, "api"))
	if err != nil {
		return err
	}
	defer api.stop()
	ctx := context.Background()

	// The query mix.
	queries, err := populateMix(ctx, client, 100)
	if err != nil {
		return err
	}
	qfile := filepath.Join(dir, "queries.txt")
	if err := os.WriteFile(qfile, []byte(strings.Join(queries, "\n")+"\n"), 0o644); err != nil {
		return err
	}

	// The two servers, each pinned to CPU 0.
	servers, err := startServers(dir, kubeconfig, coredns)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range servers {
			s.p.stop()
		}
	}()
	for _, s := range servers {
		if err := waitAnswer(s.addr, "mix-99.default.svc.cluster.local.", 3, 60*time.Second); err != nil {
			return fmt.Errorf("%s: %w\n%s", s.name, err, s.p.log.String())
		}
	}
	if !*skipThru {
		if err := throughput(w, servers, dnsperf, qfile, len(queries), coredns != ""); err != nil {
			return err
		}
	}

	// Programming latency while 1,000 pods churn.
	if !*skipChurn {
		if err := programmingLatency(ctx, w, client, servers, dnsperf, qfile); err != nil {
			return err
		}
	}
	for _, s := range servers {
		s.p.stop()
	}
	servers = nil

	if !*skipMemory {
		return memory(w, dir, coredns)
	}
	return nil
}

// programmingLatency times the servers' answers to 1,000 churning endpoints
// (at once, then each in turn) and writes the section.
func programmingLatency(ctx context.Context, w func(string, ...any), client kubernetes.Interface, servers []*server, dnsperf, qfile string) error {
	if *churnFlood {
		// dnsperf floods Headway (CPU 1) during the churn: its serving
		// loop busy while the changes arrive.
		_, port, _ := net.SplitHostPort(servers[0].addr)
		flood := exec.Command("taskset", "-c", "1", dnsperf, "-s", "127.0.0.1", "-p", port, "-d", qfile, "-l", "600", "-c", "8", "-q", "256")
		if err := flood.Start(); err != nil {
			return err
		}
		defer func() { flood.Process.Kill(); flood.Wait() }()
	}
	lat, alone, aloneDelivered, err := churn(ctx, client, servers)
	if err != nil {
		return err
	}
	w("### DNS programming latency\n\nA headless Service of %d endpoints in slices of 100; %d times, one endpoint's readiness flips (an EndpointSlice update carrying `%s`), and each server is asked for that endpoint's name every 0.2 ms (one UDP socket per server), %s, until the answer shows the change. Time from the write to the first such answer, first with the servers following the changes at once (both pinned to CPU 0: each change wakes both, and the one the kernel runs second waits for the other), then each in turn with the other stopped (SIGSTOP) for its run:\n\n", *churnPods, *changes, "endpoints.kubernetes.io/last-change-trigger-time", pollStart())
	w("| server | run | p50 | p99 | max |\n| --- | --- | --- | --- | --- |\n")
	for _, s := range servers {
		l := lat[s.name]
		w("| %s | at once | %.1f ms | %.1f ms | %.1f ms |\n", s.name, pct(l, 50), pct(l, 99), pct(l, 100))
	}
	for _, s := range servers {
		if l, ok := alone[s.name]; ok {
			w("| %s | in turn (alone on the core) | %.1f ms | %.1f ms | %.1f ms |\n", s.name, pct(l, 50), pct(l, 99), pct(l, 100))
		}
	}
	for _, s := range servers {
		if l, ok := aloneDelivered[s.name]; ok && len(l) > 0 {
			w("| %s | in turn, from the API's delivery of the change (the bench's own watch) | %.2f ms | %.2f ms | %.2f ms |\n", s.name, pct(l, 50), pct(l, 99), pct(l, 100))
		}
	}
	hp99 := pct(lat["Headway"], 99)
	w("\nTarget: p99 under 50 ms: %s", yesNo(hp99 < 50))
	if len(servers) == 2 {
		cp99 := pct(lat[servers[1].name], 99)
		w("; below CoreDNS' at once (%.1f vs %.1f ms): %s", hp99, cp99, yesNo(hp99 < cp99))
		if alone != nil {
			ha, ca := pct(alone["Headway"], 99), pct(alone[servers[1].name], 99)
			w("; in turn (%.1f vs %.1f ms): %s", ha, ca, yesNo(ha < ca))
			if hd, cd := aloneDelivered["Headway"], aloneDelivered[servers[1].name]; len(hd) > 0 && len(cd) > 0 {
				w("; in turn from the delivery (the server's own part; the rest is the API write, the same for both) %.2f vs %.2f ms: %s", pct(hd, 99), pct(cd, 99), yesNo(pct(hd, 99) < pct(cd, 99)))
			}
		}
	}
	w(". Headway also exports the same measure, from the slice's trigger time to the first answer, as `headway_dns_programming_latency_seconds` on /metrics. The index update one such change costs is `go test -bench IndexUpdate ./internal/dns` (target under 100 µs).\n\n")
	return nil
}

// throughput runs dnsperf against each server and the UDP echo loop:
// saturated, then at -latency-qps.
func throughput(w func(string, ...any), servers []*server, dnsperf, qfile string, nQueries int, withCoreDNS bool) error {
	// The reference: a bare UDP echo loop (this program, -echo) on the
	// same CPU, under the same load.
	ep, _ := freePort()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	echoAddr := fmt.Sprintf("127.0.0.1:%d", ep)
	ech, err := start("taskset", "-c", "0", self, "-echo", echoAddr)
	if err != nil {
		return err
	}
	defer ech.stop()
	if err := waitEcho(echoAddr, 10*time.Second); err != nil {
		return fmt.Errorf("echo loop: %w\n%s", err, ech.log.String())
	}
	// A second reference: the echo loop reading and writing in batches, as
	// Headway's server does on Linux (recvmmsg, sendmmsg of up to 16).
	bp, _ := freePort()
	batchAddr := fmt.Sprintf("127.0.0.1:%d", bp)
	bech, err := start("taskset", "-c", "0", self, "-echo", batchAddr, "-echo-batch", "16")
	if err != nil {
		return err
	}
	defer bech.stop()
	if err := waitEcho(batchAddr, 10*time.Second); err != nil {
		return fmt.Errorf("batched echo loop: %w\n%s", err, bech.log.String())
	}
	const batchedEcho = "UDP echo loop, batched (recvmmsg/sendmmsg, 16)"
	loaded := append(slices.Clone(servers), &server{name: "UDP echo loop", addr: echoAddr, p: ech}, &server{name: batchedEcho, addr: batchAddr, p: bech})

	w("Both servers follow the same `headway server` (memory store) through its API, each pinned to CPU 0 (`taskset -c 0`; Go sizes GOMAXPROCS to the one CPU), with dnsperf %s pinned to CPU 1. CoreDNS 1.14.7 runs its `kubernetes` plugin alone (no cache plugin), `pods verified`, like Headway's default. ", dnsperfVersion(dnsperf))
	w("The query mix is %d queries over 100 headless Services of 3 pods each, in equal shares: headless A, per-pod A, SRV, PTR, NXDOMAIN. ", nQueries)
	w("The reference is a bare UDP echo loop (`go run ./bench/dns -echo ADDR`: one socket, read, set QR, write back; Go like Headway's server) pinned to the same CPU under the same dnsperf load: the limit of this path for a server that reads and writes one datagram per system call. Headway's server on Linux reads up to 16 waiting queries with one recvmmsg and sends their answers with one sendmmsg; the same echo loop batched that way (`-echo ADDR -echo-batch 16`, golang.org/x/net's ReadBatch/WriteBatch) is the second reference.\n\n")
	if !withCoreDNS {
		w("CoreDNS is not installed (`go install github.com/coredns/coredns@v1.14.7`): Headway's figures only.\n\n")
	}

	// Throughput in interleaved rounds, then latency at a fixed load below
	// both capacities.
	n := max(*rounds, 1)
	roundLen := max(int((*duration / time.Duration(n)).Seconds()), 2)
	sat := map[string][]perfResult{} // per server, in round order
	for r := range n {
		for i := range loaded {
			s := loaded[(i+r)%len(loaded)] // each round starts with the next server
			_, port, _ := net.SplitHostPort(s.addr)
			res, err := runDNSPerf(dnsperf, port, qfile, "-l", fmt.Sprint(roundLen), "-c", "8", "-q", "256")
			if err != nil {
				return fmt.Errorf("%s: %w", s.name, err)
			}
			sat[s.name] = append(sat[s.name], res)
		}
	}
	// perRound is one figure of a server's rounds, in round order.
	perRound := func(name string, f func(perfResult) float64) []float64 {
		var v []float64
		for _, r := range sat[name] {
			v = append(v, f(r))
		}
		return v
	}
	qps := func(r perfResult) float64 { return r.qps }
	type perf struct{ qps, lo, hi, avg, p50, p99, lost float64 }
	results := map[string]perf{}
	for _, s := range loaded {
		_, port, _ := net.SplitHostPort(s.addr)
		lat, err := runDNSPerf(dnsperf, port, qfile, "-l", "10", "-c", "8", "-Q", fmt.Sprint(*latencyQPS), "-v")
		if err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		q := perRound(s.name, qps)
		results[s.name] = perf{qps: median(q), lo: slices.Min(q), hi: slices.Max(q),
			avg:  median(perRound(s.name, func(r perfResult) float64 { return r.avg })),
			lost: median(perRound(s.name, func(r perfResult) float64 { return r.lost })),
			p50:  lat.p50, p99: lat.p99}
	}
	w("Saturated throughput: %d rounds; in each, every server in turn for %d s (`dnsperf -c 8 -q 256`), each round starting with the next server; the figures are the medians of the rounds (lowest–highest beside them), each ratio the median of the rounds' own ratios, so that the machine's drift from minute to minute moves both sides of a ratio alike.\n\n", n, roundLen)
	w("| server | queries/s (saturated), median (lowest–highest) | mean latency saturated | lost | p50 at %d q/s | p99 at %d q/s |\n| --- | --- | --- | --- | --- | --- |\n", *latencyQPS, *latencyQPS)
	for _, s := range loaded {
		r := results[s.name]
		w("| %s | %.0f (%.0f–%.0f) | %.3f ms | %.2f%% | %.3f ms | %.3f ms |\n", s.name, r.qps, r.lo, r.hi, r.avg*1000, r.lost, r.p50*1000, r.p99*1000)
	}
	// ratio is a over b in each round: the median, lowest and highest.
	ratio := func(a, b string) (med, lo, hi float64) {
		qa, qb := perRound(a, qps), perRound(b, qps)
		var rs []float64
		for i := range qa {
			rs = append(rs, qa[i]/qb[i])
		}
		return median(rs), slices.Min(rs), slices.Max(rs)
	}
	hw := results[servers[0].name]
	w("\n")
	if len(servers) == 2 {
		cd := results[servers[1].name]
		m, lo, hi := ratio(servers[0].name, servers[1].name)
		w("- Headway/CoreDNS queries/s: **%.2f×** (rounds %.2f–%.2f×; target ≥ 3×: %s); p99 %.3f ms vs %.3f ms (lower: %s).\n",
			m, lo, hi, yesNo(m >= 3), hw.p99*1000, cd.p99*1000, yesNo(hw.p99 < cd.p99))
	}
	m, lo, hi := ratio(servers[0].name, "UDP echo loop")
	w("- Headway/UDP echo loop queries/s: **%.0f%%** (rounds %.0f–%.0f%%; target ≥ 85%%: %s).\n", 100*m, 100*lo, 100*hi, yesNo(m >= 0.85))
	m, lo, hi = ratio(servers[0].name, batchedEcho)
	w("- Headway/batched UDP echo loop queries/s: %.0f%% (rounds %.0f–%.0f%%).\n\n", 100*m, 100*lo, 100*hi)
	return nil
}

// median is the middle value (the mean of the two middle ones for an even
// count).
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// memory measures both servers' resident memory on the two fixtures.
func memory(w func(string, ...any), dir, coredns string) error {
	{
		w("### Memory\n\nFor each fixture, a fresh `headway server` holding only it, and fresh DNS servers (pinned as above) started against it; resident memory (VmRSS) 3 s after each answers the fixture's last Service with all its endpoints, and the peak (VmHWM):\n\n")
		w("| fixture | server | VmRSS | peak (VmHWM) |\n| --- | --- | --- | --- |\n")
		type fixture struct{ services, endpoints int }
		rss := map[string]map[string]float64{}
		var names []string
		for _, f := range []fixture{{*services, *endpoints}, {2000, 100000}} {
			name := fmt.Sprintf("%d Services × %d endpoints", f.services, f.endpoints/f.services)
			names = append(names, name)
			got, err := memoryRun(filepath.Join(dir, fmt.Sprintf("mem-%d", f.services)), coredns, f.services, f.endpoints)
			if err != nil {
				return fmt.Errorf("memory run %s: %w", name, err)
			}
			rss[name] = map[string]float64{}
			for _, m := range got {
				rss[name][m.name] = m.rss
				w("| %s | %s | %.0f MiB | %.0f MiB |\n", name, m.name, m.rss, m.hwm)
			}
		}
		w("\n")
		for i, name := range names {
			h, c := rss[name]["Headway"], rss[name]["CoreDNS 1.14.7"]
			w("- %s: Headway %.0f MiB", name, h)
			if c > 0 {
				w(" vs CoreDNS %.0f MiB (target below CoreDNS: %s)", c, yesNo(h < c))
			}
			if i == 0 {
				w("; target at most 100 MiB: %s", yesNo(h <= 100))
			}
			w(".\n")
		}
		w("\nThe heap the index keeps for the same fixtures (the objects left out) is `go test -run X -bench IndexMemory -benchtime 1x ./internal/dns`.\n\n")
	}
	return nil
}

// startAPI starts a `headway server` (memory store, no runtime) in dir and
// waits until it answers.
func startAPI(dir string) (*proc, string, kubernetes.Interface, error) {
	apiPort, _ := freePort()
	ownDNS, _ := freePort()
	api, err := start(*bin, "server", "--store", "memory", "--runtime", "none", "--data-dir", dir,
		"--listen", fmt.Sprintf("127.0.0.1:%d", apiPort), "--dns-listen", fmt.Sprintf("127.0.0.1:%d", ownDNS), "--log-level", "warn")
	if err != nil {
		return nil, "", nil, err
	}
	kubeconfig := filepath.Join(dir, "kubeconfig")
	for deadline := time.Now().Add(30 * time.Second); ; {
		if cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig); err == nil {
			cfg.QPS, cfg.Burst = -1, 0
			if c, err := kubernetes.NewForConfig(cfg); err == nil {
				if _, err := c.CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err == nil {
					return api, kubeconfig, c, nil
				}
			}
		}
		if time.Now().After(deadline) {
			api.stop()
			return nil, "", nil, fmt.Errorf("headway server did not start:\n%s", api.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startServers starts Headway's DNS and (when installed) CoreDNS, each
// pinned to CPU 0, following the API of kubeconfig.
func startServers(dir, kubeconfig, coredns string) ([]*server, error) {
	var servers []*server
	hp, _ := freePort()
	mp, _ := freePort()
	h, err := start("taskset", "-c", "0", *bin, "dns", "--kubeconfig", kubeconfig, "--dns-listen", fmt.Sprintf("127.0.0.1:%d", hp),
		"--metrics-listen", fmt.Sprintf("127.0.0.1:%d", mp), "--dns-upstream", "none", "--log-level", "warn")
	if err != nil {
		return nil, err
	}
	servers = append(servers, &server{name: "Headway", addr: fmt.Sprintf("127.0.0.1:%d", hp), p: h})
	if coredns != "" {
		cp, _ := freePort()
		corefile := filepath.Join(dir, "Corefile")
		os.WriteFile(corefile, []byte(fmt.Sprintf(`.:%d {
    bind 127.0.0.1
    kubernetes cluster.local 19.198.in-addr.arpa 18.198.in-addr.arpa {
        kubeconfig %s headway
        pods verified
        ttl 5
    }
}
`, cp, kubeconfig)), 0o644)
		c, err := start("taskset", "-c", "0", coredns, "-conf", corefile)
		if err != nil {
			h.stop()
			return nil, err
		}
		servers = append(servers, &server{name: "CoreDNS 1.14.7", addr: fmt.Sprintf("127.0.0.1:%d", cp), p: c})
	}
	return servers, nil
}

type memFigure struct {
	name     string
	rss, hwm float64
}

// memoryRun holds services headless Services with endpoints endpoints in
// all in a fresh API server, and measures fresh DNS servers following it.
func memoryRun(dir, coredns string, services, endpoints int) ([]memFigure, error) {
	api, kubeconfig, client, err := startAPI(dir)
	if err != nil {
		return nil, err
	}
	defer api.stop()
	if err := populateMany(context.Background(), client, services, endpoints); err != nil {
		return nil, err
	}
	servers, err := startServers(dir, kubeconfig, coredns)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, s := range servers {
			s.p.stop()
		}
	}()
	last := fmt.Sprintf("many-%d.many.svc.cluster.local.", services-1)
	for _, s := range servers {
		if err := waitAnswer(s.addr, last, endpoints/services, 5*time.Minute); err != nil {
			return nil, fmt.Errorf("%s: %w\n%s", s.name, err, s.p.log.String())
		}
	}
	time.Sleep(3 * time.Second) // settled: what each keeps, not its last allocation
	var out []memFigure
	for _, s := range servers {
		out = append(out, memFigure{name: s.name, rss: s.p.statusMiB("VmRSS"), hwm: s.p.statusMiB("VmHWM")})
	}
	return out, nil
}

// echoLoop answers every UDP datagram on addr with its own bytes, QR set:
// the least a DNS server on this path can do.
func echoLoop(addr string) error {
	c, err := net.ListenPacket("udp", addr)
	if err != nil {
		return err
	}
	uc := c.(*net.UDPConn)
	buf := make([]byte, 65535)
	for {
		n, from, err := uc.ReadFromUDPAddrPort(buf)
		if err != nil {
			return err
		}
		if n >= 12 {
			buf[2] |= 0x80
			uc.WriteToUDPAddrPort(buf[:n], from)
		}
	}
}

// echoBatchLoop is echoLoop reading up to n datagrams per recvmmsg and
// answering them with one sendmmsg.
func echoBatchLoop(addr string, n int) error {
	c, err := net.ListenPacket("udp4", addr)
	if err != nil {
		return err
	}
	pc := ipv4.NewPacketConn(c)
	msgs := make([]ipv4.Message, n)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 4096)}
	}
	replies := make([]ipv4.Message, 0, n)
	for {
		k, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			return err
		}
		replies = replies[:0]
		for _, m := range msgs[:k] {
			if b := m.Buffers[0]; m.N >= 12 {
				b[2] |= 0x80
				replies = append(replies, ipv4.Message{Buffers: [][]byte{b[:m.N]}, Addr: m.Addr})
			}
		}
		for len(replies) > 0 {
			sent, err := pc.WriteBatch(replies, 0)
			if err != nil {
				sent = 1 // skip the one that failed
			}
			replies = replies[sent:]
		}
	}
}

// waitEcho waits until the echo loop on addr answers.
func waitEcho(addr string, d time.Duration) error {
	c := &mdns.Client{Net: "udp", Timeout: 200 * time.Millisecond}
	deadline := time.Now().Add(d)
	for {
		m := new(mdns.Msg)
		m.SetQuestion("echo.", mdns.TypeA)
		if r, _, err := c.Exchange(m, addr); err == nil && r.Response {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("no echo from %s in %v: %v", addr, d, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func dnsperfVersion(path string) string {
	outb, _ := exec.Command(path, "-h").CombinedOutput()
	if m := regexp.MustCompile(`Version (\S+)`).FindSubmatch(outb); m != nil {
		return string(m[1])
	}
	return ""
}

type perfResult struct{ qps, avg, lost, p50, p99 float64 }

// runDNSPerf runs dnsperf on CPU 1; with -v it computes percentiles from
// the per-query latencies.
func runDNSPerf(dnsperf, port, qfile string, args ...string) (perfResult, error) {
	var r perfResult
	cmd := exec.Command("taskset", append([]string{"-c", "1", dnsperf, "-s", "127.0.0.1", "-p", port, "-d", qfile}, args...)...)
	outb, err := cmd.Output()
	if err != nil {
		return r, fmt.Errorf("dnsperf: %w", err)
	}
	var lats []float64
	sc := bufio.NewScanner(bytes.NewReader(outb))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "> ") && len(f) >= 5:
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				lats = append(lats, v)
			}
		case strings.Contains(line, "Queries per second:"):
			r.qps, _ = strconv.ParseFloat(f[len(f)-1], 64)
		case strings.Contains(line, "Average Latency (s):"):
			r.avg, _ = strconv.ParseFloat(f[3], 64)
		case strings.Contains(line, "Queries lost:"):
			r.lost, _ = strconv.ParseFloat(strings.Trim(f[len(f)-1], "(%)"), 64)
		}
	}
	if len(lats) > 0 {
		slices.Sort(lats)
		r.p50 = lats[len(lats)*50/100]
		r.p99 = lats[min(len(lats)-1, len(lats)*99/100)]
	}
	return r, nil
}

func pct(v []float64, p int) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	i := len(s) * p / 100
	if i >= len(s) {
		i = len(s) - 1
	}
	return s[i]
}

func ptr[T any](v T) *T { return &v }

// pollStart says when the churn run's questions start.
func pollStart() string {
	if *pollAfterWrite {
		return "from when the write has returned"
	}
	return "from when the write is sent (the answer may change before the write returns)"
}

func headless(name, ns string) *corev1.Service {
	return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{ClusterIP: "None", Ports: []corev1.ServicePort{{Name: "web", Port: 80, Protocol: corev1.ProtocolTCP}}}}
}

func endpointSlice(name, ns, svc string, eps []discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr("web"), Port: ptr(int32(80)), Protocol: ptr(corev1.ProtocolTCP)}},
		Endpoints:   eps,
	}
}

// populateMix creates n headless Services of 3 pods and returns the
// dnsperf query lines.
func populateMix(ctx context.Context, c kubernetes.Interface, n int) ([]string, error) {
	var q []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("mix-%d", i)
		if _, err := c.CoreV1().Services("default").Create(ctx, headless(name, "default"), metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		var eps []discoveryv1.Endpoint
		for j := 0; j < 3; j++ {
			eps = append(eps, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("198.18.%d.%d", 100+i/80, 1+(i%80)*3+j)}, Hostname: ptr(fmt.Sprintf("web-%d", j))})
		}
		if _, err := c.DiscoveryV1().EndpointSlices("default").Create(ctx, endpointSlice(name+"-1", "default", name, eps), metav1.CreateOptions{}); err != nil {
			return nil, err
		}
		svc := name + ".default.svc.cluster.local"
		ip := strings.Split(eps[i%3].Addresses[0], ".")
		q = append(q,
			svc+" A",
			fmt.Sprintf("web-%d.%s A", i%3, svc),
			"_web._tcp."+svc+" SRV",
			fmt.Sprintf("%s.%s.%s.%s.in-addr.arpa PTR", ip[3], ip[2], ip[1], ip[0]),
			fmt.Sprintf("nope-%d.default.svc.cluster.local A", i))
	}
	rand.Shuffle(len(q), func(i, j int) { q[i], q[j] = q[j], q[i] })
	return q, nil
}

// populateMany creates the memory run's Services, each with one slice.
func populateMany(ctx context.Context, c kubernetes.Interface, services, endpoints int) error {
	if _, err := c.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "many"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	per := endpoints / services
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for i := 0; i < services; i++ {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			name := fmt.Sprintf("many-%d", i)
			var eps []discoveryv1.Endpoint
			for j := 0; j < per; j++ {
				k := i*per + j
				eps = append(eps, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("198.%d.%d.%d", 18+(k>>16), (k>>8)&255, k&255)}, Hostname: ptr(fmt.Sprintf("p-%d", j))})
			}
			_, err := c.CoreV1().Services("many").Create(ctx, headless(name, "many"), metav1.CreateOptions{})
			if err == nil {
				_, err = c.DiscoveryV1().EndpointSlices("many").Create(ctx, endpointSlice(name+"-1", "many", name, eps), metav1.CreateOptions{})
			}
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// churn flips the readiness of random endpoints of a 1,000-endpoint
// headless Service and times, per server, the write-to-answer latency.
// churnState is the churn Service's slices as last written.
type churnState struct{ slices []*discoveryv1.EndpointSlice }

const churnPer = 100 // endpoints per slice

// ready counts the ready endpoints: the addresses the Service's name has.
func (st *churnState) ready() int {
	n := 0
	for _, sl := range st.slices {
		for _, ep := range sl.Endpoints {
			if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
				n++
			}
		}
	}
	return n
}

// churn times the programming latency twice: with every server following
// the changes at once (all pinned to CPU 0, so each change wakes them all
// and the p99 says which one the kernel ran first: bench/results-dns.md),
// then each server in turn, the others stopped (SIGSTOP) for that run, so
// each has the core to itself as it would on a machine of its own.
// inTurn holds each server's latencies alone, from the write and from the
// API's delivery (the bench's own watch) to the first changed answer.
func churn(ctx context.Context, c kubernetes.Interface, servers []*server) (atOnce, inTurn, inTurnDelivered map[string][]float64, err error) {
	st, err := churnSetup(ctx, c, servers)
	if err != nil {
		return nil, nil, nil, err
	}
	atOnce, _, err = churnTimed(ctx, c, st, servers, *hops, false)
	if err != nil || len(servers) < 2 || !*churnInTurn {
		return atOnce, nil, nil, err
	}
	inTurn, inTurnDelivered = map[string][]float64{}, map[string][]float64{}
	for _, s := range servers {
		lat, delivered, err := churnAlone(ctx, c, st, servers, s)
		if err != nil {
			return nil, nil, nil, err
		}
		inTurn[s.name], inTurnDelivered[s.name] = lat[s.name], delivered[s.name]
	}
	return atOnce, inTurn, inTurnDelivered, nil
}

// churnAlone times s with the other servers stopped, then resumes them and
// waits until each answers with the Service's current addresses.
func churnAlone(ctx context.Context, c kubernetes.Interface, st *churnState, servers []*server, s *server) (lat, delivered map[string][]float64, err error) {
	var stopped []*server
	defer func() {
		for _, o := range stopped {
			o.p.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	for _, o := range servers {
		if o != s {
			if err := o.p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
				return nil, nil, fmt.Errorf("stopping %s for %s's run alone: %w", o.name, s.name, err)
			}
			stopped = append(stopped, o)
		}
	}
	if err := waitAnswer(s.addr, "churn.default.svc.cluster.local.", st.ready(), time.Minute); err != nil {
		return nil, nil, err
	}
	hopsAlone := ""
	if *hops != "" {
		hopsAlone = *hops + "." + strings.Fields(s.name)[0]
	}
	lat, delivered, err = churnTimed(ctx, c, st, []*server{s}, hopsAlone, true)
	if err != nil {
		return nil, nil, err
	}
	for _, o := range stopped {
		o.p.cmd.Process.Signal(syscall.SIGCONT)
	}
	stopped = nil
	for _, o := range servers {
		if err := waitAnswer(o.addr, "churn.default.svc.cluster.local.", st.ready(), time.Minute); err != nil {
			return nil, nil, fmt.Errorf("%s after its pause: %w", o.name, err)
		}
	}
	return lat, delivered, nil
}

// churnSetup creates the churn Service and its slices and waits for every
// server to answer with all of them.
func churnSetup(ctx context.Context, c kubernetes.Interface, servers []*server) (*churnState, error) {
	if _, err := c.CoreV1().Services("default").Create(ctx, headless("churn", "default"), metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	const per = churnPer
	nSlices := (*churnPods + per - 1) / per
	slicesNow := make([]*discoveryv1.EndpointSlice, nSlices)
	for s := 0; s < nSlices; s++ {
		var eps []discoveryv1.Endpoint
		for j := 0; j < per && s*per+j < *churnPods; j++ {
			k := s*per + j
			eps = append(eps, discoveryv1.Endpoint{Addresses: []string{fmt.Sprintf("198.18.%d.%d", 200+k/250, 1+k%250)},
				Hostname: ptr(fmt.Sprintf("churn-%d", k)), Conditions: discoveryv1.EndpointConditions{Ready: ptr(true)}})
		}
		created, err := c.DiscoveryV1().EndpointSlices("default").Create(ctx, endpointSlice(fmt.Sprintf("churn-%d", s), "default", "churn", eps), metav1.CreateOptions{})
		if err != nil {
			return nil, err
		}
		slicesNow[s] = created
	}
	for _, s := range servers {
		if err := waitAnswer(s.addr, "churn.default.svc.cluster.local.", *churnPods, time.Minute); err != nil {
			return nil, err
		}
	}
	return &churnState{slices: slicesNow}, nil
}

// churnTimed flips -changes random endpoints' readiness, one at a time,
// and times each server in servers from the write to its first changed
// answer (in ms). hops, when not "", is the CSV of each change's moments.
//
// With watch (or hops), the bench also watches the slices itself, as the
// servers' informers do: afterDelivery is then each server's time from the
// API delivering the change to the bench to its first changed answer, the
// server's own part (ms; changes the bench's watch saw first).
func churnTimed(ctx context.Context, c kubernetes.Interface, st *churnState, servers []*server, hops string, watch bool) (lat, afterDelivery map[string][]float64, err error) {
	const per = churnPer
	slicesNow := st.slices
	nSlices := len(slicesNow)
	var hopLog *os.File
	var watched sync.Map // trigger time (RFC 3339) → time.Time received
	if hops != "" {
		f, err := os.Create(hops)
		if err != nil {
			return nil, nil, err
		}
		defer f.Close()
		hopLog = f
		fmt.Fprint(f, "change,write,written,watched")
		for _, s := range servers {
			fmt.Fprintf(f, ",%s", strings.Fields(s.name)[0])
		}
		fmt.Fprintln(f)
	}
	if hops != "" || watch {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		wi, err := c.DiscoveryV1().EndpointSlices("default").Watch(wctx, metav1.ListOptions{ResourceVersion: slicesNow[nSlices-1].ResourceVersion})
		if err != nil {
			return nil, nil, err
		}
		defer wi.Stop()
		go func() {
			for ev := range wi.ResultChan() {
				now := time.Now()
				if sl, ok := ev.Object.(*discoveryv1.EndpointSlice); ok {
					if t := sl.Annotations["endpoints.kubernetes.io/last-change-trigger-time"]; t != "" {
						watched.LoadOrStore(t, now)
					}
				}
			}
		}()
	}
	// One UDP socket per server, for every poll.
	conns := make([]*mdns.Conn, len(servers))
	for si, s := range servers {
		nc, err := net.Dial("udp", s.addr)
		if err != nil {
			return nil, nil, err
		}
		defer nc.Close()
		conns[si] = &mdns.Conn{Conn: nc}
	}
	lat, afterDelivery = map[string][]float64{}, map[string][]float64{}
	for i := 0; i < *changes; i++ {
		k := rand.IntN(*churnPods)
		sl := slicesNow[k/per].DeepCopy()
		ep := &sl.Endpoints[k%per]
		ready := !*ep.Conditions.Ready
		ep.Conditions.Ready = ptr(ready)
		name := fmt.Sprintf("churn-%d.churn.default.svc.cluster.local.", k)
		var wg sync.WaitGroup
		var mu sync.Mutex
		answered := make([]time.Time, len(servers))
		begin := make(chan time.Time)
		for si, s := range servers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				at := <-begin
				cl := &mdns.Client{Net: "udp", Timeout: time.Second}
				for time.Since(at) < 10*time.Second {
					m := new(mdns.Msg)
					m.SetQuestion(name, mdns.TypeA)
					r, _, err := cl.ExchangeWithConn(m, conns[si])
					if err == nil && (r.Rcode == mdns.RcodeSuccess && len(r.Answer) == 1) == ready {
						answered[si] = time.Now()
						mu.Lock()
						lat[s.name] = append(lat[s.name], float64(answered[si].Sub(at).Microseconds())/1000)
						mu.Unlock()
						return
					}
					time.Sleep(200 * time.Microsecond)
				}
				mu.Lock()
				lat[s.name] = append(lat[s.name], 10000)
				mu.Unlock()
			}()
		}
		startPolls := func(at time.Time) {
			for range servers {
				begin <- at
			}
		}
		at := time.Now()
		sl.Annotations = map[string]string{"endpoints.kubernetes.io/last-change-trigger-time": at.UTC().Format(time.RFC3339Nano)}
		if !*pollAfterWrite {
			startPolls(at)
		}
		updated, err := c.DiscoveryV1().EndpointSlices("default").Update(ctx, sl, metav1.UpdateOptions{})
		if err != nil {
			return nil, nil, err
		}
		written := time.Now()
		if *pollAfterWrite {
			startPolls(at)
		}
		slicesNow[k/per] = updated
		wg.Wait()
		trig := sl.Annotations["endpoints.kubernetes.io/last-change-trigger-time"]
		var wat int64
		if hopLog != nil || watch {
			// The bench's watch may get the event after a server answered.
			for deadline := time.Now().Add(time.Second); ; time.Sleep(100 * time.Microsecond) {
				if v, ok := watched.Load(trig); ok {
					wat = v.(time.Time).UnixNano()
					break
				}
				if time.Now().After(deadline) {
					break
				}
			}
		}
		if wat != 0 {
			for si, s := range servers {
				if !answered[si].IsZero() {
					afterDelivery[s.name] = append(afterDelivery[s.name], float64(answered[si].UnixNano()-wat)/1e6)
				}
			}
		}
		if hopLog != nil {
			fmt.Fprintf(hopLog, "%d,%d,%d,%d", i, at.UnixNano(), written.UnixNano(), wat)
			for _, t := range answered {
				fmt.Fprintf(hopLog, ",%d", t.UnixNano())
			}
			fmt.Fprintln(hopLog)
		}
		time.Sleep(time.Duration(rand.IntN(20)) * time.Millisecond)
	}
	return lat, afterDelivery, nil
}
