// Command agent measures pod start latency and memory per pod through the
// node agent, with the process runtime and the CRI runtime (a managed
// containerd) side by side in one run: create → Ready for single pods one
// after another, a 3-replica OrderedReady StatefulSet applied with kubectl
// and waited for with `kubectl rollout status`, a 100-replica Parallel
// StatefulSet, and memory per pod.
//
// For each runtime it starts the real binary (-bin, default $HEADWAY_BIN or
// ./bin/headway) as `headway server --runtime R --cleanup` in a temporary
// data dir, on a bridge and ranges of its own (process: hwbench0,
// 198.18.240.0/22, services 198.19.240.0/22; cri: hwbench1,
// 198.18.244.0/22, services 198.19.244.0/22), one runtime after the other.
// Every pod runs `busybox httpd -f -p 80 -h /etc` from image busybox:1.28
// with a tcpSocket readiness probe on port 80: the process runtime runs the
// host's busybox for that image, the CRI runtime the image. The CRI server
// pulls its images from a registry this program serves on 127.0.0.1 (built
// from the host's Debian packages by test/images) through a docker.io
// mirror hosts.toml that never names registry-1.docker.io; nothing leaves
// the machine. The CRI run also starts single nginx:alpine pods (the image's
// own command) with an httpGet readiness probe.
//
// Needs root. Everything is removed at the end, also when a step fails:
// pods are deleted, the server is stopped with SIGTERM (it removes its pods,
// containerd and bridge itself with --cleanup) and the data dir removed.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/headway/headway/test/images"
)

// network is a runtime's bridge and ranges, away from headway0 and
// 198.18.0.0/16 that tests use at the same time.
type network struct{ bridge, clusterCIDR, serviceCIDR string }

var networks = map[string]network{
	"process": {"hwbench0", "198.18.240.0/22", "198.19.240.0/22"},
	"cri":     {"hwbench1", "198.18.244.0/22", "198.19.244.0/22"},
}

const (
	busyboxImage = "busybox:1.28"
	nginxImage   = "nginx:alpine"
)

type options struct {
	bin       string
	singles   int
	nginx     int
	replicas  int
	timeout   time.Duration
	keepLogs  string
	runtimes  []string
	kubectlTO time.Duration
	// stopWithPods leaves the Parallel StatefulSet running and stops the
	// server with its pods (what --cleanup then removes).
	stopWithPods bool
	quietWait    time.Duration
	// idle is how long the Parallel StatefulSet's pods run, Ready and left
	// alone, while the CPU used meanwhile is measured.
	idle time.Duration
	// pprof is where each server serves its Go profiles ("": nowhere).
	pprof string
	// serverArgs are more flags for each `headway server`.
	serverArgs []string
}

func main() {
	var o options
	out := flag.String("out", "", "write the markdown figures here (default: stdout)")
	defBin := os.Getenv("HEADWAY_BIN")
	if defBin == "" {
		defBin = "bin/headway"
	}
	flag.StringVar(&o.bin, "bin", defBin, "the headway binary ($HEADWAY_BIN, else bin/headway)")
	flag.IntVar(&o.singles, "single", 30, "single pods to start one after another, per runtime")
	flag.IntVar(&o.nginx, "nginx", 10, "single nginx:alpine pods (CRI only; 0 skips)")
	flag.IntVar(&o.replicas, "replicas", 100, "replicas of the Parallel StatefulSet")
	flag.DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long the Parallel StatefulSet may take to be Ready (and to go)")
	flag.StringVar(&o.keepLogs, "logs", "", "copy each server's log and containerd's log into this directory")
	flag.BoolVar(&o.stopWithPods, "stop-with-pods", false, "stop each server with the Parallel StatefulSet's pods still running (tests --cleanup) instead of deleting them first")
	flag.DurationVar(&o.quietWait, "quiet-wait", time.Minute, "before each runtime, wait up to this long for a 2 s window with the machine less than half busy (0: don't)")
	flag.DurationVar(&o.idle, "idle", 20*time.Second, "with the Parallel StatefulSet's pods Ready, measure the CPU used for this long while nothing happens (0: don't)")
	flag.StringVar(&o.pprof, "pprof", "", "serve each server's Go profiles (/debug/pprof/) on this address, e.g. 127.0.0.1:6060")
	serverArgs := flag.String("server-args", "", "more flags for each `headway server`, space-separated (e.g. --log-level debug)")
	rts := flag.String("runtimes", "process,cri", "runtimes to measure, in order")
	flag.Parse()
	o.runtimes = strings.Split(*rts, ",")
	o.serverArgs = strings.Fields(*serverArgs)
	o.kubectlTO = 2 * time.Minute
	if os.Geteuid() != 0 {
		log.Fatal("bench/agent: needs root (pod network namespaces, containerd)")
	}
	bin, err := filepath.Abs(o.bin)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := os.Stat(bin); err != nil {
		log.Fatalf("bench/agent: no headway binary at %s (make build, or -bin): %v", bin, err)
	}
	o.bin = bin

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var results []*result
	var failed []error
	var skipped []string
	for _, rt := range o.runtimes {
		if _, ok := networks[rt]; !ok {
			log.Fatalf("bench/agent: -runtimes: %q is not process or cri", rt)
		}
		if why := cannotRun(rt); why != "" {
			log.Printf("%s: skipped: %s", rt, why)
			skipped = append(skipped, rt+": skipped: "+why)
			continue
		}
		r, err := measure(ctx, o, rt)
		results = append(results, r)
		if err != nil {
			log.Printf("%s: %v", rt, err)
			failed = append(failed, fmt.Errorf("%s: %w", rt, err))
		}
		if ctx.Err() != nil {
			break
		}
	}

	text := report(o, results, failed, skipped)
	if *out == "" {
		fmt.Print(text)
	} else if err := os.WriteFile(*out, []byte(text), 0o644); err != nil {
		log.Fatal(err)
	}
	if len(failed) > 0 {
		os.Exit(1)
	}
}

