// Package containerinit is the first process of a process-runtime
// container, and the confinement every process of a container gets.
//
// The process runtime starts a container by running the agent's own
// executable with Arg0 as argv[0], in the container's new PID namespace
// (and its pod's network, IPC and UTS namespaces and its private mount
// namespace). This package's init function recognises that before any
// heavier package initialises, reads the container's Config from fd 3,
// builds the container's file system view (a fresh /proc for its PID
// namespace, a minimal /dev, a read-only /sys, the paths runc masks
// masked, the agent's data directory hidden, pivot_root into a private
// root when there is one), drops to the container's capabilities, sets
// no_new_privs, loads the seccomp filter, starts the container's program
// and stays as PID 1: it forwards signals to the program's process group,
// reaps orphans, and reports on fd 4 how the program started and ended.
//
// The same Confinement is applied by the agent (on a thread it throws
// away) to processes it starts inside a running container (exec, probes).
package containerinit

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"unsafe"
)

// Arg0 is argv[0] of a container's init process, InitName its name in ps.
const (
	Arg0     = "headway-container-init"
	InitName = "headway-init"
)

// Config is what the agent tells a container's init (on fd 3, in the form
// of wire.go).
type Config struct {
	// Root is the container's private root ("" keeps the namespace's own
	// root: the host's file system with the container's mounts).
	Root string
	// Proc mounts a fresh /proc (the container has its own PID namespace).
	Proc bool
	// Sysfs mounts a fresh sysfs (the container has its own network
	// namespace); otherwise the host's /sys is made read-only.
	Sysfs bool
	// Mqueue mounts /dev/mqueue (the pod has its own IPC namespace).
	Mqueue bool
	// Hide are host paths covered by an empty read-only tmpfs: the agent's
	// data directory (PKI, tokens, the store, other pods' files).
	Hide []string
	// Path is the program (as the container sees it), Argv its arguments.
	Path string
	Argv []string
	Env  []string
	Dir  string
	// TTY gives the program a session with stdin as controlling terminal.
	TTY  bool
	Cred Cred
	Confinement
}

// Cred is the user, group and supplementary groups a program runs as.
type Cred struct {
	UID, GID uint32
	Groups   []uint32
}

// Confinement is what confines a container's processes beyond namespaces.
type Confinement struct {
	// Privileged keeps every capability, loads no seccomp filter, masks
	// nothing and gives the container the host's /dev.
	Privileged bool
	// Caps is the capability set (bounding, and for root permitted and
	// effective), as numbers.
	Caps []int
	// NoNewPrivs sets no_new_privs: setuid binaries and file
	// capabilities grant nothing.
	NoNewPrivs bool
	// Seccomp loads the RuntimeDefault-like filter: Filter, assembled by
	// the agent (the process package's seccomp.go) once per capability set.
	Seccomp bool
	Filter  []byte
}

// The container's init runs from this package's init function, before
// main and before most of the binary's ~600 packages initialise: Go
// initialises packages in dependency order, the ready one with the lowest
// import path first, so this package imports only the standard library
// (no golang.org/x/..., no path/filepath) and becomes ready early. With
// golang.org/x/sys/unix and path/filepath imported, 180 packages
// initialised before it (protobuf registries, etcd, OpenTelemetry); now
// about 90 (GODEBUG=inittrace=1; see bench/results-agent.md).
func init() {
	if len(os.Args) > 0 && os.Args[0] == Arg0 {
		os.Exit(run())
	}
}

// Status lines on fd 4: "started <pid>", "error <message>", "exit <wait status>".
const (
	StatusStarted = "started"
	StatusError   = "error"
	StatusExit    = "exit"
)

