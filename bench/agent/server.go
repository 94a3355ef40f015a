package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/headway/headway/internal/testing/leftover"
)

// server is one `headway server` child process with its own data dir.
type server struct {
	runtime string
	bridge  string
	bin     string
	dir     string // data dir
	logPath string
	cmd     *exec.Cmd
	exited  chan struct{}
	waitErr error

	client     kubernetes.Interface
	kubeconfig string
	dnsAddr    string // the cluster DNS's listener (--dns-listen), host:port
	startedAt  time.Time
	nodeReady  time.Duration // exec → Node Ready
	stopTook   time.Duration // SIGTERM → exit
	hung       bool          // did not exit after SIGTERM
}

// freePort is a port free on 127.0.0.1 for TCP and UDP at the time of asking.
func freePort() (string, error) {
	for range 20 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		addr := l.Addr().String()
		u, err := net.ListenPacket("udp", addr)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		return addr, nil
	}
	return "", errors.New("no port free for both TCP and UDP on 127.0.0.1")
}

// startServer runs `bin server --runtime rt --cleanup ...` in dir and waits
// for its API and a Ready node. A pprofListen address serves the server's
// Go profiles there (--debug-pprof-listen).
func startServer(ctx context.Context, bin, rt, dir string, n network, pprofListen string, extraArgs []string) (*server, error) {
	listen, err := freePort()
	if err != nil {
		return nil, err
	}
	dnsListen, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &server{runtime: rt, bridge: n.bridge, bin: bin, dir: dir, logPath: filepath.Join(dir, "server.log"),
		kubeconfig: filepath.Join(dir, "kubeconfig"), dnsAddr: dnsListen, exited: make(chan struct{})}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	args := []string{"server", "--runtime", rt, "--cleanup", "--data-dir", dir,
		"--listen", listen, "--dns-listen", dnsListen, "--dns-upstream", "none",
		"--bridge", n.bridge, "--cluster-cidr", n.clusterCIDR, "--service-cidr", n.serviceCIDR,
		"--masquerade=false"}
	args = append(args, extraArgs...)
	if pprofListen != "" {
		args = append(args, "--debug-pprof-listen", pprofListen)
	}
	s.cmd = exec.Command(bin, args...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	// Its own process group (a terminal's ^C reaches only the bench, which
	// stops the server in order); SIGTERM if the bench dies first.
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	log.Printf("%s: %s %s", rt, bin, strings.Join(args, " "))
	s.startedAt = time.Now()
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() { s.waitErr = s.cmd.Wait(); close(s.exited) }()

	fail := func(err error) (*server, error) {
		s.stop(time.Minute)
		return s, fmt.Errorf("%s server: %w (log: %s)\n%s", rt, err, s.logPath, tail(s.logPath, 20))
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		if _, err := os.Stat(s.kubeconfig); err == nil {
			break
		}
		select {
		case <-s.exited:
			return fail(fmt.Errorf("exited: %v", s.waitErr))
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fail(errors.New("no kubeconfig after 90s"))
		}
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig)
	if err != nil {
		return fail(err)
	}
	cfg.QPS, cfg.Burst = 1000, 1000
	if s.client, err = kubernetes.NewForConfig(cfg); err != nil {
		return fail(err)
	}
	for {
		if nodeReady(ctx, s.client) {
			s.nodeReady = time.Since(s.startedAt)
			break
		}
		select {
		case <-s.exited:
			return fail(fmt.Errorf("exited: %v", s.waitErr))
		case <-ctx.Done():
			return fail(ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fail(errors.New("no Ready node after 90s"))
		}
	}
	log.Printf("%s: node Ready %s after exec", rt, s.nodeReady.Round(time.Millisecond))
	return s, nil
}

func nodeReady(ctx context.Context, c kubernetes.Interface) bool {
	nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return false
	}
	for _, n := range nodes.Items {
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return true
			}
		}
	}
	return false
}

func (s *server) pid() int { return s.cmd.Process.Pid }

// stop sends SIGTERM (the server runs with --cleanup: it stops and removes
// every pod, containerd and the bridge) and waits. A server still running
// after stopWait gets SIGQUIT (the Go runtime writes every goroutine's stack
// to its log, for the report) and then SIGKILL.
func (s *server) stop(stopWait time.Duration) {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	start := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
		s.stopTook = time.Since(start)
		return
	case <-time.After(stopWait):
	}
	s.hung = true
	log.Printf("%s server (pid %d) still running %s after SIGTERM: SIGQUIT (goroutine dump in %s)", s.runtime, s.pid(), stopWait, s.logPath)
	s.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-s.exited:
		return
	case <-time.After(10 * time.Second):
	}
	s.cmd.Process.Kill()
	<-s.exited
}

