// Command cluster measures issue 16's figures, "beyond one machine", in one
// run:
//
//   - the store: durable creates/s (1 and 16 clients) and full-list latency
//     through the API on etcd against bolt, with etcd alone (its own client
//     putting the same bytes) as the peer;
//   - leader fail-over: two real `headway server` processes on one etcd;
//     kill -9 of the one holding the controllers' Lease, then the time until
//     the other holds it and until a StatefulSet scale-up made right after
//     the kill has its pod;
//   - pod-to-pod latency across nodes against the same node: two machines
//     (network namespaces on a 198.18.252.0/24 LAN), a server with its node
//     on one and `headway agent` on the other (root; python3 for the pods).
//
// It prints a markdown table (and writes it to -out): figures only, no
// pass/fail. Every figure's notes give the machine's load.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/testing/cluster"
)

type options struct {
	out, bin                    string
	creates16, creates1, list   int
	listRuns, failovers, gets   int
	skipStore, skipFail, skipXN bool
}

func main() {
	o := options{}
	defBin := os.Getenv("HEADWAY_BIN")
	if defBin == "" {
		defBin = "bin/headway"
	}
	flag.StringVar(&o.out, "out", "", "also write the markdown table to this file")
	flag.StringVar(&o.bin, "bin", defBin, "headway binary for the fail-over and cross-node parts ($HEADWAY_BIN, else ./bin/headway)")
	flag.IntVar(&o.creates16, "creates16", 3000, "creates by 16 clients per store")
	flag.IntVar(&o.creates1, "creates1", 300, "creates by one client per store")
	flag.IntVar(&o.list, "list", 3000, "objects in the listed namespace (the 16-client creates' namespace holds creates16)")
	flag.IntVar(&o.listRuns, "list-runs", 5, "full lists per store and format (median reported)")
	flag.IntVar(&o.failovers, "failovers", 3, "leader kills measured")
	flag.IntVar(&o.gets, "gets", 300, "HTTP GETs per pod-to-pod latency figure (each on a new connection)")
	flag.BoolVar(&o.skipStore, "skip-store", false, "skip etcd vs bolt")
	flag.BoolVar(&o.skipFail, "skip-failover", false, "skip the leader fail-over")
	flag.BoolVar(&o.skipXN, "skip-cross-node", false, "skip the cross-node latency (needs root)")
	flag.Parse()
	if o.list > o.creates16 {
		o.list = o.creates16
	}

	r := &report{}
	r.notef("Load average at start: %s.", loadavg())
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	tmp, err := os.MkdirTemp("", "headway-bench-cluster-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	var errs []error
	if !o.skipStore {
		errs = append(errs, benchStores(ctx, r, o, filepath.Join(tmp, "stores")))
	}
	if !o.skipFail {
		errs = append(errs, benchFailover(ctx, r, o, filepath.Join(tmp, "failover")))
	}
	if !o.skipXN {
		errs = append(errs, benchCrossNode(ctx, r, o, filepath.Join(tmp, "xn")))
	}
	r.notef("Load average at the end: %s.", loadavg())
	table := r.markdown()
	fmt.Print(table)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(table), 0o644); err != nil {
			log.Fatal(err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		log.Fatal(err)
	}
}

// ---- etcd vs bolt ----

// startEtcd runs Debian's etcd on two free loopback ports until stop.
func startEtcd(dir string) (endpoint string, stop func(), err error) {
	bin, err := exec.LookPath("etcd")
	if err != nil {
		return "", nil, errors.New("etcd is not installed (apt-get install etcd-server)")
	}
	client, peer := "http://"+freePort(), "http://"+freePort()
	cmd := exec.Command(bin, "--name", "bench", "--data-dir", dir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "bench="+peer, "--log-level", "warn")
	logf, err := os.Create(dir + ".log")
	if err != nil {
		return "", nil, err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	stop = func() { cmd.Process.Kill(); <-done }
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(client + "/health"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return client, stop, nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("etcd at %s not healthy after 30 s (log: %s.log)", client, dir)
}

func benchStores(ctx context.Context, r *report, o options, dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	endpoint, stopEtcd, err := startEtcd(filepath.Join(dir, "etcd"))
	if err != nil {
		r.add("etcd vs bolt", "skipped", "", err.Error())
		return nil
	}
	defer stopEtcd()
	out, _ := exec.Command("etcd", "--version").Output()
	r.notef("etcd: %s, one member on loopback, its default fsync per commit.", strings.SplitN(string(out), "\n", 2)[0])

	// The peer: etcd alone, 16 clients putting ConfigMap-sized values.
	if err := etcdAlone(ctx, r, o, endpoint); err != nil {
		return err
	}
	for _, store := range []string{"bolt", "etcd"} {
		sdir := filepath.Join(dir, store)
		opt := cluster.WithBolt(sdir)
		if store == "etcd" {
			opt = func(op *app.Options) {
				cluster.WithEtcd(endpoint)(op)
				op.Etcd.Prefix = "/bench"
			}
		}
		c, err := cluster.StartE(sdir, opt, cluster.WithoutDNS(), quietLogs)
		if err != nil {
			return fmt.Errorf("starting the in-process server on %s: %w", store, err)
		}
		err = storeFigures(ctx, r, o, store, c.Config)
		if serr := c.Stop(); err == nil {
			err = serr
		}
		if err != nil {
			return fmt.Errorf("%s: %w", store, err)
		}
	}
	return nil
}

func etcdAlone(ctx context.Context, r *report, o options, endpoint string) error {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 5 * time.Second,
		Logger: nil})
	if err != nil {
		return err
	}
	defer cli.Close()
	value := strings.Repeat("x", 420) // about a stored ConfigMap's size
	var next atomic.Int64
	var wg sync.WaitGroup
	var firstErr atomic.Value
	m := startMeter()
	t := time.Now()
	for range 16 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(o.creates16) {
					return
				}
				if _, err := cli.Put(ctx, fmt.Sprintf("/alone/cm-%06d", i), value); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
			}
		})
	}
	wg.Wait()
	wall := time.Since(t)
	if err, _ := firstErr.Load().(error); err != nil {
		return fmt.Errorf("etcd alone: %w", err)
	}
	r.add("peer: etcd alone, 16 clients", "puts/s (durable)", rate(o.creates16, wall),
		fmt.Sprintf("%d puts of %d bytes with etcd's Go client; %s", o.creates16, len(value), m))
	return nil
}

