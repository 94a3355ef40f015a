package apiserver_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/testing/cluster"
)

// h1 opens an HTTP/1.1 TLS connection to the cluster's API.
func h1(c *cluster.Cluster) (*tls.Conn, error) {
	u, _ := url.Parse(c.URL)
	d := &net.Dialer{Timeout: 5 * time.Second}
	return tls.DialWithDialer(d, "tcp", u.Host, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
}

// get sends one keep-alive request on conn and reads the answer.
func get(conn net.Conn, br *bufio.Reader, path, token string) (*http.Response, error) {
	auth := ""
	if token != "" {
		auth = "Authorization: Bearer " + token + "\r\n"
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: headway\r\n%s\r\n", path, auth); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp, err
}

// The probe: 1,000 keep-alive connections that made one request each and
// then sit idle are all closed by the server once the idle timeout passes
// (kube-apiserver's is 90 s; here 2 s so the test is quick).
func TestIdleKeepAliveConnectionsClosed(t *testing.T) {
	const n = 1000
	idle := 2 * time.Second
	if raceEnabled {
		idle = 20 * time.Second // making and using 1,000 TLS connections takes that long
	}
	c := cluster.Start(t, cluster.WithoutDNS(), func(o *app.Options) {
		o.Serving.IdleTimeout = idle
		o.Serving.MaxConnections = 2 * n
		// Connections wait for their request until all 1,000 are made
		// (long under -race).
		o.Serving.ReadHeaderTimeout = 5 * time.Minute
	})
	conns := make([]*tls.Conn, n)
	readers := make([]*bufio.Reader, n)
	answered := make([]time.Time, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				conn, err := h1(c)
				if err != nil {
					errs <- err
					return
				}
				conns[i], readers[i] = conn, bufio.NewReader(conn)
			}
		}()
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	})
	// All connected (TLS done); now one request on each, together.
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				if conns[i] == nil {
					return
				}
				resp, err := get(conns[i], readers[i], "/readyz", "")
				if err != nil || resp.StatusCode != 200 || resp.Close {
					errs <- fmt.Errorf("connection %d: %v %v", i, resp, err)
					return
				}
				answered[i] = time.Now()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if open := c.Running.APIServer.OpenConnections(); open < n {
		t.Fatalf("the server holds %d connections, want at least the %d keep-alive ones", open, n)
	}
	// Every connection is closed by the server: a read sees EOF, no sooner
	// than the idle timeout after its answer.
	var closed atomic.Int64
	var early atomic.Int64
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 8 {
				conns[i].SetReadDeadline(time.Now().Add(20 * time.Second))
				_, err := readers[i].ReadByte()
				if errors.Is(err, io.EOF) {
					closed.Add(1)
					if time.Since(answered[i]) < idle/2 {
						early.Add(1)
					}
				}
			}
		}()
	}
	wg.Wait()
	if closed.Load() != n || early.Load() != 0 {
		t.Fatalf("%d of %d idle connections closed by the server (%d before the idle timeout)", closed.Load(), n, early.Load())
	}
	cluster.WaitFor(t, 10*time.Second, "the server to forget the closed connections", func() (bool, error) {
		return c.Running.APIServer.OpenConnections() < 10, nil
	})
}

// floodEnv makes the test binary, run again, the flooding client: it
// opens that many connections to the address and holds them until its
// standard input closes (its own descriptors, not the server's).
const floodEnv = "HEADWAY_TEST_FLOOD"

// TestMain lets the test binary also be the flooding client (floodEnv) and
// kubectl (HEADWAY_TEST_KUBECTL=1) for the tests that run it as a child.
func TestMain(m *testing.M) {
	if spec := os.Getenv(floodEnv); spec != "" {
		flood(spec)
		return
	}
	if os.Getenv("HEADWAY_TEST_KUBECTL") == "1" {
		os.Args = append([]string{"kubectl"}, os.Args[1:]...)
		if err := cli.RunNoErrOutput(kubectlcmd.NewDefaultKubectlCommand()); err != nil {
			cmdutil.CheckErr(err)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// flood is the flooding client: spec is "addr count". Connections come
// from 127.0.0.2-5 so that they do not take 127.0.0.1's ephemeral ports.
func flood(spec string) {
	var addr string
	var count int
	fmt.Sscan(spec, &addr, &count)
	var mu sync.Mutex
	var held []net.Conn
	var ok, failed atomic.Int64
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+w%4))}}
			for next.Add(1) <= int64(count) {
				conn, err := d.Dial("tcp", addr)
				if err != nil {
					failed.Add(1)
					continue
				}
				ok.Add(1)
				mu.Lock()
				held = append(held, conn)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	fmt.Printf("flooded %d %d\n", ok.Load(), failed.Load())
	io.Copy(io.Discard, os.Stdin)
	mu.Lock()
	for _, c := range held {
		c.Close()
	}
	mu.Unlock()
}

