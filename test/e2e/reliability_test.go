package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/headway/headway/internal/storage/bolt"
)

// TestReliability is the reliability suite (`make reliability` runs it
// long: HEADWAY_RELIABILITY=full): acknowledged writes survive kill -9, the
// server survives the faults a machine and its operator cause, and bad
// input is answered 4xx without changing anything. It ends with a summary.
func TestReliability(t *testing.T) {
	rounds, writeFor := 2, 1500*time.Millisecond
	if os.Getenv("HEADWAY_RELIABILITY") == "full" {
		rounds, writeFor = 5, 5*time.Second
	}
	var summary []string
	defer func() {
		t.Logf("reliability summary:\n  %s", strings.Join(summary, "\n  "))
	}()

	dir, addr := t.TempDir(), freePort(t)
	acked, kept := 0, 0
	for round := 0; round < rounds; round++ {
		s := startServer(t, dir, addr, "--backup-interval", "0")
		cs := clientFor(t, s)
		names := writeUntilKilled(t, cs, s, round, writeFor)
		s2 := startServer(t, dir, addr, "--backup-interval", "0")
		cs = clientFor(t, s2)
		have := map[string]bool{}
		list, err := cs.CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cm := range list.Items {
			have[cm.Name] = true
		}
		for _, n := range names {
			acked++
			if have[n] {
				kept++
			} else {
				t.Errorf("round %d: acknowledged create of %s lost after kill -9", round, n)
			}
		}
		s2.stop()
	}
	summary = append(summary, fmt.Sprintf("acknowledged writes kept after kill -9: %d/%d (%d rounds of %v with 16 writers)", kept, acked, rounds, writeFor))

	faults := []struct {
		name string
		run  func(t *testing.T) error
	}{
		{"a second server on the same data dir", secondServerRefused},
		{"a damaged store page, then restore from the server's backup", damagedPageRestored},
		{"a damaged object value", damagedValueSkipped},
	}
	survived := 0
	for _, f := range faults {
		if err := f.run(t); err != nil {
			t.Errorf("fault %q: %v", f.name, err)
			continue
		}
		survived++
	}
	summary = append(summary, fmt.Sprintf("faults survived: %d/%d", survived, len(faults)))

	tried, refused := badInputs(t)
	summary = append(summary, fmt.Sprintf("bad inputs answered 4xx with nothing stored and the server ready: %d/%d", refused, tried))
}

func clientFor(t *testing.T, s *server) *kubernetes.Clientset {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = -1, 0
	cfg.WarningHandler = rest.NoWarnings{}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// writeUntilKilled creates ConfigMaps from 16 writers, kills the server with
// SIGKILL after d, and returns the names whose create was acknowledged.
func writeUntilKilled(t *testing.T, cs *kubernetes.Clientset, s *server, round int, d time.Duration) []string {
	t.Helper()
	var mu sync.Mutex
	var names []string
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				name := fmt.Sprintf("r%d-w%02d-%06d", round, w, i)
				_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
					ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"v": name},
				}, metav1.CreateOptions{})
				if err != nil {
					return // the server is gone
				}
				mu.Lock()
				names = append(names, name)
				mu.Unlock()
			}
		}()
	}
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		waitABit()
	}
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.done
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(names) == 0 {
		t.Fatalf("round %d: no write was acknowledged before the kill", round)
	}
	return names
}

// secondServerRefused: a second server on a data dir in use exits with an
// error naming the locked file, and the first keeps serving.
func secondServerRefused(t *testing.T) error {
	dir := t.TempDir()
	s := startServer(t, dir, freePort(t))
	defer s.stop()
	out, err := exec.Command(headwayBin, "server", "--data-dir", dir, "--listen", freePort(t), "--runtime", "none").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "locked") || !strings.Contains(string(out), "headway.db") {
		return fmt.Errorf("second server: err=%v, output lacks the locked file:\n%s", err, out)
	}
	if _, err := clientFor(t, s).CoreV1().Namespaces().Get(context.Background(), "default", metav1.GetOptions{}); err != nil {
		return fmt.Errorf("the first server stopped serving: %v", err)
	}
	return nil
}

