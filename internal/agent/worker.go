package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

// worker owns one pod: a goroutine that brings what runs in line with the
// pod object each time something changes (the pod, a process exit, a probe
// result, a back-off timer).
type worker struct {
	a    *Agent
	uid  string
	wake chan struct{}

	mu   sync.Mutex
	pod  *corev1.Pod // latest from the API; nil once it is gone
	gone bool

	// Owned by the run goroutine.
	ctx     context.Context
	sb      *hwruntime.Sandbox
	volumes map[string]string
	// tokenRefresh is when the service-account tokens in the pod's
	// projected volumes are due for renewal (zero: none).
	tokenRefresh time.Time
	ctrs         []*ctr
	startTime    metav1.Time
	nextWake     time.Time
	lastWritten  *corev1.PodStatus
	// wroteRV is the resourceVersion the agent's last status write made,
	// superseded the pod's versions before it that the informer may still
	// show (it lags): while it shows one of them the next write builds on
	// wroteRV, else the API answers 409 and the write costs a GET and a
	// retry. A version nobody told the agent about (someone else's write)
	// is the informer's to build on.
	wroteRV    string
	superseded map[string]bool
	warned     map[string]bool
	initFailed bool
	sandboxMsg string
	adoptTried bool
	// targets are the running containers, for exec (under mu).
	targets map[string]*execTarget
}

// ctr is the agent's record of one container.
type ctr struct {
	spec  corev1.Container
	init  bool
	rspec *hwruntime.ContainerSpec
	proc  hwruntime.Process
	// starts counts starts; restartCount is starts-1.
	starts   int32
	id       string
	imageRef string
	// Image pulls (owned by the run goroutine).
	pullRetry   time.Time
	pullBackoff time.Duration
	pullErr     string
	pulledOnce  bool
	term        *corev1.ContainerStateTerminated
	last        *corev1.ContainerStateTerminated
	waiting     *corev1.ContainerStateWaiting
	nextStart   time.Time
	backoff     time.Duration
	done        bool // an init container that succeeded
	blocked     bool // cannot run under this runtime
	// readyHold: until then the pod's status waits for this just started
	// container's first readiness verdict (see holdForReadiness).
	readyHold time.Time

	// Written by probe goroutines under worker.mu.
	ready, started bool
	killReason     string
	probeCancel    context.CancelFunc
	probes         sync.WaitGroup
}

