package process

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

// proc is a started container process.
type proc struct {
	stdio   *stdio
	cmd     *exec.Cmd
	started time.Time
	pidFile string
	id      string
	done    chan struct{}
	mu      sync.Mutex
	exit    hwruntime.Exit
}

func (p *proc) ID() string            { return p.id }
func (p *proc) PID() int              { return p.cmd.Process.Pid }
func (p *proc) Done() <-chan struct{} { return p.done }
func (p *proc) Started() time.Time    { return p.started }

// Attach implements runtime.Attacher.
func (p *proc) Attach(ctx context.Context, in io.Reader, out, errw io.Writer, resize <-chan hwruntime.TerminalSize) error {
	return p.stdio.attach(ctx, in, out, errw, resize)
}
func (p *proc) Exit() hwruntime.Exit { p.mu.Lock(); defer p.mu.Unlock(); return p.exit }
func (p *proc) Signal(s syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	// The whole group: a shell's children go too.
	err := syscall.Kill(-p.cmd.Process.Pid, s)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

func (p *proc) wait() {
	err := p.cmd.Wait()
	// Whatever the leader left in its group goes with it.
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	e := hwruntime.Exit{Finished: time.Now()}
	if st, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); ok {
		switch {
		case st.Signaled():
			e.Signal = int32(st.Signal())
			e.Code = 128 + int32(st.Signal())
		default:
			e.Code = int32(st.ExitStatus())
		}
	} else if err != nil {
		e.Code = 128
	}
	if p.pidFile != "" {
		os.Remove(p.pidFile)
	}
	if p.stdio != nil {
		p.stdio.finish()
		// Done means the output is in the log too (bounded: a process that
		// escaped the group could hold the pipes open).
		select {
		case <-p.stdio.done:
		case <-time.After(time.Second):
		}
	}
	p.mu.Lock()
	p.exit = e
	p.mu.Unlock()
	close(p.done)
}

// Start implements runtime.Runtime.
func (r *Runtime) Start(ctx context.Context, sb *hwruntime.Sandbox, c *hwruntime.ContainerSpec) (hwruntime.Process, error) {
	if len(c.Argv) == 0 {
		return nil, hwruntime.ErrNoCommand
	}
	if isBusyboxImage(c.Image) {
		if dir := r.busyboxBin(); dir != "" {
			// The spec is the container's for exec and probes too.
			c.Env = withBusyboxPath(c.Env, dir)
		}
	}
	if err := os.MkdirAll(filepath.Dir(c.LogPath), 0o700); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(c.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening the log file: %w", err)
	}
	sio, err := newStdio(c, logf)
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("making the container's stdio: %w", err)
	}
	p := &proc{stdio: sio, done: make(chan struct{}), pidFile: filepath.Join(sb.Dir, "containers", c.Name+".pid")}
	errc := make(chan error, 1)
	go func() {
		// This thread enters the pod's namespaces and is thrown away
		// afterwards (never unlocked), so nothing else ever runs in them.
		runtime.LockOSThread()
		errc <- r.spawnNew(sb, c, p)
	}()
	err = <-errc
	sio.closeChildEnds()
	if err != nil {
		for _, f := range []*os.File{sio.master, sio.stdinW, sio.outR, sio.errR} {
			if f != nil {
				f.Close()
			}
		}
		logf.Close()
		return nil, err
	}
	sio.start()
	p.id = fmt.Sprintf("%s://%s-%d", r.Name(), sb.UID, p.cmd.Process.Pid)
	os.WriteFile(p.pidFile, fmt.Appendf(nil, "%d %d\n", p.cmd.Process.Pid, processStart(p.cmd.Process.Pid)), 0o600)
	go p.wait()
	return p, nil
}

// spawnNew runs on a locked thread that is discarded afterwards: it joins
// the pod's network namespace, makes new UTS and mount namespaces, sets
// the host name, mounts the pod's files and volumes privately, and starts
// the process, which inherits all of it.
func (r *Runtime) spawnNew(sb *hwruntime.Sandbox, c *hwruntime.ContainerSpec, p *proc) error {
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_FS); err != nil {
		return fmt.Errorf("making the container's namespaces: %w", err)
	}
	if sb.NetNS != "" {
		fd, err := unix.Open(sb.NetNS, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening the pod network namespace: %w", err)
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("joining the pod network namespace: %w", err)
		}
	}
	if err := unix.Sethostname([]byte(sb.Hostname)); err != nil {
		return fmt.Errorf("setting the host name: %w", err)
	}
	// Nothing mounted from here on may reach the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making the mount namespace private: %w", err)
	}
	mounts := []hwruntime.Mount{}
	has := map[string]bool{}
	for _, m := range c.Mounts {
		has[filepath.Clean(m.Target)] = true
	}
	for _, f := range []struct{ src, dst string }{
		{sb.HostsFile, "/etc/hosts"}, {sb.ResolvConfFile, "/etc/resolv.conf"}, {sb.HostnameFile, "/etc/hostname"},
	} {
		if f.src != "" && !has[f.dst] {
			mounts = append(mounts, hwruntime.Mount{Source: f.src, Target: f.dst})
		}
	}
	mounts = append(mounts, c.Mounts...)
	v := &view{scratch: filepath.Join(sb.Dir, "mnt", c.Name), mine: map[string]bool{}}
	for _, m := range mounts {
		if err := v.bind(m); err != nil {
			return fmt.Errorf("mounting %s at %s: %w", m.Source, m.Target, err)
		}
	}
	cmd := command(c)
	cmd.Stdout, cmd.Stderr = p.stdio.childOut, p.stdio.childErr
	if p.stdio.childIn != nil {
		cmd.Stdin = p.stdio.childIn
	}
	cmd.SysProcAttr.Chroot = v.root
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", c.Argv[0], err)
	}
	p.cmd, p.started = cmd, time.Now()
	return nil
}