// damagedPageRestored: pages of the store overwritten while the server is
// stopped; the server refuses to start naming the file and the commands to
// run, `headway store check` reports the damage, `headway store restore`
// puts the server's own backup back and the server starts with the data.
func damagedPageRestored(t *testing.T) error {
	dir, addr := t.TempDir(), freePort(t)
	s := startServer(t, dir, addr, "--backup-interval", "100ms")
	cs := clientFor(t, s)
	if _, err := cs.CoreV1().ConfigMaps("default").Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "precious"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	// Wait for a backup taken after the create.
	created := time.Now()
	deadline := created.Add(20 * time.Second)
	for {
		files, _ := bolt.Backups(filepath.Join(dir, "backups"))
		if len(files) > 0 {
			if fi, err := os.Stat(files[len(files)-1]); err == nil && fi.ModTime().After(created.Add(50*time.Millisecond)) {
				break
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no backup in %s after 20s", filepath.Join(dir, "backups"))
		}
		waitABit()
	}
	s.stop()
	f, err := os.OpenFile(filepath.Join(dir, "headway.db"), os.O_RDWR, 0)
	if err != nil {
		return err
	}
	garbage := bytes.Repeat([]byte{0xa5, 0x5a, 0x3c, 0xc3}, 1024)
	for _, pg := range []int64{2, 3, 4, 5, 6, 7} {
		if _, err := f.WriteAt(garbage, pg*4096); err != nil {
			f.Close()
			return err
		}
	}
	f.Close()
	out, err := exec.Command(headwayBin, "server", "--data-dir", dir, "--listen", addr, "--runtime", "none").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is damaged") || !strings.Contains(string(out), "headway store restore") ||
		strings.Contains(string(out), "goroutine ") {
		return fmt.Errorf("start on a damaged store: err=%v, want the damaged-file error without a stack:\n%s", err, out)
	}
	out, err = exec.Command(headwayBin, "store", "check", "--data-dir", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "damaged:") {
		return fmt.Errorf("store check of a damaged store: err=%v\n%s", err, out)
	}
	out, err = exec.Command(headwayBin, "store", "restore", "--data-dir", dir).CombinedOutput()
	if err != nil {
		return fmt.Errorf("store restore: %v\n%s", err, out)
	}
	s = startServer(t, dir, addr)
	defer s.stop()
	if _, err := clientFor(t, s).CoreV1().ConfigMaps("default").Get(context.Background(), "precious", metav1.GetOptions{}); err != nil {
		return fmt.Errorf("after restore: %v", err)
	}
	return nil
}

// damagedValueSkipped: one object's bytes damaged; lists go on without it
// (with a warning), and the unsafe delete removes it.
func damagedValueSkipped(t *testing.T) error {
	dir, addr := t.TempDir(), freePort(t)
	s := startServer(t, dir, addr)
	cs := clientFor(t, s)
	for _, n := range []string{"a", "b", "c"} {
		if _, err := cs.CoreV1().Secrets("default").Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	s.stop()
	st, err := bolt.Open(filepath.Join(dir, "headway.db"), bolt.Options{})
	if err != nil {
		return err
	}
	ctx := context.Background()
	kv, err := st.Get(ctx, "/registry/core/secrets/default/b")
	if err == nil {
		bad := append([]byte(nil), kv.Value[:len(kv.Value)/2]...)
		_, err = st.Update(ctx, kv.Key, append(bad, 0xff, 0xfe, 0xfd), kv.ModRevision)
	}
	st.Close()
	if err != nil {
		return err
	}
	s = startServer(t, dir, addr)
	defer s.stop()
	cs = clientFor(t, s)
	list, err := cs.CoreV1().Secrets("default").List(ctx, metav1.ListOptions{})
	if err != nil || len(list.Items) != 2 {
		return fmt.Errorf("list with a damaged value: %v items, %v", len(list.Items), err)
	}
	yes := true
	if err := cs.CoreV1().Secrets("default").Delete(ctx, "b", metav1.DeleteOptions{IgnoreStoreReadErrorWithClusterBreakingPotential: &yes}); err != nil {
		return fmt.Errorf("unsafe delete: %v", err)
	}
	return nil
}

// badInputs sends malformed and hostile requests; each must be answered
// 4xx, store nothing and leave the server ready.
func badInputs(t *testing.T) (tried, refused int) {
	s := startServer(t, t.TempDir(), freePort(t))
	defer s.stop()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.kubeconfig())
	if err != nil {
		t.Fatal(err)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	base := cfg.Host
	deep := strings.Repeat(`{"a":`, 20000) + "1" + strings.Repeat("}", 20000)
	cases := []struct {
		name, method, path, ctype, body string
	}{
		{"invalid JSON", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"metadata":`},
		{"wrong kind for the URL", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"x"}}`},
		{"invalid name", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Bad_Name"}}`},
		{"namespace in body differs from the URL", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"other"}}`},
		{"4 MiB body", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"k":"` + strings.Repeat("x", 4<<20) + `"}}`},
		{"JSON nested 20,000 deep", "POST", "/api/v1/namespaces/default/configmaps", "application/json", deep},
		{"not UTF-8", "POST", "/api/v1/namespaces/default/configmaps", "application/json", "{\"apiVersion\":\"v1\",\"kind\":\"ConfigMap\",\"metadata\":{\"name\":\"\xff\xfe\"}}"},
		{"unsupported media type", "POST", "/api/v1/namespaces/default/configmaps", "text/plain", "hello"},
		{"unknown resource", "GET", "/api/v1/namespaces/default/widgets", "", ""},
		{"bad label selector", "GET", "/api/v1/pods?labelSelector=a%20in%20(", "", ""},
		{"bad field selector", "GET", "/api/v1/pods?fieldSelector=spec.bogus%3Dx", "", ""},
		{"bad continue token", "GET", "/api/v1/pods?limit=1&continue=not-a-token", "", ""},
		{"patch with the wrong content type", "PATCH", "/api/v1/namespaces/default", "application/json", `{}`},
		{"invalid JSON patch", "PATCH", "/api/v1/namespaces/default", "application/json-patch+json", `[{"op":"explode","path":"/x"}]`},
		{"update of a missing object", "PUT", "/api/v1/namespaces/default/configmaps/missing", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"other"}}`},
		{"delete with bad options", "DELETE", "/api/v1/namespaces/default/configmaps/x", "application/json", `{"propagationPolicy":"Sideways"}`},
		{"watch with a bad resourceVersion", "GET", "/api/v1/pods?watch=1&resourceVersion=99999999999", "", ""},
	}
	for _, c := range cases {
		tried++
		req, err := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		if c.ctype != "" {
			req.Header.Set("Content-Type", c.ctype)
		}
		start := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			t.Errorf("bad input %q: %v", c.name, err)
			continue
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		took := time.Since(start)
		ok := resp.StatusCode >= 400 && resp.StatusCode < 500
		// A watch from a future revision is 504/410 on kube-apiserver too
		// (the client relists); it must not be a crash or a hang.
		if strings.Contains(c.path, "watch=1") {
			ok = resp.StatusCode == http.StatusGatewayTimeout || resp.StatusCode == http.StatusGone || ok
		}
		if !ok || !bytes.Contains(body, []byte(`"kind":"Status"`)) {
			t.Errorf("bad input %q: %d %s (want a 4xx Status)", c.name, resp.StatusCode, body)
			continue
		}
		if took > 5*time.Second {
			t.Errorf("bad input %q took %v", c.name, took)
			continue
		}
		refused++
	}
	cs := clientFor(t, s)
	list, err := cs.CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, cm := range list.Items {
		if cm.Name != "kube-root-ca.crt" {
			t.Errorf("bad input stored ConfigMap %q", cm.Name)
		}
	}
	resp, err := hc.Get(base + "/readyz")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("server not ready after the bad inputs: %v", err)
	} else {
		resp.Body.Close()
	}
	return tried, refused
}
