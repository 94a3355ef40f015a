// Package fake is a Runtime for the agent's tests: it runs nothing, records
// what it was asked, and lets the test decide what happens — a container
// ends with an exit code or the OOMKilled reason, a pull or a sandbox
// fails, containers are still running from "before" for the agent to
// adopt. It needs no root. All methods are safe for concurrent use: the
// agent calls the runtime from its pod workers and probe goroutines.
//
// Optional behaviour (images, adoption) is chosen with Options; View
// returns the Runtime as the agent should see it, implementing exactly the
// optional interfaces asked for.
package fake

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

// Options choose the fake's optional behaviour.
type Options struct {
	// Images makes the runtime an ImageService: images are present once
	// pulled or given with SetImage.
	Images bool
	// Adopter makes the runtime an Adopter: Running reports what
	// AddRunning left, KeepOnStop says KeepOnStop.
	Adopter, KeepOnStop bool
	// Dir, when set, holds one directory per sandbox (the agent puts pod
	// volumes there).
	Dir string
	// Prefix is where sandbox addresses come from (198.18.0.0/24).
	Prefix netip.Prefix
}

// Call is one thing the runtime was asked.
type Call struct {
	Op string // RunSandbox, RemoveSandbox, Start, Exec, ImagePresent, PullImage, Running
	// UID is the pod's.
	UID       string
	Container string
	Image     string
	// Argv is Start's spec.Argv or Exec's argv.
	Argv []string
	// Final is RemoveSandbox's.
	Final bool
	Err   error
	At    time.Time
}

// Runtime is the fake runtime. Its methods implement hwruntime.Runtime; the
// optional interfaces are on the value View returns.
type Runtime struct {
	opts Options

	mu        sync.Mutex
	calls     []Call
	sandboxes map[string]*hwruntime.Sandbox // live, by pod UID
	nextIP    netip.Addr
	ips       map[string]netip.Addr // by pod UID, kept until a final removal
	procs     []*Process            // every started or adopted process, in order
	pid       int
	changed   chan struct{} // closed and replaced at each call

	images       map[string]string // image → ref
	pullErr      map[string]error
	sandboxErr   error
	startErr     map[string]error // by container name
	checkErr     map[string]error // by container name
	execFunc     func(p *Process, argv []string) (hwruntime.ExecResult, error)
	ignoreTerm   bool
	running      map[string]*adoptable // by pod UID
	runningCalls int
}

type adoptable struct {
	sb    *hwruntime.Sandbox
	procs map[string]hwruntime.Process
}

// New makes a fake runtime.
func New(opts Options) *Runtime {
	if !opts.Prefix.IsValid() {
		opts.Prefix = netip.MustParsePrefix("198.18.0.0/24")
	}
	return &Runtime{opts: opts, sandboxes: map[string]*hwruntime.Sandbox{}, ips: map[string]netip.Addr{},
		nextIP: opts.Prefix.Masked().Addr().Next().Next(), images: map[string]string{}, pullErr: map[string]error{},
		startErr: map[string]error{}, checkErr: map[string]error{}, running: map[string]*adoptable{},
		changed: make(chan struct{}), pid: 1000}
}

// View is the runtime as the agent sees it: a hwruntime.Runtime that is
// also an ImageService and/or Adopter as Options say.
func (r *Runtime) View() hwruntime.Runtime {
	switch {
	case r.opts.Images && r.opts.Adopter:
		return imagesAdopter{r}
	case r.opts.Images:
		return withImages{r}
	case r.opts.Adopter:
		return withAdopter{r}
	}
	return plain{r}
}

type plain struct{ *Runtime }

type withImages struct{ *Runtime }

func (v withImages) ImagePresent(ctx context.Context, image string) (string, bool, error) {
	return v.imagePresent(image)
}
func (v withImages) PullImage(ctx context.Context, image string, auth []hwruntime.Auth, sb *hwruntime.Sandbox) (string, error) {
	return v.pullImage(image)
}

type withAdopter struct{ *Runtime }

func (v withAdopter) Running(ctx context.Context, pod *corev1.Pod) (*hwruntime.Sandbox, map[string]hwruntime.Process, error) {
	return v.runningOf(pod)
}
func (v withAdopter) KeepOnStop() bool { return v.opts.KeepOnStop }

type imagesAdopter struct{ *Runtime }

