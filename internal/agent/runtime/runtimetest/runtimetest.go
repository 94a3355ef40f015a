// Package runtimetest is the behaviour suite every agent runtime passes
// (process, cri): what the agent relies on when it runs a pod, checked
// through the Runtime interface alone. A runtime's test builds the runtime
// with a pod network of its own and calls Run.
//
// Containers run `sh -c <script>` from the busybox image: the CRI runtime
// pulls busybox:1.28; the process runtime runs the host's busybox for that
// image. Scripts use only busybox applets.
package runtimetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

// Env is a runtime under test and what the suite needs to know about it.
type Env struct {
	Runtime hwruntime.Runtime
	// Prefix is the pod range: sandbox addresses come from it.
	Prefix netip.Prefix
	// ClusterDNS and ClusterDomain are the runtime's DNS settings; when
	// set, containers must see them in /etc/resolv.conf.
	ClusterDNS    netip.Addr
	ClusterDomain string
	// Image is the image containers name (busybox:1.28 when empty).
	Image string
	// Leftovers is called with a live sandbox; the function it returns,
	// called after RemoveSandbox(final), lists what is left of the pod on
	// the host (network namespace, veth, address). Nil skips that check.
	Leftovers func(t *testing.T, sb *hwruntime.Sandbox) func() []string
	// Timeout bounds each wait (30s when zero).
	Timeout time.Duration
	// Skip names subtests the runtime is known to fail, with why (a
	// product bug to fix): they are skipped with that message.
	Skip map[string]string
}

// Run runs the suite against env.Runtime. Subtests run one after another;
// each removes its sandbox when it ends, also when it fails.
func Run(t *testing.T, env Env) {
	if env.Image == "" {
		env.Image = "busybox:1.28"
	}
	if env.Timeout == 0 {
		env.Timeout = 30 * time.Second
	}
	s := &suite{env: env}
	for _, tc := range []struct {
		name string
		f    func(*testing.T, *suite)
	}{
		{"Sandbox", testSandbox},
		{"Logs", testLogs},
		{"LogsUnterminatedLine", testLogsUnterminatedLine},
		{"ExitCode", testExitCode},
		{"Exec", testExec},
		{"SIGTERM", testSIGTERM},
		{"SIGKILL", testSIGKILL},
		{"EnvAndWorkingDir", testEnvAndWorkingDir},
		{"Mounts", testMounts},
		{"RemoveSandbox", testRemoveSandbox},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if why, ok := env.Skip[tc.name]; ok {
				t.Skip(why)
			}
			tc.f(t, s)
		})
	}
}

type suite struct {
	env Env
}

// pod is a pod of the suite: a name of its own and a fresh UID.
func (s *suite) pod(name string) *corev1.Pod {
	var b [6]byte
	rand.Read(b[:])
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("suite-" + name + "-" + hex.EncodeToString(b[:]))},
		Spec: corev1.PodSpec{Hostname: name, Subdomain: "suite", RestartPolicy: corev1.RestartPolicyNever,
			TerminationGracePeriodSeconds: new(int64)},
	}
}

func (s *suite) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), s.env.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// sandbox makes pod's sandbox; it is removed for good when the test ends
// (after the containers started in it are stopped).
func (s *suite) sandbox(t *testing.T, pod *corev1.Pod) *hwruntime.Sandbox {
	t.Helper()
	sb, err := s.env.Runtime.RunSandbox(s.ctx(t), pod)
	if err != nil {
		t.Fatalf("RunSandbox: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := s.env.Runtime.RemoveSandbox(ctx, string(pod.UID), true); err != nil {
			t.Errorf("RemoveSandbox: %v", err)
		}
	})
	return sb
}

// container is the spec of a container running script, with its log
// under the sandbox's log directory (or the test's).
func (s *suite) container(t *testing.T, sb *hwruntime.Sandbox, pod *corev1.Pod, name, script string) *hwruntime.ContainerSpec {
	logDir := sb.LogDir
	if logDir == "" {
		logDir = t.TempDir()
	}
	argv := []string{"sh", "-c", script}
	c := &corev1.Container{Name: name, Image: s.env.Image, Command: argv, TerminationMessagePath: corev1.TerminationMessagePathDefault}
	return &hwruntime.ContainerSpec{Name: name, Image: s.env.Image, Command: argv, Argv: argv,
		LogPath: filepath.Join(logDir, name, "0.log"), Pod: pod, Container: c}
}

