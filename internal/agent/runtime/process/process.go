// Package process is the process runtime: each pod gets a network namespace
// (from agent/network) and an IPC namespace, each container is a process
// tree in those with its own PID namespace (an init of Headway's as PID 1,
// see containerinit), UTS namespace (the pod's host name), mount namespace
// (the pod's /etc/hosts, /etc/resolv.conf and volumes, a fresh /proc and
// /dev, Headway's data directory hidden) and cgroup (its limits), with a
// container runtime's default capabilities, no_new_privs and a
// RuntimeDefault-like seccomp filter. The pod spec can ask for the host's
// network, PID and IPC namespaces and for privileges. There are no images:
// a container runs its command from the host's file system.
package process

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/headway/headway/internal/agent/network"
	"github.com/headway/headway/internal/agent/nsfile"
	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

// Config configures the process runtime.
type Config struct {
	// PodsDir holds one directory per pod (<data-dir>/pods).
	PodsDir string
	// DataDir holds the busybox applet directory (see busybox.go).
	DataDir string
	// Network gives pods their network; nil runs pods in the host's
	// network namespace (no isolation, the pod IP is the node's).
	Network *network.Network
	// HostIP is the pod IP of hostNetwork pods (and of every pod when
	// Network is nil): the node's address.
	HostIP netip.Addr
	DNS    network.DNSSettings
	Log    *slog.Logger
	// CgroupParent is the cgroup (in each hierarchy) holding the pods'
	// cgroups; "" is "headway-process".
	CgroupParent string
	// ContainerInit is the executable started as each container's first
	// process (argv[0] containerinit.Arg0); "" is the small headway-init
	// this binary embeds, installed in DataDir/bin, or else the agent's
	// own executable (see package initbin).
	ContainerInit string
}

// Runtime is the process runtime.
type Runtime struct {
	cfg Config
	log *slog.Logger

	mu        sync.Mutex
	sandboxes map[string]*hwruntime.Sandbox

	busyboxOnce sync.Once
	busyboxDir  string

	initOnce sync.Once
	initExe  string

	cgroups *cgroups
}

// New makes the runtime; call Cleanup before use to end what a previous
// run left behind.
func New(cfg Config) (*Runtime, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.PodsDir, 0o700); err != nil {
		return nil, err
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "headway-process"
	}
	r := &Runtime{cfg: cfg, log: cfg.Log, sandboxes: map[string]*hwruntime.Sandbox{}}
	r.cgroups = detectCgroups(cfg.CgroupParent, cfg.Log)
	return r, nil
}

// Close removes the pods' cgroup parent when no pod is left in it (the
// agent calls it when it stops).
func (r *Runtime) Close() error {
	r.cgroups.removeParent()
	return nil
}

// EnforcesLimits implements runtime.LimitEnforcer: containers' memory and
// cpu limits are their cgroups' where the host lets Headway make cgroups.
func (r *Runtime) EnforcesLimits() bool { return r.cgroups.enforces() }

// Name implements runtime.Runtime.
func (r *Runtime) Name() string { return "headway-process" }

// Check implements runtime.Runtime: a container needs a command (or args,
// whose first word is then the program).
func (r *Runtime) Check(c *corev1.Container) error {
	if len(c.Command) == 0 && len(c.Args) == 0 {
		return noCommandError(fmt.Sprintf("container %q has no command, and the process runtime has no images to take one from (image %q is not pulled): set `command` (and `args`) to a program on this machine, or run headway with the CRI runtime", c.Name, c.Image))
	}
	return nil
}

type noCommandError string

func (e noCommandError) Error() string        { return string(e) }
func (e noCommandError) Is(target error) bool { return target == hwruntime.ErrNoCommand }

func (r *Runtime) podDir(uid string) string { return filepath.Join(r.cfg.PodsDir, uid) }

// RunSandbox implements runtime.Runtime.
func (r *Runtime) RunSandbox(ctx context.Context, pod *corev1.Pod) (*hwruntime.Sandbox, error) {
	uid := string(pod.UID)
	r.mu.Lock()
	sb, ok := r.sandboxes[uid]
	r.mu.Unlock()
	if ok {
		return sb, nil
	}
	dir := r.podDir(uid)
	if err := os.MkdirAll(filepath.Join(dir, "containers"), 0o700); err != nil {
		return nil, err
	}
	// The pod's directory must be reachable by a container running as
	// another user (volumes live below it).
	os.Chmod(dir, 0o711)
	sb = &hwruntime.Sandbox{
		UID: uid, Namespace: pod.Namespace, Name: pod.Name, Hostname: network.Hostname(pod), Dir: dir,
		HostsFile:      filepath.Join(dir, "etc-hosts"),
		ResolvConfFile: filepath.Join(dir, "resolv.conf"),
		HostnameFile:   filepath.Join(dir, "hostname"),
	}
	if r.cfg.Network != nil && !pod.Spec.HostNetwork {
		pn, err := r.cfg.Network.AddPod(uid, pod.Namespace+"/"+pod.Name)
		if err != nil {
			return nil, fmt.Errorf("setting up the pod network: %w", err)
		}
		sb.IP, sb.NetNS = pn.IP, pn.NetNS
	} else {
		sb.IP = r.cfg.HostIP
		if h, err := os.Hostname(); err == nil && pod.Spec.HostNetwork {
			sb.Hostname = h
		}
	}
	files := map[string][]byte{
		sb.HostsFile:      network.Hosts(pod, sb.IP, r.cfg.DNS.ClusterDomain),
		sb.ResolvConfFile: network.ResolvConf(pod, r.cfg.DNS),
		sb.HostnameFile:   []byte(sb.Hostname + "\n"),
	}
	for path, data := range files {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return nil, err
		}
	}
	if !pod.Spec.HostIPC {
		if err := nsfile.Create(ipcPath(dir), unix.CLONE_NEWIPC); err != nil {
			r.removePodState(uid)
			return nil, fmt.Errorf("making the pod's IPC namespace: %w", err)
		}
	}
	r.mu.Lock()
	r.sandboxes[uid] = sb
	r.mu.Unlock()
	return sb, nil
}

