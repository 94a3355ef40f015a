// Package e2e drives the real headway binary with real kubectl.
package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// headwayBin is the binary under test: $HEADWAY_BIN (make test sets it),
// else one built once for this run.
var headwayBin string

func TestMain(m *testing.M) {
	code := func() int {
		headwayBin = os.Getenv("HEADWAY_BIN")
		if headwayBin == "" {
			dir, err := os.MkdirTemp("", "headway-e2e-bin")
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			defer os.RemoveAll(dir)
			headwayBin = filepath.Join(dir, "headway")
			_, file, _, _ := runtime.Caller(0)
			root := filepath.Join(filepath.Dir(file), "..", "..")
			// As make build does: the container init first, then headway
			// stamped with its digest.
			initCmd := exec.Command("make", "-s", "-C", root, "init")
			initCmd.Stdout, initCmd.Stderr = os.Stderr, os.Stderr
			if err := initCmd.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "building headway-init:", err)
				return 1
			}
			ldflags, _ := exec.Command("make", "-s", "-C", root, "ldflags").Output()
			tags, _ := exec.Command("make", "-s", "-C", root, "tags").Output()
			cmd := exec.Command("go", "build", "-tags", strings.TrimSpace(string(tags)), "-ldflags", strings.TrimSpace(string(ldflags)), "-o", headwayBin, "./cmd/headway")
			cmd.Dir = root
			cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
			if err := cmd.Run(); err != nil {
				fmt.Fprintln(os.Stderr, "building headway:", err)
				return 1
			}
		}
		return m.Run()
	}()
	os.Exit(code)
}

// server is a running `headway server` process.
type server struct {
	t       *testing.T
	dataDir string
	addr    string
	cmd     *exec.Cmd
	log     *lockedBuffer
	done    chan struct{}
}

// lockedBuffer is a process's output, readable while it runs.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServer starts headway server on dataDir and waits for /readyz.
func startServer(t *testing.T, dataDir, addr string, extra ...string) *server {
	t.Helper()
	args := append([]string{"server", "--data-dir", dataDir, "--listen", addr, "--runtime", "none"}, extra...)
	cmd := exec.Command(headwayBin, args...)
	var log lockedBuffer
	cmd.Stdout, cmd.Stderr = &log, &log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{t: t, dataDir: dataDir, addr: addr, cmd: cmd, log: &log, done: make(chan struct{})}
	go func() { cmd.Wait(); close(s.done) }()
	t.Cleanup(s.stop)
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get("https://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-s.done:
			t.Fatalf("headway server exited before it was ready:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("headway server not ready after 30s:\n%s", log.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("headway server ready in %v (start to /readyz)", time.Since(start).Round(time.Millisecond))
	return s
}

// stop ends the server with SIGTERM (SIGKILL after 10 s) and waits.
func (s *server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		s.t.Errorf("headway server ignored SIGTERM for 10s; killing it")
		s.cmd.Process.Kill()
		<-s.done
	}
	if s.t.Failed() {
		s.t.Logf("server log:\n%s", s.log.String())
	}
}

func (s *server) kubeconfig() string { return filepath.Join(s.dataDir, "kubeconfig") }

// kubectl is one kubectl binary: the embedded one or /usr/bin/kubectl.
type kubectl struct {
	name string
	argv []string
}

func kubectls(t *testing.T) []kubectl {
	ks := []kubectl{{name: "embedded", argv: []string{headwayBin, "kubectl"}}}
	if _, err := os.Stat("/usr/bin/kubectl"); err == nil {
		ks = append(ks, kubectl{name: "system", argv: []string{"/usr/bin/kubectl"}})
	} else {
		t.Log("/usr/bin/kubectl not installed: testing the embedded kubectl only")
	}
	return ks
}

// run runs kubectl against s and returns its combined output.
func (k kubectl) run(t *testing.T, s *server, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	argv := append(append([]string{}, k.argv...), append([]string{"--kubeconfig", s.kubeconfig()}, args...)...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "KUBECONFIG=")
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (k kubectl) must(t *testing.T, s *server, args ...string) string {
	t.Helper()
	out, err := k.run(t, s, "", args...)
	if err != nil {
		t.Fatalf("%s kubectl %s: %v\n%s", k.name, strings.Join(args, " "), err, out)
	}
	return out
}

func repoFile(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", name)
}

// waitABit paces a polling loop (a condition with a deadline, not a sleep
// standing in for synchronisation).
func waitABit() { time.Sleep(25 * time.Millisecond) }