func (v imagesAdopter) ImagePresent(ctx context.Context, image string) (string, bool, error) {
	return v.imagePresent(image)
}
func (v imagesAdopter) PullImage(ctx context.Context, image string, auth []hwruntime.Auth, sb *hwruntime.Sandbox) (string, error) {
	return v.pullImage(image)
}
func (v imagesAdopter) Running(ctx context.Context, pod *corev1.Pod) (*hwruntime.Sandbox, map[string]hwruntime.Process, error) {
	return v.runningOf(pod)
}
func (v imagesAdopter) KeepOnStop() bool { return v.opts.KeepOnStop }

var (
	_ hwruntime.ImageService = withImages{}
	_ hwruntime.Adopter      = withAdopter{}
	_ hwruntime.ImageService = imagesAdopter{}
	_ hwruntime.Adopter      = imagesAdopter{}
)

// record appends a call and wakes the waiters; r.mu must be held.
func (r *Runtime) record(c Call) {
	c.At = time.Now()
	r.calls = append(r.calls, c)
	r.notifyLocked()
}

func (r *Runtime) notifyLocked() {
	close(r.changed)
	r.changed = make(chan struct{})
}

// Changed is closed at the runtime's next call or process exit: a test
// waits on it instead of sleeping.
func (r *Runtime) Changed() <-chan struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.changed
}

// Calls returns the calls so far, of the given ops (all when none given).
func (r *Runtime) Calls(ops ...string) []Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []Call
	for _, c := range r.calls {
		if len(ops) == 0 || slices.Contains(ops, c.Op) {
			c.Argv = slices.Clone(c.Argv)
			out = append(out, c)
		}
	}
	return out
}

// Processes returns the processes of a container (all when name is ""),
// started or adopted, in order.
func (r *Runtime) Processes(name string) []*Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*Process
	for _, p := range r.procs {
		if name == "" || p.Name == name {
			out = append(out, p)
		}
	}
	return out
}

// Sandbox returns the live sandbox of a pod, or nil.
func (r *Runtime) Sandbox(uid string) *hwruntime.Sandbox {
	r.mu.Lock()
	defer r.mu.Unlock()
	if sb := r.sandboxes[uid]; sb != nil {
		c := *sb
		return &c
	}
	return nil
}

// SetImage makes image present with ref ("" removes it).
func (r *Runtime) SetImage(image, ref string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ref == "" {
		delete(r.images, image)
		return
	}
	r.images[image] = ref
}

// FailPull makes pulls of image fail with err until FailPull(image, nil).
func (r *Runtime) FailPull(image string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.pullErr, image)
		return
	}
	r.pullErr[image] = err
}

// FailRunSandbox makes RunSandbox fail with err until FailRunSandbox(nil).
func (r *Runtime) FailRunSandbox(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sandboxErr = err
}

// FailStart makes Start of the named container fail with err until
// FailStart(name, nil).
func (r *Runtime) FailStart(name string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.startErr, name)
		return
	}
	r.startErr[name] = err
}

// FailCheck makes Check of the named container say err.
func (r *Runtime) FailCheck(name string, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		delete(r.checkErr, name)
		return
	}
	r.checkErr[name] = err
}

// SetExec decides what Exec returns (probes, exec); the default is exit 0
// with no output.
func (r *Runtime) SetExec(f func(p *Process, argv []string) (hwruntime.ExecResult, error)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.execFunc = f
}

// IgnoreSIGTERM makes processes ignore SIGTERM (SIGKILL still ends them).
func (r *Runtime) IgnoreSIGTERM(ignore bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ignoreTerm = ignore
}

// AddRunning leaves a sandbox with running containers for pod, as a
// runtime whose pods outlived the agent would have them; Running (with
// Options.Adopter) reports them. The processes are returned by name.
func (r *Runtime) AddRunning(pod *corev1.Pod, containers ...string) map[string]*Process {
	r.mu.Lock()
	defer r.mu.Unlock()
	uid := string(pod.UID)
	sb := r.newSandboxLocked(pod)
	r.sandboxes[uid] = sb
	a := &adoptable{sb: sb, procs: map[string]hwruntime.Process{}}
	out := map[string]*Process{}
	for _, name := range containers {
		p := r.newProcessLocked(uid, name, time.Now().Add(-time.Minute))
		p.Adopted = true
		a.procs[name] = p
		out[name] = p
	}
	r.running[uid] = a
	return out
}

// RunningCalls counts calls of Running.
func (r *Runtime) RunningCalls() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.runningCalls
}

// Name implements hwruntime.Runtime.
func (r *Runtime) Name() string { return "fake" }

// Check implements hwruntime.Runtime.
func (r *Runtime) Check(c *corev1.Container) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.checkErr[c.Name]
}

