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

// startEtcdIn runs Debian's etcd in network namespace ns, on host:2379,
// until the test ends, and returns its client URL.
func startEtcdIn(t *testing.T, ns, host string) string {
	t.Helper()
	bin, err := exec.LookPath("etcd")
	if err != nil {
		t.Skip("needs etcd (apt-get install etcd-server; .ci/run installs it)")
	}
	client, peer := "http://"+host+":2379", "http://"+host+":2380"
	log, done := runEtcd(t, exec.Command("ip", "netns", "exec", ns, bin), client, peer)
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _ := exec.Command("ip", "netns", "exec", ns, "python3", "-c",
			"import urllib.request; print(urllib.request.urlopen('"+client+"/health', timeout=2).read().decode())").CombinedOutput()
		if strings.Contains(string(out), `"health":"true"`) {
			return client
		}
		select {
		case <-done:
			t.Fatalf("etcd exited:\n%s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("etcd at %s not healthy after 30s: %s\n%s", client, out, log.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// joinToken makes a join token with `headway token create` on s.
func joinToken(t *testing.T, s *netnsServer) string {
	t.Helper()
	out, err := s.exec(headwayBin, "token", "create", "--kubeconfig", filepath.Join(s.dataDir, "kubeconfig"))
	if err != nil {
		t.Fatalf("headway token create: %v\n%s", err, out)
	}
	token := regexp.MustCompile(`(?m)^[a-z0-9]{6}\.[a-z0-9]{16}$`).FindString(out)
	if token == "" {
		t.Fatalf("headway token create printed no token:\n%s", out)
	}
	return token
}

// webPods are the seed StatefulSet's pods: name → "phase ready ip node".
func webPods(s *netnsServer) map[string][]string {
	out, _ := s.kubectl("", "get", "pods", "-l", "app=nginx", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.conditions[?(@.type=="Ready")].status} {.status.podIP} {.spec.nodeName}{"\n"}{end}`)
	pods := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(line); len(f) == 5 {
			pods[f[0]] = f[1:]
		}
	}
	return pods
}

// digOn asks the cluster DNS at the DNS Service address from machine m.
func digOn(m netMachine, name string) []string {
	out, _ := exec.Command("ip", "netns", "exec", m.ns, "dig", "+short", "+time=1", "+tries=1", "@198.19.0.10", name).CombinedOutput()
	got := strings.Fields(string(out))
	slices.Sort(got)
	return got
}

// TestServersAndMachines is issue 16's whole picture: one etcd, two
// servers and three nodes, each a network namespace on a 198.18.251.0/24
// LAN (etcd on the LAN's bridge, server A with node-a's agent on the first
// machine, server B with node-b's on the second, node-c's agent alone on
// the third; the agents know both servers). The seed StatefulSet spreads
// over the three nodes, every node's DNS lists every pod, a pod on one node
// fetches web-2 on another by name. kill -9 of the server holding the
// controllers' Lease: the other takes it within 15 s, a scale-up made
// during the outage completes and no node loses its Ready. Then a node's
// agent stops: its pods go not ready and leave DNS within the grace period,
// and the StatefulSet re-creates them on the other nodes with the same
// names, in DNS at their new addresses.
func TestServersAndMachines(t *testing.T) {
	needRoot(t)
	for _, tool := range []string{"dig", "python3", "etcd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s", tool)
		}
	}
	const (
		subnet = "198.18.251"
		grace  = 8 * time.Second
	)
	lan, machines := netMachines(t, "c", subnet, 3)
	etcdURL := startEtcdIn(t, lan, subnet+".254")
	common := []string{"--store", "etcd", "--etcd-endpoints", etcdURL, "--runtime", "none",
		"--allocate-node-cidrs", "--cluster-cidr", "198.18.0.0/17",
		"--node-monitor-grace-period", grace.String(),
		"--default-not-ready-toleration-seconds", "5", "--default-unreachable-toleration-seconds", "5"}
	dirA := t.TempDir()
	a := launchNetnsServer(t, machines[0].ns, dirA, append([]string{"--listen", machines[0].ip + ":6443"}, common...)...)
	dirB := t.TempDir()
	copyDir(t, filepath.Join(dirA, "pki"), filepath.Join(dirB, "pki"))
	b := launchNetnsServer(t, machines[1].ns, dirB, append([]string{"--listen", machines[1].ip + ":6443"}, common...)...)
	servers := map[string]*netnsServer{identityIn(t, "A", a.log): a, identityIn(t, "B", b.log): b}
	if len(servers) != 2 {
		t.Fatal("the two servers campaign with one identity")
	}

	token := joinToken(t, a)
	both := "https://" + machines[0].ip + ":6443,https://" + machines[1].ip + ":6443"
	agents := map[string]*machineAgent{}
	for _, m := range machines {
		agents[m.node] = startMachineAgent(t, m.ns, "--server", both, "--token", token, "--ca-file", filepath.Join(dirA, "pki", "ca.crt"),
			"--node-name", m.node, "--node-ip", m.ip, "--data-dir", t.TempDir(), "--runtime", "process",
			"--dns-listen", "127.0.0.1:10054", "--dns-upstream", "none", "--node-lease-duration-seconds", "8")
	}
	nodesRE := regexp.MustCompile(`(?m)^node-a True 198\.18\.\d+\.0/24\nnode-b True 198\.18\.\d+\.0/24\nnode-c True 198\.18\.\d+\.0/24$`)
	nodesJSONPath := `jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.spec.podCIDR}{"\n"}{end}`
	start := time.Now()
	out := b.waitKubectl(t, nodesRE, 60*time.Second, "get", "nodes", "-o", nodesJSONPath)
	t.Logf("three nodes Ready %v after the agents started (asked through B):\n%s", time.Since(start).Round(time.Millisecond), out)

	// The seed StatefulSet, through A: one pod per node.
	if out, err := a.kubectl(proxyManifest, "apply", "-f", "-"); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	var pods map[string][]string
	running := func(want int) func() (bool, error) {
		return func() (bool, error) {
			pods = webPods(b)
			n := 0
			for _, p := range pods {
				if p[0] == "Running" && p[1] == "True" {
					n++
				}
			}
			if n != want || len(pods) != want {
				return false, fmt.Errorf("pods %v", pods)
			}
			return true, nil
		}
	}
	if d, err := pollUntil(120*time.Second, running(3)); err != nil {
		t.Fatalf("three web pods Ready: %v", err)
	} else {
		t.Logf("three pods Ready %v after apply: %v", d.Round(time.Millisecond), pods)
	}
	nodeOf := map[string]string{}
	for name, p := range pods {
		nodeOf[p[3]] = name
	}
	if len(nodeOf) != 3 {
		t.Fatalf("the pods are not one per node: %v", pods)
	}
	ipsOf := func(pods map[string][]string) []string {
		var ips []string
		for _, p := range pods {
			ips = append(ips, p[2])
		}
		slices.Sort(ips)
		return ips
	}
	dnsLists := func(on []netMachine, want []string) error {
		for _, m := range on {
			if got := digOn(m, "nginx-headless.default.svc.cluster.local"); !slices.Equal(got, want) {
				return fmt.Errorf("dig on %s lists %v; want %v", m.node, got, want)
			}
		}
		return nil
	}
	if _, err := pollUntil(30*time.Second, func() (bool, error) { return true, dnsLists(machines, ipsOf(pods)) }); err != nil {
		t.Fatalf("headless DNS on every node: %v", err)
	}
	t.Logf("dig on node-a, node-b and node-c lists %v", ipsOf(pods))
	if got := fetchWith(t, a, "web-0", "import urllib.request; print(urllib.request.urlopen('http://web-2.nginx-headless/', timeout=5).read().decode())"); got != "web-2" {
		t.Fatalf("web-0 fetched web-2.nginx-headless and got %q", got)
	}
	t.Logf("web-0 (%s) fetched http://web-2.nginx-headless/ on %s: web-2", pods["web-0"][3], pods["web-2"][3])

	// kill -9 the server holding the controllers' Lease; scale up through
	// the other during the outage.
	var leader, survivor *netnsServer
	var survivorID string
	if _, err := pollUntil(30*time.Second, func() (bool, error) {
		out, err := b.kubectl("", "get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "jsonpath={.spec.holderIdentity}")
		leader = servers[strings.TrimSpace(out)]
		return leader != nil, err
	}); err != nil {
		t.Fatalf("no server holds the controllers' Lease: %v", err)
	}
	for id, s := range servers {
		if s != leader {
			survivor, survivorID = s, id
		}
	}
	if err := leader.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-leader.done
	killed := time.Now()
	t.Logf("killed the leading server (in %s) with SIGKILL", leader.ns)
	if out, err := survivor.kubectl("", "scale", "statefulset", "web", "--replicas=4"); err != nil {
		t.Fatalf("scale through the survivor: %v\n%s", err, out)
	}
	if _, err := pollUntil(30*time.Second, func() (bool, error) {
		out, err := survivor.kubectl("", "get", "lease", "-n", "kube-system", "kube-controller-manager", "-o", "jsonpath={.spec.holderIdentity}")
		return strings.TrimSpace(out) == survivorID, err
	}); err != nil {
		t.Fatalf("the other server did not take the controllers' Lease: %v", err)
	}
	takeover := time.Since(killed)
	if takeover > 15*time.Second {
		t.Fatalf("the controllers resumed %v after the kill, want within 15 s", takeover)
	}
	if _, err := pollUntil(60*time.Second, running(4)); err != nil {
		t.Fatalf("the scale-up to 4 made during the outage: %v", err)
	}
	t.Logf("fail-over: Lease taken %v after kill -9; web-3 Ready %v after it, on %s",
		takeover.Round(time.Millisecond), time.Since(killed).Round(time.Millisecond), pods["web-3"][3])
	// The agents moved to the survivor: past the grace period after the
	// kill, every node is still Ready and no pod lost its Ready.
	for time.Since(killed) < grace+2*time.Second {
		if out, _ := survivor.kubectl("", "get", "nodes", "-o", nodesJSONPath); !nodesRE.MatchString(out) {
			t.Fatalf("a node lost its Ready after the server it used died (the agents know both servers):\n%s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if ok, err := running(4)(); !ok {
		t.Fatalf("after the fail-over: %v", err)
	}

	// Stop the agent of a node without web-0: its pods go not ready and
	// leave DNS, then come back with their names on the other nodes.
	lost := ""
	for _, m := range machines {
		if m.node != pods["web-0"][3] {
			lost = m.node
			break
		}
	}
	var moved []string
	for name, p := range pods {
		if p[3] == lost {
			moved = append(moved, name)
		}
	}
	slices.Sort(moved)
	var others []netMachine
	for _, m := range machines {
		if m.node != lost {
			others = append(others, m)
		}
	}
	before := map[string][]string{}
	for k, v := range pods {
		before[k] = v
	}
	agents[lost].stop()
	stopped := time.Now()
	t.Logf("stopped the agent of %s, which ran %v", lost, moved)
	var left []string
	for _, p := range before {
		if p[3] != lost {
			left = append(left, p[2])
		}
	}
	slices.Sort(left)
	if d, err := pollUntil(grace+10*time.Second, func() (bool, error) {
		out, _ := survivor.kubectl("", "get", "node", lost, "-o", `jsonpath={.status.conditions[?(@.type=="Ready")].status}`)
		if strings.TrimSpace(out) != "Unknown" {
			return false, fmt.Errorf("%s Ready=%q", lost, out)
		}
		return true, dnsLists(others, left)
	}); err != nil {
		t.Fatalf("after the agent of %s stopped: %v", lost, err)
	} else {
		t.Logf("%s Unknown and its pods out of DNS %v after its agent stopped (grace period %v)", lost, d.Round(time.Millisecond), grace)
	}
	if _, err := pollUntil(90*time.Second, func() (bool, error) {
		ok, err := running(4)()
		if !ok {
			return false, err
		}
		for _, name := range moved {
			if pods[name][3] == lost {
				return false, fmt.Errorf("%s still on %s", name, lost)
			}
		}
		return true, nil
	}); err != nil {
		t.Fatalf("the StatefulSet did not re-create %v on the other nodes: %v", moved, err)
	}
	recreated := time.Since(stopped)
	if _, err := pollUntil(30*time.Second, func() (bool, error) { return true, dnsLists(others, ipsOf(pods)) }); err != nil {
		t.Fatalf("DNS after the re-creation: %v", err)
	}
	t.Logf("%v Ready again on other nodes %v after the agent stopped: %v; DNS on the other nodes lists %v",
		moved, recreated.Round(time.Millisecond), pods, ipsOf(pods))
	for _, name := range moved {
		if name == "web-0" {
			continue
		}
		if got := fetchWith(t, survivor, "web-0", "import urllib.request; print(urllib.request.urlopen('http://"+name+".nginx-headless/', timeout=5).read().decode())"); got != name {
			t.Fatalf("web-0 fetched %s.nginx-headless and got %q", name, got)
		}
	}
	load, _ := os.ReadFile("/proc/loadavg")
	t.Logf("load %s", strings.TrimSpace(string(load)))
}
