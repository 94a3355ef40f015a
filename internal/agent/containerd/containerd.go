package containerd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultPauseImage names the sandbox image Headway builds from catatonit.
// It is a local name: nothing is ever pulled for it.
const DefaultPauseImage = "localhost/headway/pause:catatonit"

const (
	readyTimeout   = 20 * time.Second
	stopTimeout    = 10 * time.Second // SIGTERM to SIGKILL
	killWait       = 5 * time.Second  // after SIGKILL
	logRotateSize  = 10 << 20
	restartBackoff = 250 * time.Millisecond
	maxBackoff     = 30 * time.Second
	// healthyRun is how long containerd must have run for its next crash to
	// restart it without the accumulated back-off.
	healthyRun = time.Minute
)

// Config says where the managed containerd keeps its files.
type Config struct {
	// Dir is <data-dir>/containerd: config.toml, root/, state/, opt/,
	// containerd.log and, if the path fits a unix socket, containerd.sock.
	Dir string
	// ImagesDir (<data-dir>/images) holds image archives (*.tar: docker-archive
	// or OCI) imported into the CRI namespace at every start. Optional.
	ImagesDir string
	// RegistryConfigDir (<data-dir>/registries) holds hosts.toml directories
	// (containerd's config_path); created if absent; empty means
	// <Dir>/registries. See the package doc.
	RegistryConfigDir string
	// CNIBinDirs are CNI plugin directories in search order, e.g.
	// <data-dir>/cni/bin and /usr/lib/cni. containerd before 2.1 searches one
	// directory: the first then gets symlinks to the plugins of the others.
	// Empty leaves containerd's default (/opt/cni/bin).
	CNIBinDirs []string
	// CNIConfDir (<data-dir>/cni/net.d) is where the network config is written
	// (by the network package); containerd uses the first file there.
	// Empty means <Dir>/cni/net.d.
	CNIConfDir string
	// OCIRuntime is what the shims run containers with: auto (also when
	// empty: crun when installed and usable, else runc), crun or runc.
	OCIRuntime string
	// PauseImage names the pod sandbox image; DefaultPauseImage if empty.
	// When containerd does not have it, Headway builds it from catatonit.
	PauseImage string
	// Log receives one structured line per event that matters; nil discards.
	Log *slog.Logger
}

// Containerd is a containerd child process, supervised until Stop.
type Containerd struct {
	log         *slog.Logger
	dir         string
	configPath  string
	logPath     string
	pidPath     string
	socket      string
	version     version
	pauseImage  string
	snapshotter string
	binary      string
	ctrPath     string
	// oci is the OCI runtime's binary (crun or runc) as a sealed memfd
	// (see sealedBinary); nil when the shims run runc from PATH.
	oci *sealedBinary

	mu   sync.Mutex
	proc *process // the running containerd; nil while restarting

	stopOnce sync.Once
	stopCh   chan struct{}
	done     chan struct{} // closed when supervision has ended
	stopErr  error
}

// process is one run of containerd.
type process struct {
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{} // closed after Wait
	err     error         // Wait's result, set before exited is closed
}

// Available reports whether this host can run the managed containerd: root,
// and containerd, ctr, containerd-shim-runc-v2 and runc on PATH (Debian
// packages containerd and runc). why says what is missing.
func Available() (ok bool, why string) {
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root (running as uid "+strconv.Itoa(os.Geteuid())+")")
	}
	for _, bin := range []string{"containerd", "ctr", "containerd-shim-runc-v2", "runc"} {
		if _, err := exec.LookPath(bin); err != nil {
			missing = append(missing, bin+" on PATH")
		}
	}
	if len(missing) > 0 {
		return false, "managed containerd needs " + strings.Join(missing, ", ") +
			" (Debian/Ubuntu: apt-get install containerd runc crun catatonit containernetworking-plugins)"
	}
	return true, ""
}

