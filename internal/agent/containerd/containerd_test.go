package containerd

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"golang.org/x/sys/unix"

	"github.com/headway/headway/internal/testing/leftover"
)

func TestParseVersion(t *testing.T) {
	for _, tc := range []struct {
		out  string
		want version
	}{
		{"containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3\n", version{1, 6, 20}},
		{"containerd github.com/containerd/containerd v1.7.13 7c3aca7a610df76212171d200ca3811ff6096eb8", version{1, 7, 13}},
		{"containerd github.com/containerd/containerd/v2 v2.1.4 75cb2b7193e4e490e9fbdc236c0e811ccaba3376", version{2, 1, 4}},
		{"containerd containerd.io 1.7.27 05044ec0a9a75232cad458027ca83437aae3f4da", version{1, 7, 27}},
	} {
		got, err := parseVersion(tc.out)
		if err != nil || got != tc.want {
			t.Errorf("parseVersion(%q) = %v, %v; want %v", tc.out, got, err, tc.want)
		}
	}
	if _, err := parseVersion("containerd github.com/containerd/containerd"); err == nil {
		t.Error("parseVersion without a number: no error")
	}
}

func testSettings(v version, capSysResource, overlay bool) settings {
	s := settings{
		Version:             v,
		Root:                "/data/containerd/root",
		State:               "/data/containerd/state",
		Socket:              "/data/containerd/containerd.sock",
		OptDir:              "/data/containerd/opt",
		PauseImage:          DefaultPauseImage,
		Snapshotter:         "native",
		RestrictOOMScoreAdj: !capSysResource,
		DisableAppArmor:     true,
		CNIBinDirs:          []string{"/data/cni/bin", "/usr/lib/cni"},
		CNIConfDir:          "/data/cni/net.d",
		RegistryConfigDir:   "/data/registries",
		OCIBinary:           "/data/containerd/bin/runc",
	}
	if overlay {
		s.Snapshotter = "overlayfs"
	}
	return s
}

// tomlSections maps each [table] header of a rendered config to its
// "key = value" lines (the top level is "").
func tomlSections(t *testing.T, conf string) map[string][]string {
	t.Helper()
	sections := map[string][]string{}
	cur := ""
	for _, line := range strings.Split(conf, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			cur = strings.Trim(line, "[]")
			if _, dup := sections[cur]; dup {
				t.Fatalf("table [%s] twice", cur)
			}
			sections[cur] = nil
		default:
			sections[cur] = append(sections[cur], line)
		}
	}
	return sections
}