// start starts c (pulling its image first where the runtime has images);
// the container is killed when the test ends, before its sandbox goes.
func (s *suite) start(t *testing.T, sb *hwruntime.Sandbox, c *hwruntime.ContainerSpec) hwruntime.Process {
	t.Helper()
	ctx := s.ctx(t)
	if images, ok := s.env.Runtime.(hwruntime.ImageService); ok && c.ImageRef == "" {
		ref, present, err := images.ImagePresent(ctx, c.Image)
		if err != nil {
			t.Fatalf("ImagePresent %s: %v", c.Image, err)
		}
		if !present {
			if ref, err = images.PullImage(ctx, c.Image, nil, sb); err != nil {
				t.Fatalf("PullImage %s: %v", c.Image, err)
			}
		}
		c.ImageRef = ref
	}
	p, err := s.env.Runtime.Start(ctx, sb, c)
	if err != nil {
		t.Fatalf("Start %s: %v", c.Name, err)
	}
	t.Cleanup(func() {
		p.Signal(syscall.SIGKILL)
		select {
		case <-p.Done():
		case <-time.After(s.env.Timeout):
			t.Errorf("container %s still running %s after SIGKILL", c.Name, s.env.Timeout)
		}
	})
	return p
}

// wait waits for p to end and returns how.
func (s *suite) wait(t *testing.T, p hwruntime.Process, what string) hwruntime.Exit {
	t.Helper()
	select {
	case <-p.Done():
		return p.Exit()
	case <-time.After(s.env.Timeout):
		t.Fatalf("%s: the container did not end within %s", what, s.env.Timeout)
	}
	return hwruntime.Exit{}
}

// run starts script in a new container of sb, waits for it to end and
// returns its exit and its output (stdout and stderr, from the log).
func (s *suite) run(t *testing.T, sb *hwruntime.Sandbox, pod *corev1.Pod, name, script string, adjust ...func(*hwruntime.ContainerSpec)) (hwruntime.Exit, string) {
	t.Helper()
	c := s.container(t, sb, pod, name, script)
	for _, f := range adjust {
		f(c)
	}
	p := s.start(t, sb, c)
	e := s.wait(t, p, name)
	return e, s.logText(t, c.LogPath, "")
}

// logLine is one CRI-format log line: <RFC3339Nano time> <stream> <P|F> <text>.
var logLine = regexp.MustCompile(`^(\S+) (stdout|stderr) ([PF]) (.*)$`)

type line struct {
	time   time.Time
	stream string
	tag    string
	text   string
}

// readLog parses a CRI-format log file into its lines (partial lines as
// they are); malformed lines are errors.
func readLog(path string) ([]line, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []line
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		m := logLine.FindStringSubmatch(sc.Text())
		if m == nil {
			return out, fmt.Errorf("%s: not a CRI log line: %q", path, sc.Text())
		}
		ts, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			return out, fmt.Errorf("%s: time %q: %v", path, m[1], err)
		}
		out = append(out, line{ts, m[2], m[3], m[4]})
	}
	return out, sc.Err()
}

// logText waits until the log holds want (when given; the runtime may
// write it shortly after the exit) and returns its lines' text.
func (s *suite) logText(t *testing.T, path, want string) string {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		lines, err := readLog(path)
		var b strings.Builder
		for _, l := range lines {
			b.WriteString(l.text)
			if l.tag == "F" {
				b.WriteString("\n")
			}
		}
		if err == nil && strings.Contains(b.String(), want) {
			return b.String()
		}
		if time.Now().After(deadline) {
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Fatal(err)
			}
			return b.String()
		}
		time.Sleep(20 * time.Millisecond) // polling a file the runtime writes
	}
}