func hostname(pod *corev1.Pod) string {
	if pod.Spec.Hostname != "" {
		return pod.Spec.Hostname
	}
	return pod.Name
}

func (r *Runtime) newSandboxLocked(pod *corev1.Pod) *hwruntime.Sandbox {
	uid := string(pod.UID)
	ip, ok := r.ips[uid]
	if !ok {
		ip = r.nextIP
		r.nextIP = r.nextIP.Next()
		r.ips[uid] = ip
	}
	sb := &hwruntime.Sandbox{UID: uid, Namespace: pod.Namespace, Name: pod.Name, Hostname: hostname(pod), IP: ip,
		ID: "fake-sandbox-" + uid}
	if r.opts.Dir != "" {
		sb.Dir = filepath.Join(r.opts.Dir, uid)
		sb.LogDir = filepath.Join(r.opts.Dir, "logs", uid)
	}
	return sb
}

// RunSandbox implements hwruntime.Runtime.
func (r *Runtime) RunSandbox(ctx context.Context, pod *corev1.Pod) (*hwruntime.Sandbox, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	uid := string(pod.UID)
	if err := r.sandboxErr; err != nil {
		r.record(Call{Op: "RunSandbox", UID: uid, Err: err})
		return nil, err
	}
	sb := r.sandboxes[uid]
	if sb == nil {
		sb = r.newSandboxLocked(pod)
		if sb.Dir != "" {
			if err := os.MkdirAll(sb.Dir, 0o755); err != nil {
				r.record(Call{Op: "RunSandbox", UID: uid, Err: err})
				return nil, err
			}
		}
		r.sandboxes[uid] = sb
	}
	r.record(Call{Op: "RunSandbox", UID: uid})
	c := *sb
	return &c, nil
}

// RemoveSandbox implements hwruntime.Runtime. Like the CRI runtime it ends
// whatever still runs in the sandbox.
func (r *Runtime) RemoveSandbox(ctx context.Context, uid string, final bool) error {
	r.mu.Lock()
	sb := r.sandboxes[uid]
	delete(r.sandboxes, uid)
	delete(r.running, uid)
	if final {
		delete(r.ips, uid)
	}
	var left []*Process
	for _, p := range r.procs {
		if p.uid == uid {
			left = append(left, p)
		}
	}
	r.record(Call{Op: "RemoveSandbox", UID: uid, Final: final})
	r.mu.Unlock()
	for _, p := range left {
		p.end(hwruntime.Exit{Code: 137, Signal: int32(syscall.SIGKILL)})
	}
	if final && sb != nil && sb.Dir != "" {
		return os.RemoveAll(sb.Dir)
	}
	return nil
}

// Start implements hwruntime.Runtime.
func (r *Runtime) Start(ctx context.Context, sb *hwruntime.Sandbox, c *hwruntime.ContainerSpec) (hwruntime.Process, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	call := Call{Op: "Start", UID: sb.UID, Container: c.Name, Image: c.ImageRef, Argv: slices.Clone(c.Argv)}
	if call.Image == "" {
		call.Image = c.Image
	}
	if _, ok := r.sandboxes[sb.UID]; !ok {
		call.Err = fmt.Errorf("fake: pod %s has no sandbox", sb.UID)
	} else if err := r.startErr[c.Name]; err != nil {
		call.Err = err
	}
	if call.Err != nil {
		r.record(call)
		return nil, call.Err
	}
	if c.LogPath != "" {
		os.MkdirAll(filepath.Dir(c.LogPath), 0o755)
		os.WriteFile(c.LogPath, nil, 0o644)
	}
	p := r.newProcessLocked(sb.UID, c.Name, time.Now())
	spec := *c
	p.Spec = &spec
	r.record(call)
	return p, nil
}

func (r *Runtime) newProcessLocked(uid, name string, started time.Time) *Process {
	r.pid++
	p := &Process{r: r, uid: uid, Name: name, pid: r.pid, started: started, done: make(chan struct{})}
	p.id = fmt.Sprintf("fake://%s-%s-%d", uid, name, p.pid)
	r.procs = append(r.procs, p)
	return p
}

