package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/headway/headway/internal/testing/etcdtest"
)

// startEtcd runs Debian's etcd on loopback ports when it is installed
// (else an embedded member) and returns its client URL.
func startEtcd(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Log("etcd not installed: using an embedded etcd")
		return etcdtest.Start(t).Endpoint
	}
	client, peer := "http://"+freePort(t), "http://"+freePort(t)
	log, done := runEtcd(t, exec.Command(bin), client, peer)
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(client + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case <-done:
			t.Fatalf("etcd exited:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd at %s not healthy after 30s:\n%s", client, log.String())
		}
		waitABit()
	}
	out, _ := exec.Command(bin, "--version").Output()
	t.Logf("etcd %s at %s", strings.SplitN(string(out), "\n", 2)[0], client)
	return client
}

// runEtcd starts cmd (etcd, or a command that execs it) as a one-member
// etcd serving client and peer URLs, with its data in a temp dir, until
// the test ends; it returns the process's output and a channel closed
// when it exits.
func runEtcd(t *testing.T, cmd *exec.Cmd, client, peer string) (*lockedBuffer, <-chan struct{}) {
	t.Helper()
	cmd.Args = append(cmd.Args, "--name", "e2e", "--data-dir", t.TempDir(),
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
		"--initial-cluster", "e2e="+peer, "--log-level", "warn")
	log := &lockedBuffer{}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	return log, done
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

var identityRE = regexp.MustCompile(`campaigning for the controllers' lease.* identity=(\S+)`)

// leaderIdentity is the identity a server campaigns with, from its log.
func leaderIdentity(t *testing.T, s *server) string {
	t.Helper()
	return identityIn(t, s.addr, s.log)
}

// identityIn finds the leader-election identity in a server's log.
func identityIn(t *testing.T, name string, log fmt.Stringer) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := identityRE.FindStringSubmatch(log.String()); m != nil {
			return m[1]
		}
		waitABit()
	}
	t.Fatalf("server %s logged no leader-election identity:\n%s", name, log.String())
	return ""
}

func holder(ctx context.Context, cs kubernetes.Interface) (string, error) {
	l, err := cs.CoordinationV1().Leases("kube-system").Get(ctx, "kube-controller-manager", metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return "", err
	}
	return *l.Spec.HolderIdentity, nil
}

func podNames(ctx context.Context, cs kubernetes.Interface, selector string) (map[string]bool, error) {
	pods, err := cs.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, p := range pods.Items {
		out[p.Name] = true
	}
	return out, nil
}

// pollUntil polls cond until it holds or timeout passes; it returns how
// long that took and the last error.
func pollUntil(timeout time.Duration, cond func() (bool, error)) (time.Duration, error) {
	start := time.Now()
	var last error
	for time.Since(start) < timeout {
		ok, err := cond()
		if ok && err == nil {
			return time.Since(start), nil
		}
		last = err
		waitABit()
	}
	if last == nil {
		last = fmt.Errorf("condition not met")
	}
	return time.Since(start), fmt.Errorf("after %v: %w", timeout, last)
}

const webStatefulSet = `apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: web
  replicas: 2
  podManagementPolicy: Parallel
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx
`