// testSandbox: the sandbox has an address in the pod range and the pod's
// host name, and its containers see both, with the pod's hosts and
// resolv.conf. Asking again returns the same sandbox.
func testSandbox(t *testing.T, s *suite) {
	pod := s.pod("sb-0")
	sb := s.sandbox(t, pod)
	if !sb.IP.IsValid() || !s.env.Prefix.Contains(sb.IP) {
		t.Fatalf("sandbox address %v is not in the pod range %s", sb.IP, s.env.Prefix)
	}
	if sb.Hostname != "sb-0" || sb.UID != string(pod.UID) || sb.Name != pod.Name || sb.Namespace != pod.Namespace {
		t.Errorf("sandbox %+v; want host name sb-0 and the pod's identity", sb)
	}
	again, err := s.env.Runtime.RunSandbox(s.ctx(t), pod)
	if err != nil {
		t.Fatalf("RunSandbox again: %v", err)
	}
	if again.IP != sb.IP || again.ID != sb.ID {
		t.Errorf("RunSandbox again gave %s (%q), first %s (%q)", again.IP, again.ID, sb.IP, sb.ID)
	}
	e, out := s.run(t, sb, pod, "look", `hostname; ip -4 -o addr show eth0; ip -o link show lo; cat /etc/hosts; echo ---; cat /etc/resolv.conf`)
	if e.Code != 0 {
		t.Fatalf("exit %+v; output:\n%s", e, out)
	}
	first, _, _ := strings.Cut(out, "\n")
	if first != "sb-0" {
		t.Errorf("the container's host name is %q, want sb-0", first)
	}
	if !strings.Contains(out, "inet "+sb.IP.String()+"/") {
		t.Errorf("eth0 lacks %s:\n%s", sb.IP, out)
	}
	if !regexp.MustCompile(`lo: <([^>]*,)?UP[,>]`).MatchString(out) {
		t.Errorf("the pod's lo is not up:\n%s", out)
	}
	hosts, resolv, _ := strings.Cut(out, "---\n")
	if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(sb.IP.String()) + `\s+sb-0\.suite\.default\.svc\.`).MatchString(hosts) {
		t.Errorf("/etc/hosts lacks the pod's own name:\n%s", hosts)
	}
	if s.env.ClusterDNS.IsValid() {
		for _, want := range []string{"nameserver " + s.env.ClusterDNS.String(), "search default.svc." + s.env.ClusterDomain, "ndots:5"} {
			if !strings.Contains(resolv, want) {
				t.Errorf("/etc/resolv.conf lacks %q:\n%s", want, resolv)
			}
		}
	}
}

// testLogs: stdout and stderr reach the log file at LogPath, one full
// ("F") CRI-format line each, in order per stream, with times of the run.
func testLogs(t *testing.T, s *suite) {
	pod := s.pod("logs-0")
	sb := s.sandbox(t, pod)
	begun := time.Now().Add(-time.Second)
	c := s.container(t, sb, pod, "talk", `echo hello; echo oops >&2; echo again; echo "$(seq 1 5000 | tr -d '\n')"; echo done`)
	p := s.start(t, sb, c)
	if e := s.wait(t, p, "talk"); e.Code != 0 {
		t.Fatalf("exit %+v", e)
	}
	s.logText(t, c.LogPath, "done")
	lines, err := readLog(c.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]string{}
	for i, l := range lines {
		if l.tag == "P" {
			// A long line may be split into partial lines; they join up.
			if i+1 >= len(lines) || lines[i+1].stream != l.stream {
				t.Errorf("line %d is partial and the next line does not continue it", i)
			}
			lines[i+1].text = l.text + lines[i+1].text
			continue
		}
		got[l.stream] = append(got[l.stream], l.text)
		if l.time.Before(begun) || l.time.After(time.Now().Add(time.Second)) {
			t.Errorf("line %d has time %s, outside the run", i, l.time)
		}
	}
	var long strings.Builder
	for i := 1; i <= 5000; i++ {
		long.WriteString(strconv.Itoa(i))
	}
	if want := []string{"hello", "again", long.String(), "done"}; !slices.Equal(got["stdout"], want) {
		t.Errorf("stdout lines %.200q, want %.200q\nlog:\n%.2000s", got["stdout"], want, mustRead(t, c.LogPath))
	}
	if want := []string{"oops"}; !slices.Equal(got["stderr"], want) {
		t.Errorf("stderr lines %q, want %q\nlog:\n%.2000s", got["stderr"], want, mustRead(t, c.LogPath))
	}
}