func newWorker(a *Agent, pod *corev1.Pod) *worker {
	w := &worker{a: a, uid: string(pod.UID), wake: make(chan struct{}, 1), warned: map[string]bool{},
		startTime: ts(time.Now())}
	if pod.Status.StartTime != nil {
		w.startTime = *pod.Status.StartTime
	}
	// A pod that ran before (the agent restarted) goes on counting its
	// restarts: starting its containers again is a restart.
	prior := map[string]corev1.ContainerStatus{}
	for _, cs := range append(append([]corev1.ContainerStatus(nil), pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		prior[cs.Name] = cs
	}
	add := func(spec corev1.Container, init bool) {
		c := &ctr{spec: spec, init: init}
		if cs, ok := prior[spec.Name]; ok && (cs.State.Running != nil || cs.State.Terminated != nil || cs.LastTerminationState.Terminated != nil) {
			c.starts = cs.RestartCount + 1
			if cs.State.Terminated != nil {
				c.last = cs.State.Terminated
			}
			if init && cs.State.Terminated != nil && cs.State.Terminated.ExitCode == 0 {
				c.done, c.term = true, cs.State.Terminated
			}
		}
		w.ctrs = append(w.ctrs, c)
	}
	for i := range pod.Spec.InitContainers {
		add(pod.Spec.InitContainers[i], true)
	}
	for i := range pod.Spec.Containers {
		add(pod.Spec.Containers[i], false)
	}
	// The worker knows its pod before it first runs: a sync without one
	// would take the pod for deleted and end the worker for good.
	w.pod = pod
	return w
}

// ts is a time as the API keeps it (whole seconds), so statuses compare.
func ts(t time.Time) metav1.Time { return metav1.NewTime(t.Truncate(time.Second)) }

func (w *worker) update(pod *corev1.Pod) {
	w.mu.Lock()
	if pod == nil {
		w.gone = true
	} else if !w.gone {
		w.pod = pod
	}
	w.mu.Unlock()
	w.poke()
}

func (w *worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) latest() (*corev1.Pod, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.pod, w.gone
}

func (w *worker) log() []any {
	pod, _ := w.latest()
	if pod == nil {
		return []any{"pod-uid", w.uid}
	}
	return []any{"pod", pod.Namespace + "/" + pod.Name}
}

func (w *worker) run(ctx context.Context) {
	w.ctx = ctx
	for {
		if w.sync(ctx) {
			return
		}
		var timer <-chan time.Time
		var t *time.Timer
		if !w.nextWake.IsZero() {
			t = time.NewTimer(time.Until(w.nextWake))
			timer = t.C
		}
		select {
		case <-ctx.Done():
			if ad, ok := w.a.rt.(hwruntime.Adopter); ok && ad.KeepOnStop() && !w.a.cfg.CleanupOnStop {
				// The pod outlives the agent; the next one adopts it.
				for _, c := range w.ctrs {
					if c.probeCancel != nil {
						c.probeCancel()
					}
					c.probes.Wait()
				}
				return
			}
			// The agent is stopping: end the containers (within the pod's
			// grace period, at most the agent's own), keep the address.
			grace := w.a.cfg.ShutdownGrace
			if p, _ := w.latest(); p != nil {
				grace = min(grace, gracePeriod(p, nil))
			}
			w.stopAll(nil, grace, false)
			w.removeSandbox(false)
			return
		case <-w.wake:
		case <-timer:
		}
		if t != nil {
			t.Stop()
		}
	}
}

// sync does one round; true means the pod is finished with.
func (w *worker) sync(ctx context.Context) bool {
	w.nextWake = time.Time{}
	pod, gone := w.latest()
	if gone || pod == nil {
		// Removed from the API without us (a forced delete): stop now.
		w.stopAll(nil, 0, false)
		w.removeSandbox(true)
		return true
	}
	if pod.DeletionTimestamp != nil {
		w.terminate(ctx, pod)
		return true
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		w.stopAll(nil, 0, false)
		w.removeSandbox(false)
		return false
	}
	w.reconcile(ctx, pod)
	if until, hold := w.holdForReadiness(); hold {
		w.wakeAt(until)
		return false
	}
	w.writeStatus(ctx, pod)
	return false
}

// firstVerdictWait is how long a just started container's status waits
// for its readiness probe's first pass before it is written as running
// but not ready.
const firstVerdictWait = 100 * time.Millisecond

// holdForReadiness says whether the status write waits, and until when:
// a container just started whose readiness probe runs at once and has not
// passed yet. Most servers pass within milliseconds, so the pod goes from
// Pending to Running and Ready in one write instead of two (the second a
// few milliseconds later, with its own round through every watcher: the
// endpoints, the StatefulSet, the DNS). The probe's pass wakes the worker;
// a probe still failing at the deadline leaves the pod Running, not ready.
func (w *worker) holdForReadiness() (time.Time, bool) {
	var until time.Time
	now := time.Now()
	for _, c := range w.ctrs {
		if c.readyHold.IsZero() {
			continue
		}
		w.mu.Lock()
		ready := c.ready
		w.mu.Unlock()
		if c.proc == nil || ready || !now.Before(c.readyHold) {
			c.readyHold = time.Time{}
			continue
		}
		if until.IsZero() || c.readyHold.Before(until) {
			until = c.readyHold
		}
	}
	return until, !until.IsZero()
}

func (w *worker) wakeAt(t time.Time) {
	if w.nextWake.IsZero() || t.Before(w.nextWake) {
		w.nextWake = t
	}
}

func (w *worker) event(pod *corev1.Pod, typ, reason, msg string) {
	if w.a.recorder != nil {
		w.a.recorder.Event(pod, typ, reason, msg)
	}
}

// warnOnce sends a warning event the first time a message comes up.
func (w *worker) warnOnce(pod *corev1.Pod, reason, msg string) {
	if w.warned[reason+msg] {
		return
	}
	w.warned[reason+msg] = true
	w.event(pod, corev1.EventTypeWarning, reason, msg)
	w.a.log.Warn(msg, append(w.log(), "reason", reason)...)
}

func (w *worker) reconcile(ctx context.Context, pod *corev1.Pod) {
	for _, c := range w.ctrs {
		if err := w.a.rt.Check(&c.spec); err != nil {
			c.blocked = true
			c.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerConfigError", Message: err.Error()}
			w.warnOnce(pod, "Failed", "Error: "+err.Error())
		}
	}
	if w.sb == nil && !w.adoptTried {
		w.adoptTried = true
		w.adopt(ctx, pod)
	}
	if w.sb == nil {
		t0 := time.Now()
		sb, err := w.a.rt.RunSandbox(ctx, pod)
		w.a.log.Debug("pod sandbox", append(w.log(), "took", time.Since(t0), "err", err)...)
		if err != nil {
			w.sandboxMsg = err.Error()
			w.warnOnce(pod, "FailedCreatePodSandBox", "Failed to create pod sandbox: "+err.Error())
			w.wakeAt(time.Now().Add(2 * time.Second))
			return
		}
		w.sb, w.sandboxMsg = sb, ""
	}
	if w.volumes == nil {
		vols, refresh, err := w.a.prepareVolumes(ctx, pod, w.sb)
		if err != nil {
			w.sandboxMsg = err.Error()
			w.warnOnce(pod, "FailedMount", "MountVolume.SetUp failed: "+err.Error())
			w.wakeAt(time.Now().Add(2 * time.Second))
			return
		}
		w.volumes, w.sandboxMsg, w.tokenRefresh = vols, "", refresh
	}
	if !w.tokenRefresh.IsZero() {
		if !time.Now().Before(w.tokenRefresh) {
			next, err := w.a.refreshTokens(ctx, pod, w.sb)
			if err != nil {
				// The old token is still good for a while: try again soon.
				w.warnOnce(pod, "FailedMount", "MountVolume.SetUp failed to refresh a service-account token: "+err.Error())
				next = time.Now().Add(10 * time.Second)
			}
			w.tokenRefresh = next
		}
		w.wakeAt(w.tokenRefresh)
	}
	// Exits and probe verdicts.
	for _, c := range w.ctrs {
		w.mu.Lock()
		kill := c.killReason
		c.killReason = ""
		w.mu.Unlock()
		if c.proc == nil {
			continue
		}
		select {
		case <-c.proc.Done():
			w.exited(pod, c)
		default:
			if kill != "" {
				w.event(pod, corev1.EventTypeNormal, "Killing", fmt.Sprintf("Container %s %s, will be restarted", c.spec.Name, kill))
				go stopProcess(c.proc, gracePeriod(pod, nil))
			}
		}
	}
	// Init containers, in order, each to success.
	for _, c := range w.ctrs {
		if !c.init || c.done {
			continue
		}
		if c.blocked || c.proc != nil {
			return
		}
		if c.term != nil && c.term.ExitCode == 0 {
			c.done = true
			continue
		}
		if c.term != nil && pod.Spec.RestartPolicy == corev1.RestartPolicyNever {
			w.initFailed = true
			return
		}
		w.maybeStart(ctx, pod, c)
		return
	}
	for _, c := range w.ctrs {
		if c.init || c.blocked || c.proc != nil {
			continue
		}
		if c.term != nil && !shouldRestart(pod.Spec.RestartPolicy, c.term.ExitCode) {
			continue
		}
		w.maybeStart(ctx, pod, c)
	}
}

func shouldRestart(policy corev1.RestartPolicy, code int32) bool {
	switch policy {
	case corev1.RestartPolicyNever:
		return false
	case corev1.RestartPolicyOnFailure:
		return code != 0
	}
	return true
}

// exited records a container's end and plans its restart.
func (w *worker) exited(pod *corev1.Pod, c *ctr) {
	if c.probeCancel != nil {
		c.probeCancel()
	}
	e := w.reaped(c)
	w.mu.Lock()
	c.ready, c.started = false, false
	w.mu.Unlock()
	restart := shouldRestart(pod.Spec.RestartPolicy, e.Code)
	if c.init {
		restart = e.Code != 0 && pod.Spec.RestartPolicy != corev1.RestartPolicyNever
	}
	w.a.log.Info("container exited", append(w.log(), "container", c.spec.Name, "code", e.Code, "signal", e.Signal, "restart", restart)...)
	if !restart {
		return
	}
	if e.Finished.Sub(c.term.StartedAt.Time) >= 10*time.Minute {
		c.backoff = 0
	}
	if c.backoff == 0 {
		c.nextStart = time.Now()
		c.backoff = w.a.cfg.BackoffBase
	} else {
		c.nextStart = e.Finished.Add(c.backoff)
		c.backoff = min(2*c.backoff, w.a.cfg.BackoffMax)
	}
}

// maybeStart starts c now, or when its back-off ends.
func (w *worker) maybeStart(ctx context.Context, pod *corev1.Pod, c *ctr) {
	if now := time.Now(); c.nextStart.After(now) {
		if c.term != nil {
			c.last, c.term = c.term, nil
		}
		c.waiting = &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
			Message: fmt.Sprintf("back-off %s restarting failed container=%s pod=%s_%s(%s)", roundBackoff(c.nextStart.Sub(now)), c.spec.Name, pod.Name, pod.Namespace, pod.UID)}
		w.warnOnce(pod, "BackOff", fmt.Sprintf("Back-off restarting failed container %s in pod %s_%s(%s) (%d)", c.spec.Name, pod.Name, pod.Namespace, pod.UID, c.starts))
		w.wakeAt(c.nextStart)
		return
	}
	if err := w.start(ctx, pod, c); err != nil {
		c.waiting = &corev1.ContainerStateWaiting{Reason: "CreateContainerError", Message: err.Error()}
		var cfgErr configError
		var imgErr imageError
		switch {
		case errors.As(err, &imgErr):
			c.waiting.Reason = imgErr.reason
			if imgErr.reason == "ErrImageNeverPull" {
				w.wakeAt(time.Now().Add(5 * time.Second))
			}
			return // events and the retry time are ensureImage's
		case errors.As(err, &cfgErr):
			c.waiting.Reason = "CreateContainerConfigError"
		}
		w.warnOnce(pod, "Failed", "Error: "+err.Error())
		w.wakeAt(time.Now().Add(2 * time.Second))
	}
}

