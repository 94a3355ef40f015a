package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/headway/headway/test/images"
)

// skipUnlessEtcdCRI skips unless this machine can run pods through the managed containerd: root,
// Debian's containerd, runc and catatonit, and the Debian packages the test images are
// built from (extra lists more of those than images.Missing does).
func skipUnlessEtcdCRI(t *testing.T, extra ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: the CRI runtime runs containerd, network namespaces and a bridge")
	}
	var bins []string
	for _, bin := range []string{"containerd", "ctr", "containerd-shim-runc-v2", "runc", "catatonit"} {
		if _, err := exec.LookPath(bin); err != nil {
			bins = append(bins, bin)
		}
	}
	if len(bins) > 0 {
		t.Skipf("the CRI runtime needs %s: %s", strings.Join(bins, ", "),
			images.InstallCommand("containerd", "runc", "catatonit", "containernetworking-plugins"))
	}
	pkgs := append(images.Missing(), extra...)
	if len(pkgs) > 0 {
		t.Skipf("the test images need Debian packages %v: %s", pkgs, images.InstallCommand(pkgs...))
	}
}

// startEtcdServer serves imgs from a registry on 127.0.0.1, makes it the docker.io mirror of
// the server's containerd (a name the registry lacks is answered 404 there: nothing is pulled
// from the network) and starts `headway server --runtime cri --cleanup` with extra flags.
func startEtcdServer(t *testing.T, imgs map[string]v1.Image, extra ...string) *server {
	t.Helper()
	reg, err := images.Start(imgs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	dataDir := t.TempDir()
	if err := images.WriteMirrorConfig(filepath.Join(dataDir, "registries"), reg.Host()); err != nil {
		t.Fatal(err)
	}
	// The example's image is quay.io/coreos/etcd: quay.io is mirrored to the same registry.
	quay := filepath.Join(dataDir, "registries", "quay.io")
	if err := os.MkdirAll(quay, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(quay, "hosts.toml"), []byte(images.MirrorConfig(reg.Host())), 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"--runtime", "cri", "--cleanup", "--store", "memory",
		"--dns-listen", freePort(t), "--dns-upstream", "none"}, extra...)
	return startServer(t, dataDir, freePort(t), args...)
}

// waitEtcdKubectl polls kubectl until its output matches re, within timeout.
func waitEtcdKubectl(t *testing.T, k kubectl, s *server, re *regexp.Regexp, timeout time.Duration, args ...string) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		out, _ := k.run(t, s, "", args...)
		if re.MatchString(out) {
			return out
		}
		select {
		case <-s.done:
			t.Fatalf("headway server exited while waiting for kubectl %s to match %s:\n%s", strings.Join(args, " "), re, s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("kubectl %s never matched %s within %v; last output:\n%s", strings.Join(args, " "), re, timeout, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// etcdMembers parses `etcdctl member list` ("id, started, name, peer URLs, client URLs,
// learner") into member IDs by name.
func etcdMembers(t *testing.T, out string) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, ", ")
		if len(f) < 5 || f[1] != "started" {
			t.Fatalf("etcdctl member list: a member that has not started, or a line not understood: %q in\n%s", line, out)
		}
		ids[f[2]] = f[0]
		if want := "http://" + f[2] + ".etcd:2380"; f[3] != want {
			t.Errorf("member %s: peer URL %s, want %s (its per-pod name)", f[2], f[3], want)
		}
	}
	return ids
}