func storeFigures(ctx context.Context, r *report, o options, store string, base *rest.Config) error {
	cs := make([]kubernetes.Interface, 16)
	for i := range cs {
		cfg := rest.CopyConfig(base)
		cfg.QPS, cfg.Burst = -1, 0
		cfg.ContentType = "application/vnd.kubernetes.protobuf"
		cfg.Dial = (&net.Dialer{}).DialContext // an own transport per client
		c, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		cs[i] = c
	}
	for _, ns := range []string{"warm", "one", "many"} {
		if _, err := cs[0].CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	if _, err := creates(ctx, cs, "warm", 320); err != nil {
		return err
	}
	m := startMeter()
	lat, err := creates(ctx, cs[:1], "one", o.creates1)
	if err != nil {
		return err
	}
	r.add(store+": create, 1 client", "durable creates/s; p50 / p99", fmt.Sprintf("%s; %s / %s", rateOf(lat), ms(pct(lat, 50)), ms(pct(lat, 99))), m.String())
	m = startMeter()
	t := time.Now()
	lat, err = creates(ctx, cs, "many", o.creates16)
	if err != nil {
		return err
	}
	r.add(store+": create, 16 clients", "durable creates/s; p50 / p99", fmt.Sprintf("%s; %s / %s", rate(len(lat), time.Since(t)), ms(pct(lat, 50)), ms(pct(lat, 99))), m.String())
	for _, ct := range []string{"application/vnd.kubernetes.protobuf", "application/json"} {
		cfg := rest.CopyConfig(base)
		cfg.QPS, cfg.Burst, cfg.ContentType = -1, 0, ct
		c, err := kubernetes.NewForConfig(cfg)
		if err != nil {
			return err
		}
		var ds []time.Duration
		var n int
		m := startMeter()
		for range o.listRuns {
			t := time.Now()
			l, err := c.CoreV1().ConfigMaps("many").List(ctx, metav1.ListOptions{})
			if err != nil {
				return err
			}
			ds = append(ds, time.Since(t))
			n = len(l.Items)
		}
		format := "protobuf"
		if ct == "application/json" {
			format = "JSON"
		}
		r.add(fmt.Sprintf("%s: list %d objects, %s", store, n, format), "median (client-go, decoded)", ms(pct(ds, 50)), fmt.Sprintf("%d runs; %s", len(ds), m))
	}
	return nil
}

func creates(ctx context.Context, cs []kubernetes.Interface, ns string, total int) ([]time.Duration, error) {
	lat := make([]time.Duration, total)
	var next atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	data := map[string]string{"payload": strings.Repeat("d", 100)}
	for _, c := range cs {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%06d", i), Labels: map[string]string{"bench": "cluster"}}, Data: data}
				t := time.Now()
				_, err := c.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
				lat[i] = time.Since(t)
				if err != nil {
					firstErr.CompareAndSwap(nil, fmt.Errorf("create %s/%s: %w", ns, cm.Name, err))
					return
				}
			}
		})
	}
	wg.Wait()
	if err, _ := firstErr.Load().(error); err != nil {
		return nil, err
	}
	return lat, nil
}