func roundBackoff(d time.Duration) time.Duration {
	if d >= time.Second {
		return d.Round(time.Second)
	}
	return d.Round(time.Millisecond)
}

type configError struct{ error }

func (e configError) Unwrap() error { return e.error }

// podWithIPs is the pod as env and downward API see it: with the
// addresses the agent knows even before the status says them.
func (w *worker) podWithIPs(pod *corev1.Pod) *corev1.Pod {
	p := pod.DeepCopy()
	if w.sb != nil && w.sb.IP.IsValid() {
		p.Status.PodIP = w.sb.IP.String()
		p.Status.PodIPs = []corev1.PodIP{{IP: p.Status.PodIP}}
	}
	p.Status.HostIP = w.a.hostIP.String()
	p.Status.HostIPs = []corev1.HostIP{{IP: p.Status.HostIP}}
	return p
}

func (w *worker) start(ctx context.Context, pod *corev1.Pod, c *ctr) error {
	if images, ok := w.a.rt.(hwruntime.ImageService); ok {
		ref, err := w.ensureImage(ctx, pod, c, images)
		if err != nil {
			return err
		}
		c.imageRef = ref
	}
	p := w.podWithIPs(pod)
	env, vars, err := containerEnv(ctx, w.a.objects, p, &c.spec, w.sb.Hostname, w.a.serviceEnv(pod))
	if err != nil {
		return configError{err}
	}
	mounts, err := containerMounts(&c.spec, w.volumes, pod, w.a.cfg.DataDir)
	if err != nil {
		return configError{err}
	}
	_, images := w.a.rt.(hwruntime.ImageService)
	enforcer, ok := w.a.rt.(hwruntime.LimitEnforcer)
	if !images && !(ok && enforcer.EnforcesLimits()) {
		if lim := c.spec.Resources.Limits; len(lim) > 0 {
			var names []string
			for r, q := range lim {
				names = append(names, string(r)+"="+q.String())
			}
			sort.Strings(names)
			w.warnOnce(pod, "LimitsNotEnforced", fmt.Sprintf("container %s: resources.limits (%s) are not enforced: the process runtime cannot make cgroups with limits on this host (see the agent's log)",
				c.spec.Name, strings.Join(names, ", ")))
		}
	}
	restart := c.starts // the restart count this start will have
	command, args := expandAll(c.spec.Command, vars), expandAll(c.spec.Args, vars)
	spec := &hwruntime.ContainerSpec{
		Name: c.spec.Name, Image: c.spec.Image, ImageRef: c.imageRef,
		Command: command, Args: args, Argv: append(slices.Clone(command), args...), Env: env, WorkingDir: c.spec.WorkingDir, Mounts: mounts,
		Stdin: c.spec.Stdin, StdinOnce: c.spec.StdinOnce, TTY: c.spec.TTY,
		LogPath: filepath.Join(w.logDir(pod), c.spec.Name, fmt.Sprintf("%d.log", restart)),
		Attempt: uint32(max(restart, 0)), Pod: p, Container: &c.spec,
	}
	spec.UID, spec.GID = runAs(pod, &c.spec)
	t0 := time.Now()
	proc, err := w.a.rt.Start(ctx, w.sb, spec)
	w.a.log.Debug("container start", append(w.log(), "container", c.spec.Name, "took", time.Since(t0), "err", err)...)
	if err != nil {
		return err
	}
	w.event(pod, corev1.EventTypeNormal, "Created", "Created container "+c.spec.Name)
	w.started(pod, c, spec, proc)
	if rp := c.spec.ReadinessProbe; rp != nil && !c.init && c.spec.StartupProbe == nil && rp.InitialDelaySeconds == 0 {
		c.readyHold = time.Now().Add(firstVerdictWait)
	}
	w.postStart(ctx, pod, c, proc)
	return nil
}

