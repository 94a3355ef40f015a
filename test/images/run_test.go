package images

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
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

	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/miekg/dns"
	"golang.org/x/sys/unix"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// These tests run the images' filesystems the way a container runtime would, without one:
// extracted to a directory, chrooted into, in a fresh PID and mount namespace (a /proc of
// its own, the host's /dev bind-mounted for /dev/stdout) and a fresh network namespace that
// holds only a loopback interface, the test's DNS server on 127.0.0.1:53 and the test's web
// server. Everything dies with the namespaces; nothing touches the host's network.

// extract writes img's flattened filesystem under dir.
func extract(t *testing.T, img v1.Image, dir string) {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	type dirMode struct {
		path string
		mode os.FileMode
	}
	var dirs []dirMode
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Clean("/" + h.Name)
		if name == "/" {
			continue
		}
		p := filepath.Join(dir, name)
		mode := os.FileMode(h.Mode & 0o777)
		if h.Mode&0o1000 != 0 {
			mode |= os.ModeSticky
		}
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
			dirs = append(dirs, dirMode{p, mode})
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(p, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.OpenFile(p, os.O_WRONLY|os.O_TRUNC, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(p, mode); err != nil {
				t.Fatal(err)
			}
		case tar.TypeSymlink:
			if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(h.Linkname, p); err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatalf("%s: unexpected tar entry type %q", h.Name, h.Typeflag)
		}
	}
	for _, d := range dirs {
		if err := os.Chmod(d.path, d.mode); err != nil {
			t.Fatal(err)
		}
	}
}

// netnsLab is a network namespace with its loopback up, owned by one OS thread: sockets
// opened and processes started through do live in it. The thread exits (and the namespace
// goes with its last socket and process) when the test ends.
type netnsLab struct {
	calls chan func()
	done  chan struct{}
}

func newNetnsLab(t *testing.T) *netnsLab {
	t.Helper()
	l := &netnsLab{calls: make(chan func()), done: make(chan struct{})}
	ready := make(chan error, 1)
	go func() {
		defer close(l.done)
		// Never unlocked: the runtime ends the thread with this goroutine, and with it the
		// thread's network namespace and the parent-death signal of every child it started.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			ready <- fmt.Errorf("unshare(CLONE_NEWNET): %w", err)
			return
		}
		if err := loopbackUp(); err != nil {
			ready <- err
			return
		}
		ready <- nil
		for f := range l.calls {
			f()
		}
	}()
	if err := <-ready; err != nil {
		t.Skipf("no network namespace for the run tests: %v", err)
	}
	t.Cleanup(func() {
		close(l.calls)
		<-l.done
	})
	return l
}

func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCGIFFLAGS lo: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("SIOCSIFFLAGS lo: %w", err)
	}
	return nil
}

// do runs f on the namespace's thread.
func (l *netnsLab) do(f func()) {
	ran := make(chan struct{})
	l.calls <- func() { defer close(ran); f() }
	<-ran
}

func (l *netnsLab) listen(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	l.do(func() { ln, err = net.Listen(network, addr) })
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

func (l *netnsLab) listenPacket(t *testing.T, network, addr string) net.PacketConn {
	t.Helper()
	var pc net.PacketConn
	var err error
	l.do(func() { pc, err = net.ListenPacket(network, addr) })
	if err != nil {
		t.Fatal(err)
	}
	return pc
}

// httpClient dials inside the namespace.
func (l *netnsLab) httpClient() *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				var c net.Conn
				var err error
				l.do(func() { c, err = (&net.Dialer{Timeout: 2 * time.Second}).DialContext(ctx, network, addr) })
				return c, err
			},
		},
	}
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// chrootScript runs as the first process of new PID and mount namespaces: it mounts a /proc
// and the host's /dev in the root directory $0 and execs the command there.
const chrootScript = `set -e
mount -t proc proc "$0/proc"
mount --bind /dev "$0/dev"
exec chroot "$0" "$@"`

// proc is a process started in a netnsLab.
type proc struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once cmd.Wait has returned
	err    error         // cmd.Wait's result, set before exited is closed
}

// wait waits for the process to exit, at most d; false if it is still running.
func (p *proc) wait(d time.Duration) bool {
	select {
	case <-p.exited:
		return true
	case <-time.After(d):
		return false
	}
}

