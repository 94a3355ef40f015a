package containerd

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// capSysResource is CAP_SYS_RESOURCE's bit in the capability sets.
const capSysResource = 24

// hasCapSysResource reports whether a child started by this process (as
// containerd, and runc below it, are) holds CAP_SYS_RESOURCE, which lowering
// oom_score_adj needs. Root's children get the bounding set, so the
// capability must be both effective here and in the bounding set.
func hasCapSysResource() (bool, string, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false, "", err
	}
	return capSysResourceFromStatus(data)
}

// capSysResourceFromStatus reads CapEff and CapBnd of a /proc/<pid>/status.
func capSysResourceFromStatus(status []byte) (ok bool, why string, err error) {
	sets := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(status))
	for sc.Scan() {
		key, val, found := strings.Cut(sc.Text(), ":")
		if !found || (key != "CapEff" && key != "CapBnd") {
			continue
		}
		v, err := strconv.ParseUint(strings.TrimSpace(val), 16, 64)
		if err != nil {
			return false, "", fmt.Errorf("parse %s: %w", key, err)
		}
		sets[key] = v
	}
	for _, key := range []string{"CapEff", "CapBnd"} {
		v, found := sets[key]
		if !found {
			return false, "", fmt.Errorf("no %s in /proc/self/status", key)
		}
		if v&(1<<capSysResource) == 0 {
			return false, "CAP_SYS_RESOURCE not in " + key, nil
		}
	}
	return true, "CAP_SYS_RESOURCE held", nil
}

// overlaySupported tries an overlay mount in a temporary directory under dir
// (the filesystem containerd's root lives on) and undoes it.
func overlaySupported(dir string) (bool, error) {
	tmp, err := os.MkdirTemp(dir, ".overlay-check-")
	if err != nil {
		return false, err
	}
	defer os.RemoveAll(tmp)
	var paths [4]string
	for i, name := range []string{"lower", "upper", "work", "merged"} {
		paths[i] = filepath.Join(tmp, name)
		if err := os.Mkdir(paths[i], 0o700); err != nil {
			return false, err
		}
	}
	opts := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", paths[0], paths[1], paths[2])
	if err := unix.Mount("overlay", paths[3], "overlay", 0, opts); err != nil {
		return false, err
	}
	if err := unix.Unmount(paths[3], 0); err != nil {
		if err := unix.Unmount(paths[3], unix.MNT_DETACH); err != nil {
			return true, fmt.Errorf("unmount overlay check %s: %w", paths[3], err)
		}
	}
	return true, nil
}

// appArmorUsable reports whether containerd could apply AppArmor profiles:
// the kernel has it enabled and apparmor_parser (which loads containerd's
// default profile) is installed.
func appArmorUsable() (bool, string) {
	if _, err := os.Stat("/sys/kernel/security/apparmor"); err != nil {
		return false, "kernel has no AppArmor (/sys/kernel/security/apparmor missing)"
	}
	buf, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	if err != nil || len(buf) == 0 || buf[0] != 'Y' {
		return false, "AppArmor not enabled in the kernel"
	}
	if _, err := exec.LookPath("apparmor_parser"); err != nil {
		return false, "apparmor_parser not installed"
	}
	return true, "AppArmor enabled"
}

// maxSocketPath is the longest unix socket path that leaves room for the
// ".ttrpc" socket containerd puts next to the gRPC one (sun_path holds 108
// bytes including the terminating NUL).
const maxSocketPath = 107 - len(".ttrpc")

// socketPath is <dir>/containerd.sock when that fits in a unix socket address,
// else a short path under /run/headway named by a hash of dir.
func socketPath(dir string) string {
	p := filepath.Join(dir, "containerd.sock")
	if len(p) <= maxSocketPath {
		return p
	}
	sum := sha256.Sum256([]byte(dir))
	return filepath.Join("/run/headway", hex.EncodeToString(sum[:8]), "containerd.sock")
}

// linkCNIPlugins makes dirs[0] hold every plugin of dirs[1:] for a containerd
// that searches one directory only: for each executable of a later directory
// whose name dirs[0] lacks, it adds a symlink. Earlier directories win, as in
// PATH. Regular files in dirs[0] are never touched; dangling symlinks (a
// plugin removed since) are replaced or removed. It returns the names linked.
func linkCNIPlugins(dirs []string) ([]string, error) {
	if len(dirs) < 2 {
		return nil, nil
	}
	farm := dirs[0]
	if err := os.MkdirAll(farm, 0o755); err != nil {
		return nil, err
	}
	want := map[string]string{} // name -> target
	for _, dir := range dirs[1:] {
		entries, err := os.ReadDir(dir)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range entries {
			if _, seen := want[e.Name()]; seen {
				continue
			}
			target := filepath.Join(dir, e.Name())
			if st, err := os.Stat(target); err != nil || !st.Mode().IsRegular() || st.Mode().Perm()&0o111 == 0 {
				continue
			}
			want[e.Name()] = target
		}
	}
	var linked []string
	// Remove dangling symlinks first: a plugin that disappeared from the
	// later directories must not shadow one that remains.
	entries, err := os.ReadDir(farm)
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		p := filepath.Join(farm, e.Name())
		if e.Type()&fs.ModeSymlink == 0 {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			continue
		}
		if err := os.Remove(p); err != nil {
			return nil, err
		}
	}
	names := make([]string, 0, len(want))
	for name := range want {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := filepath.Join(farm, name)
		if _, err := os.Lstat(p); err == nil {
			continue // a plugin of its own, or already linked
		}
		if err := os.Symlink(want[name], p); err != nil {
			return linked, err
		}
		linked = append(linked, name)
	}
	return linked, nil
}

// processArgs returns the command line of a running process, or nil.
func processArgs(pid int) []string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || len(data) == 0 {
		return nil
	}
	return strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
}

// isOurContainerd reports whether args run containerd with configPath.
func isOurContainerd(args []string, configPath string) bool {
	if len(args) == 0 || filepath.Base(args[0]) != "containerd" {
		return false
	}
	for i := 1; i < len(args); i++ {
		if (args[i] == "--config" || args[i] == "-c") && i+1 < len(args) && args[i+1] == configPath {
			return true
		}
		if args[i] == "--config="+configPath {
			return true
		}
	}
	return false
}
