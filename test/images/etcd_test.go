package images

import (
	"archive/tar"
	"strings"
	"testing"
)

func skipIfEtcdMissing(t *testing.T) {
	t.Helper()
	if m := EtcdMissing(); len(m) > 0 {
		t.Skipf("the etcd image needs Debian packages %v: %s", m, InstallCommand(m...))
	}
}

func TestEtcdRequirements(t *testing.T) {
	pkgs := map[string]bool{}
	for _, r := range etcdReqs {
		pkgs[r.pkg] = true
	}
	for _, p := range []string{"etcd-server", "etcd-client", "busybox"} {
		if !pkgs[p] {
			t.Errorf("the etcd image's requirements do not name Debian package %s", p)
		}
	}
	if repo, tag, err := dockerTag(EtcdRef); err != nil || repo != "coreos/etcd" || tag != "v3.4.23" {
		t.Errorf("EtcdRef %q: %s %s %v", EtcdRef, repo, tag, err)
	}
}

func TestEtcd(t *testing.T) {
	skipIfEtcdMissing(t)
	img, err := Etcd()
	if err != nil {
		t.Fatal(err)
	}
	cf := checkConfig(t, img, []string{"etcd"})
	for _, p := range []string{"2379/tcp", "2380/tcp"} {
		if _, ok := cf.Config.ExposedPorts[p]; !ok {
			t.Errorf("ExposedPorts %v, want %s", cf.Config.ExposedPorts, p)
		}
	}
	fs := files(t, img)
	checkBusybox(t, fs)
	for _, p := range []string{"/usr/bin/etcd", "/usr/bin/etcdctl"} {
		if f, ok := fs[p]; !ok || f.typ != tar.TypeReg || f.mode&0o111 == 0 || len(f.data) == 0 {
			t.Errorf("%s: missing or not an executable file", p)
		}
	}
	for _, d := range []string{"/var/lib/etcd", "/var/etcd"} {
		if fs[d].typ != tar.TypeDir {
			t.Errorf("%s is not a directory", d)
		}
	}
	c, u := size(t, img)
	t.Logf("etcd: %d files, %.1f MB compressed, %.1f MB uncompressed", len(fs), float64(c)/1e6, float64(u)/1e6)

	again, err := buildEtcd()
	if err != nil {
		t.Fatal(err)
	}
	da, _ := img.Digest()
	db, _ := again.Digest()
	if da != db {
		t.Errorf("two builds, digests %s and %s", da, db)
	}
}

// TestRunEtcd runs the image's filesystem (chrooted, in fresh namespaces): a one-member etcd
// on the namespace's loopback with its data in /var/lib/etcd, written and read with etcdctl
// from a busybox shell.
func TestRunEtcd(t *testing.T) {
	skipIfEtcdMissing(t)
	needRoot(t)
	img, err := Etcd()
	if err != nil {
		t.Fatal(err)
	}
	lab := newNetnsLab(t)
	root := t.TempDir()
	extract(t, img, root)
	var stdout, stderr syncBuffer
	p := lab.start(t, root, &stdout, &stderr, "etcd", "--name", "solo", "--data-dir", "/var/lib/etcd/data",
		"--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://127.0.0.1:2379",
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "solo=http://127.0.0.1:2380")
	// etcdctl waits for the member itself (its dial timeout), so a put succeeds once
	// etcd serves; retry only while etcd is starting.
	var out, errOut string
	for i := 0; ; i++ {
		out, errOut, err = lab.run(t, root, "sh", "-c", "etcdctl --dial-timeout=5s put greeting hello && etcdctl get --print-value-only greeting")
		if err == nil || i == 5 || p.wait(0) {
			break
		}
	}
	if err != nil || strings.TrimSpace(out) != "OK\nhello" {
		t.Fatalf("etcdctl put and get: %q %q %v\netcd's log:\n%s%s", out, errOut, err, stdout.String(), stderr.String())
	}
	out, errOut, err = lab.run(t, root, "etcdctl", "member", "list")
	if err != nil || !strings.Contains(out, ", started, solo, http://127.0.0.1:2380, http://127.0.0.1:2379") {
		t.Fatalf("etcdctl member list: %q %q %v", out, errOut, err)
	}
	if _, _, err := lab.run(t, root, "test", "-d", "/var/lib/etcd/data/member/wal"); err != nil {
		t.Errorf("no write-ahead log in /var/lib/etcd/data: %v", err)
	}
}
