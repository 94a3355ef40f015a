package e2e

import (
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/headway/headway/internal/testing/leftover"
)

// TestCRISeedScenario is the seed walkthrough with real containers: the
// verbatim examples/headless.yaml (nginx:alpine, no command) run by
// `headway server --runtime cri` through the containerd it manages, images
// pulled from a registry on loopback named as docker.io's mirror. As a user
// would, with the embedded kubectl and /usr/bin/kubectl: pods with their own
// addresses; the busybox shell of the walkthrough (twenty times: each pod
// created and deleted); exec, logs, port-forward and cp; scaling and a pod
// coming back under its name and address; an image that does not exist, a
// killed containerd and a restarted server; a memory limit enforced; and
// nothing of the cluster left on the machine after a --cleanup stop.
func TestCRISeedScenario(t *testing.T) {
	needCRI(t)
	began := time.Now()
	c := newCRICluster(t)
	ks := kubectls(t)
	emb := ks[0]

	// The first server runs without --cleanup, so that its restart (Faults)
	// shows pods outliving it; the second one has --cleanup.
	c.start(t, false)

	var ips map[string]string // pod name → IP
	steps := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"CreateHeadless", func(t *testing.T) { ips = criCreate(t, c, ks) }},
		{"BusyboxShell", func(t *testing.T) { criShells(t, c, ks, ips) }},
		{"Streaming", func(t *testing.T) { criStreaming(t, c, ks) }},
		{"InClusterClient", func(t *testing.T) { criInClusterClient(t, c, emb) }},
		{"Scale", func(t *testing.T) { criScale(t, c, emb, ips) }},
		{"Faults", func(t *testing.T) { criFaults(t, c, emb) }},
		{"MemoryLimit", func(t *testing.T) { criOOM(t, c, emb) }},
	}
	for _, s := range steps {
		stepBegan := time.Now()
		ok := t.Run(s.name, s.fn)
		t.Logf("%s: %v", s.name, time.Since(stepBegan).Round(time.Millisecond))
		if !ok {
			t.Logf("server log (tail):\n%s", c.logTail(c.srvOrLast(), 150))
			break
		}
	}
	t.Run("NoLeftovers", func(t *testing.T) { criLeftovers(t, c) })
	t.Logf("TestCRISeedScenario: %v in all", time.Since(began).Round(time.Second))
}

func (c *criCluster) srvOrLast() *criServer {
	if c.srv != nil {
		return c.srv
	}
	return &criServer{logPath: filepath.Join(c.logDir, fmt.Sprintf("server-%d.log", c.servers))}
}

var podIPRe = regexp.MustCompile(`^198\.18\.\d+\.\d+$`)