// cannotRun says why a runtime cannot run here ("" when it can).
func cannotRun(rt string) string {
	var missing []string
	bins := []string{"busybox"}
	if rt == "cri" {
		bins = append(bins, "containerd", "ctr", "containerd-shim-runc-v2", "runc")
	}
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			missing = append(missing, b)
		}
	}
	if rt == "cri" {
		if m := images.Missing(); len(m) > 0 {
			return "the test images need Debian packages: " + images.InstallCommand(m...)
		}
	}
	if len(missing) > 0 {
		return "not on PATH: " + strings.Join(missing, ", ") + " (Debian: apt-get install busybox containerd runc crun catatonit containernetworking-plugins)"
	}
	return ""
}

// podSpec is the pod every runtime runs: busybox httpd, tcpSocket probe.
func podSpec() corev1.PodSpec {
	zero := int64(0)
	return corev1.PodSpec{
		TerminationGracePeriodSeconds: &zero,
		Containers: []corev1.Container{{
			Name: "web", Image: busyboxImage, Command: []string{"busybox", "httpd", "-f", "-p", "80", "-h", "/etc"},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}},
		}},
	}
}

// nginxSpec is nginx:alpine as its image runs it, with an HTTP probe on /.
func nginxSpec() corev1.PodSpec {
	zero := int64(0)
	return corev1.PodSpec{
		TerminationGracePeriodSeconds: &zero,
		Containers: []corev1.Container{{
			Name: "web", Image: nginxImage,
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(80)}}},
		}},
	}
}

// result is one runtime's figures.
type result struct {
	runtime   string
	nodeReady time.Duration
	// ociRuntime is what the managed containerd's shims run, from the
	// server's log ("" for the process runtime).
	ociRuntime string

	firstPull, nginxFirstPull time.Duration
	single, singleGone        []time.Duration
	singleTimes               map[string][2]time.Time // create, Ready seen
	nginx                     []time.Duration
	nginxTimes                map[string][2]time.Time

	ordered3Cmd, ordered3Apply, ordered3Watch time.Duration
	ordered3PerPod                            []time.Duration

	replicas                      int
	parallelAll, parallelGone     time.Duration
	parallelPerPod, parallelBegin []time.Duration
	parallelTimes                 map[string][2]time.Time
	// parallelApply is `kubectl apply -f` alone; parallelDNS the apply's
	// start → the headless name answers with every pod's address,
	// parallelDNSFirst → with the first.
	parallelApply, parallelDNS, parallelDNSFirst time.Duration

	headwayBefore, headwayAfter       int64
	containerdBefore, containerdAfter int64
	pods                              mem
	shimsAfterTeardown                []int
	helpers                           helperPeak // during the Parallel StatefulSet's start

	stopTook                             time.Duration
	stopHung                             bool
	podsAtStop                           int     // pods (shims, or process pods) running when SIGTERM was sent
	machineBusy                          float64 // share of all CPUs busy during the run
	busyBefore                           float64 // share busy in 2 s before the server started
	serverCPU, serverChildrenCPU         time.Duration
	containerdCPU, containerdChildrenCPU time.Duration
	// parallelCPU is the CPU used from the Parallel StatefulSet's create
	// until all its pods were Ready, by component.
	parallelCPU stackCPU
	// singleCPU is the CPU used by the single pods, each started, Ready,
	// deleted and removed before the next; parallelGoneCPU the Parallel
	// StatefulSet's deletion until every pod was removed.
	singleCPU, parallelGoneCPU stackCPU
	// idleCPU is the CPU used with the Parallel StatefulSet's pods Ready and
	// nothing else happening (-idle).
	idleCPU        stackCPU
	breakdown      *breakdown
	nginxBreakdown *breakdown
	// parallelBreakdown counts from the StatefulSet's create.
	parallelBreakdown *breakdown
	leftoverShims     int // shims still running after the server stopped
}

