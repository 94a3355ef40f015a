package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
	"golang.org/x/sys/unix"

	"github.com/headway/headway/internal/testing/leftover"
	"github.com/headway/headway/test/images"
)

// criCluster is `headway server --runtime cri` with the containerd it
// manages, run inside a network namespace the test made (entered with
// nsenter, which keeps the test's mount namespace: containerd's mounts are
// visible to the test and checked at the end). Its bridge, veths, pod
// network namespaces, nftables and the cluster DNS address never touch the
// host's network, so it neither disturbs nor is disturbed by another
// headway on this machine. Images come from a registry the test serves in
// that namespace's loopback, named as docker.io's mirror.
type criCluster struct {
	t       *testing.T // the top-level test: owns the teardown
	ns      string
	nsPath  string
	dataDir string
	logDir  string
	api     string // 127.0.0.1:6443 inside the namespace
	dnsPort string
	reg     string // the registry's address inside the namespace
	regHost string // the same registry on the host's loopback (the test pushes there)

	srv     *criServer
	servers int
	// cleanedUp says a server with --cleanup has been stopped: the teardown
	// does not try the product's cleanup a second time.
	cleanedUp bool

	mu        sync.Mutex
	podUIDs   map[string]bool   // every pod UID seen
	sandboxes map[string]string // CRI sandbox ID → its netns path
}

type criServer struct {
	cmd     *exec.Cmd
	logPath string
	cleanup bool
	done    chan struct{}
}

// needCRI skips unless this machine can run the managed containerd and the
// test images.
func needCRI(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: headway starts containerd and pods get network namespaces on a bridge")
	}
	var missing []string
	for _, bin := range []string{"containerd", "ctr", "runc", "containerd-shim-runc-v2", "nsenter", "ip", "dig", "busybox"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin)
		}
	}
	if len(missing) > 0 {
		t.Skipf("needs %s on PATH (apt-get install containerd runc util-linux iproute2 dnsutils busybox)", strings.Join(missing, ", "))
	}
	if m := images.Missing(); len(m) > 0 {
		t.Skipf("the test images need Debian packages: %s", images.InstallCommand(m...))
	}
}

// newCRICluster makes the namespace, the data dir with the registry mirror
// config and the registry, and registers the teardown (which runs before the
// data dir is removed, and also when the test failed half-way).
func newCRICluster(t *testing.T) *criCluster {
	t.Helper()
	c := &criCluster{
		t:         t,
		ns:        fmt.Sprintf("hwcri%d", os.Getpid()),
		dataDir:   t.TempDir(),
		logDir:    t.TempDir(),
		api:       "127.0.0.1:6443",
		dnsPort:   "10053",
		podUIDs:   map[string]bool{},
		sandboxes: map[string]string{},
	}
	c.nsPath = "/var/run/netns/" + c.ns
	exec.Command("ip", "netns", "del", c.ns).Run() // one left by a killed run of this process ID
	ipCmd(t, "netns", "add", c.ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", c.ns).Run() })
	ipCmd(t, "-n", c.ns, "link", "set", "lo", "up")

	// The registry: one in-memory registry served on two sockets, the
	// host's loopback (the test pushes there) and the namespace's (where
	// containerd pulls).
	imgs, err := images.DefaultImages()
	if err != nil {
		t.Fatal(err)
	}
	hostLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nsLn, err := listenInNetns(c.nsPath, "127.0.0.1:0")
	if err != nil {
		hostLn.Close()
		t.Fatalf("listening in namespace %s: %v", c.ns, err)
	}
	srv := &http.Server{
		Handler:  registry.New(registry.Logger(log.New(io.Discard, "", 0))),
		ErrorLog: log.New(io.Discard, "", 0),
	}
	var served sync.WaitGroup
	for _, ln := range []net.Listener{hostLn, nsLn} {
		served.Add(1)
		go func() { defer served.Done(); srv.Serve(ln) }()
	}
	t.Cleanup(func() { srv.Close(); served.Wait() })
	for ref, img := range imgs {
		if err := images.Push(hostLn.Addr().String(), ref, img); err != nil {
			t.Fatal(err)
		}
	}
	c.reg, c.regHost = nsLn.Addr().String(), hostLn.Addr().String()

	// docker.io's hosts.toml: the mirror, and as server the mirror again, so
	// that a name the mirror lacks fails there instead of going to Docker Hub.
	dir := filepath.Join(c.dataDir, "registries", "docker.io")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := fmt.Sprintf("server = \"http://%s\"\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", c.reg, c.reg)
	if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.teardown)
	return c
}