// criCreate: the verbatim manifest gives three Running pods with addresses
// in 198.18.0.0/16 and a headless Service.
func criCreate(t *testing.T, c *criCluster, ks []kubectl) map[string]string {
	out := c.must(t, ks[0], "create", "-f", repoFile("examples/headless.yaml"))
	if !strings.Contains(out, "service/nginx-headless created") || !strings.Contains(out, "statefulset.apps/web created") {
		t.Fatalf("create:\n%s", out)
	}
	began := time.Now()
	ps := c.waitPods(t, "app=nginx", 120*time.Second, "web-0", "web-1", "web-2")
	t.Logf("web-0..2 Running and Ready %v after create", time.Since(began).Round(time.Millisecond))
	ips := map[string]string{}
	seen := map[string]bool{}
	for n, p := range ps {
		if !podIPRe.MatchString(p.IP) || seen[p.IP] {
			t.Fatalf("%s has IP %q: want a distinct address in 198.18.0.0/16 (%v)", n, p.IP, ps)
		}
		if !strings.HasPrefix(p.ContainerID, "containerd://") {
			t.Fatalf("%s's container is %q: want containerd://<id> (the CRI runtime)", n, p.ContainerID)
		}
		seen[p.IP] = true
		ips[n] = p.IP
	}
	row := regexp.MustCompile(`(?m)^(web-[012])\s+1/1\s+Running\s+0\s+\S+\s+(198\.18\.\d+\.\d+)\s+\S+`)
	for _, k := range ks {
		out := c.must(t, k, "get", "pods", "-l", "app=nginx", "-o", "wide")
		rows := row.FindAllStringSubmatch(out, -1)
		if len(rows) != 3 {
			t.Fatalf("%s kubectl get pods -o wide: want web-0..2 1/1 Running 0 with their IPs:\n%s", k.name, out)
		}
		for _, r := range rows {
			if ips[r[1]] != r[2] {
				t.Fatalf("%s kubectl shows %s at %s, the API says %s:\n%s", k.name, r[1], r[2], ips[r[1]], out)
			}
		}
		out = c.must(t, k, "get", "svc", "nginx-headless")
		if !regexp.MustCompile(`(?m)^nginx-headless\s+ClusterIP\s+None\s+<none>\s+80/TCP\s`).MatchString(out) {
			t.Fatalf("%s kubectl get svc nginx-headless: want ClusterIP None:\n%s", k.name, out)
		}
	}
	node := strings.TrimSpace(c.must(t, ks[0], "get", "nodes", "-o", "jsonpath={.items[0].status.nodeInfo.containerRuntimeVersion}"))
	if !strings.HasPrefix(node, "containerd://") {
		t.Fatalf("the node's container runtime is %q, want containerd://<version>", node)
	}
	c.recordSandboxes(t)
	return ips
}

// criShells: the walkthrough's busybox shell, twenty times in a row,
// alternating the embedded and the system kubectl.
func criShells(t *testing.T, c *criCluster, ks []kubectl, ips map[string]string) {
	const sessions = 20
	want := slices.Sorted(maps.Values(ips))
	created, deleted := 0, 0
	uids := map[string]bool{}
	for i := range sessions {
		k := ks[i%len(ks)]
		began := time.Now()
		argv := c.inNS(append(append([]string{}, k.argv...), "--kubeconfig", c.kubeconfig(),
			"run", "-it", "--rm", "--image=busybox:1.28", "test-pod", "--", "sh")...)
		term := startTerminal(t, argv...)
		term.expectPrompt(90 * time.Second)
		ps := c.pods(t, "run=test-pod")
		p, ok := ps["test-pod"]
		if !ok || uids[p.UID] {
			t.Fatalf("session %d: the shell runs but test-pod is %+v (a new UID expected)", i, p)
		}
		uids[p.UID] = true
		created++
		c.recordSandboxes(t)
		s := &session{term: term}

		out := s.do(t, "nslookup nginx-headless", 30*time.Second)
		got := regexp.MustCompile(`198\.18\.\d+\.\d+`).FindAllString(out, -1)
		sort.Strings(got)
		got = slices.Compact(got)
		if !slices.Equal(got, want) {
			t.Fatalf("session %d (%s kubectl): nslookup nginx-headless lists %v, want the three pod IPs %v:\n%s", i, k.name, got, want, out)
		}
		out = s.do(t, "wget -qO- web-0.nginx-headless", 30*time.Second)
		if !strings.Contains(out, "Welcome to nginx!") {
			t.Fatalf("session %d: wget -qO- web-0.nginx-headless:\n%s", i, out)
		}
		// The pod's own processes only: sh as PID 1 (the container's
		// command; the sandbox's pause process is in its own PID
		// namespace), and nothing of the host.
		out = s.do(t, "ps", 20*time.Second)
		pid1 := regexp.MustCompile(`(?m)^\s*1\s.*$`).FindString(out)
		if f := strings.Fields(pid1); len(f) < 3 || f[len(f)-1] != "sh" {
			t.Fatalf("session %d: ps: PID 1 is not sh:\n%s", i, out)
		}
		for _, host := range []string{"headway", "containerd", "nginx", "catatonit", "pause", "kubectl"} {
			if strings.Contains(out, host) {
				t.Fatalf("session %d: ps in the pod shows %q:\n%s", i, host, out)
			}
		}
		if n := len(regexp.MustCompile(`(?m)^\s*\d+\s`).FindAllString(out, -1)); n > 3 {
			t.Fatalf("session %d: ps shows %d processes, want the shell and ps:\n%s", i, n, out)
		}
		// The image's root, not the host's.
		out = s.do(t, "ls /; ls -d /work /bin/busybox /usr/sbin/nginx", 20*time.Second)
		if !strings.Contains(out, "/bin/busybox") || !regexp.MustCompile(`/work: No such file`).MatchString(out) ||
			!regexp.MustCompile(`/usr/sbin/nginx: No such file`).MatchString(out) || !regexp.MustCompile(`\bbin\b`).MatchString(out) {
			t.Fatalf("session %d: ls / does not show busybox's image root:\n%s", i, out)
		}
		out = s.do(t, "hostname; cat /etc/resolv.conf", 20*time.Second)
		if !strings.HasPrefix(out, "test-pod\n") || !strings.Contains(out, "search default.svc.cluster.local svc.cluster.local cluster.local") {
			t.Fatalf("session %d: hostname and resolv.conf:\n%s", i, out)
		}
		if i < len(ks) {
			t.Logf("session %d with the %s kubectl:\n%s", i, k.name, term.screen())
		}
		term.typeLine("exit")
		select {
		case <-term.done:
		case <-time.After(60 * time.Second):
			t.Fatalf("session %d: kubectl run did not end 60s after exit:\n%s", i, term.screen())
		}
		if !strings.Contains(term.screen(), `pod "test-pod" deleted`) {
			t.Errorf("session %d (%s kubectl): kubectl run --rm did not report deleting the pod:\n%s", i, k.name, term.screen())
		}
		c.waitGone(t, "test-pod", 60*time.Second)
		deleted++
		t.Logf("session %d (%s kubectl): created, answered, deleted in %v", i, k.name, time.Since(began).Round(time.Millisecond))
	}
	if created != sessions || deleted != sessions {
		t.Fatalf("%d pods created and %d deleted, want %d and %d", created, deleted, sessions, sessions)
	}
}