// Start writes the config, starts containerd and waits until it answers,
// imports the archives of cfg.ImagesDir and makes sure the pause image is
// there. containerd is then supervised: restarted with back-off when it exits,
// until Stop is called or ctx ends. ctx bounds containerd's life, not just
// the start: when it ends, containerd is stopped as by Stop.
//
// A containerd that an earlier Headway left running with this config (found
// through <Dir>/containerd.pid) is stopped first.
func Start(ctx context.Context, cfg Config) (*Containerd, error) {
	if cfg.Dir == "" {
		return nil, errors.New("containerd: Config.Dir is empty")
	}
	if ok, why := Available(); !ok {
		return nil, errors.New(why)
	}
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("component", "containerd")

	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	binary, _ := exec.LookPath("containerd")
	ctrPath, _ := exec.LookPath("ctr")
	c := &Containerd{
		log:        log,
		dir:        dir,
		configPath: filepath.Join(dir, "config.toml"),
		logPath:    filepath.Join(dir, "containerd.log"),
		pidPath:    filepath.Join(dir, "containerd.pid"),
		socket:     socketPath(dir),
		pauseImage: cfg.PauseImage,
		binary:     binary,
		ctrPath:    ctrPath,
		stopCh:     make(chan struct{}),
		done:       make(chan struct{}),
	}
	if c.pauseImage == "" {
		c.pauseImage = DefaultPauseImage
	}

	out, err := exec.CommandContext(ctx, binary, "--version").Output()
	if err != nil {
		return nil, fmt.Errorf("containerd --version: %w", err)
	}
	if c.version, err = parseVersion(string(out)); err != nil {
		return nil, fmt.Errorf("containerd --version: %w", err)
	}

	s, err := c.decide(cfg)
	if err != nil {
		c.oci.Close()
		return nil, err
	}
	if err := writeFileAtomic(c.configPath, []byte(renderConfig(s))); err != nil {
		c.oci.Close()
		return nil, err
	}
	c.stopStale()

	start := time.Now()
	p, err := c.launch()
	if err != nil {
		c.oci.Close()
		return nil, err
	}
	c.proc = p
	fail := func(err error) (*Containerd, error) {
		c.terminate(p)
		c.oci.Close()
		return nil, err
	}
	if err := c.waitReady(ctx, p); err != nil {
		return fail(err)
	}
	c.log.Info("containerd ready", "pid", p.cmd.Process.Pid, "version", c.version.String(),
		"endpoint", c.Endpoint(), "took", time.Since(start).Round(time.Millisecond))

	c.importImagesDir(ctx, cfg.ImagesDir)
	if err := c.ensurePauseImage(ctx); err != nil {
		return fail(err)
	}
	if ctx.Err() != nil {
		return fail(ctx.Err())
	}
	go c.supervise(ctx)
	return c, nil
}

// decide makes the host-dependent choices, creates the directories the
// config names, and logs every decision.
func (c *Containerd) decide(cfg Config) (settings, error) {
	s := settings{
		Version:           c.version,
		Root:              filepath.Join(c.dir, "root"),
		State:             filepath.Join(c.dir, "state"),
		OptDir:            filepath.Join(c.dir, "opt"),
		Socket:            c.socket,
		PauseImage:        c.pauseImage,
		CNIConfDir:        cfg.CNIConfDir,
		RegistryConfigDir: cfg.RegistryConfigDir,
	}
	for _, d := range []string{c.dir, s.Root, s.State, s.OptDir, filepath.Dir(c.socket)} {
		if err := os.MkdirAll(d, 0o711); err != nil {
			return s, err
		}
	}
	if cfg.ImagesDir != "" {
		// Created so that users find where archives go.
		if err := os.MkdirAll(cfg.ImagesDir, 0o755); err != nil {
			return s, err
		}
	}
	for _, d := range []*string{&s.CNIConfDir, &s.RegistryConfigDir} {
		if *d == "" {
			continue
		}
		abs, err := filepath.Abs(*d)
		if err != nil {
			return s, err
		}
		*d = abs
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return s, err
		}
	}
	if s.RegistryConfigDir == "" {
		s.RegistryConfigDir = filepath.Join(c.dir, "registries")
		if err := os.MkdirAll(s.RegistryConfigDir, 0o755); err != nil {
			return s, err
		}
	}
	if s.CNIConfDir == "" {
		s.CNIConfDir = filepath.Join(c.dir, "cni", "net.d")
	}

	// CAP_SYS_RESOURCE: without it runc cannot lower oom_score_adj.
	hasCap, why, err := hasCapSysResource()
	if err != nil {
		hasCap, why = false, "capabilities unreadable ("+err.Error()+"), assuming CAP_SYS_RESOURCE is missing"
	}
	s.RestrictOOMScoreAdj = !hasCap
	c.log.Info("containerd decision", "restrict_oom_score_adj", s.RestrictOOMScoreAdj, "reason", why)

	// Snapshotter: overlayfs when the kernel mounts overlay on this filesystem.
	if ok, err := overlaySupported(c.dir); ok {
		s.Snapshotter = "overlayfs"
		if err != nil {
			c.log.Warn("overlay check left a mount", "err", err)
		}
		c.log.Info("containerd decision", "snapshotter", s.Snapshotter, "reason", "overlay mount works under "+c.dir)
	} else {
		s.Snapshotter = "native"
		c.log.Info("containerd decision", "snapshotter", s.Snapshotter, "reason", fmt.Sprintf("overlay mount under %s failed: %v", c.dir, err))
	}
	c.snapshotter = s.Snapshotter

	if err := c.decideOCIRuntime(&s, cfg.OCIRuntime); err != nil {
		return s, err
	}

	ok, why := appArmorUsable()
	s.DisableAppArmor = !ok
	c.log.Info("containerd decision", "disable_apparmor", s.DisableAppArmor, "reason", why)

	for _, d := range cfg.CNIBinDirs {
		abs, err := filepath.Abs(d)
		if err != nil {
			return s, err
		}
		s.CNIBinDirs = append(s.CNIBinDirs, abs)
	}
	if len(s.CNIBinDirs) > 0 {
		if err := os.MkdirAll(s.CNIBinDirs[0], 0o755); err != nil {
			return s, err
		}
	}
	if c.version.multipleCNIBinDirs() {
		c.log.Info("containerd decision", "cni_bin_dirs", s.CNIBinDirs, "reason", "containerd >= 2.1 takes a list (bin_dirs)")
	} else if len(s.CNIBinDirs) > 0 {
		linked, err := linkCNIPlugins(s.CNIBinDirs)
		if err != nil {
			return s, fmt.Errorf("link CNI plugins into %s: %w", s.CNIBinDirs[0], err)
		}
		c.log.Info("containerd decision", "cni_bin_dir", s.CNIBinDirs[0], "linked_plugins", len(linked),
			"reason", "containerd < 2.1 takes one directory (bin_dir): plugins of the others are symlinked into it")
	}
	c.log.Info("containerd config", "path", c.configPath, "version", c.version.String(),
		"config_version", s.configVersion(), "socket", c.socket, "pause_image", s.PauseImage,
		"cni_conf_dir", s.CNIConfDir, "registry_config_path", s.RegistryConfigDir)
	return s, nil
}

