package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"
)

// machines: a LAN bridge in a namespace of its own and two machines on it.
const (
	xnSubnet = "198.18.252"
	xnCIDR   = "198.18.0.0/17" // pod ranges; the LAN stays outside
)

// hostnameServer answers each GET with the pod's host name.
const hostnameServer = `import http.server, socket
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        b = socket.gethostname().encode()
        self.send_response(200); self.send_header('Content-Length', str(len(b))); self.end_headers(); self.wfile.write(b)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(('', 80), H).serve_forever()
`

func xnPod(name, node string) string {
	cmd := strings.ReplaceAll(hostnameServer, "\n", `\n`)
	cmd = strings.ReplaceAll(cmd, `"`, `\"`)
	return fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: %s}
spec:
  nodeName: %s
  containers:
  - name: web
    image: python:3-alpine
    command: ["python3", "-c", "%s"]
---
`, name, node, cmd)
}

func run(args ...string) (string, error) {
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

func benchCrossNode(ctx context.Context, r *report, o options, dir string) (err error) {
	const bench = "pod-to-pod HTTP GET latency"
	switch {
	case os.Geteuid() != 0:
		r.add(bench, "skipped", "", "needs root (network namespaces)")
		return nil
	case func() bool { _, err := exec.LookPath("python3"); return err != nil }():
		r.add(bench, "skipped", "", "needs python3 (the pods' HTTP server and client)")
		return nil
	}
	if _, err := os.Stat(o.bin); err != nil {
		r.add(bench, "skipped", "", fmt.Sprintf("no headway binary at %s", o.bin))
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	prefix := fmt.Sprintf("hwbx%d", os.Getpid())
	lan, ma, mb := prefix+"l", prefix+"a", prefix+"b"
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	for _, ns := range []string{lan, ma, mb} {
		if _, err := run("ip", "netns", "add", ns); err != nil {
			return err
		}
		cleanups = append(cleanups, func() { exec.Command("ip", "netns", "del", ns).Run() })
		if _, err := run("ip", "-n", ns, "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	steps := [][]string{
		{"ip", "-n", lan, "link", "add", "br0", "type", "bridge"},
		{"ip", "-n", lan, "addr", "add", xnSubnet + ".254/24", "dev", "br0"},
		{"ip", "-n", lan, "link", "set", "br0", "up"},
	}
	for i, ns := range []string{ma, mb} {
		port := fmt.Sprintf("p%d", i)
		ip := fmt.Sprintf("%s.%d/24", xnSubnet, i+1)
		steps = append(steps,
			[]string{"ip", "-n", lan, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"ip", "-n", lan, "link", "set", port, "master", "br0", "up"},
			[]string{"ip", "-n", ns, "addr", "add", ip, "dev", "eth0"},
			[]string{"ip", "-n", ns, "link", "set", "eth0", "up"})
	}
	for _, s := range steps {
		if _, err := run(s...); err != nil {
			return err
		}
	}
	serverDir := filepath.Join(dir, "server")
	kubeconfig := filepath.Join(serverDir, "kubeconfig")
	server, err := startProc("ip", "netns", "exec", ma, o.bin, "server", "--data-dir", serverDir, "--store", "memory",
		"--listen", xnSubnet+".1:6443", "--runtime", "process", "--allocate-node-cidrs", "--cluster-cidr", xnCIDR,
		"--node-name", "node-a", "--node-ip", xnSubnet+".1", "--dns-listen", "127.0.0.1:10053", "--dns-upstream", "none")
	if err != nil {
		return err
	}
	cleanups = append(cleanups, server.stop)
	kubectl := func(stdin string, args ...string) (string, error) {
		cmd := exec.Command("ip", append([]string{"netns", "exec", ma, o.bin, "kubectl", "--kubeconfig", kubeconfig}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	waitFor := func(what string, timeout time.Duration, cond func() bool) error {
		deadline := time.Now().Add(timeout)
		for !cond() {
			select {
			case <-server.done:
				return fmt.Errorf("headway server exited:\n%s", server.log.String())
			default:
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: not after %v", what, timeout)
			}
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	}
	if err := waitFor("the server ready", 60*time.Second, func() bool {
		out, err := kubectl("", "get", "--raw", "/readyz")
		return err == nil && strings.TrimSpace(out) == "ok"
	}); err != nil {
		return err
	}
	out, err := run("ip", "netns", "exec", ma, o.bin, "token", "create", "--kubeconfig", kubeconfig)
	if err != nil {
		return err
	}
	token := regexp.MustCompile(`(?m)^[a-z0-9]{6}\.[a-z0-9]{16}$`).FindString(out)
	agent, err := startProc("ip", "netns", "exec", mb, o.bin, "agent", "--server", "https://"+xnSubnet+".1:6443", "--token", token,
		"--ca-file", filepath.Join(serverDir, "pki", "ca.crt"), "--node-name", "node-b", "--node-ip", xnSubnet+".2",
		"--data-dir", filepath.Join(dir, "agent"), "--runtime", "process", "--dns-upstream", "none")
	if err != nil {
		return err
	}
	cleanups = append(cleanups, agent.stop)
	if err := waitFor("two nodes Ready", 60*time.Second, func() bool {
		out, _ := kubectl("", "get", "nodes", "-o", `jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status} {end}`)
		return strings.TrimSpace(out) == "True True"
	}); err != nil {
		return fmt.Errorf("%w; agent log:\n%s", err, agent.log.String())
	}
	if out, err := kubectl(xnPod("client", "node-a")+xnPod("same", "node-a")+xnPod("other", "node-b"), "apply", "-f", "-"); err != nil {
		return fmt.Errorf("kubectl apply: %v\n%s", err, out)
	}
	ips := map[string]string{}
	if err := waitFor("three pods Running", 120*time.Second, func() bool {
		out, _ := kubectl("", "get", "pods", "-o", `jsonpath={range .items[*]}{.metadata.name} {.status.phase} {.status.podIP}{"\n"}{end}`)
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) == 3 && f[1] == "Running" {
				ips[f[0]] = f[2]
			}
		}
		return len(ips) == 3
	}); err != nil {
		return err
	}
	latency := func(target string) (string, error) {
		code := fmt.Sprintf(`import urllib.request, time, statistics