// containerdPID is the managed containerd's pid (0 if none).
func (s *server) containerdPID() int {
	data, err := os.ReadFile(filepath.Join(s.dir, "containerd", "containerd.pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	return pid
}

var grpcAddress = regexp.MustCompile(`(?m)^\[grpc\]\s*\n\s*address\s*=\s*"([^"]+)"`)

// containerdSocket is the socket the managed containerd listens on, from
// its config.toml.
func (s *server) containerdSocket() string {
	data, err := os.ReadFile(filepath.Join(s.dir, "containerd", "config.toml"))
	if err != nil {
		return ""
	}
	if m := grpcAddress.FindSubmatch(data); m != nil {
		return string(m[1])
	}
	return ""
}

// shims are the pids of the containerd-shim-runc-v2 processes serving this
// server's containerd (found by their -address argument).
func shims(socket string) []int {
	if socket == "" {
		return nil
	}
	var out []int
	for _, p := range allPIDs() {
		args := leftover.Cmdline(p)
		if len(args) == 0 || filepath.Base(args[0]) != "containerd-shim-runc-v2" {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-address" && args[i+1] == socket {
				out = append(out, p)
				break
			}
		}
	}
	return out
}

func allPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// descendants are the processes below roots (not roots themselves).
func descendants(roots []int) []int {
	children := map[int][]int{}
	for _, p := range allPIDs() {
		children[leftover.Parent(p)] = append(children[leftover.Parent(p)], p)
	}
	var out []int
	queue := append([]int(nil), roots...)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// cleanup runs after the server exited: it kills shims (and their
// processes) a server that failed to clean up left behind, unmounts what is
// still mounted under the data dir and removes it. It says what it found.
func (s *server) cleanup(socket string, containerdPID int) {
	if containerdPID > 0 {
		if args := leftover.Cmdline(containerdPID); len(args) > 0 && filepath.Base(args[0]) == "containerd" && strings.Contains(strings.Join(args, " "), s.dir) {
			log.Printf("%s: containerd (pid %d) left running after the server stopped: stopping it", s.runtime, containerdPID)
			syscall.Kill(containerdPID, syscall.SIGTERM)
			for i := 0; i < 100 && len(leftover.Cmdline(containerdPID)) > 0; i++ {
				time.Sleep(100 * time.Millisecond)
			}
			if len(leftover.Cmdline(containerdPID)) > 0 {
				syscall.Kill(containerdPID, syscall.SIGKILL)
			}
		}
	}
	if left := shims(socket); len(left) > 0 {
		procs := append(descendants(left), left...)
		log.Printf("%s: %d shims left after the server stopped (pids %v): killing them and their %d processes",
			s.runtime, len(left), left, len(procs)-len(left))
		// A killed shim leaves its socket under /run/containerd/s.
		var sockets []string
		for _, p := range left {
			sockets = append(sockets, listeningSockets(p, "/run/containerd/s/")...)
		}
		for _, p := range procs {
			syscall.Kill(p, syscall.SIGKILL)
		}
		time.Sleep(200 * time.Millisecond)
		for _, path := range sockets {
			os.Remove(path)
		}
	}
	if mounts := leftover.MountsUnder(s.dir); len(mounts) > 0 {
		log.Printf("%s: %d mounts left under %s after the server stopped: unmounting %v", s.runtime, len(mounts), s.dir, mounts)
		for _, m := range mounts {
			if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
				log.Printf("unmount %s: %v", m, err)
			}
		}
		if left := leftover.MountsUnder(s.dir); len(left) > 0 {
			log.Printf("%s: still mounted, leaving %s in place: %v", s.runtime, s.dir, left)
			return
		}
	}
	if err := os.RemoveAll(s.dir); err != nil {
		log.Printf("removing %s: %v", s.dir, err)
	}
	// A server that did not finish its --cleanup leaves its bridge (the
	// bench's own name) behind.
	if _, err := net.InterfaceByName(s.bridge); err == nil {
		log.Printf("%s: the bridge %s is left after the server stopped (it hung: %v): deleting it", s.runtime, s.bridge, s.hung)
		if out, err := exec.Command("ip", "link", "del", s.bridge).CombinedOutput(); err != nil {
			log.Printf("ip link del %s: %v: %s", s.bridge, err, out)
		}
	}
}

// listeningSockets are the paths under prefix of the unix sockets process
// pid holds open (its fds matched against /proc/net/unix by inode).
func listeningSockets(pid int, prefix string) []string {
	inodes := map[string]bool{}
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if ino, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	data, err := os.ReadFile("/proc/net/unix")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		// Num RefCount Protocol Flags Type St Inode Path
		if len(f) >= 8 && inodes[f[6]] && strings.HasPrefix(f[7], prefix) {
			out = append(out, f[7])
		}
	}
	return out
}

// tail is the last n lines of a file.
func tail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ociRuntimeChosen reads from the server's log what the managed
// containerd's shims run: "crun", "crun (through headway-crun)", "runc", or
// "" when the log says nothing of it (the process runtime).
func ociRuntimeChosen(logPath string) string {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return ""
	}
	chosen := ""
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, `msg="containerd decision"`) {
			continue
		}
		if _, v, ok := strings.Cut(line, " oci_runtime="); ok {
			v, _, _ = strings.Cut(v, " ")
			chosen = v
			if strings.Contains(line, "/headway-crun ") {
				chosen += " (through headway-crun)"
			}
		}
	}
	return chosen
}