func run() int {
	runtime.LockOSThread() // the confinement is per thread: fork from this one
	syscall.CloseOnExec(3)
	syscall.CloseOnExec(4)
	status := os.NewFile(4, "status")
	fail := func(err error) int {
		fmt.Fprintf(status, "%s %s\n", StatusError, strings.ReplaceAll(err.Error(), "\n", " "))
		return 127
	}
	cf := os.NewFile(3, "config")
	cfg, err := Decode(cf)
	cf.Close()
	if err != nil {
		return fail(fmt.Errorf("reading the container's configuration: %w", err))
	}
	// Nothing in the container may open /proc/1/exe or /proc/1/mem.
	prctl(prSetDumpable, 0, 0, 0, 0)
	// `ps` in the container shows this name for PID 1 (not "exe").
	if name, err := syscall.BytePtrFromString(InitName); err == nil {
		prctl(prSetName, uintptr(unsafe.Pointer(name)), 0, 0, 0)
	}
	if err := setupFS(cfg); err != nil {
		return fail(err)
	}
	sigs := make(chan os.Signal, 64)
	// Before the program starts, only the signals the Go runtime would end
	// this init on (TERM, INT, HUP; QUIT dumps and exits) and those commonly
	// sent to a container (USR1, USR2, WINCH); every other one once it has
	// started (see lateSignals).
	signal.Notify(sigs, earlySignals...)
	if err := cfg.Confinement.Apply(); err != nil {
		return fail(err)
	}
	attr := &syscall.ProcAttr{Dir: cfg.Dir, Env: cfg.Env, Files: []uintptr{0, 1, 2},
		Sys: &syscall.SysProcAttr{Setpgid: !cfg.TTY, Setsid: cfg.TTY, Setctty: cfg.TTY,
			Credential: &syscall.Credential{Uid: cfg.Cred.UID, Gid: cfg.Cred.GID, Groups: cfg.Cred.Groups}}}
	pid, err := syscall.ForkExec(cfg.Path, cfg.Argv, attr)
	if err != nil {
		return fail(fmt.Errorf("starting %s: %w", cfg.Argv[0], err))
	}
	fmt.Fprintf(status, "%s %d\n", StatusStarted, pid)
	go func() {
		lateSignals(sigs)
		for s := range sigs {
			sig := s.(syscall.Signal)
			switch sig {
			case syscall.SIGCHLD, syscall.SIGURG, syscall.SIGPIPE:
				continue
			}
			// The program's whole group: a shell's children go too.
			if syscall.Kill(-pid, sig) != nil {
				syscall.Kill(pid, sig)
			}
		}
	}()
	for {
		var ws syscall.WaitStatus
		wpid, err := syscall.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			fmt.Fprintf(status, "%s %s\n", StatusError, err)
			return 128
		}
		if wpid == pid {
			// Leaving ends every other process of the PID namespace.
			fmt.Fprintf(status, "%s %d\n", StatusExit, uint32(ws))
			return 0
		}
	}
}

// earlySignals are the signals the init forwards from before the program
// starts.
var earlySignals = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH}

// lateSignals has the init forward every other signal too (a stop signal
// such as SIGRTMIN+3, SIGPWR), from a few milliseconds after the program
// started: the Go runtime starts watching each signal with a round trip
// between two of its threads, about 100 µs each on a virtualised host, and
// the whole set before the start made every container start 5 ms later.
// Until then the runtime ignores such a signal (the job-control ones,
// TSTP, TTIN, TTOU and CONT, keep their default action).
func lateSignals(sigs chan os.Signal) { signal.Notify(sigs) }

