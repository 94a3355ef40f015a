// Command dnsparser measures what Headway's hand-written DNS query parser
// buys over miekg/dns' Msg.Unpack, in the real server loop: the same
// internal/dns server (one UDP read loop, answers from the index) built
// twice, once as is and once with -tags dnsunpack, where every query is
// parsed by Msg.Unpack instead. Nothing else differs.
//
// Each server runs alone on CPU 0 (taskset; Go sizes GOMAXPROCS to that one
// CPU, so one read loop), answering the query mix of bench/dns (100
// headless Services of 3 pods: headless A, per-pod A, SRV, PTR, NXDOMAIN)
// from an index filled directly (no API server). The load runs on CPU 1:
// dnsperf when installed, else the Go load generator of load.go. Variants
// alternate, several rounds; the figures are the medians, with every run
// listed. Besides queries/s the server's own CPU time per answered query is
// given (from /proc), which holds even when the load generator, not the
// server, is the limit.
//
//	go run ./bench/dnsparser [-rounds 5] [-duration 10s] [-out file.md]
//
// All traffic goes to 127.0.0.1.
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/dns"
)

var (
	serve    = flag.Bool("serve", false, "internal: serve the query mix on 127.0.0.1 and print the address")
	load     = flag.String("load", "", "internal: send the query mix to this ip:port for -duration and print the counts")
	rounds   = flag.Int("rounds", 5, "rounds; each runs every variant once, in alternating order")
	duration = flag.Duration("duration", 10*time.Second, "length of each load run")
	window   = flag.Int("window", 256, "queries outstanding (Go load generator)")
	loader   = flag.String("loader", "auto", "auto (dnsperf when installed), dnsperf or go")
	out      = flag.String("out", "", "write the markdown figures here (default: stdout)")
)

func main() {
	flag.Parse()
	var err error
	switch {
	case *serve:
		err = serveMix()
	case *load != "":
		err = runLoad(*load)
	default:
		err = drive()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/dnsparser:", err)
		os.Exit(1)
	}
}

// The query mix, as bench/dns builds it through the API.
const services = 100

func ptr[T any](v T) *T { return &v }

func mixObjects() []any {
	objs := []any{&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "default"}}}
	for i := 0; i < services; i++ {
		name := fmt.Sprintf("mix-%d", i)
		objs = append(objs, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"},
			Spec: corev1.ServiceSpec{ClusterIP: "None", ClusterIPs: []string{"None"}, Ports: []corev1.ServicePort{{Name: "web", Port: 80, Protocol: corev1.ProtocolTCP}}}})
		var eps []discoveryv1.Endpoint
		for j := 0; j < 3; j++ {
			eps = append(eps, discoveryv1.Endpoint{Addresses: []string{mixAddr(i, j)}, Hostname: ptr(fmt.Sprintf("web-%d", j))})
		}
		objs = append(objs, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name + "-1", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr("web"), Port: ptr(int32(80)), Protocol: ptr(corev1.ProtocolTCP)}},
			Endpoints:   eps,
		})
	}
	return objs
}

func mixAddr(i, j int) string { return fmt.Sprintf("198.18.%d.%d", 100+i/80, 1+(i%80)*3+j) }

// mixQueries are the queries as dnsperf lines (name type), in a fixed
// shuffled order.
func mixQueries() []string {
	var q []string
	for i := 0; i < services; i++ {
		svc := fmt.Sprintf("mix-%d.default.svc.cluster.local", i)
		ip := strings.Split(mixAddr(i, i%3), ".")
		q = append(q,
			svc+" A",
			fmt.Sprintf("web-%d.%s A", i%3, svc),
			"_web._tcp."+svc+" SRV",
			fmt.Sprintf("%s.%s.%s.%s.in-addr.arpa PTR", ip[3], ip[2], ip[1], ip[0]),
			fmt.Sprintf("nope-%d.default.svc.cluster.local A", i))
	}
	// A fixed permutation (stride coprime with the length).
	p := make([]string, len(q))
	for i := range q {
		p[i] = q[(i*7919)%len(q)]
	}
	return p
}