// Endpoint is the CRI endpoint, "unix:///.../containerd.sock".
func (c *Containerd) Endpoint() string { return "unix://" + c.socket }

// Version is containerd's release, e.g. "1.6.20".
func (c *Containerd) Version() string { return c.version.String() }

// PauseImage is the sandbox image name CRI uses (present in containerd).
func (c *Containerd) PauseImage() string { return c.pauseImage }

// PID is the running containerd's process id, 0 while it is being restarted
// or after Stop.
func (c *Containerd) PID() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.proc == nil {
		return 0
	}
	select {
	case <-c.proc.exited:
		return 0
	default:
		return c.proc.cmd.Process.Pid
	}
}

// Stop ends supervision and stops containerd: SIGTERM, then SIGKILL if it has
// not exited within a bound. It removes nothing: pods (their shims) outlive
// containerd, and the next Start finds them again.
func (c *Containerd) Stop() error {
	c.stopOnce.Do(func() { close(c.stopCh) })
	<-c.done
	return c.stopErr
}

// supervise restarts containerd when it exits, until Stop or ctx ends.
func (c *Containerd) supervise(ctx context.Context) {
	defer close(c.done)
	defer c.oci.Close() // after containerd has stopped
	backoff := restartBackoff
	for {
		c.mu.Lock()
		p := c.proc
		c.mu.Unlock()

		if p != nil {
			select {
			case <-c.stopCh:
				c.stopErr = c.terminate(p)
				return
			case <-ctx.Done():
				c.stopErr = c.terminate(p)
				return
			case <-p.exited:
			}
			ran := time.Since(p.started)
			if ran > healthyRun {
				backoff = restartBackoff
			}
			c.log.Warn("containerd exited unexpectedly; restarting", "pid", p.cmd.Process.Pid,
				"status", exitStatus(p.err), "ran", ran.Round(time.Millisecond), "restart_in", backoff,
				"log", c.logPath, "last_lines", c.logTail(5))
			c.mu.Lock()
			c.proc = nil
			c.mu.Unlock()
		}

		select {
		case <-c.stopCh:
			return
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, maxBackoff)

		start := time.Now()
		np, err := c.launch()
		if err != nil {
			c.log.Error("containerd restart failed", "err", err, "retry_in", backoff)
			continue
		}
		c.mu.Lock()
		c.proc = np
		c.mu.Unlock()
		readyCtx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-c.stopCh:
				cancel()
			case <-readyCtx.Done():
			}
		}()
		err = c.waitReady(readyCtx, np)
		cancel()
		if err != nil {
			c.log.Error("restarted containerd not ready", "pid", np.cmd.Process.Pid, "err", err)
			continue // exited: the loop restarts it; stopped: the loop terminates it
		}
		c.log.Info("containerd restarted", "pid", np.cmd.Process.Pid, "took", time.Since(start).Round(time.Millisecond))
	}
}

