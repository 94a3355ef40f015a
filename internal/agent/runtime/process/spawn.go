package process

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"

	"github.com/headway/headway/internal/agent/nsfile"
	hwruntime "github.com/headway/headway/internal/agent/runtime"
	"github.com/headway/headway/internal/agent/runtime/process/containerinit"
	"github.com/headway/headway/internal/agent/runtime/process/initbin"
)

// proc is a started container process: the container's init (see
// containerinit), PID 1 of the container's PID namespace, which runs the
// container's program.
type proc struct {
	stdio   *stdio
	cmd     *exec.Cmd
	started time.Time
	pidFile string
	id      string
	done    chan struct{}
	// status is the init's report (fd 4): how the program ended.
	status     *bufio.Reader
	statusFile *os.File
	cg         *ctrCgroup
	conf       confinement
	mu         sync.Mutex
	exit       hwruntime.Exit
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

// Signal signals the init, which passes the signal on to the program's
// process group; SIGKILL ends the init, and with it every process of the
// container's PID namespace and cgroup.
func (p *proc) Signal(s syscall.Signal) error {
	select {
	case <-p.done:
		return nil
	default:
	}
	err := syscall.Kill(-p.cmd.Process.Pid, s)
	if s == syscall.SIGKILL {
		p.cg.kill()
	}
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}

func (p *proc) wait() {
	err := p.cmd.Wait()
	// Whatever the init left in its group or cgroup goes with it.
	syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	p.cg.kill()
	e := hwruntime.Exit{Finished: time.Now()}
	st, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus)
	if kind, arg, rerr := readStatus(p.status); rerr == nil && kind == containerinit.StatusExit {
		// How the program ended, as its init saw it.
		if v, err := strconv.ParseUint(arg, 10, 32); err == nil {
			st, ok = syscall.WaitStatus(v), true
		}
	}
	p.statusFile.Close()
	switch {
	case ok && st.Signaled():
		e.Signal = int32(st.Signal())
		e.Code = 128 + int32(st.Signal())
	case ok:
		e.Code = int32(st.ExitStatus())
	case err != nil:
		e.Code = 128
	}
	if p.cg.oomKilled() {
		e.Reason = "OOMKilled"
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

// readStatus reads one line of the init's report: its kind and argument.
func readStatus(r *bufio.Reader) (kind, arg string, err error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", "", err
	}
	kind, arg, _ = strings.Cut(strings.TrimSpace(line), " ")
	return kind, arg, nil
}

// Start implements runtime.Runtime.
func (r *Runtime) Start(ctx context.Context, sb *hwruntime.Sandbox, c *hwruntime.ContainerSpec) (hwruntime.Process, error) {
	if len(c.Argv) == 0 {
		return nil, hwruntime.ErrNoCommand
	}
	conf, err := confinementOf(c)
	if err != nil {
		return nil, err
	}
	if conf.Confinement, err = withSeccomp(conf.Confinement); err != nil {
		return nil, err
	}
	if isBusyboxImage(c.Image) {
		if dir := r.busyboxBin(); dir != "" {
			// The spec is the container's for exec and probes too.
			c.Env = withBusyboxPath(c.Env, busyboxTarget)
			if !slices.ContainsFunc(c.Mounts, func(m hwruntime.Mount) bool { return m.Target == busyboxTarget }) {
				c.Mounts = append(slices.Clone(c.Mounts), hwruntime.Mount{Source: dir, Target: busyboxTarget, ReadOnly: true})
			}
		}
	}
	if c.Pod != nil && c.Pod.Spec.SecurityContext != nil && c.Pod.Spec.SecurityContext.FSGroup != nil {
		for _, m := range c.Mounts {
			if r.ownsPath(m.Source) && m.Target != busyboxTarget {
				if err := applyFSGroup(m.Source, *c.Pod.Spec.SecurityContext.FSGroup, m.ReadOnly); err != nil {
					return nil, fmt.Errorf("giving volume %s the pod's fsGroup: %w", m.Target, err)
				}
			}
		}
	}
	var res corev1.ResourceRequirements
	if c.Container != nil {
		res = c.Container.Resources
	}
	cg, err := r.cgroups.container(sb.UID, c.Name, res)
	if err != nil {
		r.log.Warn("the container's cgroup is incomplete: its limits may not be enforced", "pod", sb.Namespace+"/"+sb.Name, "container", c.Name, "err", err)
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
	p := &proc{stdio: sio, done: make(chan struct{}), pidFile: filepath.Join(sb.Dir, "containers", c.Name+".pid"), cg: cg, conf: conf}
	errc := make(chan error, 1)
	go func() {
		// This thread enters the pod's namespaces and is thrown away
		// afterwards (never unlocked), so nothing else ever runs in them.
		runtime.LockOSThread()
		errc <- r.spawnNew(sb, c, p)
	}()
	err = <-errc
	sio.closeChildEnds()
	if err == nil {
		err = r.awaitStart(p)
	}
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

// awaitStart reads the init's first report: the program started, or why
// it did not (then the init has ended).
func (r *Runtime) awaitStart(p *proc) error {
	kind, arg, err := readStatus(p.status)
	if err == nil && kind == containerinit.StatusStarted {
		return nil
	}
	if err == nil {
		p.cmd.Process.Kill() // it said something else: make sure it is gone
	}
	// Otherwise the status pipe closed: the init has ended.
	p.cmd.Wait()
	p.statusFile.Close()
	p.cg.kill()
	switch {
	case err != nil:
		return fmt.Errorf("the container's init ended before starting the program (%v)", p.cmd.ProcessState)
	case kind == containerinit.StatusError:
		return errors.New(arg)
	}
	return fmt.Errorf("the container's init said %q", kind+" "+arg)
}

// init keeps the main goroutine on the process's main thread for good
// (LockOSThread in an init function does). Containers are started and
// entered from threads that change namespaces and are thrown away by
// ending their goroutines while locked; Go cannot end the main thread, so
// one of those on it would leave it wedged in a pod's mount namespace,
// keeping the namespace alive and showing its mounts in /proc/self.
func init() { runtime.LockOSThread() }

// ownsPath says whether path is in Headway's data dir (a pod volume, a
// claim's directory), not a host path.
func (r *Runtime) ownsPath(path string) bool {
	for _, d := range []string{r.cfg.DataDir, r.cfg.PodsDir} {
		if d != "" && (path == d || strings.HasPrefix(path, filepath.Clean(d)+"/")) {
			return true
		}
	}
	return false
}

// spawnNew runs on a locked thread that is discarded afterwards: it joins
// the pod's network and IPC namespaces, makes new UTS and mount
// namespaces, sets the host name, mounts the pod's files and volumes
// privately, and starts the container's init in a new PID namespace; the
// init is moved into the container's cgroups, then sent its configuration, and finishes the container's view and confinement
// (see containerinit).
func (r *Runtime) spawnNew(sb *hwruntime.Sandbox, c *hwruntime.ContainerSpec, p *proc) error {
	if err := unix.Unshare(unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_FS); err != nil {
		return fmt.Errorf("making the container's namespaces: %w", err)
	}
	join := func(path string, flag int, what string) error {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("opening the pod %s namespace: %w", what, err)
		}
		err = unix.Setns(fd, flag)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("joining the pod %s namespace: %w", what, err)
		}
		return nil
	}
	if sb.NetNS != "" {
		if err := join(sb.NetNS, unix.CLONE_NEWNET, "network"); err != nil {
			return err
		}
	}
	switch {
	case p.conf.hostIPC:
	case nsfile.IsMount(ipcPath(sb.Dir)):
		if err := join(ipcPath(sb.Dir), unix.CLONE_NEWIPC, "IPC"); err != nil {
			return err
		}
	default: // a sandbox made without one: the container gets its own
		if err := unix.Unshare(unix.CLONE_NEWIPC); err != nil {
			return fmt.Errorf("making the container's IPC namespace: %w", err)
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
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer cfgW.Close()
	statusR, statusW, err := os.Pipe()
	if err != nil {
		cfgR.Close()
		return err
	}
	newCmd := func(exe string) *exec.Cmd {
		cmd := &exec.Cmd{Path: exe, Args: []string{containerinit.Arg0}, Env: initEnv,
			Stdout: p.stdio.childOut, Stderr: p.stdio.childErr, ExtraFiles: []*os.File{cfgR, statusW}}
		if p.stdio.childIn != nil {
			cmd.Stdin = p.stdio.childIn
		}
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if !p.conf.hostPID {
			cmd.SysProcAttr.Cloneflags = unix.CLONE_NEWPID
		}
		return cmd
	}
	cmd := newCmd(r.initExecutable())
	err = cmd.Start()
	if err != nil && cmd.Path != selfExe {
		// The small init could not run (for one, ETXTBSY while another
		// thread's fork held the file it was just written to open): the
		// agent's own executable is the same init.
		r.log.Warn("starting the container init "+cmd.Path+" failed; running the agent's own executable as the init", "container", c.Name, "err", err)
		cmd = newCmd(selfExe)
		err = cmd.Start()
	}
	cfgR.Close()
	statusW.Close()
	if err != nil {
		statusR.Close()
		return fmt.Errorf("starting the container's init: %w", err)
	}
	p.cmd, p.started = cmd, time.Now()
	p.statusFile, p.status = statusR, bufio.NewReader(statusR)
	// The init waits for its configuration: moved now, everything it
	// starts is inside the cgroups. (Not clone3's CLONE_INTO_CGROUP: on
	// recent kernels a child cloned into a cgroup that cgroup.kill was
	// once written to is killed at birth.)
	if err := p.cg.addProcess(cmd.Process.Pid); err != nil {
		r.log.Warn("the container is not in all its cgroups: its limits may not be enforced", "container", c.Name, "err", err)
	}
	dir := c.WorkingDir
	if dir == "" {
		dir = "/"
	}
	cfg := containerinit.Config{Root: v.root, Proc: !p.conf.hostPID, Sysfs: sb.NetNS != "", Mqueue: !p.conf.hostIPC,
		Hide: r.hidden(), Path: r.lookPath(c.Argv[0], c.Env), Argv: c.Argv, Env: c.Env, Dir: dir, TTY: c.TTY,
		Cred: p.conf.cred, Confinement: p.conf.Confinement}
	if err := cfg.Encode(cfgW); err != nil {
		// The init reads nothing and ends; awaitStart reports it.
		r.log.Warn("sending the container's configuration to its init", "err", err)
	}
	return nil
}

// selfExe is the agent's own executable, which is also a container init.
const selfExe = "/proc/self/exe"

// initExecutable is the container init to run: the small headway-init this
// binary embeds, installed (once) in the data directory, or the agent's own
// executable when it embeds none (see package initbin).
func (r *Runtime) initExecutable() string {
	r.initOnce.Do(func() {
		r.initExe = selfExe
		if r.cfg.ContainerInit != "" {
			r.initExe = r.cfg.ContainerInit
			return
		}
		if r.cfg.DataDir == "" {
			return
		}
		path, err := initbin.Install(filepath.Join(r.cfg.DataDir, "bin"))
		switch {
		case err != nil:
			r.log.Warn("the small container init is not installed; containers start from the agent's own executable", "err", err)
		case path != "":
			r.initExe = path
			r.log.Debug("containers start from the small container init", "path", path)
		}
	})
	return r.initExe
}

// hidden are the host paths no container sees: Headway's data directory
// (PKI, tokens, the store, other pods' volumes and logs).
func (r *Runtime) hidden() []string {
	var out []string
	for _, d := range []string{r.cfg.DataDir, r.cfg.PodsDir} {
		if d == "" {
			continue
		}
		if abs, err := filepath.Abs(d); err == nil && !slices.Contains(out, abs) {
			out = append(out, abs)
		}
	}
	return out
}

// command is a process started directly in a running container (exec,
// probes): the container's user and groups, environment and directory.
func command(c *hwruntime.ContainerSpec, cred containerinit.Cred, path string) *exec.Cmd {
	cmd := &exec.Cmd{Path: path, Args: c.Argv, Env: c.Env, Dir: c.WorkingDir}
	if cmd.Dir == "" {
		cmd.Dir = "/"
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if c.TTY {
		// A session of its own with the terminal (stdin) as controlling tty.
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	}
	cmd.SysProcAttr.Credential = &syscall.Credential{Uid: cred.UID, Gid: cred.GID, Groups: cred.Groups}
	return cmd
}

// lookPath finds name in the container's PATH (its env), else the
// default one, as the container will see it: the busybox applet directory
// is at busyboxTarget in containers, at r.busyboxDir on the host.
func (r *Runtime) lookPath(name string, env []string) string {
	if strings.Contains(name, "/") {
		return name
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		host := dir
		if dir == busyboxTarget && r.busyboxDir != "" {
			host = r.busyboxDir
		}
		if st, err := os.Stat(filepath.Join(host, name)); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return filepath.Join(dir, name)
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
	// The container's confinement: as it was started, else as its spec says.
	var conf confinement
	var cg *ctrCgroup
	if p, ok := target.(*proc); ok {
		conf, cg = p.conf, p.cg
	} else {
		var err error
		if conf, err = confinementOf(c); err != nil {
			return nil, err
		}
		if conf.Confinement, err = withSeccomp(conf.Confinement); err != nil {
			return nil, err
		}
	}
	spec := *c
	spec.Argv = argv
	spec.TTY = tty
	spec.WorkingDir = c.WorkingDir
	cmd := command(&spec, conf.cred, r.lookPath(argv[0], c.Env))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = stdin, stdout, stderr
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // discarded with the goroutine
		errc <- enter(pid, cmd, conf)
	}()
	if err := <-errc; err != nil {
		return nil, err
	}
	// The command joins the container's cgroups once started.
	cg.addProcess(cmd.Process.Pid)
	return cmd, nil
}

// enter joins the namespaces and root of the container whose init is pid
// on this (locked, discarded) thread, confines the thread as the
// container is confined, and starts cmd there.
func enter(pid int, cmd *exec.Cmd, conf confinement) error {
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
	}{{"ns/net", unix.CLONE_NEWNET}, {"ns/uts", unix.CLONE_NEWUTS}, {"ns/ipc", unix.CLONE_NEWIPC},
		{"ns/pid", unix.CLONE_NEWPID}, {"ns/mnt", unix.CLONE_NEWNS}}
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
	if err := conf.Apply(); err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	return cmd.Start()
}

// initEnv is the environment of a container's init (the program gets the
// container's own, from the init's configuration): one P, so that the Go
// runtime of a process that mostly waits starts no threads to spin for
// work (10 threads with two Ps, each a clone and a stack).
var initEnv = []string{"GOMAXPROCS=1"}