func quietLogs(o *app.Options) {
	o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
}

// ---- leader fail-over ----

type proc struct {
	cmd  *exec.Cmd
	done chan struct{}
	log  *lockedBuffer
}

func startProc(name string, args ...string) (*proc, error) {
	p := &proc{cmd: exec.Command(name, args...), done: make(chan struct{}), log: &lockedBuffer{}}
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	return p, nil
}

// stop ends the process by its PID: SIGTERM, SIGKILL after 15 s.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
	}
}

type hwServer struct {
	*proc
	dataDir, pkiDir, addr string
	args                  []string
	cs                    kubernetes.Interface
}

func (s *hwServer) start(bin string) error {
	args := append([]string{"server", "--data-dir", s.dataDir, "--listen", s.addr}, s.args...)
	if s.pkiDir != "" {
		args = append(args, "--pki-dir", s.pkiDir)
	}
	p, err := startProc(bin, args...)
	if err != nil {
		return err
	}
	s.proc = p
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.done:
			return fmt.Errorf("headway server exited:\n%s", p.log.String())
		default:
		}
		if s.cs == nil {
			if cfg, err := restConfig(filepath.Join(s.dataDir, "kubeconfig")); err == nil {
				s.cs, _ = kubernetes.NewForConfig(cfg)
			}
		}
		if s.cs != nil {
			if b, err := s.cs.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(context.Background()); err == nil && string(b) == "ok" {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return fmt.Errorf("headway server at %s not ready after 60 s:\n%s", s.addr, p.log.String())
}

var identityRE = regexp.MustCompile(`campaigning for the controllers' lease.* identity=(\S+)`)

func (s *hwServer) identity() string {
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := identityRE.FindStringSubmatch(s.log.String()); m != nil {
			return m[1]
		}
		time.Sleep(20 * time.Millisecond)
	}
	return ""
}