// postStart runs the container's postStart hook, as the kubelet does right
// after the start (the pod's sync waits for it); when it fails the
// container is killed, and restarted as its restart policy says.
func (w *worker) postStart(ctx context.Context, pod *corev1.Pod, c *ctr, proc hwruntime.Process) {
	lc := c.spec.Lifecycle
	if lc == nil || lc.PostStart == nil {
		return
	}
	hctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-proc.Done(): // a hook never outlives its container
			cancel()
		case <-hctx.Done():
		}
	}()
	err := w.runHandler(hctx, pod, c, proc, lc.PostStart)
	if err == nil {
		return
	}
	kind := "HTTP"
	if lc.PostStart.Exec != nil {
		kind = fmt.Sprintf("Exec (%v)", lc.PostStart.Exec.Command)
	}
	w.event(pod, corev1.EventTypeWarning, "FailedPostStartHook", fmt.Sprintf("%s lifecycle hook for Container %q in Pod %q failed - error: %v",
		kind, c.spec.Name, pod.Namespace+"/"+pod.Name, err))
	w.event(pod, corev1.EventTypeNormal, "Killing", fmt.Sprintf("FailedPostStartHook: container %s will be restarted as its restart policy says", c.spec.Name))
	go stopProcess(proc, gracePeriod(pod, nil))
}