func TestRenderConfig(t *testing.T) {
	const cri1 = `plugins."io.containerd.grpc.v1.cri"`
	const rt2 = `plugins."io.containerd.cri.v1.runtime"`
	const img2 = `plugins."io.containerd.cri.v1.images"`
	for _, tc := range []struct {
		name           string
		v              version
		capSysResource bool
		overlay        bool
		want           map[string][]string // table -> lines it must hold
		absent         []string            // substrings that must not appear
	}{
		{
			name: "1.6 without CAP_SYS_RESOURCE, overlay", v: version{1, 6, 20}, overlay: true,
			want: map[string][]string{
				"":                                 {"version = 2", `root = "/data/containerd/root"`, `state = "/data/containerd/state"`},
				"grpc":                             {`address = "/data/containerd/containerd.sock"`, `tcp_address = ""`},
				"debug":                            {`address = ""`},
				"metrics":                          {`address = ""`},
				cri1:                               {`sandbox_image = "localhost/headway/pause:catatonit"`, `stream_server_address = "127.0.0.1"`, `stream_server_port = "0"`, "enable_selinux = false", "restrict_oom_score_adj = true", "disable_apparmor = true"},
				cri1 + ".containerd":               {`snapshotter = "overlayfs"`, `default_runtime_name = "runc"`},
				cri1 + ".containerd.runtimes.runc": {`runtime_type = "io.containerd.runc.v2"`},
				cri1 + ".containerd.runtimes.runc.options": {"SystemdCgroup = false", `Root = "/data/containerd/state/runc"`, `BinaryName = "/data/containerd/bin/runc"`},
				cri1 + ".cni":      {`bin_dir = "/data/cni/bin"`, `conf_dir = "/data/cni/net.d"`, "max_conf_num = 1"},
				cri1 + ".registry": {`config_path = "/data/registries"`},
				`plugins."io.containerd.internal.v1.opt"`: {`path = "/data/containerd/opt"`},
			},
			absent: []string{"bin_dirs", "io.containerd.cri.v1", "nri", "/usr/lib/cni"},
		},
		{
			name: "1.6 with CAP_SYS_RESOURCE, native", v: version{1, 6, 20}, capSysResource: true,
			want: map[string][]string{
				cri1:                 {"restrict_oom_score_adj = false"},
				cri1 + ".containerd": {`snapshotter = "native"`},
			},
		},
		{
			name: "2.0: version 3, split CRI plugins, one bin dir", v: version{2, 0, 5}, overlay: true,
			want: map[string][]string{
				"":                      {"version = 3"},
				img2:                    {`snapshotter = "overlayfs"`},
				img2 + ".pinned_images": {`sandbox = "localhost/headway/pause:catatonit"`},
				img2 + ".registry":      {`config_path = "/data/registries"`},
				rt2:                     {"restrict_oom_score_adj = true", "enable_selinux = false", "disable_apparmor = true"},
				rt2 + ".containerd.runtimes.runc.options": {"SystemdCgroup = false", `Root = "/data/containerd/state/runc"`, `BinaryName = "/data/containerd/bin/runc"`},
				rt2 + ".cni": {`bin_dir = "/data/cni/bin"`, `conf_dir = "/data/cni/net.d"`, "max_conf_num = 1"},
				cri1:         {`stream_server_address = "127.0.0.1"`, `stream_server_port = "0"`},
			},
			absent: []string{"sandbox_image", "bin_dirs"},
		},
		{
			name: "2.1 with CAP_SYS_RESOURCE, native: bin_dirs list", v: version{2, 1, 4}, capSysResource: true,
			want: map[string][]string{
				img2:         {`snapshotter = "native"`},
				rt2:          {"restrict_oom_score_adj = false"},
				rt2 + ".cni": {`bin_dirs = ["/data/cni/bin", "/usr/lib/cni"]`},
			},
			absent: []string{"bin_dir =", "sandbox_image"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conf := renderConfig(testSettings(tc.v, tc.capSysResource, tc.overlay))
			sections := tomlSections(t, conf)
			for table, lines := range tc.want {
				got, ok := sections[table]
				if !ok {
					t.Errorf("no table [%s] in\n%s", table, conf)
					continue
				}
				for _, l := range lines {
					if !slices.Contains(got, l) {
						t.Errorf("[%s] lacks %q; has %q", table, l, got)
					}
				}
			}
			for _, s := range tc.absent {
				if strings.Contains(conf, s) {
					t.Errorf("config holds %q:\n%s", s, conf)
				}
			}
			// Invariants of every rendering.
			if !strings.Contains(sections[""][1], "root") || !strings.HasPrefix(sections[""][0], "version") {
				t.Errorf("top-level keys must come first: %q", sections[""])
			}
			if strings.Contains(conf, "/var/lib/containerd") || strings.Contains(conf, "/run/containerd") {
				t.Errorf("config points at the system containerd's dirs:\n%s", conf)
			}
			for _, p := range []string{"aufs", "btrfs", "zfs", "devmapper", "io.containerd.tracing.processor.v1.otlp"} {
				if !strings.Contains(sections[""][3], p) {
					t.Errorf("disabled_plugins lacks %s: %s", p, sections[""][3])
				}
			}
		})
	}
}