// TestSeveralServers: two headway server processes on one etcd serve the
// same API with one PKI; a StatefulSet created through B gets its pods
// from the controllers of the server holding the Lease; after kill -9 of
// that server the other takes the Lease within 15 s and a scale-up made
// during the outage completes.
func TestSeveralServers(t *testing.T) {
	endpoint := startEtcd(t)
	common := []string{"--store", "etcd", "--etcd-endpoints", endpoint, "--dns-listen", "127.0.0.1:0", "--dns-upstream", "none"}
	a := startServer(t, t.TempDir(), freePort(t), common...)
	pkiB := filepath.Join(t.TempDir(), "pki")
	copyDir(t, filepath.Join(a.dataDir, "pki"), pkiB)
	b := startServer(t, t.TempDir(), freePort(t), append(common, "--pki-dir", pkiB)...)
	k := kubectls(t)[0]

	// Both serve the same API, with the same admin token.
	k.must(t, a, "create", "configmap", "from-a", "--from-literal=k=v")
	if out := k.must(t, b, "get", "configmap", "from-a", "-o", "jsonpath={.data.k}"); out != "v" {
		t.Fatalf("reading through B what A stored: %q", out)
	}
	tokA, _ := os.ReadFile(filepath.Join(a.dataDir, "pki", "admin.token"))
	tokB, _ := os.ReadFile(filepath.Join(pkiB, "admin.token"))
	if len(tokA) == 0 || string(tokA) != string(tokB) {
		t.Fatal("the two servers do not share the admin token")
	}

	ids := map[string]*server{leaderIdentity(t, a): a, leaderIdentity(t, b): b}
	if len(ids) != 2 {
		t.Fatalf("the servers campaign with one identity: %v", ids)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	csB := clientFor(t, b)
	var leader *server
	if _, err := pollUntil(30*time.Second, func() (bool, error) {
		h, err := holder(ctx, csB)
		leader = ids[h]
		return leader != nil, err
	}); err != nil {
		t.Fatalf("no server took the controllers' lease: %v", err)
	}
	survivor := a
	if leader == a {
		survivor = b
	}
	t.Logf("leader: %s; the other: %s", leader.addr, survivor.addr)

	if out, err := k.run(t, b, webStatefulSet, "apply", "-f", "-"); err != nil || !strings.Contains(out, "statefulset.apps/web created") {
		t.Fatalf("kubectl apply through B: %v\n%s", err, out)
	}
	if d, err := pollUntil(60*time.Second, func() (bool, error) {
		names, err := podNames(ctx, csB, "app=web")
		return len(names) == 2 && names["web-0"] && names["web-1"], err
	}); err != nil {
		t.Fatalf("the StatefulSet's pods web-0 and web-1: %v", err)
	} else {
		t.Logf("web-0 and web-1 created by the leader's controllers %v after apply", d.Round(time.Millisecond))
	}

	// kill -9 the leader; scale up through the other during the outage.
	if err := leader.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-leader.done
	killed := time.Now()
	csS := clientFor(t, survivor)
	k.must(t, survivor, "scale", "statefulset", "web", "--replicas=4")
	survivorID := ""
	for id, s := range ids {
		if s == survivor {
			survivorID = id
		}
	}
	if _, err := pollUntil(30*time.Second, func() (bool, error) {
		h, err := holder(ctx, csS)
		return h == survivorID, err
	}); err != nil {
		t.Fatalf("the other server did not take the lease: %v\n%s", err, survivor.log.String())
	}
	takeover := time.Since(killed)
	if _, err := pollUntil(30*time.Second, func() (bool, error) {
		names, err := podNames(ctx, csS, "app=web")
		return len(names) == 4 && names["web-2"] && names["web-3"], err
	}); err != nil {
		t.Fatalf("the scale-up to 4 made during the outage: %v\n%s", err, survivor.log.String())
	}
	resumed := time.Since(killed)
	t.Logf("fail-over: lease taken %v after kill -9, scale-up done %v after it", takeover.Round(time.Millisecond), resumed.Round(time.Millisecond))
	if takeover > 15*time.Second {
		t.Fatalf("fail-over took %v, want under 15s", takeover)
	}
	if _, err := pollUntil(30*time.Second, func() (bool, error) {
		sts, err := csS.AppsV1().StatefulSets("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if sts.Status.Replicas != 4 || sts.Status.ObservedGeneration != sts.Generation {
			return false, fmt.Errorf("status %+v at generation %d", sts.Status, sts.Generation)
		}
		return true, nil
	}); err != nil {
		t.Fatalf("the StatefulSet's status after the fail-over: %v\n%s", err, survivor.log.String())
	}
	if out := k.must(t, survivor, "get", "--raw", "/readyz"); out != "ok" {
		t.Fatalf("the survivor's /readyz: %q", out)
	}
}

// TestEtcdDurability is the durability check on etcd: 16 writers create
// ConfigMaps through a server on --store etcd, the server is killed with
// SIGKILL mid-burst, and every create it acknowledged is there when a new
// server on the same etcd lists them. Two rounds.
func TestEtcdDurability(t *testing.T) {
	endpoint := startEtcd(t)
	dir, addr := t.TempDir(), freePort(t)
	check := func(round int, names []string) {
		t.Helper()
		s := startServer(t, dir, addr, "--store", "etcd", "--etcd-endpoints", endpoint, "--runtime", "none")
		defer s.stop()
		list, err := clientFor(t, s).CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		have := map[string]bool{}
		for _, cm := range list.Items {
			have[cm.Name] = true
		}
		lost := 0
		for _, n := range names {
			if !have[n] {
				lost++
				if lost <= 5 {
					t.Errorf("round %d: acknowledged create of %s lost after kill -9 of the server", round, n)
				}
			}
		}
		t.Logf("round %d: %d acknowledged creates, %d lost, after kill -9 of the server mid-burst", round, len(names), lost)
	}
	for round := range 2 {
		s := startServer(t, dir, addr, "--store", "etcd", "--etcd-endpoints", endpoint, "--runtime", "none")
		names := writeUntilKilled(t, clientFor(t, s), s, round, 1500*time.Millisecond)
		check(round, names)
	}
}