// serveMix is one server variant: the index filled with the mix, served
// until stdin closes or a signal arrives.
func serveMix() error {
	h, err := dns.New(dns.Config{Zone: "cluster.local", Metrics: dns.NewMetrics(), PodMode: dns.PodsVerified,
		ReverseCIDRs: []netip.Prefix{netip.MustParsePrefix("198.18.0.0/16"), netip.MustParsePrefix("198.19.0.0/16")}})
	if err != nil {
		return err
	}
	h.Apply(mixObjects()...)
	s, err := h.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		bufio.NewReader(os.Stdin).ReadString('\n')
		stop()
	}()
	fmt.Println(s.Addr())
	return s.Serve(ctx)
}

type variant struct {
	name, tags, bin string
}

type result struct {
	qps     float64 // answers per second
	cpuUS   float64 // server CPU time per answer, µs
	cpuFrac float64 // server CPU time / wall time
	lost    float64 // %
}

func drive() error {
	if _, err := exec.LookPath("taskset"); err != nil {
		return fmt.Errorf("taskset (util-linux) is needed to pin the server and the load")
	}
	useDNSPerf := false
	switch *loader {
	case "auto":
		_, err := exec.LookPath("dnsperf")
		useDNSPerf = err == nil
	case "dnsperf":
		useDNSPerf = true
	case "go":
	default:
		return fmt.Errorf("-loader %q: want auto, dnsperf or go", *loader)
	}
	dir, err := os.MkdirTemp("", "headway-bench-dnsparser")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	variants := []*variant{
		{name: "hand-written parser", tags: ""},
		{name: "miekg/dns Msg.Unpack", tags: "dnsunpack"},
	}
	for i, v := range variants {
		v.bin = filepath.Join(dir, fmt.Sprintf("server-%d", i))
		args := []string{"build", "-o", v.bin}
		if v.tags != "" {
			args = append(args, "-tags", v.tags)
		}
		cmd := exec.Command("go", append(args, "./bench/dnsparser")...)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("building %s: %w", v.name, err)
		}
	}
	qfile := filepath.Join(dir, "queries.txt")
	if err := os.WriteFile(qfile, []byte(strings.Join(mixQueries(), "\n")+"\n"), 0o644); err != nil {
		return err
	}
	loadDesc := fmt.Sprintf("the Go load generator of bench/dnsparser (one connected UDP socket, %d queries outstanding, sendmmsg/recvmmsg batches)", *window)
	if useDNSPerf {
		loadDesc = "dnsperf (-c 8 -q 256)"
	}

	runs := map[string][]result{}
	for r := 0; r < *rounds; r++ {
		order := slices.Clone(variants)
		if r%2 == 1 {
			slices.Reverse(order)
		}
		for _, v := range order {
			res, err := runOne(v, useDNSPerf, qfile)
			if err != nil {
				return fmt.Errorf("%s: %w", v.name, err)
			}
			fmt.Fprintf(os.Stderr, "round %d %-22s %8.0f q/s  %.2f µs CPU/query  server CPU %.0f%%  lost %.2f%%\n", r+1, v.name, res.qps, res.cpuUS, 100*res.cpuFrac, res.lost)
			runs[v.name] = append(runs[v.name], res)
		}
	}

	var md strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&md, format, a...) }
	w("### Query parser: hand-written vs miekg/dns `Msg.Unpack`\n\n")
	w("The same server loop (internal/dns, one UDP read loop) built twice, the second with `-tags dnsunpack` so that every query is parsed by `Msg.Unpack`; each alone on CPU 0 (`taskset -c 0`), answering bench/dns' query mix (%d queries) from an index filled directly; load from %s on CPU 1, %s per run, %d rounds with the variants alternating. Medians (every run in the notes):\n\n",
		len(mixQueries()), loadDesc, *duration, *rounds)
	w("| server parses with | queries/s | server CPU per query | server CPU busy | lost |\n| --- | --- | --- | --- | --- |\n")
	med := map[string]result{}
	for _, v := range variants {
		m := median(runs[v.name])
		med[v.name] = m
		w("| %s | %.0f | %.2f µs | %.0f%% | %.2f%% |\n", v.name, m.qps, m.cpuUS, 100*m.cpuFrac, m.lost)
	}
	h, u := med[variants[0].name], med[variants[1].name]
	w("\nHand-written/Unpack: **%.2f×** the queries/s, **%.0f%%** less server CPU per query.\n\n", h.qps/u.qps, 100*(1-h.cpuUS/u.cpuUS))
	w("Runs (queries/s, µs CPU/query):\n\n")
	for _, v := range variants {
		var parts []string
		for _, r := range runs[v.name] {
			parts = append(parts, fmt.Sprintf("%.0f (%.2f)", r.qps, r.cpuUS))
		}
		w("- %s: %s\n", v.name, strings.Join(parts, ", "))
	}
	w("\n")
	if *out == "" {
		fmt.Print(md.String())
		return nil
	}
	return os.WriteFile(*out, []byte(md.String()), 0o644)
}