// Paths runc masks (an empty read-only tmpfs on directories, /dev/null on
// files) and makes read-only in an unprivileged container.
var (
	MaskedPaths = []string{"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware",
		"/sys/devices/virtual/powercap"}
	ReadOnlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

// setupFS builds the container's view in the mount namespace it shares
// with nothing (the agent made it private): hidden paths, /proc, /sys,
// masks, /dev, then the pivot into the private root.
func setupFS(cfg *Config) error {
	root := cfg.Root
	if root == "" {
		root = "/"
	}
	at := func(p string) string { return join(root, p) }
	for _, h := range cfg.Hide {
		if _, err := os.Stat(at(h)); err != nil {
			continue
		}
		if err := syscall.Mount("tmpfs", at(h), "tmpfs", syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "size=4k,mode=755"); err != nil {
			return fmt.Errorf("hiding %s: %w", h, err)
		}
	}
	if cfg.Proc {
		if err := syscall.Mount("proc", at("/proc"), "proc", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
			return fmt.Errorf("mounting /proc: %w", err)
		}
	}
	sysFlags := uintptr(syscall.MS_NOSUID | syscall.MS_NODEV | syscall.MS_NOEXEC)
	if !cfg.Privileged {
		sysFlags |= syscall.MS_RDONLY
	}
	switch {
	case cfg.Sysfs:
		if err := syscall.Mount("sysfs", at("/sys"), "sysfs", sysFlags, ""); err != nil {
			return fmt.Errorf("mounting /sys: %w", err)
		}
	case !cfg.Privileged:
		if err := readOnly(at("/sys")); err != nil {
			return fmt.Errorf("making /sys read-only: %w", err)
		}
	}
	if !cfg.Privileged {
		for _, p := range MaskedPaths {
			if err := mask(at(p)); err != nil {
				return fmt.Errorf("masking %s: %w", p, err)
			}
		}
		for _, p := range ReadOnlyPaths {
			if _, err := os.Stat(at(p)); err != nil {
				continue
			}
			if err := readOnly(at(p)); err != nil {
				return fmt.Errorf("making %s read-only: %w", p, err)
			}
		}
		if err := makeDev(at("/dev"), cfg.Mqueue); err != nil {
			return fmt.Errorf("making /dev: %w", err)
		}
	}
	if root != "/" {
		if err := pivot(root); err != nil {
			return fmt.Errorf("entering the container's root: %w", err)
		}
	}
	return nil
}

func mask(p string) error {
	st, err := os.Stat(p)
	if err != nil {
		return nil
	}
	if st.IsDir() {
		return syscall.Mount("tmpfs", p, "tmpfs", syscall.MS_RDONLY|syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "size=4k")
	}
	return syscall.Mount("/dev/null", p, "", syscall.MS_BIND, "")
}

func readOnly(p string) error {
	if err := syscall.Mount(p, p, "", syscall.MS_BIND|syscall.MS_REC, ""); err != nil {
		return err
	}
	return syscall.Mount("", p, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY|syscall.MS_REC|syscall.MS_NOSUID|syscall.MS_NODEV, "")
}

// makeDev puts a minimal /dev on dev, as runc's default: the usual
// character devices, a private devpts, /dev/shm and /dev/mqueue.
func makeDev(dev string, mqueue bool) error {
	if err := syscall.Mount("tmpfs", dev, "tmpfs", syscall.MS_NOSUID|syscall.MS_STRICTATIME, "mode=755,size=65536k"); err != nil {
		return err
	}
	for _, d := range []struct {
		name         string
		major, minor uint32
	}{{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0}} {
		p := join(dev, d.name)
		if err := syscall.Mknod(p, syscall.S_IFCHR|0o666, int(mkdev(d.major, d.minor))); err != nil {
			return err
		}
		if err := os.Chmod(p, 0o666); err != nil {
			return err
		}
	}
	for _, d := range []string{"pts", "shm", "mqueue"} {
		if err := os.Mkdir(join(dev, d), 0o755); err != nil {
			return err
		}
	}
	if err := syscall.Mount("devpts", join(dev, "pts"), "devpts", syscall.MS_NOSUID|syscall.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		return err
	}
	if err := syscall.Mount("shm", join(dev, "shm"), "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
		return err
	}
	if mqueue {
		if err := syscall.Mount("mqueue", join(dev, "mqueue"), "mqueue", syscall.MS_NOSUID|syscall.MS_NODEV|syscall.MS_NOEXEC, ""); err != nil {
			return err
		}
	}
	for name, target := range map[string]string{"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2", "core": "/proc/kcore"} {
		if err := os.Symlink(target, join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}

// pivot makes root the mount namespace's root and detaches the old one,
// so no chroot escape leads back to the host's file system.
func pivot(root string) error {
	if err := syscall.Chdir(root); err != nil {
		return err
	}
	if err := syscall.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := syscall.Unmount(".", syscall.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the old root: %w", err)
	}
	return syscall.Chdir("/")
}

// join appends the absolute path p to root ("/" or a directory), as
// filepath.Join does for these clean paths (see init for why not
// path/filepath).
func join(root, p string) string {
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	if root == "/" || root == "" {
		return p
	}
	return strings.TrimSuffix(root, "/") + p
}

// mkdev is a device number as the kernel encodes it (glibc's makedev).
func mkdev(major, minor uint32) uint64 {
	return uint64(major&0xfff)<<8 | uint64(major&^0xfff)<<32 | uint64(minor&0xff) | uint64(minor&^0xff)<<12
}

// prctl is prctl(2).
func prctl(option int, a2, a3, a4, a5 uintptr) (uintptr, error) {
	r, _, errno := syscall.RawSyscall6(syscall.SYS_PRCTL, uintptr(option), a2, a3, a4, a5, 0)
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// prctl options and capability numbers (linux/prctl.h, linux/capability.h).
const (
	prSetDumpable        = 4
	prSetName            = 15
	prCapbsetRead        = 23
	prCapbsetDrop        = 24
	prSetSeccomp         = 22
	prSetNoNewPrivs      = 38
	prCapAmbient         = 47
	prCapAmbientClearAll = 4
	seccompModeFilter    = 2

	linuxCapabilityVersion3 = 0x20080522
)