// launch starts one containerd process, its output appended to containerd.log.
func (c *Containerd) launch() (*process, error) {
	rotateLog(c.logPath, logRotateSize)
	logFile, err := os.OpenFile(c.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child holds its own descriptor
	fmt.Fprintf(logFile, "--- headway: starting %s --config %s at %s\n", c.binary, c.configPath, time.Now().UTC().Format(time.RFC3339Nano))

	cmd := exec.Command(c.binary, "--config", c.configPath)
	cmd.Dir = c.dir
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Env = containerdEnv()
	// Its own process group: a terminal's Ctrl-C reaches Headway, which
	// then stops containerd in order.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	p := &process{cmd: cmd, started: time.Now(), exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	if err := os.WriteFile(c.pidPath, []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		c.log.Warn("write pid file", "path", c.pidPath, "err", err)
	}
	return p, nil
}

// waitReady polls the socket until containerd accepts connections and answers
// `ctr version`, the process exits, ctx ends, or readyTimeout passes.
func (c *Containerd) waitReady(ctx context.Context, p *process) error {
	deadline := time.NewTimer(readyTimeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if conn, err := net.DialTimeout("unix", c.socket, time.Second); err == nil {
			conn.Close()
			vctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			_, err = c.ctr(vctx, "", "version")
			cancel()
			if err == nil {
				return nil
			}
			lastErr = err
		} else {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-p.exited:
			return fmt.Errorf("containerd exited while starting (%s); see %s:\n%s",
				exitStatus(p.err), c.logPath, c.logTail(20))
		case <-deadline.C:
			return fmt.Errorf("containerd not ready after %s (%v); see %s:\n%s",
				readyTimeout, lastErr, c.logPath, c.logTail(20))
		case <-tick.C:
		}
	}
}

// terminate stops p: SIGTERM, SIGKILL after stopTimeout.
func (c *Containerd) terminate(p *process) error {
	pid := p.cmd.Process.Pid
	select {
	case <-p.exited:
		return nil
	default:
	}
	start := time.Now()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
		c.log.Info("containerd stopped", "pid", pid, "took", time.Since(start).Round(time.Millisecond))
		os.Remove(c.pidPath)
		return nil
	case <-time.After(stopTimeout):
	}
	c.log.Warn("containerd ignored SIGTERM; killing", "pid", pid, "after", stopTimeout)
	_ = p.cmd.Process.Kill()
	select {
	case <-p.exited:
		os.Remove(c.pidPath)
		return nil
	case <-time.After(killWait):
		return fmt.Errorf("containerd (pid %d) still running after SIGKILL", pid)
	}
}

// stopStale stops a containerd a previous Headway left running with this
// config (found through the pid file): it holds the metadata database lock,
// so a new one could not start.
func (c *Containerd) stopStale() {
	data, err := os.ReadFile(c.pidPath)
	if err != nil {
		return
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || !isOurContainerd(processArgs(pid), c.configPath) {
		return
	}
	c.log.Warn("stopping containerd left running by an earlier start", "pid", pid)
	proc, err := os.FindProcess(pid)
	if err != nil {
		return
	}
	_ = proc.Signal(syscall.SIGTERM)
	if waitGone(pid, c.configPath, stopTimeout) {
		return
	}
	_ = proc.Signal(syscall.SIGKILL)
	waitGone(pid, c.configPath, killWait)
}

// waitGone waits until pid no longer runs our containerd.
func waitGone(pid int, configPath string, d time.Duration) bool {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if !isOurContainerd(processArgs(pid), configPath) {
			return true
		}
		select {
		case <-deadline.C:
			return false
		case <-tick.C:
		}
	}
}

// logTail returns the last n lines of containerd.log.
func (c *Containerd) logTail(n int) string {
	f, err := os.Open(c.logPath)
	if err != nil {
		return ""
	}
	defer f.Close()
	const chunk = 16 << 10
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-chunk, 0)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return ""
	}
	lines := strings.Split(strings.TrimRight(string(buf), "\n"), "\n")
	if off > 0 && len(lines) > 1 {
		lines = lines[1:] // partial first line
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for i, l := range lines {
		if len(l) > 400 {
			lines[i] = l[:400] + "..."
		}
	}
	return strings.Join(lines, "\n")
}

// rotateLog moves path to path.1 when it is larger than limit.
func rotateLog(path string, limit int64) {
	if st, err := os.Stat(path); err == nil && st.Size() > limit {
		_ = os.Rename(path, path+".1")
	}
}

func exitStatus(err error) string {
	if err == nil {
		return "exit status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return "killed by " + unix.SignalName(ws.Signal())
		}
	}
	return err.Error()
}

// containerdEnv is the environment without systemd's notification socket
// and ctr's variables.
func containerdEnv() []string {
	var env []string
	for _, kv := range ctrEnv() {
		if strings.HasPrefix(kv, "NOTIFY_SOCKET=") {
			continue
		}
		env = append(env, kv)
	}
	return env
}

// writeFileAtomic replaces path with data.
func writeFileAtomic(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