// listenInNetns opens a TCP listener in the network namespace at nsPath.
// The thread that enters the namespace is never unlocked, so it ends with
// its goroutine instead of going back to the scheduler in that namespace.
func listenInNetns(nsPath, addr string) (net.Listener, error) {
	type result struct {
		ln  net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(nsPath)
		if err != nil {
			ch <- result{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			ch <- result{nil, fmt.Errorf("setns: %w", err)}
			return
		}
		ln, err := net.Listen("tcp", addr)
		ch <- result{ln, err}
	}()
	r := <-ch
	return r.ln, r.err
}

func (c *criCluster) kubeconfig() string { return filepath.Join(c.dataDir, "kubeconfig") }

// inNS is argv run in the cluster's network namespace.
func (c *criCluster) inNS(argv ...string) []string {
	return append([]string{"nsenter", "--net=" + c.nsPath}, argv...)
}

// start starts headway server on the cluster's data dir and waits until the
// API answers and the node is Ready.
func (c *criCluster) start(t *testing.T, cleanup bool) {
	t.Helper()
	c.servers++
	s := &criServer{cleanup: cleanup, done: make(chan struct{}),
		logPath: filepath.Join(c.logDir, fmt.Sprintf("server-%d.log", c.servers))}
	args := []string{headwayBin, "server", "--data-dir", c.dataDir, "--listen", c.api, "--store", "bolt",
		"--dns-listen", "127.0.0.1:" + c.dnsPort, "--dns-upstream", "none", "--runtime", "cri"}
	if cleanup {
		args = append(args, "--cleanup")
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	argv := c.inNS(args...)
	// nsenter enters only the network namespace and then execs: the PID is
	// the server's.
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	began := time.Now()
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	c.srv = s
	emb := kubectl{name: "embedded", argv: []string{headwayBin, "kubectl"}}
	deadline := time.Now().Add(60 * time.Second)
	for {
		out, err := c.run(emb, "", "get", "nodes", "--no-headers")
		if err == nil && regexp.MustCompile(`(?m)^\S+\s+Ready\s`).MatchString(out) {
			break
		}
		select {
		case <-s.done:
			t.Fatalf("headway server exited before its node was Ready:\n%s", c.logTail(s, 80))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("headway server's node not Ready after 60s (last: %v %s):\n%s", err, out, c.logTail(s, 80))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("headway server %d (--cleanup=%t) up, node Ready, in %v", c.servers, cleanup, time.Since(began).Round(time.Millisecond))
}

// stop sends SIGTERM and waits for the server to exit.
func (c *criCluster) stop(t *testing.T) {
	t.Helper()
	s := c.srv
	if s == nil {
		return
	}
	c.srv = nil
	if s.cleanup {
		c.cleanedUp = true
	}
	select {
	case <-s.done:
		t.Errorf("headway server had already exited:\n%s", c.logTail(s, 80))
		return
	default:
	}
	began := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(45 * time.Second):
		t.Errorf("headway server (--cleanup=%t) still running 45s after SIGTERM; killing it:\n%s", s.cleanup, c.logTail(s, 80))
		s.cmd.Process.Kill()
		<-s.done
	}
	t.Logf("headway server stopped (--cleanup=%t) %v after SIGTERM", s.cleanup, time.Since(began).Round(time.Millisecond))
}

func (c *criCluster) logTail(s *criServer, lines int) string {
	data, _ := os.ReadFile(s.logPath)
	all := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(all) > lines {
		all = all[len(all)-lines:]
	}
	return strings.Join(all, "\n")
}

// grepLog returns the lines of every server log so far that match re.
func (c *criCluster) grepLog(re *regexp.Regexp) []string {
	var out []string
	for i := 1; i <= c.servers; i++ {
		data, _ := os.ReadFile(filepath.Join(c.logDir, fmt.Sprintf("server-%d.log", i)))
		for _, l := range strings.Split(string(data), "\n") {
			if re.MatchString(l) {
				out = append(out, l)
			}
		}
	}
	return out
}

// run runs kubectl k in the namespace against the cluster.
func (c *criCluster) run(k kubectl, stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := c.inNS(append(append(append([]string{}, k.argv...), "--kubeconfig", c.kubeconfig()), args...)...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=")
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *criCluster) must(t *testing.T, k kubectl, args ...string) string {
	t.Helper()
	out, err := c.run(k, "", args...)
	if err != nil {
		t.Fatalf("%s kubectl %s: %v\n%s", k.name, strings.Join(args, " "), err, out)
	}
	return out
}

// wait polls kubectl until its output matches re.
func (c *criCluster) wait(t *testing.T, k kubectl, re *regexp.Regexp, timeout time.Duration, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, _ := c.run(k, "", args...)
		if re.MatchString(out) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s kubectl %s never matched %s in %v; last output:\n%s", k.name, strings.Join(args, " "), re, timeout, out)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// podState is what the test follows of one pod.
type podState struct {
	Name, UID, Phase, IP string
	Ready                bool
	Restarts             int
	ContainerID          string
}

const podStateJSONPath = `jsonpath={range .items[*]}{.metadata.name}{"\t"}{.metadata.uid}{"\t"}{.status.phase}{"\t"}{.status.podIP}{"\t"}{.status.containerStatuses[0].ready}{"\t"}{.status.containerStatuses[0].restartCount}{"\t"}{.status.containerStatuses[0].containerID}{"\n"}{end}`

// pods lists the pods matching selector (all in default when empty).
func (c *criCluster) pods(t *testing.T, selector string) map[string]podState {
	t.Helper()
	args := []string{"get", "pods", "-o", podStateJSONPath}
	if selector != "" {
		args = append(args, "-l", selector)
	}
	out, err := c.run(kubectl{name: "embedded", argv: []string{headwayBin, "kubectl"}}, "", args...)
	if err != nil {
		t.Fatalf("get pods: %v\n%s", err, out)
	}
	ps := map[string]podState{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 7 {
			continue
		}
		n, _ := strconv.Atoi(f[5])
		ps[f[0]] = podState{Name: f[0], UID: f[1], Phase: f[2], IP: f[3], Ready: f[4] == "true", Restarts: n, ContainerID: f[6]}
		c.mu.Lock()
		c.podUIDs[f[1]] = true
		c.mu.Unlock()
	}
	return ps
}

// waitPods waits until exactly the named pods match selector, each Running
// and Ready with an IP, and returns them.
func (c *criCluster) waitPods(t *testing.T, selector string, timeout time.Duration, names ...string) map[string]podState {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ps := c.pods(t, selector)
		ok := len(ps) == len(names)
		for _, n := range names {
			p, found := ps[n]
			ok = ok && found && p.Phase == "Running" && p.Ready && p.IP != ""
		}
		if ok {
			return ps
		}
		if time.Now().After(deadline) {
			wide, _ := c.run(kubectl{name: "embedded", argv: []string{headwayBin, "kubectl"}}, "", "get", "pods", "-o", "wide")
			t.Fatalf("want pods %v Running and Ready within %v; have:\n%s", names, timeout, wide)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// waitGone waits until pod name is NotFound.
func (c *criCluster) waitGone(t *testing.T, name string, timeout time.Duration) {
	t.Helper()
	c.wait(t, kubectl{name: "embedded", argv: []string{headwayBin, "kubectl"}}, regexp.MustCompile(`NotFound`), timeout, "get", "pod", name, "-o", "name")
}

// dig asks the cluster DNS (at --dns-listen, inside the namespace) for
// name's A records.
func (c *criCluster) dig(t *testing.T, name string) []string {
	t.Helper()
	argv := c.inNS("dig", "@127.0.0.1", "-p", c.dnsPort, "+short", "+time=2", "+tries=1", name)
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %s: %v %s", name, err, out)
	}
	addrs := strings.Fields(string(out))
	sort.Strings(addrs)
	return addrs
}

func (c *criCluster) waitDig(t *testing.T, name string, want []string, timeout time.Duration) {
	t.Helper()
	sort.Strings(want)
	deadline := time.Now().Add(timeout)
	for {
		got := c.dig(t, name)
		if strings.Join(got, " ") == strings.Join(want, " ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("dig %s: %v, want %v", name, got, want)
		}
		time.Sleep(150 * time.Millisecond)
	}
}

// socket is the managed containerd's socket, read from its config.toml.
func (c *criCluster) socket() string {
	data, _ := os.ReadFile(filepath.Join(c.dataDir, "containerd", "config.toml"))
	if m := regexp.MustCompile(`(?m)^\[grpc\]\s*\n\s*address\s*=\s*"([^"]+)"`).FindSubmatch(data); m != nil {
		return string(m[1])
	}
	if m := regexp.MustCompile(`(?m)^\s*address\s*=\s*"(/[^"]+)"`).FindSubmatch(data); m != nil {
		return string(m[1])
	}
	return filepath.Join(c.dataDir, "containerd", "containerd.sock")
}

// recordSandboxes notes the CRI sandboxes containerd has now, with their
// network namespace paths, for the leftover check at the end.
func (c *criCluster) recordSandboxes(t *testing.T) {
	t.Helper()
	sock := c.socket()
	out, err := exec.Command("ctr", "--address", sock, "-n", "k8s.io", "containers", "ls", "-q").CombinedOutput()
	if err != nil {
		t.Logf("ctr containers ls: %v %s", err, out)
		return
	}
	for _, id := range strings.Fields(string(out)) {
		c.mu.Lock()
		_, seen := c.sandboxes[id]
		c.mu.Unlock()
		if seen {
			continue
		}
		info, err := exec.Command("ctr", "--address", sock, "-n", "k8s.io", "containers", "info", id).Output()
		if err != nil {
			continue
		}
		var ci struct {
			Labels map[string]string
			Spec   struct {
				Linux struct {
					Namespaces []struct{ Type, Path string }
				}
			}
		}
		if json.Unmarshal(info, &ci) != nil || ci.Labels["io.cri-containerd.kind"] != "sandbox" {
			continue
		}
		netns := ""
		for _, n := range ci.Spec.Linux.Namespaces {
			if n.Type == "network" {
				netns = n.Path
			}
		}
		c.mu.Lock()
		c.sandboxes[id] = netns
		c.mu.Unlock()
	}
}

// containerdPID is the managed containerd's PID, checked against its
// command line (--config <data-dir>/containerd/config.toml); 0 if none runs.
func (c *criCluster) containerdPID() int {
	config := filepath.Join(c.dataDir, "containerd", "config.toml")
	if data, err := os.ReadFile(filepath.Join(c.dataDir, "containerd", "containerd.pid")); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && isContainerdWith(pid, config) {
			return pid
		}
	}
	for _, pid := range allPIDs() {
		if isContainerdWith(pid, config) {
			return pid
		}
	}
	return 0
}

func isContainerdWith(pid int, config string) bool {
	args := leftover.Cmdline(pid)
	if len(args) == 0 || filepath.Base(args[0]) != "containerd" {
		return false
	}
	for i := 0; i+1 < len(args); i++ {
		if (args[i] == "--config" || args[i] == "-c") && args[i+1] == config {
			return true
		}
	}
	return false
}

// zombie says pid has exited and waits to be reaped (it holds nothing).
func zombie(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := bytes.LastIndexByte(data, ')')
	return i < 0 || i+2 >= len(data) || data[i+2] == 'Z'
}

func allPIDs() []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		if pid, err := strconv.Atoi(e.Name()); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// leftoverProcs lists the processes that belong to this cluster: whose
// command line names the data dir or containerd's socket (containerd, the
// shims, headway-cni), whose root is a container rootfs under the data dir,
// whose cgroup is one of this test's pods' or that are a shim of a sandbox
// this test saw.
func (c *criCluster) leftoverProcs() map[int]string {
	sock := c.socket()
	c.mu.Lock()
	uids := make([]string, 0, len(c.podUIDs))
	for u := range c.podUIDs {
		uids = append(uids, u)
	}
	ids := make([]string, 0, len(c.sandboxes))
	for id := range c.sandboxes {
		ids = append(ids, id)
	}
	c.mu.Unlock()
	found := map[int]string{}
	for _, pid := range allPIDs() {
		args := leftover.Cmdline(pid)
		line := strings.Join(args, " ")
		if c.srv != nil && pid == c.srv.cmd.Process.Pid || zombie(pid) {
			continue
		}
		why := ""
		switch {
		case strings.Contains(line, c.dataDir):
			why = "command line names the data dir"
		case sock != "" && strings.Contains(line, sock):
			why = "command line names containerd's socket"
		}
		if why == "" {
			if root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", pid)); err == nil && strings.HasPrefix(root, c.dataDir) {
				why = "root is " + root
			}
		}
		if why == "" {
			if cg, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); err == nil {
				for _, u := range uids {
					if strings.Contains(string(cg), "/headway/pod"+u) {
						why = "in the cgroup of pod " + u
						break
					}
				}
			}
		}
		if why == "" && strings.Contains(line, "-namespace k8s.io") {
			for _, id := range ids {
				if strings.Contains(line, "-id "+id) {
					why = "shim of sandbox " + id
				}
			}
		}
		if why != "" {
			found[pid] = why + ": " + line
		}
	}
	return found
}

// podCgroups lists the cgroup directories left for this test's pods.
func (c *criCluster) podCgroups() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for u := range c.podUIDs {
		m, _ := filepath.Glob("/sys/fs/cgroup/*/headway/pod" + u)
		out = append(out, m...)
		m, _ = filepath.Glob("/sys/fs/cgroup/headway/pod" + u)
		out = append(out, m...)
	}
	return out
}

// nsLinks lists the links in the cluster's network namespace.
func (c *criCluster) nsLinks() ([]string, error) {
	out, err := exec.Command("ip", "-n", c.ns, "-o", "link", "show").CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("ip -n %s link: %v %s", c.ns, err, out)
	}
	var links []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if f := strings.Fields(l); len(f) > 1 {
			name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
			links = append(links, name)
		}
	}
	return links, nil
}