// measure runs one runtime's server through every step and removes it.
func measure(ctx context.Context, o options, rt string) (res *result, err error) {
	res = &result{runtime: rt, replicas: o.replicas, singleTimes: map[string][2]time.Time{}, nginxTimes: map[string][2]time.Time{}}
	dir, err := os.MkdirTemp("", "hwbench-"+rt+"-")
	if err != nil {
		return res, err
	}
	var reg *images.Registry
	if rt == "cri" {
		imgs, err := images.DefaultImages()
		if err != nil {
			os.RemoveAll(dir)
			return res, err
		}
		if reg, err = images.Start(imgs); err != nil {
			os.RemoveAll(dir)
			return res, err
		}
		defer reg.Close()
		if err := images.WriteMirrorConfig(filepath.Join(dir, "registries"), reg.Host()); err != nil {
			os.RemoveAll(dir)
			return res, err
		}
	}
	if o.quietWait > 0 {
		res.busyBefore = waitQuiet(o.quietWait)
		log.Printf("%s: machine %.0f%% busy before the server starts", rt, 100*res.busyBefore)
	}
	busy0, total0 := cpuTicks()
	s, err := startServer(ctx, o.bin, rt, dir, networks[rt], o.pprof, o.serverArgs)
	if s == nil {
		os.RemoveAll(dir)
		return res, err
	}
	res.nodeReady = s.nodeReady
	res.ociRuntime = ociRuntimeChosen(s.logPath)
	var socket string
	defer func() {
		// Always: delete what is left through the API, stop the server
		// (--cleanup removes sandboxes, containerd, the bridge), check for
		// leftovers, keep the logs if asked, remove the data dir.
		if s.client != nil && err != nil && !o.stopWithPods {
			cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			deleteAll(cctx, s)
			cancel()
		}
		if socket == "" {
			socket = s.containerdSocket()
		}
		cdPID := s.containerdPID()
		if cdPID > 0 {
			res.containerdCPU, res.containerdChildrenCPU = procCPU(cdPID)
		}
		res.serverCPU, res.serverChildrenCPU = procCPU(s.pid())
		res.podsAtStop = podsRunning(s)
		s.stop(time.Minute)
		res.stopTook, res.stopHung = s.stopTook, s.hung
		busy1, total1 := cpuTicks()
		if total1 > total0 {
			res.machineBusy = float64(busy1-busy0) / float64(total1-total0)
		}
		if rt == "cri" {
			clog := filepath.Join(dir, "containerd", "containerd.log")
			res.breakdown = parseContainerdLog(clog, res.singleTimes)
			res.nginxBreakdown = parseContainerdLog(clog, res.nginxTimes)
			res.parallelBreakdown = parseContainerdLog(clog, res.parallelTimes)
		}
		if o.keepLogs != "" {
			keepLogs(o.keepLogs, rt, dir)
		}
		res.leftoverShims = len(shims(socket))
		s.cleanup(socket, cdPID)
	}()
	if err != nil {
		return res, err
	}
	socket = s.containerdSocket()

	if rt == "cri" {
		// The first pod of each image pulls it; the rest find it present.
		d, _, err := onePod(ctx, s, socket, "pull-busybox", podSpec(), 2*time.Minute, nil)
		if err != nil {
			return res, fmt.Errorf("first pod (pulls %s): %w", busyboxImage, err)
		}
		res.firstPull = d
		log.Printf("%s: first pod (pulling %s) Ready in %s", rt, busyboxImage, ms(d))
	}

	singleCPU0 := readStackCPU(s, socket)
	for i := range o.singles {
		name := fmt.Sprintf("single-%d", i)
		d, gone, err := onePod(ctx, s, socket, name, podSpec(), time.Minute, res.singleTimes)
		if err != nil {
			return res, err
		}
		res.single = append(res.single, d)
		res.singleGone = append(res.singleGone, gone)
		if i == 0 {
			log.Printf("%s: single pods (create → Ready, delete → gone) ...", rt)
		}
	}
	if rt == "cri" && o.nginx > 0 {
		d, _, err := onePod(ctx, s, socket, "pull-nginx", nginxSpec(), 2*time.Minute, nil)
		if err != nil {
			return res, fmt.Errorf("first nginx pod (pulls %s): %w", nginxImage, err)
		}
		res.nginxFirstPull = d
		for i := range o.nginx {
			d, _, err := onePod(ctx, s, socket, fmt.Sprintf("nginx-%d", i), nginxSpec(), time.Minute, res.nginxTimes)
			if err != nil {
				return res, err
			}
			res.nginx = append(res.nginx, d)
		}
	}
	if o.singles > 0 {
		res.singleCPU = readStackCPU(s, socket).sub(singleCPU0)
	}
	log.Printf("%s: single pods: median %s, p99 %s", rt, ms(pct(res.single, 50)), ms(pct(res.single, 99)))

	if err := ordered3(ctx, o, s, res); err != nil {
		return res, fmt.Errorf("3-replica OrderedReady StatefulSet: %w", err)
	}
	log.Printf("%s: 3-replica OrderedReady: kubectl apply + rollout status %s", rt, ms(res.ordered3Cmd))

	if err := parallel(ctx, o, s, res, socket); err != nil {
		return res, fmt.Errorf("%d-replica Parallel StatefulSet: %w", o.replicas, err)
	}
	log.Printf("%s: %d-replica Parallel: kubectl apply → all Ready in %s, all in DNS in %s", rt, o.replicas, ms(res.parallelAll), ms(res.parallelDNS))
	return res, nil
}