// testLogsUnterminatedLine: output that ends without a newline is logged
// as a partial ("P") line, as containerd writes it; the agent's log reader
// then gives it back without a newline that was never written.
func testLogsUnterminatedLine(t *testing.T, s *suite) {
	pod := s.pod("logs-1")
	sb := s.sandbox(t, pod)
	c := s.container(t, sb, pod, "talk", `echo hello; printf 'no newline'`)
	p := s.start(t, sb, c)
	if e := s.wait(t, p, "talk"); e.Code != 0 {
		t.Fatalf("exit %+v", e)
	}
	s.logText(t, c.LogPath, "no newline")
	lines, err := readLog(c.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[0].text != "hello" || lines[0].tag != "F" || lines[1].text != "no newline" || lines[1].tag != "P" {
		t.Errorf("log lines %+v; want \"F hello\", \"P no newline\"\nlog:\n%s", lines, mustRead(t, c.LogPath))
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// testExitCode: Done closes when the command exits, and Exit says its code.
func testExitCode(t *testing.T, s *suite) {
	pod := s.pod("exit-0")
	sb := s.sandbox(t, pod)
	for _, code := range []int32{3, 0} {
		e, out := s.run(t, sb, pod, fmt.Sprintf("exit%d", code), fmt.Sprintf("exit %d", code))
		if e.Code != code || e.Signal != 0 {
			t.Errorf("exit %d: got %+v (output %q)", code, e, out)
		}
		if e.Finished.IsZero() || time.Since(e.Finished) > time.Minute {
			t.Errorf("exit %d: finished at %s", code, e.Finished)
		}
	}
}

// testExec: a command run in a running container sees the container (its
// file system, host name) and reports its exit code and output; in an
// ended container it fails.
func testExec(t *testing.T, s *suite) {
	pod := s.pod("exec-0")
	sb := s.sandbox(t, pod)
	state := t.TempDir()
	os.Chmod(state, 0o777)
	// Written whole, then renamed: an exec between the shell's open (which
	// makes the file empty) and its write would read nothing.
	c := s.container(t, sb, pod, "main", `echo ready > /state/mark.part; mv /state/mark.part /state/mark; exec sleep 1000`)
	c.Mounts = []hwruntime.Mount{{Source: state, Target: "/state"}}
	p := s.start(t, sb, c)
	ctx := s.ctx(t)
	var res hwruntime.ExecResult
	var err error
	for deadline := time.Now().Add(s.env.Timeout); ; {
		res, err = s.env.Runtime.Exec(ctx, p, c, []string{"sh", "-c", "cat /state/mark && hostname && echo to-stderr >&2 && exit 7"})
		if err != nil || res.ExitCode != 1 || time.Now().After(deadline) {
			break // 1: /state/mark is not written yet
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if res.ExitCode != 7 {
		t.Errorf("exec exit code %d, want 7 (output %q)", res.ExitCode, res.Output)
	}
	for _, want := range []string{"ready\n", "exec-0\n", "to-stderr\n"} {
		if !strings.Contains(string(res.Output), want) {
			t.Errorf("exec output %q lacks %q", res.Output, want)
		}
	}
	res, err = s.env.Runtime.Exec(ctx, p, c, []string{"true"})
	if err != nil || res.ExitCode != 0 {
		t.Errorf("exec true: %+v, %v", res, err)
	}
	p.Signal(syscall.SIGKILL)
	s.wait(t, p, "main")
	if res, err := s.env.Runtime.Exec(ctx, p, c, []string{"true"}); err == nil && res.ExitCode == 0 {
		t.Errorf("exec in an ended container succeeded: %+v", res)
	}
}

// testSIGTERM: SIGTERM stops a container that handles it (a shell is PID 1
// in a CRI container, where an unhandled SIGTERM is ignored), and its
// handler runs.
func testSIGTERM(t *testing.T, s *suite) {
	pod := s.pod("term-0")
	sb := s.sandbox(t, pod)
	c := s.container(t, sb, pod, "sleeper", `trap 'echo got TERM; exit 143' TERM; echo waiting; sleep 1000 & wait`)
	p := s.start(t, sb, c)
	s.logText(t, c.LogPath, "waiting") // the trap is set
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	if e := s.wait(t, p, "after SIGTERM"); e.Code != 143 {
		t.Errorf("exit after SIGTERM: %+v; want code 143", e)
	}
	if out := s.logText(t, c.LogPath, "got TERM"); !strings.Contains(out, "got TERM") {
		t.Errorf("the TERM handler did not run; log:\n%s", out)
	}
}

// testSIGKILL: SIGKILL ends any container at once, 128+9.
func testSIGKILL(t *testing.T, s *suite) {
	pod := s.pod("kill-0")
	sb := s.sandbox(t, pod)
	c := s.container(t, sb, pod, "stubborn", `trap '' TERM; echo waiting; while :; do sleep 1; done`)
	p := s.start(t, sb, c)
	s.logText(t, c.LogPath, "waiting")
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("Signal: %v", err)
	}
	if e := s.wait(t, p, "after SIGKILL"); e.Code != 137 {
		t.Errorf("exit after SIGKILL: %+v; want code 137", e)
	}
}

// testEnvAndWorkingDir: the spec's environment and working directory.
func testEnvAndWorkingDir(t *testing.T, s *suite) {
	pod := s.pod("env-0")
	sb := s.sandbox(t, pod)
	e, out := s.run(t, sb, pod, "env", `echo "greeting=$GREETING"; echo "empty=[$EMPTY]"; echo "pwd=$(pwd)"`, func(c *hwruntime.ContainerSpec) {
		c.Env = []string{"GREETING=hello there", "EMPTY="}
		c.WorkingDir = "/tmp"
		c.Container.WorkingDir = "/tmp"
	})
	if e.Code != 0 {
		t.Fatalf("exit %+v; output:\n%s", e, out)
	}
	for _, want := range []string{"greeting=hello there\n", "empty=[]\n", "pwd=/tmp\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// testMounts: a host directory mounted at /data is read and written
// through; a read-only mount cannot be written.
func testMounts(t *testing.T, s *suite) {
	pod := s.pod("mounts-0")
	sb := s.sandbox(t, pod)
	data, ro := t.TempDir(), t.TempDir()
	for _, d := range []string{data, ro} {
		os.Chmod(d, 0o777)
	}
	if err := os.WriteFile(filepath.Join(data, "hello"), []byte("from the host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ro, "conf"), []byte("read me\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	e, out := s.run(t, sb, pod, "mounts", `cat /data/hello /config/conf; echo written > /data/out; touch /config/x 2>/dev/null && echo ro-broken || echo ro-ok`,
		func(c *hwruntime.ContainerSpec) {
			c.Mounts = []hwruntime.Mount{{Source: data, Target: "/data"}, {Source: ro, Target: "/config", ReadOnly: true}}
		})
	if e.Code != 0 {
		t.Fatalf("exit %+v; output:\n%s", e, out)
	}
	for _, want := range []string{"from the host\n", "read me\n", "ro-ok\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if got, err := os.ReadFile(filepath.Join(data, "out")); err != nil || string(got) != "written\n" {
		t.Errorf("the container's write to /data/out: %q, %v", got, err)
	}
	if _, err := os.Stat(filepath.Join(ro, "x")); err == nil {
		t.Error("the container wrote to a read-only mount")
	}
}

// testRemoveSandbox: after the final removal nothing of the pod's network
// is left (namespace, veth, address), and removing again is no error.
func testRemoveSandbox(t *testing.T, s *suite) {
	pod := s.pod("rm-0")
	sb, err := s.env.Runtime.RunSandbox(s.ctx(t), pod)
	if err != nil {
		t.Fatalf("RunSandbox: %v", err)
	}
	var leftovers func() []string
	if s.env.Leftovers != nil {
		leftovers = s.env.Leftovers(t, sb)
	}
	removed := false
	t.Cleanup(func() {
		if !removed {
			s.env.Runtime.RemoveSandbox(context.Background(), string(pod.UID), true)
		}
	})
	c := s.container(t, sb, pod, "main", "exec sleep 1000")
	p := s.start(t, sb, c)
	p.Signal(syscall.SIGKILL)
	s.wait(t, p, "main")
	if err := s.env.Runtime.RemoveSandbox(s.ctx(t), string(pod.UID), true); err != nil {
		t.Fatalf("RemoveSandbox: %v", err)
	}
	removed = true
	if leftovers != nil {
		if left := leftovers(); len(left) > 0 {
			t.Errorf("left after the final removal: %s", strings.Join(left, "; "))
		}
	}
	if err := s.env.Runtime.RemoveSandbox(s.ctx(t), string(pod.UID), true); err != nil {
		t.Errorf("RemoveSandbox again: %v", err)
	}
	// The pod can come back (a new sandbox under the same UID).
	sb2 := s.sandbox(t, pod)
	if !s.env.Prefix.Contains(sb2.IP) {
		t.Errorf("the new sandbox's address %v is not in the pod range", sb2.IP)
	}
}