// TestClusteredDatabase is examples/etcd-cluster.yaml on the CRI runtime: three etcd
// members (Debian's etcd, as an image the tests build) in a StatefulSet find each other
// through the headless Service's per-pod names, form one cluster, replicate a key, and a
// deleted member comes back under its name on its claim, as the same member with its data.
func TestClusteredDatabase(t *testing.T) {
	skipUnlessEtcdCRI(t, images.EtcdMissing()...)
	imgs, err := images.DefaultImages()
	if err != nil {
		t.Fatal(err)
	}
	etcd, err := images.Etcd()
	if err != nil {
		t.Fatal(err)
	}
	imgs[images.EtcdRef] = etcd
	// A bridge, pod range and service range of its own (so the cluster DNS address,
	// 198.19.236.10, too): other tests' servers may run on this machine at the same time.
	s := startEtcdServer(t, imgs, "--bridge", "hwdb0", "--cluster-cidr", "198.18.236.0/22", "--service-cidr", "198.19.236.0/22")
	k := kubectl{name: "embedded", argv: []string{headwayBin, "kubectl"}}

	start := time.Now()
	out := k.must(t, s, "apply", "-f", repoFile("examples/etcd-cluster.yaml"))
	if !strings.Contains(out, "service/etcd created") || !strings.Contains(out, "statefulset.apps/etcd created") {
		t.Fatalf("apply:\n%s", out)
	}
	readiness := []string{"get", "pods", "-l", "app=etcd", "-o",
		`jsonpath={range .items[*]}{.metadata.name} {.status.podIP} ready={.status.conditions[?(@.type=="Ready")].status} restarts={.status.containerStatuses[0].restartCount}{"\n"}{end}`}
	allReady := regexp.MustCompile(`(?m)\Aetcd-0 198\.18\.23[6-9]\.\d+ ready=True restarts=\d+\netcd-1 198\.18\.23[6-9]\.\d+ ready=True restarts=\d+\netcd-2 198\.18\.23[6-9]\.\d+ ready=True restarts=\d+\n?\z`)
	out = waitEtcdKubectl(t, k, s, allReady, 3*time.Minute, readiness...)
	t.Logf("three etcd members Ready %v after apply:\n%s", time.Since(start).Round(time.Millisecond), out)

	// One cluster of three members, each named and reached by its per-pod name.
	out = k.must(t, s, "exec", "etcd-0", "--", "etcdctl", "member", "list")
	members := etcdMembers(t, out)
	if len(members) != 3 || members["etcd-0"] == "" || members["etcd-1"] == "" || members["etcd-2"] == "" {
		t.Fatalf("member list from etcd-0: want etcd-0, etcd-1, etcd-2:\n%s", out)
	}
	t.Logf("etcdctl member list:\n%s", out)
	out = k.must(t, s, "exec", "etcd-0", "--", "etcdctl", "--endpoints=http://etcd-0.etcd:2379,http://etcd-1.etcd:2379,http://etcd-2.etcd:2379", "endpoint", "health")
	if n := strings.Count(out, "is healthy"); n != 3 {
		t.Fatalf("endpoint health through the per-pod names: %d healthy, want 3:\n%s", n, out)
	}

	// Written through etcd-0, read from etcd-2's own store (a serializable read answers
	// from the member asked, not the leader).
	if out := k.must(t, s, "exec", "etcd-0", "--", "etcdctl", "put", "greeting", "hello from etcd-0"); strings.TrimSpace(out) != "OK" {
		t.Fatalf("put through etcd-0: %q", out)
	}
	serializable := []string{"etcdctl", "get", "--consistency=s", "--print-value-only"}
	waitEtcdKubectl(t, k, s, regexp.MustCompile(`\Ahello from etcd-0\n\z`), 30*time.Second,
		append([]string{"exec", "etcd-2", "--"}, append(serializable, "greeting")...)...)

	// etcd-1's member ID, as it says itself, and its claim.
	statusOut := k.must(t, s, "exec", "etcd-1", "--", "etcdctl", "endpoint", "status")
	if !strings.Contains(statusOut, ", "+members["etcd-1"]+", ") {
		t.Fatalf("etcd-1's endpoint status does not show its member ID %s:\n%s", members["etcd-1"], statusOut)
	}
	claim := []string{"get", "pvc", "data-etcd-1", "-o", "jsonpath={.metadata.uid} {.status.phase} {.spec.volumeName}"}
	claimBefore := k.must(t, s, claim...)
	if !strings.Contains(claimBefore, " Bound ") {
		t.Fatalf("claim data-etcd-1 is not bound: %q", claimBefore)
	}
	uidBefore := k.must(t, s, "get", "pod", "etcd-1", "-o", "jsonpath={.metadata.uid}")

	// Delete etcd-1; while it is away the other two (a majority) take another write.
	k.must(t, s, "delete", "pod", "etcd-1", "--wait=true")
	if out := k.must(t, s, "exec", "etcd-0", "--", "etcdctl", "put", "while-away", "written without etcd-1"); strings.TrimSpace(out) != "OK" {
		t.Fatalf("put while etcd-1 is away: %q", out)
	}
	start = time.Now()
	out = waitEtcdKubectl(t, k, s, allReady, 3*time.Minute, readiness...)
	if uid := k.must(t, s, "get", "pod", "etcd-1", "-o", "jsonpath={.metadata.uid}"); uid == uidBefore {
		t.Fatalf("etcd-1 has its old UID %s: it was not deleted", uid)
	}
	t.Logf("etcd-1 Ready again %v after its deletion:\n%s", time.Since(start).Round(time.Millisecond), out)
	if after := k.must(t, s, claim...); after != claimBefore {
		t.Fatalf("etcd-1's claim changed: %q, was %q", after, claimBefore)
	}

	// The same member with its data: its ID is unchanged (a member that lost its data dir
	// would have bootstrapped a new cluster and never become Ready), it has the key written
	// before its deletion and catches up on the one written while it was away.
	out = k.must(t, s, "exec", "etcd-0", "--", "etcdctl", "member", "list")
	if again := etcdMembers(t, out); len(again) != 3 || again["etcd-1"] != members["etcd-1"] {
		t.Fatalf("member list after etcd-1 came back: want the same three members (etcd-1 is %s):\n%s", members["etcd-1"], out)
	}
	if out := k.must(t, s, "exec", "etcd-1", "--", "etcdctl", "endpoint", "status"); !strings.Contains(out, ", "+members["etcd-1"]+", ") {
		t.Fatalf("etcd-1 came back as another member:\n%s\nbefore:\n%s", out, statusOut)
	}
	if out := k.must(t, s, append([]string{"exec", "etcd-1", "--"}, append(serializable, "greeting")...)...); out != "hello from etcd-0\n" {
		t.Fatalf("etcd-1 after its deletion: greeting is %q", out)
	}
	waitEtcdKubectl(t, k, s, regexp.MustCompile(`\Awritten without etcd-1\n\z`), 30*time.Second,
		append([]string{"exec", "etcd-1", "--"}, append(serializable, "while-away")...)...)
	if out := k.must(t, s, "exec", "etcd-1", "--", "ls", "/var/lib/etcd/data/member"); !strings.Contains(out, "wal") || !strings.Contains(out, "snap") {
		t.Fatalf("etcd-1's data dir on its claim: %q", out)
	}

	// Delete the StatefulSet and wait for its pods to go, so that stopping the server
	// (--cleanup) has nothing left to stop.
	start = time.Now()
	k.must(t, s, "delete", "statefulset", "etcd")
	waitEtcdKubectl(t, k, s, regexp.MustCompile(`\A\z|No resources found`), 2*time.Minute, "get", "pods", "-l", "app=etcd", "-o", "name")
	t.Logf("the StatefulSet's pods gone %v after its deletion", time.Since(start).Round(time.Millisecond))
	start = time.Now()
	s.stop()
	t.Logf("server stopped (--cleanup) in %v", time.Since(start).Round(time.Millisecond))
	select {
	case <-s.done:
	default:
		t.Fatal("headway server still running after stop")
	}
	var notes []string
	for _, line := range strings.Split(s.log.String(), "\n") {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			notes = append(notes, line)
		}
	}
	if len(notes) > 0 {
		t.Logf("the server's warnings and errors:\n%s", strings.Join(notes, "\n"))
	}
}