func holder(ctx context.Context, cs kubernetes.Interface) string {
	l, err := cs.CoordinationV1().Leases("kube-system").Get(ctx, app.LeaderLeaseName, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func benchFailover(ctx context.Context, r *report, o options, dir string) error {
	if _, err := os.Stat(o.bin); err != nil {
		r.add("leader fail-over", "skipped", "", fmt.Sprintf("no headway binary at %s (make build, or -bin)", o.bin))
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	endpoint, stopEtcd, err := startEtcd(filepath.Join(dir, "etcd"))
	if err != nil {
		r.add("leader fail-over", "skipped", "", err.Error())
		return nil
	}
	defer stopEtcd()
	common := []string{"--store", "etcd", "--etcd-endpoints", endpoint, "--runtime", "none", "--dns-listen", "127.0.0.1:0", "--dns-upstream", "none", "--log-level", "info"}
	a := &hwServer{dataDir: filepath.Join(dir, "a"), addr: freePort(), args: common}
	if err := a.start(o.bin); err != nil {
		return err
	}
	defer func() { a.stop() }()
	pkiB := filepath.Join(dir, "b-pki")
	if err := copyDir(filepath.Join(a.dataDir, "pki"), pkiB); err != nil {
		return err
	}
	b := &hwServer{dataDir: filepath.Join(dir, "b"), pkiDir: pkiB, addr: freePort(), args: common}
	if err := b.start(o.bin); err != nil {
		return err
	}
	defer func() { b.stop() }()
	sts := statefulSet()
	if _, err := a.cs.AppsV1().StatefulSets("default").Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		return err
	}
	replicas := int32(1)
	var takeovers, resumes []time.Duration
	for round := range o.failovers {
		servers := map[string]*hwServer{a.identity(): a, b.identity(): b}
		var leader, other *hwServer
		deadline := time.Now().Add(30 * time.Second)
		for leader == nil && time.Now().Before(deadline) {
			leader = servers[holder(ctx, a.cs)]
			time.Sleep(20 * time.Millisecond)
		}
		if leader == nil {
			return fmt.Errorf("round %d: no server holds the controllers' Lease", round)
		}
		other = a
		if leader == a {
			other = b
		}
		// The leader's controllers are working: the current replicas exist.
		if err := waitPods(ctx, other.cs, int(replicas), 60*time.Second); err != nil {
			return fmt.Errorf("round %d before the kill: %w", round, err)
		}
		leader.cmd.Process.Signal(syscall.SIGKILL)
		<-leader.done
		killed := time.Now()
		replicas++
		if _, err := other.cs.AppsV1().StatefulSets("default").UpdateScale(ctx, "web", scale(replicas), metav1.UpdateOptions{}); err != nil {
			return fmt.Errorf("round %d: scaling through the survivor: %w", round, err)
		}
		otherID := other.identity()
		for holder(ctx, other.cs) != otherID {
			if time.Since(killed) > 60*time.Second {
				return fmt.Errorf("round %d: the survivor did not take the Lease in 60 s", round)
			}
			time.Sleep(20 * time.Millisecond)
		}
		takeovers = append(takeovers, time.Since(killed))
		if err := waitPods(ctx, other.cs, int(replicas), 60*time.Second); err != nil {
			return fmt.Errorf("round %d after the kill: %w", round, err)
		}
		resumes = append(resumes, time.Since(killed))
		log.Printf("fail-over %d: Lease taken %v after kill -9, scale-up's pod %v after it", round+1, takeovers[round].Round(time.Millisecond), resumes[round].Round(time.Millisecond))
		// The killed server comes back (same data dir and PKI) for the
		// next round.
		if err := leader.start(o.bin); err != nil {
			return err
		}
	}
	note := fmt.Sprintf("two `headway server --store etcd --runtime none` processes on loopback; %d rounds; Lease duration 8 s, retry 1 s (internal/app/leader.go); load %s", len(takeovers), loadavg())
	r.add("leader fail-over: kill -9 → the other server holds the Lease", "median / max", ms(pct(takeovers, 50))+" / "+ms(slices.Max(takeovers)), note)
	r.add("leader fail-over: kill -9 → a scale-up made at the kill has its pod", "median / max", ms(pct(resumes, 50))+" / "+ms(slices.Max(resumes)), "the StatefulSet controller on the new leader")
	return nil
}

// statefulSet is one Parallel StatefulSet whose pods only need to exist
// (the servers run no node).
func statefulSet() *appsv1.StatefulSet {
	labels := map[string]string{"app": "web"}
	return &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: ptr.To[int32](1), ServiceName: "web", PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "nginx:alpine"}}}},
		},
	}
}

func scale(n int32) *autoscalingv1.Scale {
	return &autoscalingv1.Scale{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: autoscalingv1.ScaleSpec{Replicas: n}}
}

func restConfig(kubeconfig string) (*rest.Config, error) {
	return clientcmd.BuildConfigFromFlags("", kubeconfig)
}

func waitPods(ctx context.Context, cs kubernetes.Interface, n int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err == nil && len(pods.Items) == n {
			return nil
		}
		if time.Now().After(deadline) {
			got := -1
			if pods != nil {
				got = len(pods.Items)
			}
			return fmt.Errorf("%d web pods, want %d (err %v)", got, n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// ---- helpers ----

func freePort() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func copyDir(src, dst string) error {
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			return err
		}
	}
	return nil
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func loadavg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