// onePod creates a pod, times create → Ready from a watch, deletes it and
// waits until the runtime has removed it (the API object goes at once: the
// grace period is 0). It returns create → Ready and delete → torn down.
func onePod(ctx context.Context, s *server, socket, name string, spec corev1.PodSpec, timeout time.Duration, times map[string][2]time.Time) (ready, gone time.Duration, err error) {
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"bench": name}}, Spec: spec}
	pods := s.client.CoreV1().Pods("default")
	r, err := timeReady(ctx, s.client, "bench="+name, []string{name}, timeout, func() error {
		_, err := pods.Create(ctx, p, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		pods.Delete(context.Background(), name, metav1.DeleteOptions{})
		return 0, 0, fmt.Errorf("pod %s: %w", name, err)
	}
	if times != nil {
		times[name] = [2]time.Time{r.begin, r.ready[name]}
	}
	start := time.Now()
	if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return 0, 0, err
	}
	if err := waitGone(ctx, s.client, "bench="+name, timeout); err != nil {
		return 0, 0, err
	}
	if err := waitTornDown(ctx, s, socket, timeout); err != nil {
		return 0, 0, err
	}
	return r.all(), time.Since(start), nil
}

// podsRunning counts the pods the runtime still holds: the directories in
// <data-dir>/pods, which both runtimes remove last when a pod goes (for
// CRI after RemovePodSandbox returned).
func podsRunning(s *server) int {
	ents, _ := os.ReadDir(filepath.Join(s.dir, "pods"))
	return len(ents)
}

// waitTornDown waits until the runtime runs no pod.
func waitTornDown(ctx context.Context, s *server, socket string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		n := podsRunning(s)
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d pods still running %s after their deletion", n, timeout)
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func statefulSet(name string, replicas int32, policy appsv1.PodManagementPolicyType) (*corev1.Service, *appsv1.StatefulSet) {
	labels := map[string]string{"app": name}
	svc := &corev1.Service{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: labels,
			Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	}
	sts := &appsv1.StatefulSet{
		TypeMeta:   metav1.TypeMeta{APIVersion: "apps/v1", Kind: "StatefulSet"},
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &replicas, ServiceName: name, PodManagementPolicy: policy,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: podSpec()},
		},
	}
	return svc, sts
}

