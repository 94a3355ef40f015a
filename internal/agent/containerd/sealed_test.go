package containerd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestSealedRunc checks the copy of runc the shims run: a memfd sealed
// exactly as runc seals its own copy (so runc init does not copy itself
// again), that cannot be written, that runs as runc, and that goes with
// Close.
func TestSealedRunc(t *testing.T) {
	runc, err := exec.LookPath("runc")
	if err != nil {
		t.Skip("runc not installed (Debian: apt-get install runc)")
	}
	link := filepath.Join(t.TempDir(), "bin", "runc")
	sr, err := sealBinary("runc", runc, link)
	if err != nil {
		t.Fatalf("sealBinary: %v", err)
	}
	target, err := os.Readlink(link)
	if err != nil {
		t.Fatal(err)
	}
	want := "/proc/" + strconv.Itoa(os.Getpid()) + "/fd/" + strconv.Itoa(int(sr.f.Fd()))
	if target != want {
		t.Errorf("link points at %s, want %s", target, want)
	}
	seals, err := unix.FcntlInt(sr.f.Fd(), unix.F_GET_SEALS, 0)
	if err != nil || seals != runtimeSeals {
		t.Errorf("seals %#x (err %v), want exactly %#x", seals, err, runtimeSeals)
	}
	// A container reaching it through /proc/self/exe cannot change it.
	if f, err := os.OpenFile(link, os.O_WRONLY, 0); err == nil {
		_, werr := f.Write([]byte("x"))
		f.Close()
		if werr == nil {
			t.Error("the sealed runc took a write")
		}
	}
	got, err := exec.Command(link, "--version").Output()
	if err != nil {
		t.Fatalf("%s --version: %v", link, err)
	}
	orig, err := exec.Command(runc, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(orig) || !strings.HasPrefix(string(got), "runc version") {
		t.Errorf("the copy says %q, runc says %q", got, orig)
	}
	if err := sr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := exec.Command(link, "--version").Run(); err == nil {
		t.Error("the link still runs after Close")
	}
}