func command(c *hwruntime.ContainerSpec) *exec.Cmd {
	cmd := &exec.Cmd{Path: c.Argv[0], Args: c.Argv, Env: c.Env, Dir: c.WorkingDir}
	if !strings.Contains(c.Argv[0], "/") {
		cmd.Path = lookPath(c.Argv[0], c.Env)
	}
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c.TTY {
		// A session of its own with the terminal (stdin) as controlling tty.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
	if c.UID != nil || c.GID != nil {
		cred := &syscall.Credential{NoSetGroups: false}
		if c.UID != nil {
			cred.Uid = uint32(*c.UID)
		}
		if c.GID != nil {
			cred.Gid = uint32(*c.GID)
		}
		cmd.SysProcAttr.Credential = cred
	}
	return cmd
}

// lookPath finds name in the container's PATH (its env), else the
// default one.
func lookPath(name string, env []string) string {
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p
		}
	}
	return name
}

// Exec implements runtime.Runtime: argv runs in the namespaces and root of
// the container's process, with the container's environment.
func (r *Runtime) Exec(ctx context.Context, target hwruntime.Process, c *hwruntime.ContainerSpec, argv []string) (hwruntime.ExecResult, error) {
	var out bytes.Buffer
	cmd, err := r.startExec(target, c, argv, nil, &out, &out, false)
	if err != nil {
		return hwruntime.ExecResult{}, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err = <-done:
	case <-ctx.Done():
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		return hwruntime.ExecResult{Output: out.Bytes()}, ctx.Err()
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	res := hwruntime.ExecResult{Output: out.Bytes()}
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return res, err
		}
	}
	res.ExitCode = cmd.ProcessState.ExitCode()
	if res.ExitCode < 0 {
		res.ExitCode = 128
	}
	return res, nil
}

// StartExec implements runtime.InteractiveExec: it starts argv inside the
// container target (its network, UTS and mount namespaces and its root), as
// the container's user, and returns the started command for the caller to
// wait on.
//
// With tty, stdin, stdout and stderr must be the same terminal (the slave
// end of a pty); the command gets a session with it as controlling tty.
func (r *Runtime) StartExec(target hwruntime.Process, c *hwruntime.ContainerSpec, argv []string, stdin io.Reader, stdout, stderr io.Writer, tty bool) (hwruntime.Waiter, error) {
	cmd, err := r.startExec(target, c, argv, stdin, stdout, stderr, tty)
	if err != nil {
		return nil, err
	}
	return cmdWaiter{cmd}, nil
}

type cmdWaiter struct{ cmd *exec.Cmd }

func (w cmdWaiter) Kill() error { return w.cmd.Process.Kill() }

// Wait returns the exit code; a command ended by a signal has 128+9.
func (w cmdWaiter) Wait() (int, error) {
	err := w.cmd.Wait()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return 0, err
		}
	}
	code := w.cmd.ProcessState.ExitCode()
	if code < 0 {
		code = 128 + 9
	}
	return code, nil
}

func (r *Runtime) startExec(target hwruntime.Process, c *hwruntime.ContainerSpec, argv []string, stdin io.Reader, stdout, stderr io.Writer, tty bool) (*exec.Cmd, error) {
	if len(argv) == 0 {
		return nil, errors.New("exec: no command")
	}
	pid := target.PID()
	select {
	case <-target.Done():
		return nil, errors.New("exec: the container is not running")
	default:
	}
	spec := *c
	spec.Argv = argv
	spec.TTY = tty
	spec.WorkingDir = c.WorkingDir
	cmd := command(&spec)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // discarded with the goroutine
		errc <- enter(pid, cmd)
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	return cmd, nil
}

// enter joins the namespaces and root of pid on this (locked, discarded)
// thread and starts cmd there.
func enter(pid int, cmd *exec.Cmd) error {
	open := func(what string) (int, error) {
		return unix.Open(fmt.Sprintf("/proc/%d/%s", pid, what), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	kinds := []struct {
		path string
		flag int
	}{{"ns/net", unix.CLONE_NEWNET}, {"ns/uts", unix.CLONE_NEWUTS}, {"ns/mnt", unix.CLONE_NEWNS}}
	nsfds := make([]int, len(kinds))
	for i, k := range kinds {
		fd, err := open(k.path)
		if err != nil {
			return fmt.Errorf("exec: the container is gone: %w", err)
		}
		fds = append(fds, fd)
		nsfds[i] = fd
	}
	rootfd, err := open("root")
	if err != nil {
		return err
	}
	fds = append(fds, rootfd)
	// A thread may only change its mount namespace when it has its own
	// file-system information.
	if err := unix.Unshare(unix.CLONE_FS); err != nil {
		return err
	}
	for i, k := range kinds {
		if err := unix.Setns(nsfds[i], k.flag); err != nil {
			return fmt.Errorf("exec: joining %s: %w", k.path, err)
		}
	}
	if err := unix.Fchdir(rootfd); err != nil {
		return err
	}
	if err := unix.Chroot("."); err != nil {
		return err
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	return cmd.Start()
}