func podNames(sts string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", sts, i)
	}
	return out
}

// writeManifest writes a headless Service and a StatefulSet, both named
// name, as one YAML file in the data dir for `kubectl apply -f`.
func writeManifest(s *server, name string, replicas int32, policy appsv1.PodManagementPolicyType) (string, error) {
	svc, sts := statefulSet(name, replicas, policy)
	var manifest []byte
	for i, obj := range []any{svc, sts} {
		y, err := yaml.Marshal(obj)
		if err != nil {
			return "", err
		}
		if i > 0 {
			manifest = append(manifest, "---\n"...)
		}
		manifest = append(manifest, y...)
	}
	path := filepath.Join(s.dir, name+".yaml")
	return path, os.WriteFile(path, manifest, 0o644)
}

// runKubectl runs `headway kubectl` against s and times it.
func runKubectl(ctx context.Context, o options, s *server, args ...string) (time.Duration, error) {
	cctx, cancel := context.WithTimeout(ctx, o.kubectlTO)
	defer cancel()
	cmd := exec.CommandContext(cctx, o.bin, append([]string{"kubectl", "--kubeconfig", s.kubeconfig}, args...)...)
	start := time.Now()
	out, err := cmd.CombinedOutput()
	d := time.Since(start)
	if err != nil {
		return d, fmt.Errorf("headway kubectl %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return d, nil
}

// ordered3 applies a headless Service and a 3-replica OrderedReady
// StatefulSet with `headway kubectl apply -f` and waits with `headway
// kubectl rollout status`, timing the two commands as a user would; a watch
// times the pods meanwhile.
func ordered3(ctx context.Context, o options, s *server, res *result) error {
	path, err := writeManifest(s, "web3", 3, appsv1.OrderedReadyPodManagement)
	if err != nil {
		return err
	}
	kubectl := func(args ...string) (time.Duration, error) { return runKubectl(ctx, o, s, args...) }
	r, err := timeReady(ctx, s.client, "app=web3", podNames("web3", 3), o.kubectlTO, func() error {
		apply, err := kubectl("apply", "-f", path)
		if err != nil {
			return err
		}
		status, err := kubectl("rollout", "status", "statefulset/web3", "--timeout", "110s")
		res.ordered3Apply, res.ordered3Cmd = apply, apply+status
		return err
	})
	if err != nil {
		return err
	}
	res.ordered3Watch = r.all()
	res.ordered3PerPod = r.perPod()
	if err := deleteStatefulSet(ctx, s, "web3", time.Minute); err != nil {
		return err
	}
	return waitTornDown(ctx, s, s.containerdSocket(), time.Minute)
}

// parallel creates the N-replica Parallel StatefulSet, times it to all
// Ready, takes the memory figures, deletes it and times that.
func parallel(ctx context.Context, o options, s *server, res *result, socket string) error {
	n := o.replicas
	path, err := writeManifest(s, "web", int32(n), appsv1.ParallelPodManagement)
	if err != nil {
		return err
	}
	cd := s.containerdPID()
	runtime.GC()
	res.headwayBefore = rss(s.pid())
	if cd > 0 {
		res.containerdBefore = rss(cd)
	}
	// Helper processes the runtime starts per pod, sampled meanwhile.
	stopSampling := make(chan struct{})
	peaks := make(chan helperPeak, 1)
	go func() {
		peaks <- sampleHelpers([]string{"runc", "crun"}, []string{"headway-cni"}, 250*time.Millisecond, stopSampling)
	}()
	log.Printf("%s: %d-replica Parallel: creating", s.runtime, n)
	cpu0 := readStackCPU(s, socket)
	// From the start of `kubectl apply -f` (headless Service + StatefulSet):
	// the watch times each pod to Ready, a DNS client polls the server's
	// DNS listener until the headless name answers with every pod's address.
	var inDNS chan dnsResult
	r, err := timeReady(ctx, s.client, "app=web", podNames("web", n), o.timeout, func() error {
		inDNS = pollDNS(ctx, s.dnsAddr, "web.default.svc.cluster.local.", n, time.Now(), o.timeout)
		d, err := runKubectl(ctx, o, s, "apply", "-f", path)
		res.parallelApply = d
		return err
	})
	if inDNS != nil {
		dr := <-inDNS
		if err == nil && dr.err != nil {
			err = dr.err
		}
		res.parallelDNS, res.parallelDNSFirst = dr.all, dr.first
	}
	if err == nil {
		res.parallelCPU = readStackCPU(s, socket).sub(cpu0)
		log.Printf("%s: %d-replica Parallel: Ready; CPU used meanwhile by the node's pod machinery %.1f s (machine %.1f s, this benchmark %.1f s)",
			s.runtime, n, res.parallelCPU.total().Seconds(), res.parallelCPU.machine.Seconds(), res.parallelCPU.bench.Seconds())
	}
	close(stopSampling)
	res.helpers = <-peaks
	if err != nil {
		return err
	}
	res.parallelAll = r.all()
	res.parallelPerPod = r.perPod()
	res.parallelBegin = r.sinceBegin()
	res.parallelTimes = map[string][2]time.Time{}
	for name, t := range r.ready {
		res.parallelTimes[name] = [2]time.Time{r.begin, t}
	}
	res.headwayAfter = rss(s.pid())
	if cd > 0 {
		res.containerdAfter = rss(cd)
	}
	switch s.runtime {
	case "process":
		res.pods = memOf(processPodPIDs(s.dir))
	case "cri":
		sh := shims(socket)
		res.pods = memOf(append(sh, descendants(sh)...))
	}
	if o.idle > 0 {
		idle0 := readStackCPU(s, socket)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(o.idle):
		}
		res.idleCPU = readStackCPU(s, socket).sub(idle0)
		log.Printf("%s: %d pods idle for %s: CPU used by the node's pod machinery %.2f s (headway %.2f s, containerd %.2f s)",
			s.runtime, n, o.idle, res.idleCPU.total().Seconds(), res.idleCPU.server.Seconds(), res.idleCPU.containerd.Seconds())
	}
	if o.stopWithPods {
		return nil // the server's --cleanup removes them
	}
	goneCPU0 := readStackCPU(s, socket)
	start := time.Now()
	if err := deleteStatefulSet(ctx, s, "web", o.timeout); err != nil {
		return err
	}
	if err := waitTornDown(ctx, s, socket, o.timeout); err != nil {
		return err
	}
	res.parallelGone = time.Since(start)
	res.parallelGoneCPU = readStackCPU(s, socket).sub(goneCPU0)
	if s.runtime == "cri" {
		// Shims should be gone with their sandboxes.
		res.shimsAfterTeardown = shims(socket)
		if len(res.shimsAfterTeardown) > 0 {
			log.Printf("%s: %d shims still running after every pod was removed: pids %v", s.runtime, len(res.shimsAfterTeardown), res.shimsAfterTeardown)
		}
	}
	return nil
}

// deleteStatefulSet deletes a StatefulSet, its Service and its pods and
// waits until the pods are gone.
func deleteStatefulSet(ctx context.Context, s *server, name string, timeout time.Duration) error {
	bg := metav1.DeletePropagationBackground
	s.client.AppsV1().StatefulSets("default").Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &bg})
	s.client.CoreV1().Services("default").Delete(ctx, name, metav1.DeleteOptions{})
	s.client.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app=" + name})
	return waitGone(ctx, s.client, "app="+name, timeout)
}

// deleteAll removes what a failed run left in the cluster.
func deleteAll(ctx context.Context, s *server) {
	for _, name := range []string{"web", "web3"} {
		s.client.AppsV1().StatefulSets("default").Delete(ctx, name, metav1.DeleteOptions{})
		s.client.CoreV1().Services("default").Delete(ctx, name, metav1.DeleteOptions{})
	}
	s.client.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{})
	if err := waitGone(ctx, s.client, "", time.Minute); err != nil {
		log.Printf("%s: %v (the server's --cleanup removes them)", s.runtime, err)
	}
}

func keepLogs(dst, rt, dir string) {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		log.Printf("-logs: %v", err)
		return
	}
	for src, name := range map[string]string{
		filepath.Join(dir, "server.log"):                   rt + "-server.log",
		filepath.Join(dir, "containerd", "containerd.log"): rt + "-containerd.log",
	} {
		in, err := os.Open(src)
		if err != nil {
			continue
		}
		out, err := os.Create(filepath.Join(dst, name))
		if err == nil {
			io.Copy(out, in)
			out.Close()
		}
		in.Close()
	}
}
