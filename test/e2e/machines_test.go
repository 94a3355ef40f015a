package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// machineAgent is `headway agent` running in a network namespace of its
// own: a node on another "machine".
type machineAgent struct {
	t    *testing.T
	ns   string
	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

func startMachineAgent(t *testing.T, ns string, args ...string) *machineAgent {
	t.Helper()
	a := &machineAgent{t: t, ns: ns, log: &lockedBuffer{}, done: make(chan struct{})}
	a.cmd = exec.Command("ip", append([]string{"netns", "exec", ns, headwayBin, "agent"}, args...)...)
	a.cmd.Stdout, a.cmd.Stderr = a.log, a.log
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.cmd.Wait(); close(a.done) }()
	t.Cleanup(a.stop)
	return a
}

func (a *machineAgent) stop() {
	select {
	case <-a.done:
	default:
		a.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-a.done:
		case <-time.After(15 * time.Second):
			a.t.Errorf("headway agent in %s ignored SIGTERM for 15s; killing it", a.ns)
			a.cmd.Process.Kill()
			<-a.done
		}
	}
	if a.t.Failed() {
		a.t.Logf("agent log (%s):\n%s", a.ns, a.log.String())
	}
}

// netMachine is a "machine": a network namespace with eth0 on a LAN.
type netMachine struct{ ns, node, ip string }