func median(rs []result) result {
	pick := func(f func(result) float64) float64 {
		v := make([]float64, len(rs))
		for i, r := range rs {
			v[i] = f(r)
		}
		slices.Sort(v)
		if len(v)%2 == 1 {
			return v[len(v)/2]
		}
		return (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return result{
		qps:     pick(func(r result) float64 { return r.qps }),
		cpuUS:   pick(func(r result) float64 { return r.cpuUS }),
		cpuFrac: pick(func(r result) float64 { return r.cpuFrac }),
		lost:    pick(func(r result) float64 { return r.lost }),
	}
}

// runOne starts a server variant on CPU 0, loads it from CPU 1, and stops
// it (by its PID).
func runOne(v *variant, useDNSPerf bool, qfile string) (result, error) {
	var res result
	srv := exec.Command("taskset", "-c", "0", v.bin, "-serve")
	stdin, err := srv.StdinPipe()
	if err != nil {
		return res, err
	}
	stdout, err := srv.StdoutPipe()
	if err != nil {
		return res, err
	}
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return res, err
	}
	defer func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			srv.Process.Kill()
			<-done
		}
	}()
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return res, fmt.Errorf("server did not start: %w", err)
	}
	addr := strings.TrimSpace(line)
	pid := srv.Process.Pid // taskset execs the server: same process

	// Warm up (first answers are packed on first use), then measure.
	if _, _, err := loadOnce(v.bin, addr, time.Second, false, qfile); err != nil {
		return res, err
	}
	cpu0, err := cpuTime(pid)
	if err != nil {
		return res, err
	}
	t0 := time.Now()
	answered, sent, err := loadOnce(v.bin, addr, *duration, useDNSPerf, qfile)
	if err != nil {
		return res, err
	}
	wall := time.Since(t0)
	cpu1, err := cpuTime(pid)
	if err != nil {
		return res, err
	}
	res.qps = float64(answered) / duration.Seconds()
	if answered > 0 {
		res.cpuUS = (cpu1 - cpu0).Seconds() * 1e6 / float64(answered)
	}
	res.cpuFrac = (cpu1 - cpu0).Seconds() / wall.Seconds()
	if sent > 0 {
		res.lost = 100 * float64(sent-answered) / float64(sent)
	}
	return res, nil
}

// loadOnce runs the load on CPU 1 for d and returns the answers received
// and the queries sent.
func loadOnce(bin, addr string, d time.Duration, useDNSPerf bool, qfile string) (answered, sent int64, err error) {
	if useDNSPerf {
		ap := netip.MustParseAddrPort(addr)
		outb, err := exec.Command("taskset", "-c", "1", "dnsperf", "-s", ap.Addr().String(), "-p", fmt.Sprint(ap.Port()),
			"-d", qfile, "-l", fmt.Sprint(int(d.Seconds())), "-c", "8", "-q", "256").Output()
		if err != nil {
			return 0, 0, fmt.Errorf("dnsperf: %w", err)
		}
		for _, line := range strings.Split(string(outb), "\n") {
			f := strings.Fields(line)
			switch {
			case strings.Contains(line, "Queries sent:") && len(f) >= 3:
				sent, _ = strconv.ParseInt(f[2], 10, 64)
			case strings.Contains(line, "Queries completed:") && len(f) >= 3:
				answered, _ = strconv.ParseInt(f[2], 10, 64)
			}
		}
		return answered, sent, nil
	}
	outb, err := exec.Command("taskset", "-c", "1", bin, "-load", addr, "-duration", d.String(), "-window", fmt.Sprint(*window)).Output()
	if err != nil {
		return 0, 0, fmt.Errorf("load generator: %w", err)
	}
	_, err = fmt.Sscan(string(outb), &answered, &sent)
	return answered, sent, err
}

// cpuTime is the user+system CPU time of a process so far.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command (which may hold spaces) start after ')'.
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: short", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	const hz = 100 // USER_HZ on Linux
	return time.Duration(ut+st) * time.Second / hz, nil
}