// TestRenderConfigReadByContainerd asks the installed containerd to parse the
// config: `config dump` prints only keys it knows, so a misspelt or misplaced
// key shows up as missing.
func TestRenderConfigReadByContainerd(t *testing.T) {
	bin, err := exec.LookPath("containerd")
	if err != nil {
		t.Skip("containerd not installed (Debian: apt-get install containerd)")
	}
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	v, err := parseVersion(string(out))
	if err != nil {
		t.Fatal(err)
	}
	if v.Major >= 2 {
		t.Skip("dump check written for containerd 1.x; have " + v.String())
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(path, []byte(renderConfig(testSettings(v, false, true))), 0o644); err != nil {
		t.Fatal(err)
	}
	dump, err := exec.Command(bin, "--config", path, "config", "dump").CombinedOutput()
	if err != nil {
		t.Fatalf("containerd config dump: %v\n%s", err, dump)
	}
	d := string(dump)
	for _, want := range []string{
		`sandbox_image = "localhost/headway/pause:catatonit"`,
		`stream_server_port = "0"`,
		`stream_server_address = "127.0.0.1"`,
		"restrict_oom_score_adj = true",
		"disable_apparmor = true",
		"enable_selinux = false",
		"netns_mounts_under_state_dir = true",
		`snapshotter = "overlayfs"`,
		`default_runtime_name = "runc"`,
		`runtime_type = "io.containerd.runc.v2"`,
		"SystemdCgroup = false",
		`Root = "/data/containerd/state/runc"`,
		`BinaryName = "/data/containerd/bin/runc"`,
		`bin_dir = "/data/cni/bin"`,
		`conf_dir = "/data/cni/net.d"`,
		"max_conf_num = 1",
		`config_path = "/data/registries"`,
		`path = "/data/containerd/opt"`,
		`address = "/data/containerd/containerd.sock"`,
	} {
		if !strings.Contains(d, want) {
			t.Errorf("containerd %s did not take %s; dump:\n%s", v, want, d)
		}
	}
}

func TestCapSysResourceFromStatus(t *testing.T) {
	status := func(eff, bnd string) []byte {
		return []byte("Name:\tx\nCapInh:\t0000000000000000\nCapPrm:\t" + eff + "\nCapEff:\t" + eff + "\nCapBnd:\t" + bnd + "\n")
	}
	for _, tc := range []struct {
		name     string
		status   []byte
		want     bool
		wantErr  bool
		whyMatch string
	}{
		{"full root", status("000001ffffffffff", "000001ffffffffff"), true, false, "held"},
		{"no CAP_SYS_RESOURCE (bit 24)", status("000001fffeffffff", "000001fffeffffff"), false, false, "CapEff"},
		{"effective but not in bounding set", status("000001ffffffffff", "000001fffeffffff"), false, false, "CapBnd"},
		{"only CAP_SYS_RESOURCE", status("0000000001000000", "0000000001000000"), true, false, "held"},
		{"no capability lines", []byte("Name:\tx\n"), false, true, ""},
	} {
		got, why, err := capSysResourceFromStatus(tc.status)
		if got != tc.want || (err != nil) != tc.wantErr || !strings.Contains(why, tc.whyMatch) {
			t.Errorf("%s: got %v %q %v", tc.name, got, why, err)
		}
	}
}

func TestSocketPath(t *testing.T) {
	short := "/var/lib/headway/containerd"
	if got := socketPath(short); got != short+"/containerd.sock" {
		t.Errorf("socketPath(%s) = %s", short, got)
	}
	long := "/tmp/" + strings.Repeat("a-very-long-directory-name/", 4) + "containerd"
	got := socketPath(long)
	if !strings.HasPrefix(got, "/run/headway/") || len(got)+len(".ttrpc") > 107 {
		t.Errorf("socketPath(long) = %s", got)
	}
	if socketPath(long+"x") == got {
		t.Error("two data dirs share a socket")
	}
}

func TestLinkCNIPlugins(t *testing.T) {
	root := t.TempDir()
	own, system := filepath.Join(root, "own"), filepath.Join(root, "system")
	for _, d := range []string{own, system} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path string, mode os.FileMode) {
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(own, "headway-ipam"), 0o755)
	write(filepath.Join(own, "bridge"), 0o755) // ours wins over the system's
	write(filepath.Join(system, "bridge"), 0o755)
	write(filepath.Join(system, "loopback"), 0o755)
	write(filepath.Join(system, "README"), 0o644) // not a plugin
	if err := os.Symlink(filepath.Join(system, "removed"), filepath.Join(own, "removed")); err != nil {
		t.Fatal(err)
	}

	linked, err := linkCNIPlugins([]string{own, system})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(linked, []string{"loopback"}) {
		t.Errorf("linked %v, want [loopback]", linked)
	}
	if target, err := os.Readlink(filepath.Join(own, "loopback")); err != nil || target != filepath.Join(system, "loopback") {
		t.Errorf("loopback link: %q %v", target, err)
	}
	if st, err := os.Lstat(filepath.Join(own, "bridge")); err != nil || !st.Mode().IsRegular() {
		t.Errorf("own bridge replaced: %v %v", st, err)
	}
	for _, gone := range []string{"README", "removed"} {
		if _, err := os.Lstat(filepath.Join(own, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s in the plugin dir: %v", gone, err)
		}
	}
	// Idempotent.
	if linked, err := linkCNIPlugins([]string{own, system}); err != nil || len(linked) != 0 {
		t.Errorf("second run linked %v, %v", linked, err)
	}
}

func TestImportedNames(t *testing.T) {
	out := "unpacking localhost/headway/pause:catatonit (sha256:0123)...done\n" +
		"unpacking docker.io/library/busybox:1.36 (sha256:4567)...done\n"
	got := importedNames(out)
	want := []string{"localhost/headway/pause:catatonit", "docker.io/library/busybox:1.36"}
	if !slices.Equal(got, want) {
		t.Errorf("importedNames = %q, want %q", got, want)
	}
}

func TestPauseImageArchive(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "catatonit")
	if err := os.WriteFile(bin, []byte("\x7fELF fake"), 0o755); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "pause.tar")
	if err := pauseImageArchive(archive, DefaultPauseImage, bin); err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag(DefaultPauseImage)
	img, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cf.Config.Entrypoint, []string{"/catatonit", "-P"}) || cf.OS != "linux" {
		t.Errorf("config: entrypoint %q os %q", cf.Config.Entrypoint, cf.OS)
	}
	layers, _ := img.Layers()
	if len(layers) != 1 {
		t.Fatalf("%d layers", len(layers))
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	h, err := tr.Next()
	if err != nil || h.Name != "catatonit" || h.Mode != 0o755 {
		t.Fatalf("layer entry %+v %v", h, err)
	}
	body, _ := io.ReadAll(tr)
	if string(body) != "\x7fELF fake" {
		t.Errorf("layer body %q", body)
	}
	// Reproducible: the same binary gives the same image.
	again := filepath.Join(dir, "again.tar")
	if err := pauseImageArchive(again, DefaultPauseImage, bin); err != nil {
		t.Fatal(err)
	}
	img2, _ := tarball.ImageFromPath(again, &tag)
	d1, _ := img.Digest()
	d2, _ := img2.Digest()
	if d1 != d2 {
		t.Errorf("digests differ: %s %s", d1, d2)
	}
	if err := pauseImageArchive(filepath.Join(dir, "x.tar"), DefaultPauseImage, filepath.Join(dir, "missing")); !errors.Is(err, errNoCatatonit) {
		t.Errorf("missing binary: %v", err)
	}
}