// logDir is the pod's log directory, as the kubelet names it.
func (w *worker) logDir(pod *corev1.Pod) string {
	return hwruntime.PodLogDir(filepath.Join(w.a.cfg.DataDir, "logs"), pod)
}

// started records a running container (just started, or adopted after the
// agent restarted) and starts its probes.
func (w *worker) started(pod *corev1.Pod, c *ctr, spec *hwruntime.ContainerSpec, proc hwruntime.Process) {
	if c.term != nil {
		c.last = c.term
	}
	c.term, c.waiting, c.proc, c.rspec = nil, nil, proc, spec
	c.starts++
	c.id = proc.ID()
	w.setExecTarget(c.spec.Name, &execTarget{proc: proc, spec: spec})
	go func() {
		<-proc.Done()
		w.poke()
	}()
	w.startProbes(pod, c, proc)
	w.event(pod, corev1.EventTypeNormal, "Started", "Started container "+c.spec.Name)
}

// adopt takes over what a runtime whose pods outlive the agent still runs
// for the pod: its sandbox and running containers.
func (w *worker) adopt(ctx context.Context, pod *corev1.Pod) {
	ad, ok := w.a.rt.(hwruntime.Adopter)
	if !ok {
		return
	}
	sb, procs, err := ad.Running(ctx, pod)
	if err != nil {
		w.a.log.Warn("looking for the pod's running containers", append(w.log(), "err", err)...)
		return
	}
	if sb == nil {
		return
	}
	w.sb = sb
	adopted := false
	for _, c := range w.ctrs {
		p := procs[c.spec.Name]
		if p == nil || c.init {
			continue
		}
		// newWorker counted the status's run as a start already.
		c.starts = max(c.starts-1, 0)
		spec := &hwruntime.ContainerSpec{Name: c.spec.Name, Image: c.spec.Image, Pod: pod, Container: &c.spec}
		w.started(pod, c, spec, p)
		adopted = true
	}
	if adopted {
		for _, c := range w.ctrs {
			if c.init {
				c.done = true
			}
		}
	}
	w.a.log.Info("adopted the running pod", append(w.log(), "sandbox", sb.ID, "containers", len(procs))...)
}

