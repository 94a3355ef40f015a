package e2e

import (
	"bufio"
	"context"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSeedManifestWithKubectl is the foundation's check: the seed's manifest
// through real kubectl — create, get, apply twice, get -w, delete — and a
// restart that keeps everything.
func TestSeedManifestWithKubectl(t *testing.T) {
	for _, k := range kubectls(t) {
		t.Run(k.name, func(t *testing.T) {
			dir := t.TempDir()
			addr := freePort(t)
			s := startServer(t, dir, addr)
			manifest := repoFile("examples/headless.yaml")

			out := k.must(t, s, "create", "-f", manifest)
			for _, want := range []string{"service/nginx-headless created", "statefulset.apps/web created"} {
				if !strings.Contains(out, want) {
					t.Fatalf("create output lacks %q:\n%s", want, out)
				}
			}
			out = k.must(t, s, "get", "svc", "nginx-headless")
			if !regexp.MustCompile(`(?m)^nginx-headless\s+ClusterIP\s+None\s+<none>\s+80/TCP\s+`).MatchString(out) {
				t.Fatalf("get svc output:\n%s", out)
			}
			out = k.must(t, s, "get", "statefulset", "web", "-o", "wide")
			if !regexp.MustCompile(`(?m)^web\s+0/3\s+\S+\s+nginx\s+nginx:alpine`).MatchString(out) {
				t.Fatalf("get sts -o wide output:\n%s", out)
			}
			// apply of the same file twice is idempotent: the second changes nothing.
			k.must(t, s, "apply", "-f", manifest)
			rv1 := k.must(t, s, "get", "svc", "nginx-headless", "-o", "jsonpath={.metadata.resourceVersion}")
			out = k.must(t, s, "apply", "-f", manifest)
			if strings.Count(out, "unchanged") != 2 {
				t.Fatalf("second apply was not a no-op:\n%s", out)
			}
			if rv2 := k.must(t, s, "get", "svc", "nginx-headless", "-o", "jsonpath={.metadata.resourceVersion}"); rv1 != rv2 {
				t.Fatalf("second apply changed the Service: %s → %s", rv1, rv2)
			}
			// server-side apply, twice.
			for i := 0; i < 2; i++ {
				out = k.must(t, s, "apply", "--server-side", "-f", manifest)
				if !strings.Contains(out, "serverside-applied") {
					t.Fatalf("server-side apply:\n%s", out)
				}
			}
			// kubectl scale goes through the scale subresource.
			if out := k.must(t, s, "scale", "statefulset", "web", "--replicas=5"); !strings.Contains(out, "statefulset.apps/web scaled") {
				t.Fatalf("scale:\n%s", out)
			}
			if out := k.must(t, s, "get", "statefulset", "web", "-o", "jsonpath={.spec.replicas}"); out != "5" {
				t.Fatalf("replicas after scale = %q", out)
			}
			k.must(t, s, "scale", "statefulset", "web", "--replicas=3")
			// explain reads the served OpenAPI.
			out = k.must(t, s, "explain", "service.spec.clusterIP")
			if !strings.Contains(out, "clusterIP") || !strings.Contains(strings.ToLower(out), "ip address") {
				t.Fatalf("explain:\n%s", out)
			}

			// get -w streams a change made by another client.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			argv := append(append([]string{}, k.argv...), "--kubeconfig", s.kubeconfig(), "get", "svc", "-w", "--show-labels")
			watcher := exec.CommandContext(ctx, argv[0], argv[1:]...)
			pipe, _ := watcher.StdoutPipe()
			if err := watcher.Start(); err != nil {
				t.Fatal(err)
			}
			lines := make(chan string, 100)
			go func() {
				sc := bufio.NewScanner(pipe)
				for sc.Scan() {
					lines <- sc.Text()
				}
				close(lines)
			}()
			waitLine := func(re *regexp.Regexp) {
				t.Helper()
				for {
					select {
					case l, ok := <-lines:
						if !ok {
							t.Fatalf("get -w ended before printing %s", re)
						}
						if re.MatchString(l) {
							return
						}
					case <-ctx.Done():
						t.Fatalf("get -w never printed %s", re)
					}
				}
			}
			waitLine(regexp.MustCompile(`^nginx-headless\s+ClusterIP\s+None`))
			k.must(t, s, "label", "svc", "nginx-headless", "tier=db")
			waitLine(regexp.MustCompile(`^nginx-headless\s+ClusterIP\s+None.*tier=db`))
			cancel()
			watcher.Wait()

			// Restart on the same data dir: the objects are still there.
			rvBefore := k.must(t, s, "get", "svc", "nginx-headless", "-o", "jsonpath={.metadata.resourceVersion}")
			s.stop()
			s = startServer(t, dir, addr)
			if rv := k.must(t, s, "get", "svc", "nginx-headless", "-o", "jsonpath={.metadata.resourceVersion}"); rv != rvBefore {
				t.Fatalf("resourceVersion changed across restart: %s → %s", rvBefore, rv)
			}

			out = k.must(t, s, "delete", "-f", manifest)
			if !strings.Contains(out, `service "nginx-headless" deleted`) || !strings.Contains(out, `statefulset.apps "web" deleted`) {
				t.Fatalf("delete output:\n%s", out)
			}
			if out, err := k.run(t, s, "", "get", "svc", "nginx-headless"); err == nil || !strings.Contains(out, "NotFound") {
				t.Fatalf("Service still there after delete -f:\n%s", out)
			}
		})
	}
}

// TestBadInputThroughKubectl: what a user types wrong gets a clear error and
// stores nothing.
func TestBadInputThroughKubectl(t *testing.T) {
	k := kubectls(t)[0]
	s := startServer(t, t.TempDir(), freePort(t))
	for _, tc := range []struct {
		name, manifest, want string
	}{
		{"invalid name", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: Bad_Name\n", "Invalid value"},
		{"unknown field", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ok\nbogus: 1\n", `unknown field "bogus"`},
		{"malformed yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: [\n", "error"},
	} {
		out, err := k.run(t, s, tc.manifest, "create", "-f", "-")
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: err=%v, output lacks %q:\n%s", tc.name, err, tc.want, out)
		}
	}
	// The only ConfigMap is the cluster CA every namespace has.
	if out := k.must(t, s, "get", "configmaps", "-o", "name"); strings.TrimSpace(out) != "configmap/kube-root-ca.crt" {
		t.Fatalf("rejected input was stored:\n%s", out)
	}
	// A kubeconfig with a wrong token is refused.
	out, err := k.run(t, s, "", "get", "ns", "--token", "wrong")
	if err == nil || !strings.Contains(out, "Unauthorized") {
		t.Fatalf("wrong token: err=%v\n%s", err, out)
	}
}