// testLogger logs through t.
func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// needContainerd skips unless the managed containerd can run here.
func needContainerd(t *testing.T) {
	t.Helper()
	if ok, why := Available(); !ok {
		t.Skip(why)
	}
	if _, err := os.Stat(catatonitPath); err != nil {
		t.Skip("catatonit not installed (Debian: apt-get install catatonit)")
	}
}

// writeTestImage writes a docker-archive of a one-file image named ref.
func writeTestImage(t *testing.T, path, ref string) {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	content := []byte("hello from headway\n")
	if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "hello.txt", Mode: 0o644, Size: int64(len(content))}); err != nil {
		t.Fatal(err)
	}
	tw.Write(content)
	tw.Close()
	raw := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil })
	if err != nil {
		t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		t.Fatal(err)
	}
	cf, _ := img.ConfigFile()
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		t.Fatal(err)
	}
	tag, err := name.NewTag(ref)
	if err != nil {
		t.Fatal(err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		t.Fatal(err)
	}
}

// ctrImages lists the image names in the k8s.io namespace of the containerd at sock.
func ctrImages(t *testing.T, sock string) []string {
	t.Helper()
	out, err := exec.Command("ctr", "--address", sock, "--namespace", criNamespace, "images", "ls", "-q").CombinedOutput()
	if err != nil {
		t.Fatalf("ctr images ls: %v\n%s", err, out)
	}
	return strings.Fields(string(out))
}