url = 'http://%s/'
for _ in range(20): urllib.request.urlopen(url, timeout=5).read()
ts = []
for _ in range(%d):
    t = time.perf_counter(); urllib.request.urlopen(url, timeout=5).read(); ts.append(time.perf_counter() - t)
q = statistics.quantiles(ts, n=100)
print('%%.3f ms / %%.3f ms / %%.3f ms' %% (statistics.median(ts)*1e3, q[89]*1e3, q[98]*1e3))`, target, o.gets)
		var out string
		var err error
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			if out, err = kubectl("", "exec", "client", "--", "python3", "-c", code); err == nil {
				return strings.TrimSpace(out), nil
			}
			time.Sleep(200 * time.Millisecond)
		}
		return "", fmt.Errorf("latency to %s: %v\n%s", target, err, out)
	}
	same, err := latency(ips["same"])
	if err != nil {
		return err
	}
	other, err := latency(ips["other"])
	if err != nil {
		return err
	}
	note := fmt.Sprintf("%d GETs from a pod on node-a, each on a new TCP connection (Python urllib), after 20 warm-up; process runtime; nodes are network namespaces on a veth/bridge LAN; load %s", o.gets, loadavg())
	r.add(bench+", same node", "median / p90 / p99", same, fmt.Sprintf("client %s → %s on node-a; ", ips["client"], ips["same"])+note)
	r.add(bench+", across nodes", "median / p90 / p99", other, fmt.Sprintf("client %s → %s on node-b, routed by node-a's route to node-b's /24", ips["client"], ips["other"]))
	return nil
}