// start starts args in root, in the namespace, as PID 1 of a new PID namespace (so ending it
// ends everything it started) with a private mount namespace (so its mounts vanish with it).
// The process is killed when the test ends, if it is still running.
func (l *netnsLab) start(t *testing.T, root string, stdout, stderr io.Writer, args ...string) *proc {
	t.Helper()
	cmd := exec.Command("/bin/sh", append([]string{"-c", chrootScript, root}, args...)...)
	cmd.Env = []string{"PATH=" + defaultPath, "HOME=/root"}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:   syscall.CLONE_NEWPID,
		Unshareflags: syscall.CLONE_NEWNS, // Go makes / private (MS_REC|MS_PRIVATE) first
		Setpgid:      true,
		Pdeathsig:    syscall.SIGKILL,
	}
	var err error
	l.do(func() { err = cmd.Start() })
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		if !p.wait(0) {
			// PID 1 of the namespace: killing it kills every process in the namespace.
			_ = cmd.Process.Kill()
			<-p.exited
		}
	})
	return p
}

// run runs args in root and returns stdout, stderr and the error, within a deadline.
func (l *netnsLab) run(t *testing.T, root string, args ...string) (string, string, error) {
	t.Helper()
	var stdout, stderr syncBuffer
	p := l.start(t, root, &stdout, &stderr, args...)
	if !p.wait(30 * time.Second) {
		_ = p.cmd.Process.Kill()
		<-p.exited
		return stdout.String(), stderr.String(), fmt.Errorf("%q: no exit within 30s", args)
	}
	return stdout.String(), stderr.String(), p.err
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("running an image's filesystem needs root (chroot, mount, PID and network namespaces)")
	}
	for _, tool := range []string{"/bin/sh", "mount", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("running an image's filesystem needs %s on the host: %v", tool, err)
		}
	}
}

// dnsServer answers A queries for names from 127.0.0.1:53 in the namespace; AAAA queries
// for those names get no data, anything else NXDOMAIN.
func dnsServer(t *testing.T, l *netnsLab, names map[string]string) {
	t.Helper()
	h := dns.HandlerFunc(func(w dns.ResponseWriter, q *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(q)
		m.Authoritative = true
		if len(q.Question) != 1 {
			m.Rcode = dns.RcodeFormatError
		} else if ip, ok := names[strings.ToLower(q.Question[0].Name)]; !ok {
			m.Rcode = dns.RcodeNameError
		} else if q.Question[0].Qtype == dns.TypeA {
			m.Answer = append(m.Answer, &dns.A{
				Hdr: dns.RR_Header{Name: q.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5},
				A:   net.ParseIP(ip),
			})
		}
		_ = w.WriteMsg(m)
	})
	udp := &dns.Server{PacketConn: l.listenPacket(t, "udp", "127.0.0.1:53"), Handler: h}
	tcp := &dns.Server{Listener: l.listen(t, "tcp", "127.0.0.1:53"), Handler: h}
	for _, s := range []*dns.Server{udp, tcp} {
		started := make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		served := make(chan error, 1)
		go func() { served <- s.ActivateAndServe() }()
		select {
		case <-started:
		case err := <-served:
			t.Fatalf("dns server: %v", err)
		}
		t.Cleanup(func() {
			_ = s.Shutdown()
			<-served
		})
	}
}