// The probe: 20,000 connection attempts (held open, never sending a
// byte) do not exhaust the server's file descriptors, and /readyz, on a
// new connection each time, answers within 100 ms.
func TestConnectionFloodLeavesReadyzAnswering(t *testing.T) {
	const attempts = 20000
	c := cluster.Start(t, cluster.WithoutDNS())
	u, _ := url.Parse(c.URL)

	probe := func() (time.Duration, error) {
		start := time.Now()
		conn, err := h1(c)
		if err != nil {
			return 0, err
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		resp, err := get(conn, bufio.NewReader(conn), "/readyz", "")
		if err != nil {
			return 0, err
		}
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("readyz: %s", resp.Status)
		}
		return time.Since(start), nil
	}
	if _, err := probe(); err != nil {
		t.Fatal(err)
	}
	fdsBefore := openFDs(t)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s %d", floodEnv, u.Host, attempts))
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { stdin.Close(); cmd.Wait() }()
	done := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		done <- line
	}()

	// During the flood: /readyz keeps answering.
	var during []time.Duration
	maxFDs := fdsBefore
	var line string
wait:
	for {
		select {
		case line = <-done:
			break wait
		case <-time.After(20 * time.Millisecond):
		}
		d, err := probe()
		if err != nil {
			// Under -race the server is too slow to keep up with the
			// flood; the assertions are on the time after it.
			if !raceEnabled {
				t.Fatalf("readyz during the flood: %v", err)
			}
			t.Logf("readyz during the flood: %v", err)
			continue
		}
		during = append(during, d)
		maxFDs = max(maxFDs, openFDs(t))
	}
	var ok, failed int
	fmt.Sscanf(line, "flooded %d %d", &ok, &failed)
	t.Logf("flood: %d connections made, %d failed", ok, failed)
	if ok < attempts/2 {
		t.Fatalf("the flood made only %d connections", ok)
	}
	// After it: every probe within 100 ms, the server's descriptors bounded.
	var after []time.Duration
	for i := 0; i < 50; i++ {
		d, err := probe()
		if err != nil {
			t.Fatalf("readyz after the flood: %v", err)
		}
		after = append(after, d)
		maxFDs = max(maxFDs, openFDs(t))
	}
	open := c.Running.APIServer.OpenConnections()
	t.Logf("readyz during the flood: %s; after: %s; server connections %d, descriptors %d → max %d",
		quantiles(during), quantiles(after), open, fdsBefore, maxFDs)
	limit := app.DefaultOptions().Serving.MaxConnections
	if open > limit {
		t.Fatalf("the server holds %d connections, over its limit %d", open, limit)
	}
	if maxFDs > fdsBefore+limit+100 {
		t.Fatalf("descriptors grew from %d to %d with a connection limit of %d", fdsBefore, maxFDs, limit)
	}
	sort.Slice(after, func(i, j int) bool { return after[i] < after[j] })
	if med := after[len(after)/2]; med > 100*time.Millisecond && !raceEnabled {
		t.Fatalf("readyz after the flood: median %v, want within 100 ms", med)
	}
	// The API still serves authenticated clients.
	if _, err := c.Client.CoreV1().Namespaces().Get(ctxT(t), "default", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
}

func openFDs(t *testing.T) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