func processGone(pid int) bool {
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

func TestManagedContainerd(t *testing.T) {
	needContainerd(t)
	data := t.TempDir()
	cfg := Config{
		Dir:               filepath.Join(data, "containerd"),
		ImagesDir:         filepath.Join(data, "images"),
		RegistryConfigDir: filepath.Join(data, "registries"),
		CNIBinDirs:        []string{filepath.Join(data, "cni", "bin"), "/usr/lib/cni"},
		CNIConfDir:        filepath.Join(data, "cni", "net.d"),
		Log:               testLogger(t),
	}
	// Whatever happens, no process or mount outlives the test.
	var pids []int
	t.Cleanup(func() {
		for _, pid := range pids {
			if !processGone(pid) && isOurContainerd(processArgs(pid), filepath.Join(cfg.Dir, "config.toml")) {
				t.Errorf("containerd pid %d still running at cleanup; killing it", pid)
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		for _, m := range leftover.MountsUnder(data) {
			t.Errorf("mount left behind: %s", m)
			unix.Unmount(m, unix.MNT_DETACH)
		}
		if sock := socketPath(cfg.Dir); strings.HasPrefix(sock, "/run/headway/") {
			os.RemoveAll(filepath.Dir(sock))
		}
	})

	if err := os.MkdirAll(cfg.ImagesDir, 0o755); err != nil {
		t.Fatal(err)
	}
	const testRef = "localhost/headway-test/hello:1"
	writeTestImage(t, filepath.Join(cfg.ImagesDir, "hello.tar"), testRef)
	if err := os.WriteFile(filepath.Join(cfg.ImagesDir, "broken.tar"), []byte("not an archive"), 0o644); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := time.Now()
	c, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("Start (containerd ready, archives imported, pause image built and imported): %s", time.Since(start))
	pids = append(pids, c.PID())
	t.Cleanup(func() { c.Stop() })

	out, _ := exec.Command("containerd", "--version").Output()
	if v := c.Version(); v == "" || !strings.Contains(string(out), v) {
		t.Errorf("Version() = %q, containerd --version says %q", v, out)
	}
	sock := strings.TrimPrefix(c.Endpoint(), "unix://")
	if !strings.HasPrefix(c.Endpoint(), "unix:///") {
		t.Errorf("Endpoint() = %q", c.Endpoint())
	}
	if c.PauseImage() != DefaultPauseImage {
		t.Errorf("PauseImage() = %q", c.PauseImage())
	}
	images := ctrImages(t, sock)
	for _, want := range []string{DefaultPauseImage, testRef} {
		if !slices.Contains(images, want) {
			t.Errorf("image %s not in namespace %s: %q", want, criNamespace, images)
		}
	}
	for _, d := range []string{cfg.RegistryConfigDir, cfg.CNIConfDir} {
		if st, err := os.Stat(d); err != nil || !st.IsDir() {
			t.Errorf("%s not created: %v", d, err)
		}
	}
	if _, err := os.Lstat(filepath.Join(cfg.CNIBinDirs[0], "loopback")); err != nil && !c.version.multipleCNIBinDirs() {
		t.Errorf("loopback plugin not linked into %s: %v", cfg.CNIBinDirs[0], err)
	}
	conf, err := os.ReadFile(filepath.Join(cfg.Dir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(conf), "/var/lib/containerd") || strings.Contains(string(conf), `"/run/containerd`) {
		t.Errorf("config names the system containerd's dirs:\n%s", conf)
	}

	// SIGKILL: the supervisor brings containerd back.
	old := c.PID()
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	deadline := time.Now().Add(30 * time.Second)
	for {
		pid := c.PID()
		if pid != 0 && pid != old {
			if err := exec.Command("ctr", "--address", sock, "version").Run(); err == nil {
				pids = append(pids, pid)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd not back 30s after SIGKILL (pid %d)", c.PID())
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("back after SIGKILL in %s (pid %d -> %d)", time.Since(killed), old, c.PID())
	if !slices.Contains(ctrImages(t, sock), DefaultPauseImage) {
		t.Error("pause image gone after restart")
	}

	last := c.PID()
	stopStart := time.Now()
	if err := c.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	t.Logf("Stop took %s", time.Since(stopStart))
	if !processGone(last) {
		t.Errorf("containerd pid %d still running after Stop", last)
	}
	if c.PID() != 0 {
		t.Errorf("PID() = %d after Stop", c.PID())
	}
	if err := c.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}

	// A second start on the same dir finds the pause image and the state.
	start = time.Now()
	c2, err := Start(ctx, Config{Dir: cfg.Dir, RegistryConfigDir: cfg.RegistryConfigDir,
		CNIBinDirs: cfg.CNIBinDirs, CNIConfDir: cfg.CNIConfDir, Log: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second Start: %s", time.Since(start))
	pids = append(pids, c2.PID())
	t.Cleanup(func() { c2.Stop() })
	if !slices.Contains(ctrImages(t, sock), testRef) {
		t.Error("imported image gone after restart")
	}
	// Ending the context stops it too.
	pid2 := c2.PID()
	cancel()
	if err := c2.Stop(); err != nil {
		t.Errorf("Stop after cancel: %v", err)
	}
	if !processGone(pid2) {
		t.Errorf("containerd pid %d running after its context ended", pid2)
	}
}

func TestStartFailureNamesLog(t *testing.T) {
	needContainerd(t)
	data := t.TempDir()
	dir := filepath.Join(data, "containerd")
	// A directory where containerd's ttrpc socket goes makes it exit at once.
	if err := os.MkdirAll(filepath.Join(socketPath(dir)+".ttrpc", "x"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if sock := socketPath(dir); strings.HasPrefix(sock, "/run/headway/") {
			os.RemoveAll(filepath.Dir(sock))
		}
	})
	c, err := Start(context.Background(), Config{Dir: dir, Log: testLogger(t)})
	if err == nil {
		c.Stop()
		t.Fatal("Start succeeded with an unusable root")
	}
	t.Logf("error: %v", err)
	if !strings.Contains(err.Error(), filepath.Join(dir, "containerd.log")) {
		t.Errorf("error does not name the log file: %v", err)
	}
}

// TestMain lets the test binary stand in for a containerd left running by an
// earlier Headway: run with HEADWAY_FAKE_CONTAINERD=1 it waits to be killed.
func TestMain(m *testing.M) {
	if os.Getenv("HEADWAY_FAKE_CONTAINERD") == "1" {
		select {}
	}
	os.Exit(m.Run())
}

func TestStopStale(t *testing.T) {
	dir := t.TempDir()
	configPath := filepath.Join(dir, "config.toml")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	start := func(config string) *exec.Cmd {
		cmd := &exec.Cmd{Path: self, Args: []string{"containerd", "--config", config}, Env: append(os.Environ(), "HEADWAY_FAKE_CONTAINERD=1")}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		return cmd
	}
	waitFor := func(cmd *exec.Cmd) {
		// The child's command line is visible once it has exec'd.
		for deadline := time.Now().Add(10 * time.Second); !isOurContainerd(processArgs(cmd.Process.Pid), cmd.Args[2]); {
			if time.Now().After(deadline) {
				t.Fatalf("fake containerd never showed its command line: %q", processArgs(cmd.Process.Pid))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	c := &Containerd{log: testLogger(t), configPath: configPath, pidPath: filepath.Join(dir, "containerd.pid")}

	// Another data dir's containerd is left alone.
	other := start(filepath.Join(dir, "other.toml"))
	waitFor(other)
	os.WriteFile(c.pidPath, []byte(strconv.Itoa(other.Process.Pid)+"\n"), 0o644)
	c.stopStale()
	if other.ProcessState != nil || !isOurContainerd(processArgs(other.Process.Pid), filepath.Join(dir, "other.toml")) {
		t.Error("stopStale stopped a containerd of another config")
	}

	// Ours is stopped.
	stale := start(configPath)
	waitFor(stale)
	exited := make(chan error, 1)
	go func() { exited <- stale.Wait() }()
	os.WriteFile(c.pidPath, []byte(strconv.Itoa(stale.Process.Pid)+"\n"), 0o644)
	c.stopStale()
	select {
	case err := <-exited:
		if exitStatus(err) != "killed by SIGTERM" {
			t.Errorf("stale containerd ended with %q, want SIGTERM", exitStatus(err))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("stale containerd still running after stopStale")
	}
}
