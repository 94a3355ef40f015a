package agent

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// The pods' directory (<data-dir>/pods) holds what each pod's start writes
// and its removal deletes: the hosts, resolv.conf and hostname files, the
// IPC namespace file, the service-account token and the configMap, secret,
// downward API and projected volume files, the mount staging directories
// and the pid files. A dozen to thirty inodes per pod, each made and later
// removed. The agent mounts a tmpfs there, as the kubelet keeps secrets and
// tokens in memory and containerd its state under /run: on a journaled
// disk each of those inodes costs a few hundred microseconds of CPU (256 µs
// per mkdir on the machine of bench/results-agent.md), on tmpfs a few.
// Tokens and secrets then never reach the disk either. What must outlive
// the machine's next boot stays on the disk: the store, the logs, the
// addresses (IPAM), emptyDir volumes (<data-dir>/emptydir/<pod uid>) and
// claims.

// podsTmpfsOptions are the tmpfs's mount data: the directory's own mode
// (the pods' files are root's alone, as before).
const podsTmpfsOptions = "mode=0700"

// mountPodsTmpfs makes dir a tmpfs unless it is one already (a previous
// run left it mounted with pods running) or it holds pods written to the
// disk by an earlier version (they stay where they are). It reports
// whether dir is a tmpfs this agent may unmount when it stops; failures
// (no privilege, no tmpfs) leave the pods on the disk, as before.
func mountPodsTmpfs(dir string, log *slog.Logger) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	if fstype, ok := mountAt(abs); ok {
		if fstype == "tmpfs" {
			return true
		}
		log.Info("the pods' directory is a mount of its own; its files stay on it", "dir", abs, "fstype", fstype)
		return false
	}
	// A mount made in a mount namespace of this process's own (`ip netns
	// exec`, a systemd unit's PrivateTmp, `unshare -m`) goes with the
	// process: a server killed there would leave its containers running
	// with their pid files gone, and the next start could not end them.
	// There the files stay on the disk, which every namespace shares. What
	// made such a namespace started this process in it, so its parent is
	// elsewhere (PID 1 may not be readable, in a sandbox).
	if privateMountNamespace() {
		log.Info("headway runs in a mount namespace of its own; the pods' files stay on the disk", "dir", abs)
		return false
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		log.Warn("the pods' directory cannot be made; pods keep their files on the disk", "dir", abs, "err", err)
		return false
	}
	if entries, _ := os.ReadDir(abs); len(entries) > 0 {
		log.Info("the pods' directory holds pods written by an earlier start to the disk; they stay there", "dir", abs, "pods", len(entries))
		return false
	}
	if err := unix.Mount("tmpfs", abs, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, podsTmpfsOptions); err != nil {
		log.Info("no tmpfs for the pods' files; they stay on the disk", "dir", abs, "err", err)
		return false
	}
	log.Debug("the pods' files are on a tmpfs", "dir", abs)
	return true
}

// privateMountNamespace reports whether this process's mount namespace is
// not its parent's (false when either cannot be read).
func privateMountNamespace() bool {
	own, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return false
	}
	parent, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", os.Getppid()))
	return err == nil && parent != own
}

// unmountPodsTmpfs detaches the pods' tmpfs and every mount under it (the
// IPC namespace files of pods not removed), leaving the empty directory on
// the disk.
func unmountPodsTmpfs(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if fstype, ok := mountAt(abs); !ok || fstype != "tmpfs" {
		return nil
	}
	if err := unix.Unmount(abs, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

// mountAt returns the filesystem type of the mount whose mount point is
// path (the last one, which is what path shows), if one is.
func mountAt(path string) (fstype string, ok bool) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) < 5 || unescapeMount(fields[4]) != path {
			continue
		}
		if _, after, found := strings.Cut(line, " - "); found {
			if f := strings.Fields(after); len(f) > 0 {
				fstype, ok = f[0], true
			}
		}
	}
	return fstype, ok
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, ok := octal(s[i+1 : i+4]); ok {
				b.WriteByte(v)
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func octal(s string) (byte, bool) {
	if len(s) != 3 {
		return 0, false
	}
	var v int
	for _, c := range s {
		if c < '0' || c > '7' {
			return 0, false
		}
		v = v*8 + int(c-'0')
	}
	return byte(v), v < 256
}