// Exec implements hwruntime.Runtime.
func (r *Runtime) Exec(ctx context.Context, target hwruntime.Process, c *hwruntime.ContainerSpec, argv []string) (hwruntime.ExecResult, error) {
	p, _ := target.(*Process)
	r.mu.Lock()
	f := r.execFunc
	call := Call{Op: "Exec", Argv: slices.Clone(argv)}
	if p != nil {
		call.UID, call.Container = p.uid, p.Name
	}
	r.record(call)
	r.mu.Unlock()
	if p == nil {
		return hwruntime.ExecResult{}, fmt.Errorf("fake: exec in a process of another runtime (%T)", target)
	}
	select {
	case <-p.done:
		return hwruntime.ExecResult{}, errors.New("fake: exec: the container is not running")
	default:
	}
	if f == nil {
		return hwruntime.ExecResult{}, nil
	}
	return f(p, argv)
}

func (r *Runtime) imagePresent(image string) (string, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ref, ok := r.images[image]
	r.record(Call{Op: "ImagePresent", Image: image})
	return ref, ok, nil
}

func (r *Runtime) pullImage(image string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.pullErr[image]; err != nil {
		r.record(Call{Op: "PullImage", Image: image, Err: err})
		return "", err
	}
	ref := "sha256:fake-" + image
	r.images[image] = ref
	r.record(Call{Op: "PullImage", Image: image})
	return ref, nil
}

func (r *Runtime) runningOf(pod *corev1.Pod) (*hwruntime.Sandbox, map[string]hwruntime.Process, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.runningCalls++
	r.record(Call{Op: "Running", UID: string(pod.UID)})
	a := r.running[string(pod.UID)]
	if a == nil {
		return nil, nil, nil
	}
	sb := *a.sb
	procs := map[string]hwruntime.Process{}
	for name, p := range a.procs {
		select {
		case <-p.Done():
		default:
			procs[name] = p
		}
	}
	return &sb, procs, nil
}

// Process is a fake container process: it runs until the test ends it
// (Exit, OOMKill) or it is signalled.
type Process struct {
	r       *Runtime
	uid     string
	id      string
	pid     int
	started time.Time
	done    chan struct{}

	// Name is the container's; Spec what Start was given (nil when
	// adopted); Adopted says it came from AddRunning.
	Name    string
	Spec    *hwruntime.ContainerSpec
	Adopted bool

	mu      sync.Mutex
	exit    hwruntime.Exit
	signals []syscall.Signal
}

var _ hwruntime.Process = (*Process)(nil)

// ID implements hwruntime.Process.
func (p *Process) ID() string { return p.id }

// PID implements hwruntime.Process (a made-up number).
func (p *Process) PID() int { return p.pid }

// UID is the pod's.
func (p *Process) UID() string { return p.uid }

// Done implements hwruntime.Process.
func (p *Process) Done() <-chan struct{} { return p.done }

// Started implements hwruntime.Process.
func (p *Process) Started() time.Time { return p.started }

// Exit implements hwruntime.Process.
func (p *Process) Exit() hwruntime.Exit {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exit
}

// Running says whether the process has not ended.
func (p *Process) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Signals returns the signals the process was sent.
func (p *Process) Signals() []syscall.Signal {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.signals)
}

// Signal implements hwruntime.Process: SIGKILL ends the process (exit
// 137), SIGTERM too (143) unless the runtime ignores it; every signal is
// recorded.
func (p *Process) Signal(s syscall.Signal) error {
	p.mu.Lock()
	p.signals = append(p.signals, s)
	p.mu.Unlock()
	p.r.mu.Lock()
	ignore := p.r.ignoreTerm
	p.r.notifyLocked()
	p.r.mu.Unlock()
	switch {
	case s == syscall.SIGKILL, s == syscall.SIGTERM && !ignore:
		p.end(hwruntime.Exit{Code: 128 + int32(s), Signal: int32(s)})
	}
	return nil
}

// End ends the process with an exit code.
func (p *Process) End(code int32) { p.end(hwruntime.Exit{Code: code}) }

// EndWith ends the process as e says (Finished is set when zero).
func (p *Process) EndWith(e hwruntime.Exit) { p.end(e) }

// OOMKill ends the process as the kernel's OOM killer does: SIGKILL, exit
// 137, reason OOMKilled.
func (p *Process) OOMKill() {
	p.end(hwruntime.Exit{Code: 137, Signal: int32(syscall.SIGKILL), Reason: "OOMKilled"})
}

// end records e and closes Done; a process ends once.
func (p *Process) end(e hwruntime.Exit) {
	if e.Finished.IsZero() {
		e.Finished = time.Now()
	}
	p.mu.Lock()
	select {
	case <-p.done:
		p.mu.Unlock()
		return
	default:
	}
	p.exit = e
	close(p.done)
	p.mu.Unlock()
	p.r.mu.Lock()
	p.r.notifyLocked()
	p.r.mu.Unlock()
}
