package process

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/headway/headway/internal/agent/network"
	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

func TestCheckNeedsACommand(t *testing.T) {
	r := &Runtime{}
	err := r.Check(&corev1.Container{Name: "nginx", Image: "nginx:alpine"})
	if err == nil || !strings.Contains(err.Error(), `"nginx"`) || !strings.Contains(err.Error(), "set `command`") || !strings.Contains(err.Error(), "CRI") {
		t.Fatalf("Check of a container without command: %v", err)
	}
	if err := r.Check(&corev1.Container{Name: "a", Command: []string{"sleep"}}); err != nil {
		t.Fatal(err)
	}
}

// newTestRuntime makes a process runtime with a pod network on its own
// bridge and range, removed when the test ends.
func newTestRuntime(t *testing.T, opts ...func(*Config)) *Runtime {
	t.Helper()
	if err := network.Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	dir := t.TempDir()
	n, err := network.Open(network.Config{StateDir: filepath.Join(dir, "network"), Bridge: "hwt-proc",
		ClusterCIDR: netip.MustParsePrefix("198.18.251.0/24"), Gateway: netip.MustParseAddr("198.18.251.1")})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Setup(); err != nil {
		n.Teardown()
		t.Fatal(err)
	}
	cfg := Config{PodsDir: filepath.Join(dir, "pods"), DataDir: dir, Network: n, CgroupParent: testCgroupParent(),
		DNS: network.DNSSettings{ClusterDNS: netip.MustParseAddr("198.19.0.10"), ClusterDomain: "cluster.local"}}
	for _, o := range opts {
		o(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Whatever a failed test left: processes (by their pid files),
		// namespaces, cgroups, then the bridge.
		if err := r.Cleanup(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
		for _, uid := range n.PodNamespaces() {
			r.RemoveSandbox(context.Background(), uid, true)
		}
		if err := r.cgroups.removeAll(true); err != nil {
			t.Errorf("removing the test's cgroups: %v", err)
		}
		if err := n.Teardown(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// testCgroupParent is a cgroup parent of this test process's own, so
// concurrent test runs never share one.
func testCgroupParent() string { return fmt.Sprintf("headway-test-%d", os.Getpid()) }

func testPod(name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec: corev1.PodSpec{Hostname: name, Subdomain: "nginx-headless"}}
}

func startOrFail(t *testing.T, r *Runtime, sb *hwruntime.Sandbox, c *hwruntime.ContainerSpec) hwruntime.Process {
	t.Helper()
	p, err := r.Start(context.Background(), sb, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Signal(syscall.SIGKILL)
		<-p.Done()
	})
	return p
}

func waitExit(t *testing.T, p hwruntime.Process) hwruntime.Exit {
	t.Helper()
	select {
	case <-p.Done():
		return p.Exit()
	case <-time.After(10 * time.Second):
		t.Fatal("the process did not exit within 10s")
	}
	return hwruntime.Exit{}
}

// TestContainerSeesItsPod: host name, hosts and resolv.conf, a volume at a
// path that does not exist on the host, a read-only volume, the user.
func TestContainerSeesItsPod(t *testing.T) {
	r := newTestRuntime(t)
	sb, err := r.RunSandbox(context.Background(), testPod("web-0"))
	if err != nil {
		t.Fatal(err)
	}
	vol := filepath.Join(sb.Dir, "volumes", "data")
	os.MkdirAll(vol, 0o777)
	os.WriteFile(filepath.Join(vol, "hello"), []byte("from the volume\n"), 0o644)
	ro := filepath.Join(sb.Dir, "volumes", "config")
	os.MkdirAll(ro, 0o755)
	missing := "/headway-test-not-on-the-host/data"
	deepMissing := "/usr/share/headway-test-missing/conf"
	script := `hostname; grep web-0 /etc/hosts; cat /etc/resolv.conf; cat ` + missing + `/hello; ls ` + deepMissing + ` >/dev/null && echo deep-ok;
touch /usr/share/headway-test-missing/conf/x 2>/dev/null && echo ro-broken || echo ro-ok; id -u; pwd; echo "$GREETING"`
	uid := int64(65534)
	p := startOrFail(t, r, sb, &hwruntime.ContainerSpec{
		Name: "c", Argv: []string{"sh", "-c", script}, Env: []string{"GREETING=hi there", "PATH=/usr/bin:/bin"},
		WorkingDir: "/tmp", UID: &uid, LogPath: filepath.Join(sb.Dir, "logs", "c", "0.log"),
		Mounts: []hwruntime.Mount{{Source: vol, Target: missing}, {Source: ro, Target: deepMissing, ReadOnly: true}},
	})
	if e := waitExit(t, p); e.Code != 0 {
		out := logText(filepath.Join(sb.Dir, "logs", "c", "0.log"))
		t.Fatalf("exit %+v; output:\n%s", e, out)
	}
	out := logText(filepath.Join(sb.Dir, "logs", "c", "0.log"))
	want := []string{"web-0\n", sb.IP.String() + "\tweb-0.nginx-headless.default.svc.cluster.local\tweb-0",
		"nameserver 198.19.0.10", "search default.svc.cluster.local svc.cluster.local cluster.local", "options ndots:5",
		"from the volume", "deep-ok", "ro-ok", "65534\n/tmp\nhi there\n"}
	for _, w := range want {
		if !strings.Contains(string(out), w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	for _, p := range []string{"/headway-test-not-on-the-host", "/usr/share/headway-test-missing"} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists on the host: %v", p, err)
		}
	}
	if h, _ := os.Hostname(); h == "web-0" {
		t.Error("the host's name changed")
	}
}

func TestExecJoinsTheContainer(t *testing.T) {
	r := newTestRuntime(t)
	sb, err := r.RunSandbox(context.Background(), testPod("web-1"))
	if err != nil {
		t.Fatal(err)
	}
	vol := filepath.Join(sb.Dir, "volumes", "v")
	os.MkdirAll(vol, 0o755)
	spec := &hwruntime.ContainerSpec{Name: "c", Argv: []string{"sleep", "60"}, Env: []string{"X=42"},
		LogPath: filepath.Join(sb.Dir, "logs", "c", "0.log"), Mounts: []hwruntime.Mount{{Source: vol, Target: "/headway-exec-test"}}}
	p := startOrFail(t, r, sb, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := r.Exec(ctx, p, spec, []string{"sh", "-c", "hostname; echo $X; ls -d /headway-exec-test; exit 3"})
	if err != nil {
		t.Fatal(err)
	}
	if res.ExitCode != 3 || !bytes.Equal(res.Output, []byte("web-1\n42\n/headway-exec-test\n")) {
		t.Fatalf("exec: code %d, output %q", res.ExitCode, res.Output)
	}
	// Stopping: SIGTERM ends sleep.
	p.Signal(syscall.SIGTERM)
	if e := waitExit(t, p); e.Signal != int32(syscall.SIGTERM) || e.Code != 143 {
		t.Fatalf("exit after SIGTERM: %+v", e)
	}
	if _, err := r.Exec(ctx, p, spec, []string{"true"}); err == nil {
		t.Fatal("exec into an exited container succeeded")
	}
}

// TestCleanupEndsOrphans: a container left running (as after a crash) is
// ended by Cleanup, and its namespace is removed.
func TestCleanupEndsOrphans(t *testing.T) {
	r := newTestRuntime(t)
	sb, err := r.RunSandbox(context.Background(), testPod("web-2"))
	if err != nil {
		t.Fatal(err)
	}
	p := startOrFail(t, r, sb, &hwruntime.ContainerSpec{Name: "c", Argv: []string{"sleep", "60"}, LogPath: filepath.Join(sb.Dir, "logs", "c", "0.log")})
	r2, err := New(Config{PodsDir: r.cfg.PodsDir, DataDir: r.cfg.DataDir, Network: r.cfg.Network, CgroupParent: r.cfg.CgroupParent})
	if err != nil {
		t.Fatal(err)
	}
	if err := r2.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if e := waitExit(t, p); e.Signal != int32(syscall.SIGKILL) {
		t.Fatalf("orphan's exit: %+v", e)
	}
	if ns := r.cfg.Network.PodNamespaces(); len(ns) != 0 {
		t.Fatalf("namespaces left: %v", ns)
	}
	sb2, err := r2.RunSandbox(context.Background(), testPod("web-2"))
	if err != nil {
		t.Fatal(err)
	}
	if sb2.IP != sb.IP {
		t.Fatalf("after cleanup the pod got %s, had %s", sb2.IP, sb.IP)
	}
}

// logText is a CRI-format log file's text: each line without its time,
// stream and tag.
func logText(path string) []byte {
	data, _ := os.ReadFile(path)
	var out []byte
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if f := strings.SplitN(line, " ", 4); len(f) == 4 {
			out = append(out, f[3]...)
		}
	}
	return out
}

// TestCleanupLeavesOtherAgentsPods: every Headway server on a machine
// shares the cgroup parent; the start-up cleanup of one (its own pods dir)
// must not end or remove another's running pod.
func TestCleanupLeavesOtherAgentsPods(t *testing.T) {
	r := newTestRuntime(t)
	if !r.EnforcesLimits() {
		t.Skip("skipping: this host gives Headway no cgroups")
	}
	sb, err := r.RunSandbox(context.Background(), testPod("web-0"))
	if err != nil {
		t.Fatal(err)
	}
	p := startOrFail(t, r, sb, &hwruntime.ContainerSpec{
		Name: "c", Argv: []string{"sleep", "600"}, Env: []string{"PATH=/usr/bin:/bin"},
		LogPath: filepath.Join(sb.Dir, "logs", "c", "0.log"),
	})
	roots := r.cgroups.hierarchies()
	if len(roots) == 0 {
		t.Fatal("no cgroup hierarchy")
	}
	podCgroup := r.cgroups.podDir(roots[0], "uid-web-0")
	if _, err := os.Stat(podCgroup); err != nil {
		t.Fatalf("the pod's cgroup: %v", err)
	}

	other, err := New(Config{PodsDir: filepath.Join(t.TempDir(), "pods"), DataDir: t.TempDir(), CgroupParent: testCgroupParent()})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Cleanup(); err != nil {
		t.Fatalf("the other agent's cleanup: %v", err)
	}
	if _, err := os.Stat(podCgroup); err != nil {
		t.Fatalf("another agent's cleanup removed this agent's pod cgroup: %v", err)
	}
	select {
	case <-p.Done():
		t.Fatalf("another agent's cleanup ended this agent's pod: %+v", p.Exit())
	default:
	}
}

// The small headway-init (cmd/headway-init, what make build embeds) is a
// whole container init: the container runs from it, confined, in its pod.
func TestSmallInitRunsContainers(t *testing.T) {
	initExe := filepath.Join(t.TempDir(), "headway-init")
	build := exec.Command("go", "build", "-o", initExe, "github.com/headway/headway/cmd/headway-init")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building cmd/headway-init: %v\n%s", err, out)
	}
	r := newTestRuntime(t, func(c *Config) { c.ContainerInit = initExe })
	sb, err := r.RunSandbox(context.Background(), testPod("web-0"))
	if err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(sb.Dir, "logs", "c", "0.log")
	uid := int64(65534)
	p := startOrFail(t, r, sb, &hwruntime.ContainerSpec{
		Name: "c", Argv: []string{"sh", "-c", "hostname; cat /proc/1/comm; id -u; echo gomaxprocs=${GOMAXPROCS:-unset}; echo pid=$$; exec sleep 60"},
		Env: []string{"PATH=/usr/bin:/bin"}, UID: &uid, LogPath: logPath,
	})
	// The container's PID 1, seen from the host, is the small binary.
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", p.PID()))
	if err != nil || exe != initExe {
		t.Errorf("the container's init runs %q (%v), want %s", exe, err, initExe)
	}
	// The init runs its Go runtime with one P (initEnv); the program gets
	// the container's environment alone.
	if env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.PID())); err != nil || string(env) != "GOMAXPROCS=1\x00" {
		t.Errorf("the container's init has environment %q (%v), want GOMAXPROCS=1 alone", env, err)
	}
	// Once the shell has written everything, end it.
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(string(logText(logPath)), "pid=") && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	p.Signal(syscall.SIGTERM)
	waitExit(t, p)
	out := string(logText(logPath))
	for _, w := range []string{"web-0\n", "headway-init\n", "65534\n", "gomaxprocs=unset\n", "pid="} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
}

