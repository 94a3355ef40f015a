package containerd

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/headway/headway/internal/atomicfile"
)

// runtimeSeals are the seals runc itself puts on the copy of its binary it
// runs its container init from (RUNC_MEMFD_SEALS in runc 1.1's
// cloned_binary.c, the same set in runc 1.2's Go version and in crun's
// CRUN_MEMFD_SEALS). A runc or crun whose own executable is a memfd sealed
// with exactly these skips making that copy.
const runtimeSeals = unix.F_SEAL_SEAL | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_WRITE

// sealedBinary is the OCI runtime's binary (runc or crun) copied once into a
// sealed memfd that Headway holds open, reached through a symlink (link →
// /proc/<pid>/fd/<n>) that the runc runtime's BinaryName names (directly, or
// through the ociwrap wrapper).
//
// Why: every container init is `runc init`, and runc 1.1, to keep a
// container from overwriting the host's runc through /proc/self/exe
// (CVE-2019-5736), first makes a read-only copy of itself for each one (a
// bind mount made and unmounted in the host's mount namespace, or a memfd
// copy) and executes itself again from it: per pod, two more executions of
// an 8 MB binary and six mount calls. A runc that already runs from a sealed
// memfd is protected the same way (a sealed memfd cannot be written) and
// skips the copy; runc's source says as much ("an admin could bind-mount a
// sealed memfd to /usr/bin/runc to allow re-use"). The memfd cannot be bind
// mounted from here (it lives on the kernel's internal mount), hence the
// symlink through /proc. crun does the same at every invocation (a
// constructor copies the binary into a memfd and executes it again, before
// main), and skips it on the same condition.
//
// The link is valid while this process runs; containerd, which runs runc
// through its shims, is this process's child and stops with it.
type sealedBinary struct {
	f       *os.File
	link    string
	version string // the first line of `<link> --version`
}

// sealBinary copies the binary of the OCI runtime name ("runc" or "crun")
// at src into a sealed memfd and points link at it. It checks that the copy
// runs (`<name> --version`) before it answers; on any failure the caller
// runs the binary from PATH.
func sealBinary(name, src, link string) (*sealedBinary, error) {
	in, err := os.Open(src)
	if err != nil {
		return nil, err
	}
	defer in.Close()
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING|unix.MFD_EXEC)
	if errors.Is(err, unix.EINVAL) { // kernels before 6.3 know no MFD_EXEC
		fd, err = unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	}
	if err != nil {
		return nil, fmt.Errorf("memfd_create: %w", err)
	}
	f := os.NewFile(uintptr(fd), name+" (sealed memfd)")
	fail := func(err error) (*sealedBinary, error) {
		f.Close()
		return nil, err
	}
	if _, err := io.Copy(f, in); err != nil {
		return fail(fmt.Errorf("copying %s: %w", src, err))
	}
	if err := f.Chmod(0o555); err != nil {
		return fail(err)
	}
	if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, runtimeSeals); err != nil {
		return fail(fmt.Errorf("sealing: %w", err))
	}
	if seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0); err != nil || seals != runtimeSeals {
		// runc and crun compare the seals exactly (an F_SEAL_EXEC added by
		// vm.memfd_noexec would make them copy themselves anyway).
		return fail(fmt.Errorf("seals are %#x, %s wants exactly %#x (err %v)", seals, name, runtimeSeals, err))
	}
	if err := os.MkdirAll(filepath.Dir(link), 0o711); err != nil {
		return fail(err)
	}
	if err := atomicfile.Symlink(fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), f.Fd()), link); err != nil {
		return fail(err)
	}
	out, err := exec.Command(link, "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), name+" version") {
		return fail(fmt.Errorf("%s --version: %v: %s", link, err, firstLine(string(out))))
	}
	return &sealedBinary{f: f, link: link, version: firstLine(string(out))}, nil
}

// Close releases the memfd; the link then dangles until the next start
// replaces it.
func (s *sealedBinary) Close() error {
	if s == nil {
		return nil
	}
	return s.f.Close()
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(strings.TrimSpace(s), "\n")
	return s
}
