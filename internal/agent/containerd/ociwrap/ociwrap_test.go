package ociwrap

import (
	"bytes"
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// mounted reports whether mountinfo lists a mount at path.
func mounted(mountinfo, path string) bool {
	for _, line := range strings.Split(mountinfo, "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			return true
		}
	}
	return false
}

// wrappers makes each kind of wrapper in dir: the Go one (this test binary,
// whose init function takes over under the name Name) and, on amd64, the
// static ELF one, each executing dir/crun.
func wrappers(t *testing.T, dir string) map[string]string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (a mount namespace)")
	}
	var st unix.Statfs_t
	if err := unix.Statfs(Unified, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		t.Skipf("no cgroup v2 hierarchy at %s on this host (not a hybrid one)", Unified)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	w := map[string]string{"go": filepath.Join(dir, Name)}
	if err := os.Symlink(self, w["go"]); err != nil {
		t.Fatal(err)
	}
	data, ok, err := ELF(filepath.Join(dir, Target))
	if err != nil {
		t.Fatal(err)
	}
	if ok {
		w["elf"] = filepath.Join(dir, "elf", Name)
		os.Mkdir(filepath.Dir(w["elf"]), 0o755)
		if err := os.WriteFile(w["elf"], data, 0o555); err != nil {
			t.Fatal(err)
		}
	}
	return w
}

// TestWrapperHidesUnified runs each wrapper with a "crun" beside it that
// prints its arguments and the mounts it sees: the arguments arrive as
// given after argv[0] "crun", the environment too, the cgroup v2 hierarchy
// is gone from its view, and the host's mounts are unchanged.
func TestWrapperHidesUnified(t *testing.T) {
	dir := t.TempDir()
	script := "#!/bin/sh\necho \"argv0=$0 args=$* env=$HEADWAY_WRAP_TEST\"\ncat /proc/self/mountinfo\n"
	if err := os.WriteFile(filepath.Join(dir, Target), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	for kind, wrapper := range wrappers(t, dir) {
		cmd := exec.Command(wrapper, "--root", "/x", "create", "--bundle", "b c")
		cmd.Env = append(os.Environ(), "HEADWAY_WRAP_TEST=kept")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s wrapper: %v\n%s", kind, err, out)
		}
		first, mounts, _ := strings.Cut(string(out), "\n")
		if want := "args=--root /x create --bundle b c env=kept"; !strings.HasSuffix(first, want) {
			t.Errorf("%s wrapper: crun got %q, want ... %q", kind, first, want)
		}
		if mounted(mounts, Unified) {
			t.Errorf("%s wrapper: crun still sees %s:\n%s", kind, Unified, mounts)
		}
		if !mounted(mounts, "/sys/fs/cgroup/memory") {
			t.Errorf("%s wrapper: crun lost the v1 hierarchies:\n%s", kind, mounts)
		}
		host, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		if !mounted(string(host), Unified) {
			t.Fatalf("%s wrapper: the host lost %s", kind, Unified)
		}
	}
}

// TestWrapperWithoutTarget: no crun beside the wrapper is a clear error and
// exit status 127.
func TestWrapperWithoutTarget(t *testing.T) {
	dir := t.TempDir()
	for kind, wrapper := range wrappers(t, dir) {
		out, err := exec.Command(wrapper, "state", "x").CombinedOutput()
		ee, ok := err.(*exec.ExitError)
		if !ok || ee.ExitCode() != 127 || !strings.Contains(string(out), Name+": ") || !strings.Contains(string(out), "execut") {
			t.Errorf("%s wrapper: got %v, %q; want exit status 127 saying crun could not be executed", kind, err, out)
		}
	}
}

// TestELFLayout: the strings sit where the machine code reaches for them,
// and the file is one read-and-execute segment that debug/elf reads as an
// x86-64 executable starting at the code.
func TestELFLayout(t *testing.T) {
	data, ok, err := ELF("/data/containerd/bin/crun")
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		t.Skip("no ELF wrapper for " + runtime.GOARCH)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC || len(f.Progs) != 1 || f.Progs[0].Flags != elf.PF_R|elf.PF_X {
		t.Fatalf("machine %v type %v progs %d", f.Machine, f.Type, len(f.Progs))
	}
	if f.Entry != elfBase+120 || !bytes.HasSuffix(data, []byte("/data/containerd/bin/crun\x00")) {
		t.Errorf("entry %#x, tail %q", f.Entry, data[len(data)-30:])
	}
	if len(data) > 600 {
		t.Errorf("the wrapper is %d bytes", len(data))
	}
}