// TestMainThreadStaysOnTheHost: starting and entering containers (on
// threads that change namespaces and are thrown away) never leaves the
// process's main thread in a pod's mount namespace, where /proc/self would
// show the pod's mounts and the namespace would live as long as the
// process.
func TestMainThreadStaysOnTheHost(t *testing.T) {
	host, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	r := newTestRuntime(t)
	sb, err := r.RunSandbox(context.Background(), testPod("web-main"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		spec := &hwruntime.ContainerSpec{Name: fmt.Sprint("c", i), Argv: []string{"true"}, LogPath: filepath.Join(sb.Dir, "logs", fmt.Sprint("c", i), "0.log")}
		p, err := r.Start(context.Background(), sb, spec)
		if err != nil {
			t.Fatal(err)
		}
		waitExit(t, p)
		if now, _ := os.Readlink("/proc/self/ns/mnt"); now != host {
			t.Fatalf("after %d containers the main thread is in mount namespace %s, not the host's %s", i+1, now, host)
		}
	}
}

// TestInitForwardsSignals: the container's init passes signals on to the
// program, those it watches from before the start (SIGUSR1) and those it
// watches only once the program runs (SIGPWR).
func TestInitForwardsSignals(t *testing.T) {
	r := newTestRuntime(t)
	sb, err := r.RunSandbox(context.Background(), testPod("web-sig"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		sig  syscall.Signal
		name string
		code int32
	}{{syscall.SIGUSR1, "USR1", 7}, {syscall.SIGPWR, "PWR", 8}} {
		logPath := filepath.Join(sb.Dir, "logs", "c", tc.name+".log")
		p := startOrFail(t, r, sb, &hwruntime.ContainerSpec{Name: "c", LogPath: logPath,
			Argv: []string{"sh", "-c", fmt.Sprintf("trap 'exit %d' %s; echo trapped; while :; do sleep 0.02; done", tc.code, tc.name)}})
		deadline := time.Now().Add(10 * time.Second)
		for {
			if b, _ := os.ReadFile(logPath); bytes.Contains(b, []byte("trapped")) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the program did not start within 10 s", tc.name)
			}
			time.Sleep(10 * time.Millisecond)
		}
		// Sent again until the program ends: a signal the init does not
		// watch yet is dropped, and the test waits for the init to watch it.
		var e hwruntime.Exit
	wait:
		for {
			if err := p.Signal(tc.sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-p.Done():
				e = p.Exit()
				break wait
			case <-time.After(50 * time.Millisecond):
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the program did not end within 10 s", tc.name)
			}
		}
		if e.Code != tc.code || e.Signal != 0 {
			t.Errorf("%s: exit %+v, want code %d from the program's trap", tc.name, e, tc.code)
		}
	}
}

// TestShadowOnceThroughALink: mount points under /var/run and /run, on a
// host where one is a link to the other, shadow that directory once: one
// tmpfs on /run in the container, both volumes there, the host's entries
// still seen, nothing made on the host.
func TestShadowOnceThroughALink(t *testing.T) {
	if real, err := filepath.EvalSymlinks("/var/run"); err != nil || real != "/run" {
		t.Skipf("/var/run is not a link to /run here (%q, %v)", real, err)
	}
	hostEntries, err := os.ReadDir("/run")
	if err != nil || len(hostEntries) == 0 {
		t.Skipf("nothing in the host's /run to compare with (%v)", err)
	}
	r := newTestRuntime(t)
	sb, err := r.RunSandbox(context.Background(), testPod("web-shadow"))
	if err != nil {
		t.Fatal(err)
	}
	a, b := filepath.Join(sb.Dir, "volumes", "a"), filepath.Join(sb.Dir, "volumes", "b")
	os.MkdirAll(a, 0o755)
	os.MkdirAll(b, 0o755)
	os.WriteFile(filepath.Join(a, "f"), []byte("volume a\n"), 0o644)
	os.WriteFile(filepath.Join(b, "f"), []byte("volume b\n"), 0o644)
	logPath := filepath.Join(sb.Dir, "logs", "c", "0.log")
	p := startOrFail(t, r, sb, &hwruntime.ContainerSpec{
		Name: "c", LogPath: logPath, Env: []string{"PATH=/usr/bin:/bin"},
		Argv: []string{"sh", "-c", "cat /var/run/headway-test-a/f /run/headway-test-b/f; ls -d /run/" + hostEntries[0].Name() +
			"; awk '$5 == \"/run\" {print \"mount on /run:\", $0}' /proc/self/mountinfo"},
		Mounts: []hwruntime.Mount{{Source: a, Target: "/var/run/headway-test-a"}, {Source: b, Target: "/run/headway-test-b"}},
	})
	if e := waitExit(t, p); e.Code != 0 {
		t.Fatalf("exit %+v; output:\n%s", e, logText(logPath))
	}
	out := string(logText(logPath))
	for _, w := range []string{"volume a\n", "volume b\n", "/run/" + hostEntries[0].Name() + "\n"} {
		if !strings.Contains(out, w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	// The host's own /run mount (if it is one) and our one tmpfs over it.
	hostMounts := 0
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, l := range strings.Split(string(mi), "\n") {
			if f := strings.Fields(l); len(f) > 4 && f[4] == "/run" {
				hostMounts++
			}
		}
	}
	if n := strings.Count(out, "mount on /run:"); n != hostMounts+1 {
		t.Errorf("%d mounts on /run in the container, want %d (the host's %d and one shadow):\n%s", n, hostMounts+1, hostMounts, out)
	}
	for _, p := range []string{"/run/headway-test-a", "/run/headway-test-b"} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s exists on the host: %v", p, err)
		}
	}
}