// teardown runs after everything else of the test (also after a failure):
// it stops the server; if this cluster still has processes or mounts (a
// failure, or a server run without --cleanup), it starts one with --cleanup
// on the same data dir and stops it, and whatever is left after that is
// killed by PID and unmounted, so that the data dir can be removed.
func (c *criCluster) teardown() {
	t := c.t
	if c.srv != nil {
		c.stop(t)
	}
	if !c.cleanedUp && (len(c.leftoverProcs()) > 0 || len(leftover.MountsUnder(c.dataDir)) > 0) {
		if _, err := os.Stat(c.kubeconfig()); err == nil {
			t.Logf("teardown: this cluster still has processes or mounts; a server with --cleanup removes them")
			func() {
				defer func() { recover() }()
				c.startQuiet()
			}()
			if c.srv != nil {
				c.stop(t)
			}
		}
	}
	// Last resort, by PID: shims first (they reap their containers), then
	// whatever else is ours, containerd included.
	for range 2 {
		left := c.leftoverProcs()
		if len(left) == 0 {
			break
		}
		for pid, why := range left {
			if strings.Contains(why, "containerd-shim") {
				t.Logf("teardown: killing %d (%s)", pid, why)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		for pid, why := range left {
			if !strings.Contains(why, "containerd-shim") {
				t.Logf("teardown: killing %d (%s)", pid, why)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	ms := leftover.MountsUnder(c.dataDir)
	sort.Sort(sort.Reverse(sort.StringSlice(ms)))
	for _, m := range ms {
		t.Logf("teardown: unmounting %s", m)
		unix.Unmount(m, unix.MNT_DETACH)
	}
	for _, d := range c.podCgroups() {
		os.Remove(d)
	}
}

// startQuiet starts a --cleanup server for the teardown, without failing
// the test on its own account.
func (c *criCluster) startQuiet() {
	c.servers++
	s := &criServer{cleanup: true, done: make(chan struct{}),
		logPath: filepath.Join(c.logDir, fmt.Sprintf("server-%d.log", c.servers))}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return
	}
	defer logf.Close()
	argv := c.inNS(headwayBin, "server", "--data-dir", c.dataDir, "--listen", c.api, "--store", "bolt",
		"--dns-listen", "127.0.0.1:"+c.dnsPort, "--dns-upstream", "none", "--runtime", "cri", "--cleanup")
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if s.cmd.Start() != nil {
		return
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	c.srv = s
	emb := kubectl{name: "embedded", argv: []string{headwayBin, "kubectl"}}
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		// Adoption has happened once the agent reports the pods again.
		if out, err := c.run(emb, "", "get", "nodes", "--no-headers"); err == nil && strings.Contains(out, " Ready") {
			time.Sleep(2 * time.Second)
			return
		}
		select {
		case <-s.done:
			return
		default:
		}
	}
}

// session is one `kubectl run -it --rm` shell on a pseudo-terminal.
type session struct {
	term *terminal
	n    int
}

// do types cmd and returns what it printed: the output between the typed
// line and a marker that only the shell's arithmetic produces.
//
// It types only once the shell shows its prompt again: a line typed while
// the previous command still runs is echoed twice, once by the terminal
// and once more by the shell's line editor after its prompt. The output
// starts after the last echo of the line either way.
func (s *session) do(t *testing.T, cmd string, timeout time.Duration) string {
	t.Helper()
	s.n++
	mark := fmt.Sprintf("mark-%d", 7000+s.n)
	typed := fmt.Sprintf(`echo "mark-$((7000+%d))"`, s.n)
	// The prompt, then whatever terminal control sequences the line
	// editor writes after it (ESC[J, ESC[6n).
	prompt := regexp.MustCompile(`# (\x1b\[[0-9;]*[A-Za-z])*$`)
	for wait := time.Now().Add(5 * time.Second); !prompt.MatchString(s.term.screen()) && time.Now().Before(wait); {
		time.Sleep(10 * time.Millisecond)
	}
	deadline := time.Now().Add(timeout)
	from := len(s.term.screen())
	s.term.typeLine(fmt.Sprintf(`%s; %s`, cmd, typed))
	for {
		screen := s.term.screen()[from:]
		if i := strings.Index(screen, mark); i >= 0 {
			out := screen[:i]
			// Drop the echoed command line (the last echo of it).
			if j := strings.LastIndex(out, typed); j >= 0 {
				out = out[j:]
			}
			if j := strings.Index(out, "\n"); j >= 0 {
				out = out[j+1:]
			}
			return strings.ReplaceAll(out, "\r", "")
		}
		if time.Now().After(deadline) {
			t.Fatalf("%q did not finish in %v; the terminal shows:\n%s", cmd, timeout, screen)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer for a command's output read while it runs.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// background starts argv with its output in a syncBuffer; t.Cleanup kills
// it (by PID) and waits.
func background(t *testing.T, argv ...string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		select {
		case <-done:
		default:
			cmd.Process.Kill()
			<-done
		}
	})
	return cmd, out
}

// waitFor polls cond until it is true or timeout passes.
func waitFor(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
