package images

import (
	"archive/tar"
	"io"
	"os"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

func skipIfMissing(t *testing.T) {
	t.Helper()
	if m := Missing(); len(m) > 0 {
		t.Skipf("the test images need Debian packages %v: %s", m, InstallCommand(m...))
	}
}

// file is one entry of an image's flattened filesystem.
type file struct {
	typ  byte
	mode int64
	link string
	data []byte
}

func files(t *testing.T, img v1.Image) map[string]file {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]file{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out["/"+strings.TrimSuffix(h.Name, "/")] = file{typ: h.Typeflag, mode: h.Mode, link: h.Linkname, data: data}
	}
}

func size(t *testing.T, img v1.Image) (compressed, uncompressed int64) {
	t.Helper()
	layers, err := img.Layers()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range layers {
		n, err := l.Size()
		if err != nil {
			t.Fatal(err)
		}
		compressed += n
		rc, err := l.Uncompressed()
		if err != nil {
			t.Fatal(err)
		}
		m, err := io.Copy(io.Discard, rc)
		rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		uncompressed += m
	}
	return compressed, uncompressed
}

func TestMissing(t *testing.T) {
	reqs := []requirement{
		{"/nonexistent/headway/a", "pkg-b", "b"},
		{"/nonexistent/headway/b", "pkg-a", "a"},
		{"/nonexistent/headway/c", "pkg-b", "b again"},
		{"/", "pkg-present", "present"},
	}
	if got := missing(reqs); strings.Join(got, " ") != "pkg-a pkg-b" {
		t.Errorf("missing = %v, want [pkg-a pkg-b]", got)
	}
	err := check("demo", reqs)
	mp, ok := err.(*MissingPackageError)
	if !ok {
		t.Fatalf("check: %v, want a *MissingPackageError", err)
	}
	if mp.Package != "pkg-b" || !os.IsNotExist(mp.Err) {
		t.Errorf("check: %+v", mp)
	}
	want := "apt-get install -y --no-install-recommends pkg-a pkg-b"
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "/nonexistent/headway/a") {
		t.Errorf("error %q should name the file and say %q", err, want)
	}
	if err := check("demo", reqs[3:]); err != nil {
		t.Errorf("check with everything present: %v", err)
	}
}

func checkConfig(t *testing.T, img v1.Image, cmd []string) *v1.ConfigFile {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.OS != "linux" || cf.Architecture != "amd64" {
		t.Errorf("platform %s/%s, want linux/amd64", cf.OS, cf.Architecture)
	}
	if strings.Join(cf.Config.Cmd, "\x00") != strings.Join(cmd, "\x00") {
		t.Errorf("Cmd %q, want %q", cf.Config.Cmd, cmd)
	}
	if len(cf.Config.Entrypoint) != 0 {
		t.Errorf("Entrypoint %q, want none", cf.Config.Entrypoint)
	}
	if len(cf.Config.Env) != 1 || cf.Config.Env[0] != "PATH="+defaultPath {
		t.Errorf("Env %q", cf.Config.Env)
	}
	if len(cf.RootFS.DiffIDs) != 1 {
		t.Errorf("%d layers, want 1", len(cf.RootFS.DiffIDs))
	}
	return cf
}

// checkBusybox checks the busybox part every image carries.
func checkBusybox(t *testing.T, fs map[string]file) {
	t.Helper()
	if f, ok := fs["/bin/busybox"]; !ok || f.typ != tar.TypeReg || f.mode&0o111 == 0 {
		t.Errorf("/bin/busybox: %+v, want an executable file", f.typ)
	}
	for _, a := range []string{"sh", "ls", "ps", "hostname", "nslookup", "wget", "cat", "echo", "sleep", "id", "tar", "head", "env"} {
		if f := fs["/bin/"+a]; f.typ != tar.TypeSymlink || f.link != "busybox" {
			t.Errorf("/bin/%s: want a symlink to busybox, got type %q -> %q", a, f.typ, f.link)
		}
	}
	for _, p := range []string{
		"/lib64/ld-linux-x86-64.so.2",
		"/lib/x86_64-linux-gnu/libc.so.6",
		"/lib/x86_64-linux-gnu/libresolv.so.2",
	} {
		if f, ok := fs[p]; !ok || f.typ != tar.TypeReg || len(f.data) == 0 {
			t.Errorf("%s: missing or not a regular file", p)
		}
	}
	if !strings.Contains(string(fs["/etc/nsswitch.conf"].data), "hosts: files dns") {
		t.Errorf("/etc/nsswitch.conf: %q", fs["/etc/nsswitch.conf"].data)
	}
	if !strings.HasPrefix(string(fs["/etc/passwd"].data), "root:x:0:0:") {
		t.Errorf("/etc/passwd: %q", fs["/etc/passwd"].data)
	}
	if fs["/tmp"].mode != 0o1777 {
		t.Errorf("/tmp mode %o, want 1777", fs["/tmp"].mode)
	}
	for p, f := range fs {
		if p == "/" || !strings.HasPrefix(p, "/") || strings.Contains(p, "/../") {
			t.Errorf("bad path %q", p)
		}
		if f.typ == tar.TypeSymlink && strings.HasPrefix(f.link, "/") {
			if _, ok := fs[f.link]; !ok && !strings.HasPrefix(f.link, "/dev/") && f.link != "/run" && f.link != "/run/lock" {
				t.Errorf("%s -> %s dangles", p, f.link)
			}
		}
	}
}