func runAs(pod *corev1.Pod, c *corev1.Container) (uid, gid *int64) {
	if psc := pod.Spec.SecurityContext; psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
	}
	return uid, gid
}

// gracePeriod is the pod's termination grace: the deletion's, else the
// spec's, else 30s.
func gracePeriod(pod *corev1.Pod, override *int64) time.Duration {
	g := int64(corev1.DefaultTerminationGracePeriodSeconds)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		g = *pod.Spec.TerminationGracePeriodSeconds
	}
	if pod.DeletionGracePeriodSeconds != nil {
		g = *pod.DeletionGracePeriodSeconds
	}
	if override != nil {
		g = *override
	}
	return time.Duration(g) * time.Second
}

// stopProcess sends SIGTERM, then SIGKILL after grace.
func stopProcess(p hwruntime.Process, grace time.Duration) {
	p.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.Done():
	case <-t.C:
		p.Signal(syscall.SIGKILL)
		<-p.Done()
	}
}

// stopAll stops every running container: preStop hooks (when pod is
// given), SIGTERM, and SIGKILL for what is left when grace is over — or
// earlier, when the pod's deletion is shortened or it disappears.
func (w *worker) stopAll(pod *corev1.Pod, grace time.Duration, hooks bool) {
	begun := time.Now()
	deadline := begun.Add(grace)
	var running []*ctr
	for _, c := range w.ctrs {
		if c.proc != nil {
			running = append(running, c)
		}
	}
	var wg sync.WaitGroup
	for _, c := range running {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if hooks && pod != nil && c.spec.Lifecycle != nil && c.spec.Lifecycle.PreStop != nil {
				hctx, cancel := context.WithDeadline(context.Background(), deadline)
				if err := w.runHandler(hctx, pod, c, c.proc, c.spec.Lifecycle.PreStop); err != nil {
					w.event(pod, corev1.EventTypeWarning, "FailedPreStopHook", fmt.Sprintf("PreStopHook failed: %v", err))
				}
				cancel()
			}
			c.proc.Signal(syscall.SIGTERM)
		}()
	}
	allDone := make(chan struct{})
	go func() {
		wg.Wait()
		for _, c := range running {
			<-c.proc.Done()
		}
		close(allDone)
	}()
	var agentStopping <-chan struct{}
	if w.ctx != nil {
		agentStopping = w.ctx.Done()
	}
	for {
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-allDone:
			t.Stop()
			w.reapAll(running)
			return
		case <-agentStopping:
			// The agent is stopping: it waits at most its own shutdown grace.
			t.Stop()
			agentStopping = nil
			if d := time.Now().Add(w.a.cfg.ShutdownGrace); d.Before(deadline) {
				deadline = d
			}
			continue
		case <-t.C:
		case <-w.wake:
			t.Stop()
			if p, gone := w.latest(); gone || p == nil {
				deadline = time.Now()
			} else if p.DeletionGracePeriodSeconds != nil {
				// A shorter grace period (a second delete) cuts it.
				if d := begun.Add(time.Duration(*p.DeletionGracePeriodSeconds) * time.Second); d.Before(deadline) {
					deadline = d
				}
			}
			if time.Now().Before(deadline) {
				continue
			}
		}
		break
	}
	for _, c := range running {
		c.proc.Signal(syscall.SIGKILL)
	}
	// A runtime that does not answer (containerd gone) must not hold the
	// agent forever.
	t := time.NewTimer(killWait)
	defer t.Stop()
	select {
	case <-allDone:
	case <-t.C:
		w.a.log.Warn("containers did not end after SIGKILL; giving up on them", append(w.log(), "waited", killWait)...)
	}
	w.reapAll(running)
}