// RemoveSandbox implements runtime.Runtime. The containers must have been
// stopped.
func (r *Runtime) RemoveSandbox(ctx context.Context, uid string, final bool) error {
	r.mu.Lock()
	delete(r.sandboxes, uid)
	r.mu.Unlock()
	err := r.removePodState(uid)
	if r.cfg.Network != nil {
		err = errors.Join(err, r.cfg.Network.RemovePod(uid, final))
	}
	if final {
		err = errors.Join(err, os.RemoveAll(r.podDir(uid)))
	}
	return err
}

// Cleanup ends every container process a previous run of the agent left
// (recorded in pid files, checked against the process start time so a
// reused PID is never hit) and removes the pod network namespaces, so the
// agent starts from nothing; pods are then started again with their old
// addresses (the IPAM keeps them).
func (r *Runtime) Cleanup() error {
	var errs []error
	pidFiles, _ := filepath.Glob(filepath.Join(r.cfg.PodsDir, "*", "containers", "*.pid"))
	for _, f := range pidFiles {
		if pid, start, ok := readPIDFile(f); ok && processStart(pid) == start {
			r.log.Info("ending a container left by a previous run", "pid", pid, "file", f)
			syscall.Kill(-pid, syscall.SIGKILL)
			syscall.Kill(pid, syscall.SIGKILL)
			waitGone(pid, start, 5*time.Second)
		}
		os.Remove(f)
	}
	ipcs, _ := filepath.Glob(ipcPath(filepath.Join(r.cfg.PodsDir, "*")))
	for _, f := range ipcs {
		if err := nsfile.Remove(f); err != nil {
			errs = append(errs, err)
		}
	}
	// Only this agent's pods: the cgroup parent is shared by every Headway
	// server on the machine, and another one's pods are not ours to end.
	pods, _ := os.ReadDir(r.cfg.PodsDir)
	for _, e := range pods {
		if e.IsDir() {
			if err := r.cgroups.removePod(e.Name()); err != nil {
				errs = append(errs, err)
			}
		}
	}
	if r.cfg.Network != nil {
		for _, uid := range r.cfg.Network.PodNamespaces() {
			if err := r.cfg.Network.RemovePod(uid, false); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// ForgetPods removes the directories (and frees the addresses) of pods
// that are not in keep: pods deleted while the agent was down.
func (r *Runtime) ForgetPods(_ context.Context, keep map[string]bool) {
	entries, _ := os.ReadDir(r.cfg.PodsDir)
	for _, e := range entries {
		if !keep[e.Name()] {
			r.removePodState(e.Name())
			os.RemoveAll(filepath.Join(r.cfg.PodsDir, e.Name()))
		}
	}
	if r.cfg.Network != nil {
		for _, o := range r.cfg.Network.IPAM().Owners() {
			if !keep[o] {
				r.cfg.Network.IPAM().Release(o)
			}
		}
	}
}

// removePodState removes the pod's IPC namespace and cgroups.
func (r *Runtime) removePodState(uid string) error {
	return errors.Join(nsfile.Remove(ipcPath(r.podDir(uid))), r.cgroups.removePod(uid))
}

// ipcPath is the pod's IPC namespace file.
func ipcPath(podDir string) string { return filepath.Join(podDir, "ipc-ns") }

func readPIDFile(path string) (pid int, start uint64, ok bool) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, 0, false
	}
	f := strings.Fields(string(data))
	if len(f) != 2 {
		return 0, 0, false
	}
	pid, err1 := strconv.Atoi(f[0])
	start, err2 := strconv.ParseUint(f[1], 10, 64)
	return pid, start, err1 == nil && err2 == nil && pid > 1
}

// processStart is field 22 of /proc/<pid>/stat (start time in clock ticks
// since boot), 0 when there is no such process.
func processStart(pid int) uint64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0
	}
	v, _ := strconv.ParseUint(f[19], 10, 64)
	return v
}

// waitGone waits (up to limit) for a process that is not our child to end:
// its pidfd becomes readable when it has.
func waitGone(pid int, start uint64, limit time.Duration) {
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return
	}
	defer unix.Close(fd)
	if processStart(pid) != start {
		return
	}
	fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	unix.Poll(fds, int(limit/time.Millisecond))
}