func TestBusybox(t *testing.T) {
	skipIfMissing(t)
	img, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	checkConfig(t, img, []string{"sh"})
	fs := files(t, img)
	checkBusybox(t, fs)
	c, u := size(t, img)
	t.Logf("busybox: %d files, %.1f MB compressed, %.1f MB uncompressed", len(fs), float64(c)/1e6, float64(u)/1e6)
}

func TestNginx(t *testing.T) {
	skipIfMissing(t)
	img, err := Nginx()
	if err != nil {
		t.Fatal(err)
	}
	cf := checkConfig(t, img, []string{"nginx", "-g", "daemon off;"})
	if _, ok := cf.Config.ExposedPorts["80/tcp"]; !ok || len(cf.Config.ExposedPorts) != 1 {
		t.Errorf("ExposedPorts %v, want 80/tcp", cf.Config.ExposedPorts)
	}
	if cf.Config.StopSignal != "SIGQUIT" {
		t.Errorf("StopSignal %q, want SIGQUIT", cf.Config.StopSignal)
	}
	fs := files(t, img)
	checkBusybox(t, fs)
	for _, p := range []string{
		"/usr/sbin/nginx",
		"/lib/x86_64-linux-gnu/libpcre2-8.so.0",
		"/lib/x86_64-linux-gnu/libssl.so.3",
		"/lib/x86_64-linux-gnu/libcrypto.so.3",
		"/lib/x86_64-linux-gnu/libz.so.1",
		"/lib/x86_64-linux-gnu/libcrypt.so.1",
		"/etc/nginx/mime.types",
		"/etc/nginx/fastcgi_params",
	} {
		if f, ok := fs[p]; !ok || f.typ != tar.TypeReg || len(f.data) == 0 {
			t.Errorf("%s: missing or not a regular file", p)
		}
	}
	if !strings.Contains(string(fs["/usr/share/nginx/html/index.html"].data), "<title>Welcome to nginx!</title>") {
		t.Errorf("index.html is not the welcome page: %q", fs["/usr/share/nginx/html/index.html"].data)
	}
	if string(fs["/etc/nginx/nginx.conf"].data) != NginxConf || string(fs["/etc/nginx/conf.d/default.conf"].data) != NginxDefaultConf {
		t.Error("nginx configuration differs from NginxConf, NginxDefaultConf")
	}
	for p, target := range map[string]string{
		"/var/log/nginx/access.log": "/dev/stdout",
		"/var/log/nginx/error.log":  "/dev/stderr",
		"/var/run":                  "/run",
	} {
		if f := fs[p]; f.typ != tar.TypeSymlink || f.link != target {
			t.Errorf("%s: want a symlink to %s, got type %q -> %q", p, target, f.typ, f.link)
		}
	}
	if !strings.Contains(string(fs["/etc/passwd"].data), "\nnginx:x:101:101:") || !strings.Contains(string(fs["/etc/group"].data), "\nnginx:x:101:") {
		t.Errorf("no nginx user and group: %q %q", fs["/etc/passwd"].data, fs["/etc/group"].data)
	}
	for _, d := range []string{"/var/lib/nginx", "/run", "/var/cache/nginx"} {
		if fs[d].typ != tar.TypeDir {
			t.Errorf("%s is not a directory", d)
		}
	}
	c, u := size(t, img)
	t.Logf("nginx: %d files, %.1f MB compressed, %.1f MB uncompressed", len(fs), float64(c)/1e6, float64(u)/1e6)
}

// Building from the same packages gives the same image, so a rebuilt image is not a new one
// to containerd.
func TestReproducible(t *testing.T) {
	skipIfMissing(t)
	for name, build := range map[string]func() (v1.Image, error){"nginx": buildNginx, "busybox": buildBusybox} {
		a, err := build()
		if err != nil {
			t.Fatal(err)
		}
		b, err := build()
		if err != nil {
			t.Fatal(err)
		}
		da, err := a.Digest()
		if err != nil {
			t.Fatal(err)
		}
		db, err := b.Digest()
		if err != nil {
			t.Fatal(err)
		}
		if da != db {
			t.Errorf("%s: two builds, digests %s and %s", name, da, db)
		}
	}
}