// killWait bounds the wait for SIGKILLed containers to end.
const killWait = 30 * time.Second

func (w *worker) reapAll(running []*ctr) {
	for _, c := range running {
		if c.probeCancel != nil {
			c.probeCancel()
		}
		c.probes.Wait()
		w.reaped(c)
	}
}

// reaped records the end of c's exited process as its terminated state
// (the reason Completed or Error unless the runtime gave one), forgets the
// process and returns how it exited.
func (w *worker) reaped(c *ctr) hwruntime.Exit {
	e := c.proc.Exit()
	reason := "Completed"
	if e.Code != 0 {
		reason = "Error"
	}
	if e.Reason != "" {
		reason = e.Reason
	}
	c.term = &corev1.ContainerStateTerminated{ExitCode: e.Code, Signal: e.Signal, Reason: reason, Message: e.Message,
		StartedAt: ts(c.proc.Started()), FinishedAt: ts(e.Finished), ContainerID: c.id}
	c.proc = nil
	w.setExecTarget(c.spec.Name, nil)
	return e
}

func (w *worker) removeSandbox(final bool) {
	for _, c := range w.ctrs {
		if c.probeCancel != nil {
			c.probeCancel()
		}
		c.probes.Wait()
	}
	if w.sb == nil && !final {
		return
	}
	if err := w.a.rt.RemoveSandbox(context.Background(), w.uid, final); err != nil {
		w.a.log.Warn("removing the pod sandbox", append(w.log(), "err", err)...)
	}
	if final {
		// A deleted pod's logs go with it (<data-dir>/logs/<ns>_<name>_<uid>).
		dirs, _ := filepath.Glob(filepath.Join(w.a.cfg.DataDir, "logs", "*_"+w.uid))
		for _, d := range dirs {
			os.RemoveAll(d)
		}
		os.RemoveAll(w.a.emptyDirDir(w.uid))
	}
	w.sb, w.volumes, w.tokenRefresh = nil, nil, time.Time{}
}

