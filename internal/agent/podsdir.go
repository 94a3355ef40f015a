package agent

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

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

// mountPodsTmpfs makes dir a tmpfs unless its files are in memory already
// (a previous run left its tmpfs mounted with pods running, or the data dir
// is on one), another filesystem is mounted there, or it holds pods written
// to the disk by an earlier version (they stay where they are). It reports
// whether dir is on a tmpfs, which the agent unmounts when it stops if it
// is a mount of its own; failures (no privilege, no tmpfs) leave the pods
// on the disk, as before.
func mountPodsTmpfs(dir string, log *slog.Logger) bool {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		log.Warn("the pods' directory cannot be made; pods keep their files on the disk", "dir", abs, "err", err)
		return false
	}
	if onTmpfs(abs) {
		return true
	}
	if isMountPoint(abs) {
		log.Info("the pods' directory is a mount of its own; its files stay on it", "dir", abs)
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
// the disk; a dir that is not a tmpfs mount of its own is left as it is.
func unmountPodsTmpfs(dir string) error {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	if !onTmpfs(abs) || !isMountPoint(abs) {
		return nil
	}
	if err := unix.Unmount(abs, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
		return err
	}
	return nil
}

// onTmpfs reports whether path is on a tmpfs.
func onTmpfs(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.TMPFS_MAGIC
}

// isMountPoint reports whether a filesystem is mounted on path: it is on
// another device than its parent directory.
func isMountPoint(path string) bool {
	var st, parent unix.Stat_t
	return unix.Stat(path, &st) == nil && unix.Stat(filepath.Dir(path), &parent) == nil && st.Dev != parent.Dev
}
