package e2e

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
)

// terminal is a command running on a pseudo-terminal, as a person at a
// keyboard runs it.
type terminal struct {
	t    *testing.T
	cmd  *exec.Cmd
	tty  *os.File
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func startTerminal(t *testing.T, argv ...string) *terminal {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 160})
	if err != nil {
		t.Fatal(err)
	}
	term := &terminal{t: t, cmd: cmd, tty: tty, done: make(chan struct{})}
	read := make(chan struct{})
	go func() {
		defer close(read)
		buf := make([]byte, 4096)
		for {
			n, err := tty.Read(buf)
			term.mu.Lock()
			term.out.Write(buf[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() {
		cmd.Wait()
		// Everything the command wrote is read before done (a pty reads
		// EIO once its last writer has gone).
		select {
		case <-read:
		case <-time.After(5 * time.Second):
		}
		close(term.done)
	}()
	t.Cleanup(func() {
		select {
		case <-term.done:
		default:
			cmd.Process.Kill()
			<-term.done
		}
		tty.Close()
	})
	return term
}

func (term *terminal) screen() string {
	term.mu.Lock()
	defer term.mu.Unlock()
	return term.out.String()
}

// expect waits for the output to match re.
func (term *terminal) expect(re *regexp.Regexp, timeout time.Duration) string {
	term.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if s := term.screen(); re.MatchString(s) {
			return s
		}
		if time.Now().After(deadline) {
			term.t.Fatalf("the terminal never showed %s; it shows:\n%s", re, term.screen())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// expectPrompt waits for the shell's prompt after `kubectl run -it`, doing
// what kubectl tells a user to: when the shell printed its prompt before
// the terminal was attached ("If you don't see a command prompt, try
// pressing enter."), press enter (again every few seconds).
func (term *terminal) expectPrompt(timeout time.Duration) string {
	term.t.Helper()
	prompt := regexp.MustCompile(`/ # `)
	hint := "If you don't see a command prompt, try pressing enter."
	deadline := time.Now().Add(timeout)
	var hinted, pressed time.Time
	for {
		s := term.screen()
		if prompt.MatchString(s) {
			return s
		}
		now := time.Now()
		if hinted.IsZero() && strings.Contains(s, hint) {
			hinted = now
		}
		if !hinted.IsZero() && now.Sub(hinted) > 2*time.Second && now.Sub(pressed) > 3*time.Second {
			term.tty.Write([]byte("\n"))
			pressed = now
		}
		if now.After(deadline) {
			term.t.Fatalf("the terminal never showed %s; it shows:\n%s", prompt, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (term *terminal) typeLine(s string) {
	term.t.Helper()
	if _, err := term.tty.Write([]byte(s + "\n")); err != nil {
		term.t.Fatal(err)
	}
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: pods run in network namespaces on a bridge (run the suite as root, as CI does)")
	}
	for _, tool := range []string{"ip", "busybox"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (apt-get install iproute2 busybox; .ci/run installs them)", tool)
		}
	}
}

// waitKubectl polls kubectl until its output matches re.
func (s *netnsServer) waitKubectl(t *testing.T, re *regexp.Regexp, timeout time.Duration, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var out string
	for {
		out, _ = s.kubectl("", args...)
		if re.MatchString(out) {
			return out
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubectl %s never matched %s; last output:\n%s", strings.Join(args, " "), re, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *netnsServer) mustKubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.kubectl("", args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// dnsA asks the cluster DNS for name's A records (dig inside the namespace).
func (s *netnsServer) dnsA(t *testing.T, name string) []string {
	t.Helper()
	out, err := s.exec("dig", "+short", "@127.0.0.1", "-p", "10053", name)
	if err != nil {
		t.Fatalf("dig %s: %v %s", name, err, out)
	}
	return strings.Fields(out)
}

// TestSeedScenario is the walkthrough the seed documents describe, as a
// newcomer types it: the headless Service and StatefulSet, pods with their
// own addresses, a busybox shell that resolves and reaches them by name,
// scaling, a pod coming back under its name, and the verbatim manifest
// explaining why its image-only pods cannot run under the process runtime.
func TestSeedScenario(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("dig"); err != nil {
		t.Skip("needs dig (apt-get install dnsutils)")
	}
	s := startNetnsServer(t)
	out := s.mustKubectl(t, "create", "-f", repoFile("examples/headless-process.yaml"))
	if !strings.Contains(out, "service/nginx-headless created") || !strings.Contains(out, "statefulset.apps/web created") {
		t.Fatalf("create:\n%s", out)
	}
	ready := regexp.MustCompile(`(?m)^web-0\s+1/1\s+Running.*\n^web-1\s+1/1\s+Running.*\n^web-2\s+1/1\s+Running`)
	start := time.Now()
	out = s.waitKubectl(t, ready, 60*time.Second, "get", "pods", "-l", "app=nginx", "-o", "wide")
	t.Logf("three pods Ready %v after create:\n%s", time.Since(start).Round(time.Millisecond), out)
	ips := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^web-\d\s+1/1\s+Running\s+\d+\s+\S+\s+(198\.18\.\d+\.\d+)\s+(\S+)`).FindAllStringSubmatch(out, -1) {
		ips[m[1]] = true
		if m[2] == "<none>" {
			t.Fatalf("a pod has no node:\n%s", out)
		}
	}
	if len(ips) != 3 {
		t.Fatalf("want three distinct pod IPs in 198.18.0.0/16:\n%s", out)
	}
	out = s.mustKubectl(t, "get", "svc", "nginx-headless")
	if !regexp.MustCompile(`(?m)^nginx-headless\s+ClusterIP\s+None\s+`).MatchString(out) {
		t.Fatalf("get svc:\n%s", out)
	}

	// The busybox shell of the walkthrough, on a terminal, with the
	// embedded kubectl and, when installed, the system's (another version).
	busyboxSession(t, s, headwayBin, "kubectl")
	if _, err := os.Stat("/usr/bin/kubectl"); err == nil {
		busyboxSession(t, s, "/usr/bin/kubectl")
	} else {
		t.Log("/usr/bin/kubectl is not installed: the walkthrough ran with the embedded kubectl only")
	}

	// Scale to 5: web-3 and web-4 join DNS; to 2: they and web-2 leave.
	s.mustKubectl(t, "scale", "statefulset", "web", "--replicas=5")
	waitDNS := func(name string, want int) {
		t.Helper()
		deadline := time.Now().Add(90 * time.Second)
		for {
			got := s.dnsA(t, name)
			if len(got) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s has %d addresses, want %d: %v", name, len(got), want, got)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitDNS("nginx-headless.default.svc.cluster.local", 5)
	waitDNS("web-4.nginx-headless.default.svc.cluster.local", 1)
	s.mustKubectl(t, "scale", "statefulset", "web", "--replicas=2")
	waitDNS("nginx-headless.default.svc.cluster.local", 2)
	waitDNS("web-3.nginx-headless.default.svc.cluster.local", 0)

	// Delete web-1: it comes back with the same name and DNS record.
	s.mustKubectl(t, "delete", "pod", "web-1")
	s.waitKubectl(t, regexp.MustCompile(`(?m)^web-1\s+1/1\s+Running`), 90*time.Second, "get", "pod", "web-1")
	waitDNS("web-1.nginx-headless.default.svc.cluster.local", 1)

	// The seed manifest verbatim: its pods say why they cannot run here.
	s.mustKubectl(t, "create", "namespace", "verbatim")
	s.mustKubectl(t, "-n", "verbatim", "create", "-f", repoFile("examples/headless.yaml"))
	out = s.waitKubectl(t, regexp.MustCompile(`has no command`), 60*time.Second, "-n", "verbatim", "get", "pod", "web-0", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.message}")
	if !strings.Contains(out, "command") || !strings.Contains(out, "CRI") {
		t.Fatalf("the image-only pod's message does not tell the user what to do: %s", out)
	}
}

// TestStreaming covers kubectl exec, logs, port-forward and cp against real
// pods: exit codes, stdin, large output and many concurrent execs.
func TestStreaming(t *testing.T) {
	needRoot(t)
	s := startNetnsServer(t)
	s.mustKubectl(t, "create", "-f", repoFile("examples/headless-process.yaml"))
	s.waitKubectl(t, regexp.MustCompile(`(?m)^web-0\s+1/1\s+Running`), 60*time.Second, "get", "pod", "web-0")

	if out := s.mustKubectl(t, "exec", "web-0", "--", "hostname"); strings.TrimSpace(out) != "web-0" {
		t.Fatalf("hostname in web-0: %q", out)
	}
	out, err := s.kubectl("", "exec", "web-0", "--", "sh", "-c", "exit 3")
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
		t.Fatalf("exit code: want 3, got %v (%s)", err, out)
	}
	if out, err := s.kubectl("hi\n", "exec", "-i", "web-0", "--", "cat"); err != nil || out != "hi\n" {
		t.Fatalf("stdin through exec: %q %v", out, err)
	}
	// 100 MB through exec, counted on the other side.
	cmd := exec.Command("ip", "netns", "exec", s.ns, headwayBin, "kubectl", "--kubeconfig", filepath.Join(s.dataDir, "kubeconfig"),
		"exec", "web-0", "--", "sh", "-c", "head -c 104857600 /dev/zero")
	pipe, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var n int64
	buf := make([]byte, 1<<20)
	for {
		m, err := pipe.Read(buf)
		n += int64(m)
		if err != nil {
			break
		}
	}
	if err := cmd.Wait(); err != nil || n != 104857600 {
		t.Fatalf("100 MB through exec: got %d bytes, err %v", n, err)
	}
	// 50 concurrent execs, each with its own answer.
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := s.kubectl("", "exec", "web-0", "--", "echo", fmt.Sprint(i))
			if err != nil || strings.TrimSpace(out) != fmt.Sprint(i) {
				errs <- fmt.Errorf("exec %d: %q %v", i, out, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// kubectl run --restart=Never then logs.
	s.mustKubectl(t, "run", "logger", "--restart=Never", "--image=busybox", "--", "sh", "-c", "echo one; echo two >&2; sleep 1; echo three")
	s.waitKubectl(t, regexp.MustCompile(`Completed`), 60*time.Second, "get", "pod", "logger")
	if out := s.mustKubectl(t, "logs", "logger"); !strings.Contains(out, "one\n") || !strings.Contains(out, "two\n") || !strings.Contains(out, "three\n") {
		t.Fatalf("logs: %q", out)
	}
	if out := s.mustKubectl(t, "logs", "logger", "--tail=1"); out != "three\n" {
		t.Fatalf("logs --tail=1: %q", out)
	}
	if out := s.mustKubectl(t, "logs", "logger", "--timestamps", "--tail=1"); !regexp.MustCompile(`^\d{4}-\d\d-\d\dT\S+Z three\n$`).MatchString(out) {
		t.Fatalf("logs --timestamps: %q", out)
	}
	// --follow streams until the container ends; --previous shows the last
	// terminated instance.
	s.mustKubectl(t, "run", "ticker", "--restart=Never", "--image=busybox", "--", "sh", "-c", "for i in 1 2 3; do echo tick $i; sleep 0.3; done")
	s.waitKubectl(t, regexp.MustCompile(`Running|Completed`), 60*time.Second, "get", "pod", "ticker")
	if out := s.mustKubectl(t, "logs", "-f", "ticker"); !strings.Contains(out, "tick 1\ntick 2\ntick 3\n") {
		t.Fatalf("logs -f: %q", out)
	}
	s.mustKubectl(t, "run", "crasher", "--image=busybox", "--", "sh", "-c", "echo run $(date +%s%N); exit 1")
	s.waitKubectl(t, regexp.MustCompile(`(?m)^crasher\s+\S+\s+\S+\s+[1-9]`), 60*time.Second, "get", "pod", "crasher")
	if out := s.mustKubectl(t, "logs", "crasher", "--previous"); !strings.HasPrefix(out, "run ") {
		t.Fatalf("logs --previous: %q", out)
	}
	// kubectl cp uses exec with tar.
	if _, err := exec.LookPath("tar"); err == nil {
		src := filepath.Join(t.TempDir(), "hello.txt")
		os.WriteFile(src, []byte("copied\n"), 0o644)
		s.mustKubectl(t, "cp", src, "web-0:/www/hello.txt")
		if out := s.mustKubectl(t, "exec", "web-0", "--", "cat", "/www/hello.txt"); out != "copied\n" {
			t.Fatalf("kubectl cp: %q", out)
		}
	}
	// port-forward from the namespace's loopback to web-0:80.
	pf := exec.Command("ip", "netns", "exec", s.ns, headwayBin, "kubectl", "--kubeconfig", filepath.Join(s.dataDir, "kubeconfig"),
		"port-forward", "pod/web-0", "18080:80")
	var pfOut bytes.Buffer
	pf.Stdout, pf.Stderr = &pfOut, &pfOut
	if err := pf.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { pf.Process.Kill(); pf.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := s.exec("busybox", "wget", "-qO-", "http://127.0.0.1:18080/")
		if err == nil && strings.Contains(out, "hello from web-0") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port-forward never reached web-0: %s %v", out, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// busyboxSession types the walkthrough's commands into
// `kubectl run -it --rm --image=busybox:1.28 test-pod -- sh`.
func busyboxSession(t *testing.T, s *netnsServer, kubectl ...string) {
	t.Helper()
	argv := append([]string{"ip", "netns", "exec", s.ns}, kubectl...)
	argv = append(argv, "--kubeconfig", filepath.Join(s.dataDir, "kubeconfig"),
		"run", "-it", "--rm", "--image=busybox:1.28", "test-pod", "--", "sh")
	term := startTerminal(t, argv...)
	term.expectPrompt(60 * time.Second)
	term.typeLine("nslookup nginx-headless")
	screen := term.expect(regexp.MustCompile(`Address 3: \S+ web-\d\.nginx-headless\.default\.svc\.cluster\.local`), 20*time.Second)
	for i := 0; i < 3; i++ {
		if !regexp.MustCompile(fmt.Sprintf(`Address \d: 198\.18\.\d+\.\d+ web-%d\.nginx-headless\.default\.svc\.cluster\.local`, i)).MatchString(screen) {
			t.Fatalf("nslookup does not list web-%d by name:\n%s", i, screen)
		}
	}
	term.typeLine("wget -qO- web-0.nginx-headless")
	term.expect(regexp.MustCompile(`hello from web-0`), 20*time.Second)
	term.typeLine("exit")
	select {
	case <-term.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("kubectl run did not end after exit:\n%s", term.screen())
	}
	if !strings.Contains(term.screen(), `pod "test-pod" deleted`) {
		t.Fatalf("kubectl run --rm did not delete the pod:\n%s", term.screen())
	}
	s.waitKubectl(t, regexp.MustCompile(`NotFound`), 90*time.Second, "get", "pod", "test-pod")

	t.Logf("walkthrough with %s:\n%s", strings.Join(kubectl, " "), term.screen())
}
