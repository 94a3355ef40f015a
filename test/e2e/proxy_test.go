package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// proxyManifest is the seed scenario plus an ordinary ClusterIP Service in
// front of the same pods.
const proxyManifest = `apiVersion: v1
kind: Service
metadata:
  name: nginx-headless
  labels: {app: nginx}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{name: web, port: 80}]
---
apiVersion: v1
kind: Service
metadata:
  name: web-lb
spec:
  selector: {app: nginx}
  ports: [{name: web, port: 80, targetPort: web}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: nginx-headless
  replicas: 3
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers:
        # An HTTP server that answers with the pod's hostname, so the test
        # sees which pod served each request. It runs under the process
        # runtime (python3 on the machine) and under CRI.
        - name: web
          image: python:3-alpine
          command: ["python3", "-c", "` + hostnameServer + `"]
          ports: [{containerPort: 80, name: web}]
`

const hostnameServer = `import http.server, socket\n` +
	`class H(http.server.BaseHTTPRequestHandler):\n` +
	`    def do_GET(self):\n` +
	`        b = socket.gethostname().encode()\n` +
	`        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)\n` +
	`    def log_message(self, *a): pass\n` +
	`http.server.ThreadingHTTPServer(('', 80), H).serve_forever()\n`

// netnsServer is `headway server` (agent, controllers, DNS, proxy) running
// inside a network namespace the test made, so its bridge, routes and
// nftables table never touch the host.
type netnsServer struct {
	t       *testing.T
	ns      string
	dataDir string
	cmd     *exec.Cmd
	log     *lockedBuffer
	done    chan struct{}
}

func (s *netnsServer) exec(args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", s.ns}, args...)...).CombinedOutput()
	return string(out), err
}

func (s *netnsServer) kubectl(stdin string, args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", s.ns, headwayBin, "kubectl", "--kubeconfig", filepath.Join(s.dataDir, "kubeconfig")}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func ipCmd(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v %s", strings.Join(args, " "), err, out)
	}
}