// criStreaming: exec, logs, port-forward and cp, with each kubectl.
func criStreaming(t *testing.T, c *criCluster, ks []kubectl) {
	for _, k := range ks {
		if out := c.must(t, k, "exec", "web-0", "--", "hostname"); strings.TrimSpace(out) != "web-0" {
			t.Fatalf("%s kubectl exec web-0 -- hostname: %q", k.name, out)
		}
		out, err := c.run(k, "", "exec", "web-0", "--", "sh", "-c", "exit 3")
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Fatalf("%s kubectl exec web-0 -- sh -c 'exit 3': want exit code 3, got %v (%s)", k.name, err, out)
		}
		if out, err := c.run(k, "hi\n", "exec", "-i", "web-0", "--", "cat"); err != nil || out != "hi\n" {
			t.Fatalf("%s kubectl exec -i web-0 -- cat: %q %v", k.name, out, err)
		}
	}
	emb := ks[0]
	// nginx's start lines, then the access log line of a request.
	out := c.must(t, emb, "logs", "web-0")
	if !strings.Contains(out, "start worker process") {
		t.Fatalf("kubectl logs web-0 has no nginx start lines:\n%s", out)
	}
	agent := fmt.Sprintf("e2e-%d", time.Now().UnixNano())
	c.must(t, emb, "exec", "web-1", "--", "wget", "-qO-", "-U", agent, "http://web-0.nginx-headless/")
	for _, k := range ks {
		c.wait(t, k, regexp.MustCompile(`"GET / HTTP/1\.1" 200 \d+ "-" "`+agent+`"`), 20*time.Second, "logs", "web-0")
	}
	if out := c.must(t, emb, "logs", "web-0", "--tail=1"); !strings.Contains(out, agent) {
		t.Fatalf("kubectl logs --tail=1 web-0: %q", out)
	}

	// port-forward to a local port chosen by kubectl; GET through it.
	for _, k := range ks {
		argv := c.inNS(append(append([]string{}, k.argv...), "--kubeconfig", c.kubeconfig(), "port-forward", "pod/web-2", ":80")...)
		pf, pfOut := background(t, argv...)
		var port string
		if !waitFor(30*time.Second, func() bool {
			m := regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 80`).FindStringSubmatch(pfOut.String())
			if m != nil {
				port = m[1]
			}
			return m != nil
		}) {
			t.Fatalf("%s kubectl port-forward pod/web-2 :80 never said where it listens:\n%s", k.name, pfOut.String())
		}
		for i := range 3 {
			get := c.inNS("busybox", "wget", "-qO-", "http://127.0.0.1:"+port+"/")
			out, err := execOut(get...)
			if err != nil || !strings.Contains(out, "Welcome to nginx!") {
				t.Fatalf("%s kubectl port-forward, GET %d through 127.0.0.1:%s: %v\n%s\nport-forward:\n%s", k.name, i, port, err, out, pfOut.String())
			}
		}
		pf.Process.Kill()
	}
	// The request came to web-2's nginx.
	c.wait(t, emb, regexp.MustCompile(`"GET / HTTP/1\.1" 200`), 20*time.Second, "logs", "web-2")

	// cp into the container, read back with exec cat.
	for _, k := range ks {
		src := filepath.Join(t.TempDir(), "hello.txt")
		body := "copied by the " + k.name + " kubectl\n"
		if err := os.WriteFile(src, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		c.must(t, k, "cp", src, "web-0:/tmp/hello-"+k.name+".txt")
		if out := c.must(t, k, "exec", "web-0", "--", "cat", "/tmp/hello-"+k.name+".txt"); out != body {
			t.Fatalf("%s kubectl cp then cat: %q, want %q", k.name, out, body)
		}
	}
}

func execOut(argv ...string) (string, error) {
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return string(out), err
}

// criScale: 5 replicas answer in DNS, then 2; web-1 deleted comes back with
// its name and address.
func criScale(t *testing.T, c *criCluster, k kubectl, ips map[string]string) {
	const name = "nginx-headless.default.svc.cluster.local"
	c.waitDig(t, name, slices.Collect(maps.Values(ips)), 20*time.Second)
	c.must(t, k, "scale", "statefulset", "web", "--replicas=5")
	ps := c.waitPods(t, "app=nginx", 120*time.Second, "web-0", "web-1", "web-2", "web-3", "web-4")
	var five []string
	for n, p := range ps {
		if !podIPRe.MatchString(p.IP) {
			t.Fatalf("%s has IP %q", n, p.IP)
		}
		if n != "web-3" && n != "web-4" && p.IP != ips[n] {
			t.Fatalf("%s changed address while scaling: %s, was %s", n, p.IP, ips[n])
		}
		five = append(five, p.IP)
	}
	c.waitDig(t, name, five, 30*time.Second)
	c.waitDig(t, "web-4.nginx-headless.default.svc.cluster.local", []string{ps["web-4"].IP}, 30*time.Second)
	c.recordSandboxes(t)

	c.must(t, k, "scale", "statefulset", "web", "--replicas=2")
	ps = c.waitPods(t, "app=nginx", 120*time.Second, "web-0", "web-1")
	c.waitDig(t, name, []string{ips["web-0"], ips["web-1"]}, 30*time.Second)
	c.waitDig(t, "web-3.nginx-headless.default.svc.cluster.local", nil, 30*time.Second)

	before := ps["web-1"]
	c.must(t, k, "delete", "pod", "web-1")
	deadline := time.Now().Add(120 * time.Second)
	for {
		ps = c.pods(t, "app=nginx")
		p, ok := ps["web-1"]
		if ok && p.UID != before.UID && p.Phase == "Running" && p.Ready && p.IP != "" {
			if p.IP != before.IP {
				t.Fatalf("web-1 came back at %s, it was at %s", p.IP, before.IP)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("web-1 did not come back Running within 120s: %+v", ps)
		}
		time.Sleep(150 * time.Millisecond)
	}
	c.waitDig(t, "web-1.nginx-headless.default.svc.cluster.local", []string{before.IP}, 30*time.Second)
	if out := c.must(t, k, "exec", "web-1", "--", "hostname"); strings.TrimSpace(out) != "web-1" {
		t.Fatalf("exec web-1 -- hostname: %q", out)
	}
	ips["web-1"] = before.IP
	delete(ips, "web-2")
	c.recordSandboxes(t)
}

// criFaults: an image that does not exist; containerd killed; the server
// restarted.
func criFaults(t *testing.T, c *criCluster, k kubectl) {
	// An image the mirror does not have: ErrImagePull, then
	// ImagePullBackOff, saying which image; a Warning event.
	const image = "docker.io/library/does-not-exist:1"
	watchArgv := c.inNS(append(append([]string{}, k.argv...), "--kubeconfig", c.kubeconfig(), "get", "pods", "-w",
		"-o", `jsonpath={.metadata.name} {.status.containerStatuses[0].state.waiting.reason}{"\n"}`)...)
	_, watched := background(t, watchArgv...)
	c.must(t, k, "run", "missing", "--image="+image, "--restart=Never")
	if !waitFor(90*time.Second, func() bool {
		w := watched.String()
		return strings.Contains(w, "missing ErrImagePull") && strings.Contains(w, "missing ImagePullBackOff")
	}) {
		out, _ := c.run(k, "", "describe", "pod", "missing")
		t.Fatalf("pod missing never went ErrImagePull then ImagePullBackOff; watched:\n%s\ndescribe:\n%s", watched.String(), out)
	}
	if w := watched.String(); strings.Index(w, "missing ErrImagePull") > strings.Index(w, "missing ImagePullBackOff") {
		t.Errorf("ImagePullBackOff came before ErrImagePull:\n%s", w)
	}
	out := c.wait(t, k, regexp.MustCompile(`ImagePullBackOff|ErrImagePull`), 10*time.Second, "get", "pod", "missing")
	t.Logf("get pod missing:\n%s", out)
	msg := c.must(t, k, "get", "pod", "missing", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.message}")
	if !strings.Contains(msg, "does-not-exist:1") {
		t.Fatalf("the waiting message does not name the image: %q", msg)
	}
	ev := c.wait(t, k, regexp.MustCompile(`(?m)^Warning\s+Failed\s+Failed to pull image "`+regexp.QuoteMeta(image)+`"`), 20*time.Second,
		"get", "events", "--field-selector", "involvedObject.name=missing", "-o",
		`jsonpath={range .items[*]}{.type} {.reason} {.message}{"\n"}{end}`)
	t.Logf("events of pod missing:\n%s", ev)
	if strings.Contains(ev+msg, "registry-1.docker.io") {
		t.Fatalf("containerd went to Docker Hub:\n%s\n%s", msg, ev)
	}
	c.must(t, k, "delete", "pod", "missing", "--wait=false")
	c.waitGone(t, "missing", 60*time.Second)

	before := c.waitPods(t, "app=nginx", 30*time.Second, "web-0", "web-1")

	// kill -9 the managed containerd: headway starts a new one; the pods
	// keep running, not restarted, at their addresses.
	old := c.containerdPID()
	if old == 0 {
		t.Fatalf("no containerd with --config %s/containerd/config.toml runs", c.dataDir)
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var restarted int
	if !waitFor(60*time.Second, func() bool { restarted = c.containerdPID(); return restarted != 0 && restarted != old }) {
		t.Fatalf("containerd (pid %d) was killed and no new one started within 60s:\n%s", old, c.logTail(c.srv, 40))
	}
	t.Logf("containerd %d killed, %d started; log: %q", old, restarted, c.grepLog(regexp.MustCompile(`containerd (exited|restarted)`)))
	criSamePods(t, c, k, before, "after containerd was killed")

	// The server restarted (SIGTERM, no --cleanup): the next one adopts the
	// pods.
	c.stop(t)
	for n, p := range before {
		if len(c.procsInPod(p.UID)) == 0 {
			t.Fatalf("pod %s has no processes after the server without --cleanup stopped", n)
		}
	}
	// The pods' own DNS sockets (198.19.0.10:53 in their namespaces) went
	// with the server; the next one opens them again, and they answer.
	pids := map[string]int{}
	for n, p := range before {
		if procs := c.procsInPod(p.UID); len(procs) > 0 {
			pids[n] = procs[0]
			if podDNSSocket(procs[0]) {
				t.Errorf("pod %s still has a DNS socket in its namespace after the server stopped", n)
			}
		}
	}
	c.start(t, true)
	criSamePods(t, c, k, before, "after the server restarted")
	for n, pid := range pids {
		if !waitFor(30*time.Second, func() bool { return podDNSSocket(pid) }) {
			t.Fatalf("pod %s has no DNS socket of its own after the restarted server adopted it", n)
		}
		out, err := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-n", "dig", "+short", "+time=3", "+tries=1",
			"@198.19.0.10", "kubernetes.default.svc.cluster.local").CombinedOutput()
		if err != nil || !regexp.MustCompile(`(?m)^198\.19\.0\.1$`).Match(out) {
			t.Fatalf("pod %s asks 198.19.0.10 for kubernetes.default after the restart: %v\n%s", n, err, out)
		}
	}
	t.Logf("the adopted pods' DNS sockets are open again in their namespaces and answer: %v", slices.Sorted(maps.Keys(pids)))
	c.recordSandboxes(t)
}

// podDNSSocket says whether the network namespace of process pid has a
// UDP socket bound to the DNS Service address 198.19.0.10, port 53 (a pod's
// own, which the node's DNS server serves).
func podDNSSocket(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/net/udp")
	return err == nil && strings.Contains(string(b), " 0A0013C6:0035 ")
}

// criSamePods checks that the pods are still the ones in before: Running,
// Ready, the same containers, no restarts, the same addresses; and exec
// works.
func criSamePods(t *testing.T, c *criCluster, k kubectl, before map[string]podState, when string) {
	t.Helper()
	names := slices.Sorted(maps.Keys(before))
	var ps map[string]podState
	if !waitFor(60*time.Second, func() bool {
		ps = c.pods(t, "app=nginx")
		for _, n := range names {
			if p := ps[n]; p.Phase != "Running" || !p.Ready || p.ContainerID == "" {
				return false
			}
		}
		return len(ps) == len(names)
	}) {
		t.Fatalf("%s: pods are not all Running and Ready within 60s: %+v", when, ps)
	}
	for _, n := range names {
		b, p := before[n], ps[n]
		if p.UID != b.UID || p.IP != b.IP || p.Restarts != 0 || p.ContainerID != b.ContainerID {
			t.Fatalf("%s: %s is %+v, was %+v (want the same pod, address and container, RESTARTS 0)", when, n, p, b)
		}
	}
	out := c.must(t, k, "get", "pods", "-l", "app=nginx")
	if n := len(regexp.MustCompile(`(?m)^web-\d\s+1/1\s+Running\s+0\s`).FindAllString(out, -1)); n != len(names) {
		t.Fatalf("%s: kubectl get pods:\n%s", when, out)
	}
	for _, n := range names {
		var out string
		if !waitFor(30*time.Second, func() bool {
			out, _ = c.run(k, "", "exec", n, "--", "hostname")
			return strings.TrimSpace(out) == n
		}) {
			t.Fatalf("%s: kubectl exec %s -- hostname: %q", when, n, out)
		}
	}
}

// procsInPod lists the PIDs in pod uid's cgroup.
func (c *criCluster) procsInPod(uid string) []int {
	var pids []int
	for _, pid := range allPIDs() {
		if cg, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup"); err == nil && strings.Contains(string(cg), "/headway/pod"+uid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

const oomPod = `apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  restartPolicy: Never
  containers:
    - name: hog
      image: busybox:1.28
      command: ["sh", "-c", "head -c 200m /dev/zero | tail"]
      resources:
        limits:
          memory: 32Mi
`

// criOOM: a container that allocates past its memory limit is OOMKilled.
func criOOM(t *testing.T, c *criCluster, k kubectl) {
	if out, err := c.run(k, oomPod, "create", "-f", "-"); err != nil {
		t.Fatalf("create hog: %v\n%s", err, out)
	}
	reason := c.wait(t, k, regexp.MustCompile(`\S`), 90*time.Second, "get", "pod", "hog", "-o",
		"jsonpath={.status.containerStatuses[0].state.terminated.reason}")
	ps := c.pods(t, "")
	c.recordSandboxes(t)
	if strings.TrimSpace(reason) != "OOMKilled" {
		out, _ := c.run(k, "", "describe", "pod", "hog")
		t.Fatalf("hog terminated with reason %q, want OOMKilled:\n%s", reason, out)
	}
	if p := ps["hog"]; p.Phase != "Failed" {
		t.Errorf("hog's phase is %q, want Failed", p.Phase)
	}
	out := c.must(t, k, "get", "pod", "hog")
	if !regexp.MustCompile(`(?m)^hog\s+0/1\s+OOMKilled\s+0\s`).MatchString(out) {
		t.Errorf("kubectl get pod hog: want 0/1 OOMKilled:\n%s", out)
	}
	code := c.must(t, k, "get", "pod", "hog", "-o", "jsonpath={.status.containerStatuses[0].state.terminated.exitCode}")
	if code != "137" {
		t.Errorf("hog's exit code is %s, want 137", code)
	}
	// The limit was the container's cgroup's.
	t.Logf("hog: %s", strings.TrimSpace(out))
}

// criLeftovers stops the server (it has --cleanup) and checks that nothing
// of the cluster is left: processes, mounts, pod network namespaces, links,
// cgroups.
func criLeftovers(t *testing.T, c *criCluster) {
	if c.srv == nil || !c.srv.cleanup {
		t.Skip("no server with --cleanup is running (an earlier step failed); the teardown cleans up")
	}
	c.recordSandboxes(t)
	c.pods(t, "")
	links, err := c.nsLinks()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(links, "headway0") {
		t.Fatalf("the namespace has no bridge headway0 while the server runs: %v", links)
	}
	c.stop(t)
	c.mu.Lock()
	t.Logf("checking %d pod UIDs and %d sandboxes seen during the test", len(c.podUIDs), len(c.sandboxes))
	netnsPaths := slices.Collect(maps.Values(c.sandboxes))
	c.mu.Unlock()

	for pid, why := range c.leftoverProcs() {
		t.Errorf("process %d left: %s", pid, why)
	}
	for _, m := range leftover.MountsUnder(c.dataDir) {
		t.Errorf("mount left: %s", m)
	}
	for _, p := range netnsPaths {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			t.Errorf("sandbox network namespace left: %s", p)
		}
	}
	netnsDir := filepath.Join(c.dataDir, "containerd", "state", "io.containerd.grpc.v1.cri", "netns")
	if ents, _ := os.ReadDir(netnsDir); len(ents) > 0 {
		for _, e := range ents {
			t.Errorf("network namespace file left: %s", filepath.Join(netnsDir, e.Name()))
		}
	}
	links, err = c.nsLinks()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if strings.HasPrefix(l, "hw") || l == "headway0" {
			t.Errorf("link left in the server's network namespace: %s (all: %v)", l, links)
		}
	}
	for _, d := range c.podCgroups() {
		t.Errorf("pod cgroup left: %s", d)
	}
	if pid := c.containerdPID(); pid != 0 {
		t.Errorf("containerd %d still runs", pid)
	}
}