// terminate finalises a graceful deletion: preStop, SIGTERM, grace,
// SIGKILL, the sandbox removed, then the pod deleted for good (grace 0,
// only this pod: a UID precondition).
func (w *worker) terminate(ctx context.Context, pod *corev1.Pod) {
	// The grace period counts from now, when the agent sees the deletion
	// (deletionTimestamp has whole seconds only).
	grace := gracePeriod(pod, nil)
	for _, c := range w.ctrs {
		if c.proc != nil {
			w.event(pod, corev1.EventTypeNormal, "Killing", "Stopping container "+c.spec.Name)
		}
	}
	if ctx.Err() != nil {
		grace = 0
	}
	w.stopAll(pod, grace, true)
	w.removeSandbox(true)
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	zero := int64(0)
	uid := types.UID(w.uid)
	err := w.a.cfg.Client.CoreV1().Pods(pod.Namespace).Delete(dctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		w.a.log.Warn("deleting the stopped pod", append(w.log(), "err", err)...)
		return
	}
	w.a.log.Info("pod stopped and deleted", w.log()...)
}

// writeStatus writes the pod status when it changed.
func (w *worker) writeStatus(ctx context.Context, pod *corev1.Pod) {
	st := w.status(pod)
	if w.lastWritten != nil && apiequality.Semantic.DeepEqual(*w.lastWritten, st) {
		return
	}
	if apiequality.Semantic.DeepEqual(pod.Status, st) {
		w.lastWritten = &st
		return
	}
	pods := w.a.cfg.Client.CoreV1().Pods(pod.Namespace)
	p := pod.DeepCopy()
	if pod.ResourceVersion == w.wroteRV {
		clear(w.superseded) // the informer has caught up
	} else if w.superseded[pod.ResourceVersion] {
		p.ResourceVersion = w.wroteRV
	}
	based := []string{pod.ResourceVersion, p.ResourceVersion}
	p.Status = st
	out, err := pods.UpdateStatus(ctx, p, metav1.UpdateOptions{FieldManager: "headway-agent"})
	for i := 0; apierrors.IsConflict(err) && i < 3; i++ {
		fresh, gerr := pods.Get(ctx, pod.Name, metav1.GetOptions{})
		if gerr != nil || string(fresh.UID) != w.uid {
			return
		}
		st = w.status(fresh)
		fresh.Status = st
		based = append(based, fresh.ResourceVersion)
		out, err = pods.UpdateStatus(ctx, fresh, metav1.UpdateOptions{FieldManager: "headway-agent"})
	}
	if err != nil {
		if ctx.Err() == nil && !apierrors.IsNotFound(err) {
			w.a.log.Warn("writing pod status", append(w.log(), "err", err)...)
			w.wakeAt(time.Now().Add(time.Second))
		}
		return
	}
	w.a.log.Debug("pod status written", append(w.log(), "phase", st.Phase, "ready", statusReady(&st))...)
	w.lastWritten = &st
	if w.superseded == nil {
		w.superseded = map[string]bool{}
	}
	for _, rv := range append(based, w.wroteRV) {
		if rv != "" && rv != out.ResourceVersion {
			w.superseded[rv] = true
		}
	}
	w.wroteRV = out.ResourceVersion
}

func statusReady(st *corev1.PodStatus) bool {
	for _, c := range st.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}