// netMachines makes a LAN, a bridge in a namespace of its own with
// <subnet>.254/24 on it, and n machines on it: namespaces whose eth0 has
// <subnet>.1, .2, … and whose nodes will be node-a, node-b, …. The test's
// cleanup deletes the namespaces, and with them the links.
func netMachines(t *testing.T, tag, subnet string, n int) (lan string, ms []netMachine) {
	t.Helper()
	prefix := fmt.Sprintf("hw%s%d", tag, os.Getpid())
	lan = prefix + "l"
	ipCmd(t, "netns", "add", lan)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", lan).Run() })
	ipCmd(t, "-n", lan, "link", "set", "lo", "up")
	ipCmd(t, "-n", lan, "link", "add", "br0", "type", "bridge")
	ipCmd(t, "-n", lan, "addr", "add", subnet+".254/24", "dev", "br0")
	ipCmd(t, "-n", lan, "link", "set", "br0", "up")
	for i := range n {
		letter := string(rune('a' + i))
		m := netMachine{ns: prefix + letter, node: "node-" + letter, ip: fmt.Sprintf("%s.%d", subnet, i+1)}
		ipCmd(t, "netns", "add", m.ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", m.ns).Run() })
		ipCmd(t, "-n", m.ns, "link", "set", "lo", "up")
		port := fmt.Sprintf("p%d", i)
		ipCmd(t, "-n", lan, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", m.ns)
		ipCmd(t, "-n", lan, "link", "set", port, "master", "br0", "up")
		ipCmd(t, "-n", m.ns, "addr", "add", m.ip+"/24", "dev", "eth0")
		ipCmd(t, "-n", m.ns, "link", "set", "eth0", "up")
		ms = append(ms, m)
	}
	return lan, ms
}

// TestMachines is issue 16's "nodes on other machines": three machines,
// each a network namespace on a 198.18.250.0/24 link network (a bridge in
// a fourth namespace); the server with its own node on the first, `headway
// agent` on the other two. Each node gets its own /24 of the cluster range,
// the seed StatefulSet spreads over the three, a pod on the first node
// fetches web-2 on the third by its headless name, every node's DNS lists
// all pods, and a bad token is refused with 401.
func TestMachines(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"dig", "python3"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	_, machines := netMachines(t, "m", "198.18.250", 3)
	// The cluster's pod range leaves the link network out.
	const clusterCIDR = "198.18.0.0/17"
	serverDir := t.TempDir()
	s := launchNetnsServer(t, machines[0].ns, serverDir, "--listen", machines[0].ip+":6443", "--allocate-node-cidrs",
		"--cluster-cidr", clusterCIDR, "--node-name", machines[0].node, "--node-ip", machines[0].ip)
	serverURL := "https://" + machines[0].ip + ":6443"
	caFile := filepath.Join(serverDir, "pki", "ca.crt")

	token := joinToken(t, s)

	// A bad token is refused: the agent says 401 and exits.
	bad := startMachineAgent(t, machines[1].ns, "--server", serverURL, "--token", token[:7]+strings.Repeat("x", 16),
		"--ca-file", caFile, "--node-name", "intruder", "--data-dir", t.TempDir(), "--runtime", "process")
	select {
	case <-bad.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("an agent with a bad token still runs after 30s:\n%s", bad.log.String())
	}
	if !strings.Contains(bad.log.String(), "401 Unauthorized") {
		t.Fatalf("an agent with a bad token exited without a 401:\n%s", bad.log.String())
	}
	t.Logf("bad token refused: %s", strings.TrimSpace(lastLine(bad.log.String())))

	for _, m := range machines[1:] {
		startMachineAgent(t, m.ns, "--server", serverURL, "--token", token, "--ca-file", caFile,
			"--node-name", m.node, "--node-ip", m.ip, "--data-dir", t.TempDir(), "--runtime", "process", "--dns-upstream", "none")
	}
	nodesRE := regexp.MustCompile(`(?m)^node-a True 198\.18\.\d+\.0/24 198\.18\.250\.1\nnode-b True 198\.18\.\d+\.0/24 198\.18\.250\.2\nnode-c True 198\.18\.\d+\.0/24 198\.18\.250\.3$`)
	start := time.Now()
	out := s.waitKubectl(t, nodesRE, 60*time.Second, "get", "nodes", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.spec.podCIDR} {.status.addresses[?(@.type=="InternalIP")].address}{"\n"}{end}`)
	t.Logf("three nodes Ready %v after the agents started:\n%s", time.Since(start).Round(time.Millisecond), out)
	cidrs := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		cidrs[strings.Fields(line)[2]] = true
	}
	if len(cidrs) != 3 {
		t.Fatalf("nodes share pod ranges:\n%s", out)
	}

	if out, err := s.kubectl(proxyManifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	podsRE := regexp.MustCompile(`(?m)^web-0 Running (198\.18\.\d+\.\d+) (node-\w)\nweb-1 Running (198\.18\.\d+\.\d+) (node-\w)\nweb-2 Running (198\.18\.\d+\.\d+) (node-\w)$`)
	start = time.Now()
	out = s.waitKubectl(t, podsRE, 120*time.Second, "get", "pods", "-l", "app=nginx", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.podIP} {.spec.nodeName}{"\n"}{end}`)
	t.Logf("three pods Running %v after apply:\n%s", time.Since(start).Round(time.Millisecond), out)
	m := podsRE.FindStringSubmatch(out)
	podIPs := []string{m[1], m[3], m[5]}
	if nodes := []string{m[2], m[4], m[6]}; nodes[0] == nodes[1] || nodes[1] == nodes[2] || nodes[0] == nodes[2] {
		t.Fatalf("the pods share nodes: %v", nodes)
	}
	slices.Sort(podIPs)

	// Every node's cluster DNS, at the DNS Service address, lists the
	// three pods under the headless name.
	for _, mc := range machines {
		deadline := time.Now().Add(30 * time.Second)
		for {
			out, _ := exec.Command("ip", "netns", "exec", mc.ns, "dig", "+short", "@198.19.0.10", "nginx-headless.default.svc.cluster.local").CombinedOutput()
			got := strings.Fields(string(out))
			slices.Sort(got)
			if slices.Equal(got, podIPs) {
				t.Logf("dig on %s: %v", mc.node, got)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("dig on %s lists %v; want %v", mc.node, got, podIPs)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	// Pods reach pods on other nodes by name: web-0 fetches web-2, and
	// web-2 (on an agent's node) fetches web-1 through the ClusterIP
	// Service's name until web-1 answers.
	fetch := func(from, url string) string {
		t.Helper()
		return fetchWith(t, s, from, "import urllib.request; print(urllib.request.urlopen('"+url+"', timeout=5).read().decode())")
	}
	if got := fetch("web-0", "http://web-2.nginx-headless/"); got != "web-2" {
		t.Fatalf("web-0 fetched web-2.nginx-headless and got %q", got)
	}
	t.Logf("web-0 (%s) fetched http://web-2.nginx-headless/ (%s): web-2", m[2], m[6])
	seen := map[string]bool{}
	for range 30 {
		seen[fetch("web-2", "http://web-lb/")] = true
	}
	if len(seen) != 3 {
		t.Fatalf("30 requests from web-2 to the web-lb Service reached %v; want all three pods", seen)
	}
	t.Logf("web-2 through the web-lb ClusterIP Service reached %v", seen)

	// Pod-to-pod traffic across nodes keeps its source address: web-1
	// (another node) sees web-0's own IP, not its node's.
	listener := exec.Command("ip", "netns", "exec", s.ns, headwayBin, "kubectl", "--kubeconfig", filepath.Join(serverDir, "kubeconfig"),
		"exec", "web-1", "--", "python3", "-c",
		"import socket\nl=socket.socket(); l.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); l.bind(('', 8081)); l.listen(1)\nc, a = l.accept(); c.sendall(a[0].encode()); c.close()")
	listenerOut := &lockedBuffer{}
	listener.Stdout, listener.Stderr = listenerOut, listenerOut
	if err := listener.Start(); err != nil {
		t.Fatal(err)
	}
	listenerDone := make(chan struct{})
	go func() { listener.Wait(); close(listenerDone) }()
	t.Cleanup(func() {
		select {
		case <-listenerDone:
		default:
			listener.Process.Kill()
			<-listenerDone
		}
	})
	peer := fetchWith(t, s, "web-0", "import socket; s = socket.create_connection(('"+m[3]+"', 8081), timeout=5); print(s.recv(100).decode())")
	if peer != m[1] {
		t.Fatalf("web-1 saw a connection from web-0 (%s) coming from %q: pod-to-pod traffic across nodes must keep the pod's address", m[1], peer)
	}
	t.Logf("web-1 on %s saw web-0's connection from %s (web-0's own address)", m[4], peer)

	// Latency: 300 GETs from web-0 to a pod on its own node (peer-a) and
	// to web-1 on another node, each a new connection; the medians.
	if out, err := s.kubectl(peerPod, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply peer-a: %v\n%s", err, out)
	}
	out = s.waitKubectl(t, regexp.MustCompile(`^Running 198\.18\.\d+\.\d+$`), 60*time.Second, "get", "pod", "peer-a", "-o", "jsonpath={.status.phase} {.status.podIP}")
	peerIP := strings.Fields(out)[1]
	latency := func(url string) string {
		t.Helper()
		o, err := s.kubectl("", "exec", "web-0", "--", "python3", "-c",
			"import urllib.request, time, statistics\nts=[]\nfor _ in range(300):\n    t=time.perf_counter(); urllib.request.urlopen('"+url+"', timeout=5).read(); ts.append(time.perf_counter()-t)\nprint('%.3f ms median, %.3f ms p90' % (statistics.median(ts)*1e3, statistics.quantiles(ts, n=10)[-1]*1e3))")
		if err != nil {
			t.Fatalf("latency to %s: %v\n%s", url, err, o)
		}
		return strings.TrimSpace(o)
	}
	fetchWith(t, s, "web-0", "import urllib.request; print(urllib.request.urlopen('http://"+peerIP+"/', timeout=5).read().decode())")
	sameNode := latency("http://" + peerIP + "/")
	crossNode := latency("http://" + m[3] + "/")
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("300 HTTP GETs from web-0 (%s): same node (peer-a, %s) %s; other node (web-1 on %s, %s) %s; load %s",
		m[2], peerIP, sameNode, m[4], m[3], crossNode, strings.TrimSpace(string(load)))
}

// peerPod serves its hostname on node-a, beside web-0.
const peerPod = `apiVersion: v1
kind: Pod
metadata:
  name: peer-a
spec:
  nodeName: node-a
  containers:
    - name: web
      image: python:3-alpine
      command: ["python3", "-c", "` + hostnameServer + `"]
`

// fetchWith runs python code in pod until it succeeds (30 s at most) and
// returns what it printed.
func fetchWith(t *testing.T, s *netnsServer, pod, code string) string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		o, err := s.kubectl("", "exec", pod, "--", "python3", "-c", code)
		if err == nil {
			return strings.TrimSpace(o)
		}
		if time.Now().After(deadline) {
			t.Fatalf("in %s: python3 -c %q: %v\n%s", pod, code, err, o)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