func quantiles(ds []time.Duration) string {
	if len(ds) == 0 {
		return "none"
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	q := func(p float64) time.Duration { return s[int(p*float64(len(s)-1))].Round(100 * time.Microsecond) }
	return fmt.Sprintf("n=%d p50 %v p90 %v max %v", len(s), q(0.5), q(0.9), q(1))
}

// Past --max-mutating-requests-inflight a write gets 429 with Retry-After:
// 1 at once; reads and watches are not held up by writes; a body that does
// not arrive is given up after the body timeout (504) and frees its slot.
func TestInflightLimitAndBodyTimeout(t *testing.T) {
	const bodyTimeout = 1500 * time.Millisecond
	c := cluster.Start(t, cluster.WithoutDNS(), func(o *app.Options) {
		o.Serving.MaxMutatingRequestsInFlight = 2
		o.Serving.MaxRequestsInFlight = 2
		o.Serving.BodyTimeout = bodyTimeout
	})
	token := c.Config.BearerToken
	// Two writes whose bodies never come hold both write slots.
	type stalled struct {
		conn  net.Conn
		br    *bufio.Reader
		since time.Time
	}
	var held []stalled
	for i := 0; i < 2; i++ {
		conn, err := h1(c)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /api/v1/namespaces/default/configmaps HTTP/1.1\r\nHost: headway\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{", token)
		held = append(held, stalled{conn, bufio.NewReader(conn), time.Now()})
	}
	raw := newRaw(t, c)
	body := []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"third"}}`)
	// (A dry run until the stalled writes hold their slots.)
	cluster.WaitFor(t, 5*time.Second, "a third write to be refused 429", func() (bool, error) {
		code, _, hdr := raw.do("POST", "/api/v1/namespaces/default/configmaps?dryRun=All", "application/json", body)
		if code == 429 && hdr.Get("Retry-After") == "1" {
			return true, nil
		}
		return false, fmt.Errorf("got %d, Retry-After %q", code, hdr.Get("Retry-After"))
	})
	if code, _, _ := raw.do("POST", "/api/v1/namespaces/default/configmaps", "application/json", body); code != 429 {
		t.Fatalf("a write past the limit: got %d, want 429", code)
	}
	// Reads and watches still work.
	ctx := ctxT(t)
	if _, err := c.Client.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Fatalf("a read while writes are at their limit: %v", err)
	}
	var watches []interface{ Stop() }
	for i := 0; i < 3; i++ { // more than the read limit: watches are not counted
		w, err := c.Client.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatalf("watch %d: %v", i, err)
		}
		watches = append(watches, w)
	}
	if _, err := c.Client.CoreV1().ConfigMaps("default").Get(ctx, "none", metav1.GetOptions{}); err == nil || !strings.Contains(err.Error(), "not found") {
		t.Fatalf("a read beside three watches: %v", err)
	}
	for _, w := range watches {
		w.Stop()
	}
	// The stalled writes are answered 504 once the body timeout passes.
	for i, s := range held {
		s.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		resp, err := http.ReadResponse(s.br, nil)
		if err != nil {
			t.Fatalf("stalled write %d: %v", i, err)
		}
		resp.Body.Close()
		if took := time.Since(s.since); resp.StatusCode != 504 || took < bodyTimeout-100*time.Millisecond {
			t.Fatalf("stalled write %d: %s after %v, want 504 after %v", i, resp.Status, took, bodyTimeout)
		}
	}
	cluster.WaitFor(t, 5*time.Second, "writes to be served again", func() (bool, error) {
		code, st, _ := raw.do("POST", "/api/v1/namespaces/default/configmaps", "application/json", body)
		if code == 201 {
			return true, nil
		}
		return false, fmt.Errorf("got %d %s", code, st.Message)
	})
}

// /readyz?verbose lists each check as kube-apiserver does; /readyz/<name>
// runs one; ?exclude leaves one out.
func TestReadyzVerbose(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	raw := newRaw(t, c)
	// Anyone may read /readyz (system:public-info-viewer); one check's
	// path is for authorized users (the admin here), as in kube-apiserver.
	body := func(path string) (int, string) {
		req, _ := http.NewRequest("GET", c.URL+path, nil)
		if strings.HasPrefix(path, "/readyz/") {
			req.Header.Set("Authorization", "Bearer "+raw.token)
		}
		resp, err := raw.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, out := body("/readyz?verbose")
	want := "[+]ping ok\n[+]log ok\n[+]store ok\n[+]bootstrap ok\n[+]shutdown ok\nreadyz check passed\n"
	if code != 200 || out != want {
		t.Fatalf("/readyz?verbose: %d %q, want %q", code, out, want)
	}
	if code, out := body("/readyz"); code != 200 || out != "ok" {
		t.Fatalf("/readyz: %d %q", code, out)
	}
	if code, out := body("/readyz/store"); code != 200 || out != "ok" {
		t.Fatalf("/readyz/store: %d %q", code, out)
	}
	anon, _ := http.NewRequest("GET", c.URL+"/readyz/store", nil)
	if resp, err := raw.http.Do(anon); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != 403 {
		t.Fatalf("anonymous /readyz/store: %d, want 403 as kube-apiserver answers", resp.StatusCode)
	}
	if code, _ := body("/readyz/nope"); code != 404 {
		t.Fatalf("/readyz/nope: %d", code)
	}
	if code, out := body("/readyz?verbose&exclude=store"); code != 200 || !strings.Contains(out, "[+]store excluded: ok\n") {
		t.Fatalf("/readyz?exclude=store: %d %q", code, out)
	}
}