func TestRunBusybox(t *testing.T) {
	skipIfMissing(t)
	needRoot(t)
	img, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	lab := newNetnsLab(t)
	root := t.TempDir()
	extract(t, img, root)
	// What the runtime provides: the pod's resolv.conf and hosts.
	if err := os.WriteFile(filepath.Join(root, "etc/resolv.conf"), []byte("search headway.test\nnameserver 127.0.0.1\noptions ndots:1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "etc/hosts"), []byte("127.0.0.1\tlocalhost\n127.0.0.1\tfiles-only.headway.test files-only\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	dnsServer(t, lab, map[string]string{"web.headway.test.": "127.0.0.1"})
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "hello from %s\n", r.Host)
	})}
	ln := lab.listen(t, "tcp", "127.0.0.1:80")
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		_ = srv.Close()
		<-served
	})

	for _, c := range []struct {
		args []string
		want []string // substrings of stdout
	}{
		// getaddrinfo through /etc/nsswitch.conf and /etc/resolv.conf: a full name, a short one
		// completed from the search list.
		{[]string{"wget", "-qO-", "http://web.headway.test/"}, []string{"hello from web.headway.test\n"}},
		{[]string{"wget", "-qO-", "http://web/"}, []string{"hello from web\n"}},
		// nslookup, with the server from resolv.conf and named.
		{[]string{"nslookup", "web.headway.test"}, []string{"Name:\tweb.headway.test\nAddress: 127.0.0.1\n"}},
		{[]string{"nslookup", "web.headway.test", "127.0.0.1"}, []string{"Server:\t\t127.0.0.1\n", "Address: 127.0.0.1\n"}},
		// /etc/hosts comes first ("hosts: files dns").
		{[]string{"wget", "-qO-", "http://files-only/"}, []string{"hello from files-only\n"}},
		// The process table of the container's own PID namespace.
		{[]string{"ps"}, []string{"PID", "    1 root "}},
		{[]string{"id"}, []string{"uid=0(root) gid=0(root)"}},
		{[]string{"sh", "-c", "echo $((6*7)) && ls /bin/sh && cat /etc/passwd | head -1"}, []string{"42\n/bin/sh\nroot:x:0:0:root:/root:/bin/sh\n"}},
	} {
		stdout, stderr, err := lab.run(t, root, c.args...)
		if err != nil {
			t.Errorf("%q: %v\nstdout: %s\nstderr: %s", c.args, err, stdout, stderr)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(stdout, w) {
				t.Errorf("%q: stdout %q, want it to contain %q (stderr %q)", c.args, stdout, w, stderr)
			}
		}
		t.Logf("%q:\n%s", c.args, stdout)
	}
	// A name the DNS server does not know fails.
	if stdout, _, err := lab.run(t, root, "wget", "-qO-", "-T", "5", "http://nowhere.headway.test/"); err == nil {
		t.Errorf("wget of an unknown name succeeded: %q", stdout)
	}
}

func TestRunNginx(t *testing.T) {
	skipIfMissing(t)
	needRoot(t)
	img, err := Nginx()
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	lab := newNetnsLab(t)
	root := t.TempDir()
	extract(t, img, root)

	// The image's own command and configuration, port 80 included: the namespace is ours.
	var stdout, stderr syncBuffer
	nginx := lab.start(t, root, &stdout, &stderr, cf.Config.Cmd...)
	client := lab.httpClient()
	var body []byte
	var resp *http.Response
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err = client.Get("http://127.0.0.1:80/")
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
			break
		}
		if nginx.wait(20 * time.Millisecond) {
			t.Fatalf("nginx exited: %v\nstdout: %s\nstderr: %s", nginx.err, stdout.String(), stderr.String())
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not answer on 127.0.0.1:80: %v\nstderr: %s", err, stderr.String())
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || !strings.Contains(string(body), "<title>Welcome to nginx!</title>") {
		t.Errorf("GET /: %s %q", resp.Status, body)
	}
	if s := resp.Header.Get("Server"); !strings.HasPrefix(s, "nginx/") {
		t.Errorf("Server: %q", s)
	}
	if resp, err := client.Get("http://127.0.0.1:80/nothing-here"); err != nil || resp.StatusCode != 404 {
		t.Errorf("GET /nothing-here: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	// The access log is the container's stdout.
	for !strings.Contains(stdout.String(), `"GET / HTTP/1.1" 200`) {
		if time.Now().After(deadline) {
			t.Fatalf("no access log line on stdout: %q", stdout.String())
		}
		if nginx.wait(20 * time.Millisecond) {
			t.Fatalf("nginx exited: %v; stdout %q", nginx.err, stdout.String())
		}
	}
	// The master runs as root, its workers as nginx (101).
	children, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", nginx.cmd.Process.Pid, nginx.cmd.Process.Pid))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	workers := strings.Fields(string(children))
	if err == nil && len(workers) == 0 {
		t.Error("nginx has no worker processes")
	}
	// A worker that has not served yet may still be between its setgid and
	// its setuid: wait for each to be nginx, with a deadline.
	for _, w := range workers {
		for {
			status, err := os.ReadFile("/proc/" + w + "/status")
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(status), "\nUid:\t101\t101\t101\t101\n") {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("worker %s is not user 101:\n%s", w, status)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	// StopSignal: SIGQUIT is a graceful shutdown; nginx exits 0.
	if err := nginx.cmd.Process.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	if !nginx.wait(20 * time.Second) {
		t.Fatalf("nginx still running 20s after SIGQUIT\nstderr: %s", stderr.String())
	}
	if nginx.err != nil {
		t.Errorf("nginx after SIGQUIT: %v\nstderr: %s", nginx.err, stderr.String())
	}
	t.Logf("nginx stderr:\n%s", stderr.String())
}