// startNetnsServer starts the server in a new network namespace; extra
// flags follow the defaults (a later --store overrides --store memory).
func startNetnsServer(t *testing.T, extra ...string) *netnsServer {
	t.Helper()
	ns := fmt.Sprintf("hwe2e%d", os.Getpid())
	ipCmd(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ipCmd(t, "-n", ns, "link", "set", "lo", "up")
	return launchNetnsServer(t, ns, t.TempDir(), extra...)
}

// launchNetnsServer starts the server in the existing namespace ns on
// dataDir and waits until it is ready; the test's cleanup stops it with
// SIGTERM unless it has ended.
func launchNetnsServer(t *testing.T, ns, dataDir string, extra ...string) *netnsServer {
	t.Helper()
	s := &netnsServer{t: t, ns: ns, dataDir: dataDir, log: &lockedBuffer{}, done: make(chan struct{})}
	// ip netns exec execs the server: the PID is the server's.
	s.cmd = exec.Command("ip", "netns", "exec", ns, headwayBin, "server", "--data-dir", s.dataDir,
		"--listen", "127.0.0.1:6443", "--store", "memory", "--dns-listen", "127.0.0.1:10053", "--dns-upstream", "none",
		// The process runtime: these tests run host programs as pods (and
		// `ip netns exec` hides /sys/fs/cgroup, which runc needs).
		"--runtime", "process")
	s.cmd.Args = append(s.cmd.Args, extra...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(func() { s.stop() })
	deadline := time.Now().Add(30 * time.Second)
	for {
		if out, err := s.kubectl("", "get", "--raw", "/readyz"); err == nil && strings.TrimSpace(out) == "ok" {
			return s
		}
		select {
		case <-s.done:
			t.Fatalf("headway server exited:\n%s", s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("headway server not ready after 30s:\n%s", s.log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stop ends the server with SIGTERM (SIGKILL after 15 s) unless it has
// ended, and waits.
func (s *netnsServer) stop() {
	select {
	case <-s.done:
	default:
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
		case <-time.After(15 * time.Second):
			s.t.Errorf("headway server ignored SIGTERM for 15s; killing it")
			s.cmd.Process.Kill()
			<-s.done
		}
	}
	if s.t.Failed() {
		s.t.Logf("server log:\n%s", s.log.String())
	}
}

// TestProxySeedPods is issue 8's end-to-end check: a ClusterIP Service in
// front of the seed StatefulSet's three pods spreads 300 requests from a pod
// over all three; scaled to one, everything goes to web-0; the headless
// Service still answers with pod IPs and has no proxy rules. It needs root
// and a node agent that runs the pods; until then it skips and says why.
func TestProxySeedPods(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: runs headway server (agent, proxy) inside a network namespace")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("needs curl")
	}
	s := startNetnsServer(t)
	if out, err := s.kubectl(proxyManifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	// The pods: three Running with IPs.
	var pods map[string]string
	deadline := time.Now().Add(90 * time.Second)
	for {
		out, _ := s.kubectl("", "get", "pods", "-l", "app=nginx", "-o",
			`jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.podIP}{"\n"}{end}`)
		pods = map[string]string{}
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[1] == "Running" {
				pods[f[0]] = f[2]
			}
		}
		if len(pods) == 3 {
			break
		}
		if time.Now().After(deadline) {
			wide, _ := s.kubectl("", "get", "pods", "-o", "wide")
			t.Skipf("the seed StatefulSet's pods are not running after 90s: this test needs the node agent "+
				"(--runtime process) and the StatefulSet controller to run nginx:alpine pods.\n%s", wide)
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("pods: %v", pods)
	if _, err := s.exec("ip", "link", "show", "headway0"); err != nil {
		t.Skip("the node has no bridge headway0 (the agent's pod network is not set up)")
	}
	out, err := s.kubectl("", "get", "svc", "web-lb", "-o", "jsonpath={.spec.clusterIP}")
	if err != nil {
		t.Fatalf("%v %s", err, out)
	}
	clusterIP := strings.TrimSpace(out)

	// A client on the pod bridge, as a pod is.
	client := s.ns + "-c"
	ipCmd(t, "netns", "add", client)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", client).Run() })
	ipCmd(t, "-n", s.ns, "link", "add", "e2eclient", "type", "veth", "peer", "name", "eth0", "netns", client)
	ipCmd(t, "-n", s.ns, "link", "set", "e2eclient", "master", "headway0", "up")
	ipCmd(t, "-n", client, "addr", "add", "198.18.255.250/16", "dev", "eth0")
	ipCmd(t, "-n", client, "link", "set", "eth0", "up")
	ipCmd(t, "-n", client, "route", "add", "default", "via", "198.18.0.1")

	// Each request on a new connection; the answer names the pod.
	request := func() string {
		t.Helper()
		out, err := exec.Command("ip", "netns", "exec", client, "curl", "-sS", "-m", "5", "http://"+clusterIP+"/").CombinedOutput()
		if err != nil {
			t.Fatalf("curl http://%s/ from a pod: %v %s", clusterIP, err, out)
		}
		return strings.TrimSpace(string(out))
	}
	spread := map[string]int{}
	for range 300 {
		spread[request()]++
	}
	t.Logf("300 requests from a pod to http://%s/ (web-lb): %v", clusterIP, spread)
	for name := range pods {
		if spread[name] == 0 {
			t.Errorf("%s got none of the 300 requests: %v", name, spread)
		}
	}

	// From inside a pod, by the Service's name (the pod's resolv.conf search
	// list finds web-lb.default.svc.cluster.local); the pod itself is one of
	// the endpoints, so this also covers hairpin traffic.
	out, err = s.kubectl("", "exec", "web-1", "--", "sh", "-c",
		"for i in $(seq 300); do curl -sS -m 5 http://web-lb/; echo; done")
	if err != nil {
		t.Fatalf("300 requests from web-1 to http://web-lb/: %v\n%s", err, out)
	}
	fromPod := map[string]int{}
	for _, l := range strings.Fields(out) {
		fromPod[l]++
	}
	t.Logf("300 requests from pod web-1 to http://web-lb/: %v", fromPod)
	for name := range pods {
		if fromPod[name] == 0 {
			t.Errorf("%s got none of the 300 requests from web-1: %v", name, fromPod)
		}
	}

	// The headless Service: pod IPs from DNS, no rules.
	out, err = s.exec("dig", "@127.0.0.1", "-p", "10053", "+short", "nginx-headless.default.svc.cluster.local")
	if err != nil {
		t.Fatalf("dig: %v %s", err, out)
	}
	got := strings.Fields(out)
	slices.Sort(got)
	var want []string
	for _, ip := range pods {
		want = append(want, ip)
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("nginx-headless A records %v, want the pod IPs %v", got, want)
	}
	if rules, err := s.exec("nft", "list", "table", "ip", "headway"); err != nil {
		t.Errorf("no proxy table: %v %s", err, rules)
	} else {
		if strings.Contains(rules, "nginx-headless") {
			t.Errorf("the headless Service has rules:\n%s", rules)
		}
		if !strings.Contains(rules, "default/web-lb/") {
			t.Errorf("web-lb has no rules:\n%s", rules)
		}
	}

	// Scale to one: within a second everything goes to web-0.
	start := time.Now()
	if out, err := s.kubectl("", "scale", "statefulset", "web", "--replicas=1"); err != nil {
		t.Fatalf("%v %s", err, out)
	}
	for {
		out, _ := s.exec("nft", "list", "table", "ip", "headway")
		if strings.Count(out, "chain ep-default/web-lb/") == 1 && strings.Contains(out, "dnat to "+pods["web-0"]+":") {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatalf("web-lb not down to web-0 after 10s:\n%s", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(start)
	t.Logf("scale to 1 → rules only for web-0 in %v", took)
	if took > time.Second {
		t.Errorf("scaling to one took %v to reach the rules, want under a second", took)
	}
	after := map[string]int{}
	for range 30 {
		after[request()]++
	}
	if after["web-0"] != 30 {
		t.Errorf("after scaling to one: %v, want all 30 to web-0", after)
	}
}
