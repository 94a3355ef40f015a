package agent

// Unit tests of the pod worker: the agent runs against client-go's fake
// clientset and the fake runtime, so they need no root, no network and no
// containers. They assert on the pod status the agent writes (every write
// is recorded), on its events and on what the runtime was asked.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
	"github.com/headway/headway/internal/agent/runtime/fake"
)

const workerTestNode = "node-fake"

// workerEnv is an agent on a fake clientset and a fake runtime.
type workerEnv struct {
	t     *testing.T
	cs    *k8sfake.Clientset
	rt    *fake.Runtime
	agent *Agent

	cancel context.CancelFunc
	done   chan error

	mu       sync.Mutex
	statuses map[string][]corev1.PodStatus // every status written, by pod name
}

// workerLogBuffer is a log buffer the agent's goroutines write concurrently.
type workerLogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *workerLogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *workerLogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startWorkerEnv runs an agent with rt on a fake clientset holding pods;
// cfg adjusts its configuration. The agent stops when the test ends (or
// earlier, with stop); its log is shown when the test failed.
func startWorkerEnv(t *testing.T, rt *fake.Runtime, cfg func(*Config), pods ...*corev1.Pod) *workerEnv {
	t.Helper()
	var objs []k8sruntime.Object
	for _, p := range pods {
		objs = append(objs, p)
	}
	e := &workerEnv{t: t, cs: k8sfake.NewClientset(objs...), rt: rt, statuses: map[string][]corev1.PodStatus{}}
	e.cs.PrependReactor("update", "pods", func(a k8stesting.Action) (bool, k8sruntime.Object, error) {
		if u, ok := a.(k8stesting.UpdateAction); ok && u.GetSubresource() == "status" {
			if p, ok := u.GetObject().(*corev1.Pod); ok {
				e.mu.Lock()
				e.statuses[p.Name] = append(e.statuses[p.Name], *p.Status.DeepCopy())
				e.mu.Unlock()
			}
		}
		return false, nil, nil
	})
	logs := &workerLogBuffer{}
	c := Config{
		Client: e.cs, NodeName: workerTestNode, DataDir: t.TempDir(), Runtime: rt.View(),
		BackoffBase: 200 * time.Millisecond, BackoffMax: 10 * time.Second, ShutdownGrace: 5 * time.Second,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if cfg != nil {
		cfg(&c)
	}
	a, err := New(c)
	if err != nil {
		t.Fatal(err)
	}
	e.agent = a
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan error, 1)
	go func() { e.done <- a.Run(ctx) }()
	t.Cleanup(func() {
		e.stop()
		if t.Failed() {
			t.Logf("agent log:\n%s", logs.String())
		}
	})
	return e
}

// stop stops the agent and waits (bounded) for Run to return.
func (e *workerEnv) stop() {
	e.t.Helper()
	e.cancel()
	select {
	case err, ok := <-e.done:
		if ok && err != nil {
			e.t.Errorf("agent Run: %v", err)
		}
		if ok {
			close(e.done)
		}
	case <-time.After(15 * time.Second):
		e.t.Error("the agent did not stop within 15s")
	}
}

// eventually waits (up to 10s) for cond, checking it whenever the runtime
// reports a change and every 10ms otherwise (API writes and events arrive
// through the fake clientset).
func (e *workerEnv) eventually(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			e.t.Fatalf("timed out waiting for %s", what)
		case <-e.rt.Changed():
		case <-tick.C:
		}
	}
}

func (e *workerEnv) pod(name string) *corev1.Pod {
	e.t.Helper()
	p, err := e.cs.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

// written returns every status written for the pod.
func (e *workerEnv) written(name string) []corev1.PodStatus {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.statuses[name])
}

// status is the one container status of the pod as the API has it.
func (e *workerEnv) status(name string) (*corev1.Pod, corev1.ContainerStatus) {
	e.t.Helper()
	p := e.pod(name)
	if len(p.Status.ContainerStatuses) != 1 {
		return p, corev1.ContainerStatus{}
	}
	return p, p.Status.ContainerStatuses[0]
}

// process waits for the n-th (from 1) process of a container.
func (e *workerEnv) process(name string, n int) *fake.Process {
	e.t.Helper()
	var p *fake.Process
	e.eventually(fmt.Sprintf("start %d of container %s", n, name), func() bool {
		ps := e.rt.Processes(name)
		if len(ps) >= n {
			p = ps[n-1]
			return true
		}
		return false
	})
	return p
}

// event finds an event of the pod with this type and reason whose message
// contains msg.
func (e *workerEnv) event(pod, typ, reason, msg string) bool {
	evs, err := e.cs.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, ev := range evs.Items {
		if ev.InvolvedObject.Name == pod && ev.Type == typ && ev.Reason == reason && strings.Contains(ev.Message, msg) {
			return true
		}
	}
	return false
}

func (e *workerEnv) waitEvent(pod, typ, reason, msg string) {
	e.t.Helper()
	e.eventually(fmt.Sprintf("a %s event %s %q", typ, reason, msg), func() bool { return e.event(pod, typ, reason, msg) })
}

func workerPod(name string, containers ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)},
		Spec:       corev1.PodSpec{NodeName: workerTestNode, Containers: containers},
	}
}

func workerSleeper(name string) corev1.Container {
	return corev1.Container{Name: name, Image: "busybox:1.28", Command: []string{"sleep", "1000"}}
}

func workerCondition(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func workerWaitingReason(cs corev1.ContainerStatus) string {
	if cs.State.Waiting != nil {
		return cs.State.Waiting.Reason
	}
	return ""
}

// TestWorkerRunsContainer: a started container without probes makes the
// pod Running and Ready, with the sandbox's address and the runtime's
// container ID.
func TestWorkerRunsContainer(t *testing.T) {
	rt := fake.New(fake.Options{Dir: t.TempDir()})
	e := startWorkerEnv(t, rt, nil, workerPod("web", workerSleeper("c")))
	proc := e.process("c", 1)
	e.eventually("Running and Ready", func() bool {
		p, cs := e.status("web")
		return p.Status.Phase == corev1.PodRunning && workerCondition(p, corev1.PodReady) == corev1.ConditionTrue &&
			cs.Ready && cs.State.Running != nil
	})
	p, cs := e.status("web")
	sb := rt.Sandbox("uid-web")
	if sb == nil || p.Status.PodIP != sb.IP.String() {
		t.Errorf("podIP %q, sandbox %+v", p.Status.PodIP, sb)
	}
	if p.Status.HostIP != "127.0.0.1" {
		t.Errorf("hostIP %q", p.Status.HostIP)
	}
	if cs.ContainerID != proc.ID() || cs.RestartCount != 0 || cs.Started == nil || !*cs.Started {
		t.Errorf("container status %+v; want ID %s, no restarts, started", cs, proc.ID())
	}
	for _, ct := range []corev1.PodConditionType{corev1.PodReadyToStartContainers, corev1.PodInitialized, corev1.ContainersReady} {
		if workerCondition(p, ct) != corev1.ConditionTrue {
			t.Errorf("condition %s is %q", ct, workerCondition(p, ct))
		}
	}
	starts := rt.Calls("Start")
	if len(starts) != 1 || !slices.Equal(starts[0].Argv, []string{"sleep", "1000"}) {
		t.Errorf("Start calls: %+v", starts)
	}
	if proc.Spec == nil || !strings.HasSuffix(proc.Spec.LogPath, "/c/0.log") || proc.Spec.Attempt != 0 {
		t.Errorf("container spec: %+v", proc.Spec)
	}
	if sbs := rt.Calls("RunSandbox"); len(sbs) != 1 {
		t.Errorf("RunSandbox calls: %+v", sbs)
	}
	e.waitEvent("web", corev1.EventTypeNormal, "Started", "Started container c")
}

// TestWorkerCrashLoopBackOff: a container that exits 1 under restartPolicy
// Always is restarted at once the first time, then after the back-off,
// shown meanwhile as CrashLoopBackOff with its last termination.
func TestWorkerCrashLoopBackOff(t *testing.T) {
	// Long enough that the CrashLoopBackOff status, written once the
	// second exit is seen, is still current when the poll reads it on a
	// loaded machine (300 ms failed 1 run in ~10 at load 20).
	const base = 2 * time.Second
	rt := fake.New(fake.Options{Dir: t.TempDir()})
	pod := workerPod("crash", workerSleeper("c"))
	pod.Spec.RestartPolicy = corev1.RestartPolicyAlways
	e := startWorkerEnv(t, rt, func(c *Config) { c.BackoffBase = base }, pod)

	e.process("c", 1).End(1)
	second := e.process("c", 2) // the first restart is immediate
	second.End(1)
	// The status is checked as it was when it said CrashLoopBackOff: read
	// again later, the back-off may have ended and the container restarted.
	var cs corev1.ContainerStatus
	e.eventually("CrashLoopBackOff", func() bool {
		_, cs = e.status("crash")
		return workerWaitingReason(cs) == "CrashLoopBackOff"
	})
	if lt := cs.LastTerminationState.Terminated; lt == nil || lt.ExitCode != 1 || lt.Reason != "Error" {
		t.Errorf("lastState in CrashLoopBackOff: %+v; want exit 1, reason Error", cs.LastTerminationState)
	}
	if cs.RestartCount != 1 || cs.Ready {
		t.Errorf("in CrashLoopBackOff: restartCount %d, ready %v; want 1, false", cs.RestartCount, cs.Ready)
	}
	e.waitEvent("crash", corev1.EventTypeWarning, "BackOff", "Back-off restarting failed container c")

	third := e.process("c", 3)
	if wait := third.Started().Sub(second.Exit().Finished); wait < base {
		t.Errorf("the second restart came %s after the exit; the back-off is %s", wait, base)
	}
	e.eventually("Running with two restarts", func() bool {
		_, cs := e.status("crash")
		return cs.State.Running != nil && cs.RestartCount == 2
	})
}

// TestWorkerOOMKilled: the runtime's OOMKilled reason is the terminated
// reason in the status.
func TestWorkerOOMKilled(t *testing.T) {
	rt := fake.New(fake.Options{Dir: t.TempDir()})
	pod := workerPod("oom", workerSleeper("c"))
	pod.Spec.RestartPolicy = corev1.RestartPolicyNever
	e := startWorkerEnv(t, rt, nil, pod)
	e.process("c", 1).OOMKill()
	e.eventually("terminated with OOMKilled", func() bool {
		_, cs := e.status("oom")
		return cs.State.Terminated != nil
	})
	p, cs := e.status("oom")
	if term := cs.State.Terminated; term.Reason != "OOMKilled" || term.ExitCode != 137 {
		t.Errorf("terminated state %+v; want OOMKilled, exit 137", term)
	}
	if p.Status.Phase != corev1.PodFailed {
		t.Errorf("phase %s; want Failed", p.Status.Phase)
	}
	if n := len(rt.Processes("c")); n != 1 {
		t.Errorf("%d starts under restartPolicy Never", n)
	}
}

// TestWorkerOOMKilledRestarts: under restartPolicy Always the OOM kill is
// the last termination state of the restarted container.
func TestWorkerOOMKilledRestarts(t *testing.T) {
	rt := fake.New(fake.Options{Dir: t.TempDir()})
	e := startWorkerEnv(t, rt, nil, workerPod("oom2", workerSleeper("c")))
	e.process("c", 1).OOMKill()
	e.process("c", 2)
	e.eventually("the restarted container's last state", func() bool {
		_, cs := e.status("oom2")
		return cs.State.Running != nil && cs.RestartCount == 1 && cs.LastTerminationState.Terminated != nil
	})
	if _, cs := e.status("oom2"); cs.LastTerminationState.Terminated.Reason != "OOMKilled" {
		t.Errorf("last state %+v; want OOMKilled", cs.LastTerminationState.Terminated)
	}
}

// TestWorkerImagePullBackOff: a failed pull is ErrImagePull, then
// ImagePullBackOff until the retry, with Failed and BackOff events; the
// retry after the back-off runs the container.
func TestWorkerImagePullBackOff(t *testing.T) {
	rt := fake.New(fake.Options{Images: true, Dir: t.TempDir()})
	rt.FailPull("busybox:1.28", errors.New("registry says no"))
	// The retry comes after the back-off base: long enough for the worker
	// to show ImagePullBackOff first.
	e := startWorkerEnv(t, rt, func(c *Config) { c.BackoffBase = time.Second }, workerPod("pull", workerSleeper("c")))
	e.eventually("ImagePullBackOff", func() bool {
		_, cs := e.status("pull")
		return workerWaitingReason(cs) == "ImagePullBackOff"
	})
	var reasons []string
	for _, st := range e.written("pull") {
		if len(st.ContainerStatuses) == 1 {
			if r := workerWaitingReason(st.ContainerStatuses[0]); r != "" && (len(reasons) == 0 || reasons[len(reasons)-1] != r) {
				reasons = append(reasons, r)
			}
		}
	}
	if i := slices.Index(reasons, "ErrImagePull"); i < 0 || !slices.Contains(reasons[i:], "ImagePullBackOff") {
		t.Errorf("waiting reasons written: %v; want ErrImagePull, then ImagePullBackOff", reasons)
	}
	if _, cs := e.status("pull"); !strings.Contains(cs.State.Waiting.Message, "registry says no") {
		t.Errorf("ImagePullBackOff message %q lacks the pull error", cs.State.Waiting.Message)
	}
	e.waitEvent("pull", corev1.EventTypeWarning, "Failed", `Failed to pull image "busybox:1.28": registry says no`)
	e.waitEvent("pull", corev1.EventTypeWarning, "Failed", "Error: ErrImagePull")
	e.waitEvent("pull", corev1.EventTypeNormal, "BackOff", `Back-off pulling image "busybox:1.28"`)
	if n := len(rt.Calls("Start")); n != 0 {
		t.Errorf("%d starts without the image", n)
	}

	rt.FailPull("busybox:1.28", nil)
	proc := e.process("c", 1)
	if proc.Spec.ImageRef != "sha256:fake-busybox:1.28" {
		t.Errorf("started with image ref %q", proc.Spec.ImageRef)
	}
	e.eventually("Running after the retry", func() bool {
		_, cs := e.status("pull")
		return cs.State.Running != nil && cs.ImageID == "sha256:fake-busybox:1.28"
	})
	if pulls := rt.Calls("PullImage"); len(pulls) < 2 || pulls[0].Err == nil || pulls[len(pulls)-1].Err != nil {
		t.Errorf("pulls: %+v; want a failure, then a success", pulls)
	}
	e.waitEvent("pull", corev1.EventTypeNormal, "Pulled", `Successfully pulled image "busybox:1.28"`)
}

// TestWorkerImageNeverPull: with imagePullPolicy Never and the image
// absent the container waits with ErrImageNeverPull; nothing is pulled.
func TestWorkerImageNeverPull(t *testing.T) {
	rt := fake.New(fake.Options{Images: true, Dir: t.TempDir()})
	c := workerSleeper("c")
	c.ImagePullPolicy = corev1.PullNever
	e := startWorkerEnv(t, rt, nil, workerPod("never", c))
	e.eventually("ErrImageNeverPull", func() bool {
		_, cs := e.status("never")
		return workerWaitingReason(cs) == "ErrImageNeverPull"
	})
	e.waitEvent("never", corev1.EventTypeWarning, "ErrImageNeverPull", `"busybox:1.28" is not present with pull policy of Never`)
	if p := e.pod("never"); p.Status.Phase != corev1.PodPending {
		t.Errorf("phase %s; want Pending", p.Status.Phase)
	}
	if n := len(rt.Calls("PullImage", "Start")); n != 0 {
		t.Errorf("%d pulls or starts with pull policy Never", n)
	}
}

// TestWorkerPullPolicy: which policies pull, with the image present or not.
func TestWorkerPullPolicy(t *testing.T) {
	for _, tc := range []struct {
		policy   corev1.PullPolicy
		present  bool
		wantPull bool
	}{
		{corev1.PullIfNotPresent, true, false},
		{"", true, false}, // IfNotPresent is the default
		{corev1.PullIfNotPresent, false, true},
		{corev1.PullAlways, true, true},
		{corev1.PullNever, true, false},
	} {
		t.Run(fmt.Sprintf("%s/present=%v", tc.policy, tc.present), func(t *testing.T) {
			rt := fake.New(fake.Options{Images: true, Dir: t.TempDir()})
			wantRef := "sha256:fake-busybox:1.28"
			if tc.present {
				wantRef = "sha256:present"
				rt.SetImage("busybox:1.28", wantRef)
			}
			c := workerSleeper("c")
			c.ImagePullPolicy = tc.policy
			e := startWorkerEnv(t, rt, nil, workerPod("policy", c))
			proc := e.process("c", 1)
			if pulled := len(rt.Calls("PullImage")) > 0; pulled != tc.wantPull {
				t.Errorf("pulled: %v, want %v", pulled, tc.wantPull)
			}
			if !tc.wantPull {
				if proc.Spec.ImageRef != wantRef {
					t.Errorf("started with ref %q, want %q", proc.Spec.ImageRef, wantRef)
				}
				e.waitEvent("policy", corev1.EventTypeNormal, "Pulled", `Container image "busybox:1.28" already present on machine`)
			}
		})
	}
}

// TestWorkerSandboxFailure: a sandbox that cannot be made keeps the pod
// Pending with the error and a FailedCreatePodSandBox event; it is tried
// again.
func TestWorkerSandboxFailure(t *testing.T) {
	rt := fake.New(fake.Options{Dir: t.TempDir()})
	rt.FailRunSandbox(errors.New("no addresses left"))
	e := startWorkerEnv(t, rt, nil, workerPod("nosb", workerSleeper("c")))
	e.waitEvent("nosb", corev1.EventTypeWarning, "FailedCreatePodSandBox", "no addresses left")
	e.eventually("the error in the status", func() bool {
		p := e.pod("nosb")
		return p.Status.Phase == corev1.PodPending && strings.Contains(p.Status.Message, "no addresses left")
	})
	if p := e.pod("nosb"); workerCondition(p, corev1.PodReadyToStartContainers) != corev1.ConditionFalse {
		t.Errorf("PodReadyToStartContainers is %q without a sandbox", workerCondition(p, corev1.PodReadyToStartContainers))
	}
	rt.FailRunSandbox(nil)
	e.process("c", 1)
	e.eventually("Running", func() bool { return e.pod("nosb").Status.Phase == corev1.PodRunning })
	if p := e.pod("nosb"); p.Status.Message != "" {
		t.Errorf("message %q after the sandbox was made", p.Status.Message)
	}
}

// TestWorkerReadinessProbe: an exec readiness probe, run through the
// runtime's Exec, decides readiness.
func TestWorkerReadinessProbe(t *testing.T) {
	rt := fake.New(fake.Options{Dir: t.TempDir()})
	var code atomic.Int32
	code.Store(1)
	rt.SetExec(func(p *fake.Process, argv []string) (hwruntime.ExecResult, error) {
		return hwruntime.ExecResult{ExitCode: int(code.Load())}, nil
	})
	c := workerSleeper("c")
	c.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/ready"}}},
		PeriodSeconds: 1, FailureThreshold: 1}
	e := startWorkerEnv(t, rt, nil, workerPod("probed", c))
	e.eventually("probes through Exec", func() bool { return len(rt.Calls("Exec")) >= 2 })
	if p, cs := e.status("probed"); cs.Ready || workerCondition(p, corev1.PodReady) == corev1.ConditionTrue {
		t.Fatal("Ready while the readiness probe fails")
	}
	if ex := rt.Calls("Exec")[0]; !slices.Equal(ex.Argv, []string{"test", "-f", "/ready"}) || ex.Container != "c" {
		t.Errorf("probe exec: %+v", ex)
	}
	code.Store(0)
	e.eventually("Ready", func() bool {
		p, cs := e.status("probed")
		return cs.Ready && workerCondition(p, corev1.PodReady) == corev1.ConditionTrue
	})
}

// TestWorkerReadyInOneWrite: a container whose readiness probe passes
// soon after its start (here the second try, one quick retry later) makes
// one status write, Running and Ready, not Running then Ready; one whose
// probe keeps failing is still written Running and not ready.
func TestWorkerReadyInOneWrite(t *testing.T) {
	rt := fake.New(fake.Options{Dir: t.TempDir()})
	var tries atomic.Int32
	rt.SetExec(func(p *fake.Process, argv []string) (hwruntime.ExecResult, error) {
		if argv[0] == "never" {
			return hwruntime.ExecResult{ExitCode: 1}, nil
		}
		if tries.Add(1) == 1 {
			return hwruntime.ExecResult{ExitCode: 1}, nil
		}
		return hwruntime.ExecResult{}, nil
	})
	soon, never := workerSleeper("c"), workerSleeper("c")
	soon.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"soon"}}}, PeriodSeconds: 10}
	never.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"never"}}}, PeriodSeconds: 10}
	e := startWorkerEnv(t, rt, nil, workerPod("soon", soon), workerPod("never", never))
	e.eventually("soon Ready", func() bool {
		p, cs := e.status("soon")
		return cs.Ready && workerCondition(p, corev1.PodReady) == corev1.ConditionTrue
	})
	e.eventually("never Running", func() bool {
		p, cs := e.status("never")
		return p.Status.Phase == corev1.PodRunning && cs.State.Running != nil
	})
	if p, cs := e.status("never"); cs.Ready || workerCondition(p, corev1.PodReady) == corev1.ConditionTrue {
		t.Error("never: Ready while its readiness probe fails")
	}
	if n := tries.Load(); n < 2 {
		t.Fatalf("soon: %d probe tries, want at least 2", n)
	}
	running := 0
	for i, st := range e.written("soon") {
		if st.Phase != corev1.PodRunning {
			continue
		}
		running++
		if len(st.ContainerStatuses) != 1 || !st.ContainerStatuses[0].Ready {
			t.Errorf("soon: status write %d is Running but not ready: %+v", i, st.ContainerStatuses)
		}
	}
	if running != 1 {
		t.Errorf("soon: %d Running status writes, want 1", running)
	}
}

// TestWorkerAdopts: a container the runtime still runs from before (an
// Adopter's Running) is taken over: no new sandbox, no new start, the
// restart count kept.
func TestWorkerAdopts(t *testing.T) {
	rt := fake.New(fake.Options{Adopter: true, KeepOnStop: true, Dir: t.TempDir()})
	pod := workerPod("adopted", workerSleeper("c"))
	started := metav1.NewTime(time.Now().Add(-time.Minute).Truncate(time.Second))
	pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, StartTime: &started,
		ContainerStatuses: []corev1.ContainerStatus{{Name: "c", Image: "busybox:1.28", RestartCount: 2, ContainerID: "fake://before",
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: started}}}}}
	left := rt.AddRunning(pod, "c")
	e := startWorkerEnv(t, rt, nil, pod)
	e.eventually("the adopted container Ready", func() bool {
		p, cs := e.status("adopted")
		return cs.ContainerID == left["c"].ID() && cs.Ready && workerCondition(p, corev1.PodReady) == corev1.ConditionTrue
	})
	_, cs := e.status("adopted")
	if cs.RestartCount != 2 {
		t.Errorf("restartCount %d after adoption; want 2", cs.RestartCount)
	}
	if calls := rt.Calls("Start", "RunSandbox"); len(calls) != 0 {
		t.Errorf("adopting started or made something: %+v", calls)
	}
	if rt.RunningCalls() != 1 {
		t.Errorf("Running asked %d times", rt.RunningCalls())
	}
	// The adopted container is the agent's: its exit restarts it.
	left["c"].End(2)
	e.process("c", 2)
	e.eventually("restarted after the adopted one exited", func() bool {
		_, cs := e.status("adopted")
		return cs.State.Running != nil && cs.RestartCount == 3 &&
			cs.LastTerminationState.Terminated != nil && cs.LastTerminationState.Terminated.ExitCode == 2
	})
}

// TestWorkerAgentStop: when the agent stops, a runtime whose pods outlive
// it (KeepOnStop) keeps them running, unless the agent was told to clean
// up; other runtimes' containers are stopped.
func TestWorkerAgentStop(t *testing.T) {
	for _, tc := range []struct {
		name        string
		opts        fake.Options
		cleanup     bool
		wantStopped bool
	}{
		{"KeepOnStop", fake.Options{Adopter: true, KeepOnStop: true}, false, false},
		{"KeepOnStop with CleanupOnStop", fake.Options{Adopter: true, KeepOnStop: true}, true, true},
		{"not an Adopter", fake.Options{}, false, true},
		{"Adopter without KeepOnStop", fake.Options{Adopter: true}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Dir = t.TempDir()
			rt := fake.New(tc.opts)
			e := startWorkerEnv(t, rt, func(c *Config) { c.CleanupOnStop = tc.cleanup }, workerPod("stay", workerSleeper("c")))
			proc := e.process("c", 1)
			e.eventually("Running", func() bool { return e.pod("stay").Status.Phase == corev1.PodRunning })
			e.stop()
			removes := rt.Calls("RemoveSandbox")
			if !tc.wantStopped {
				if !proc.Running() || len(proc.Signals()) != 0 || len(removes) != 0 {
					t.Errorf("after the agent stopped: running %v, signals %v, removals %+v; want it left alone",
						proc.Running(), proc.Signals(), removes)
				}
				return
			}
			if proc.Running() || !slices.Equal(proc.Signals(), []syscall.Signal{syscall.SIGTERM}) {
				t.Errorf("after the agent stopped: running %v, signals %v; want stopped by SIGTERM", proc.Running(), proc.Signals())
			}
			if len(removes) != 1 || removes[0].UID != "uid-stay" || removes[0].Final {
				t.Errorf("removals %+v; want the sandbox removed, its address kept", removes)
			}
		})
	}
}

// TestWorkerGracefulDeletion: a pod marked for deletion gets SIGTERM; once
// its container ended the sandbox goes for good and the agent deletes the
// pod object.
func TestWorkerGracefulDeletion(t *testing.T) {
	rt := fake.New(fake.Options{Dir: t.TempDir()})
	e := startWorkerEnv(t, rt, nil, workerPod("bye", workerSleeper("c")))
	proc := e.process("c", 1)
	e.eventually("Running", func() bool { return e.pod("bye").Status.Phase == corev1.PodRunning })
	p := e.pod("bye")
	now := metav1.Now()
	grace := int64(30)
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, &grace
	if _, err := e.cs.CoreV1().Pods("default").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("the pod deleted", func() bool {
		_, err := e.cs.CoreV1().Pods("default").Get(context.Background(), "bye", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if proc.Running() || !slices.Equal(proc.Signals(), []syscall.Signal{syscall.SIGTERM}) {
		t.Errorf("running %v, signals %v; want ended by SIGTERM", proc.Running(), proc.Signals())
	}
	if removes := rt.Calls("RemoveSandbox"); len(removes) != 1 || !removes[0].Final {
		t.Errorf("removals %+v; want one final removal", removes)
	}
	e.waitEvent("bye", corev1.EventTypeNormal, "Killing", "Stopping container c")
}

// TestWorkerStubbornContainerKilled: a container that ignores SIGTERM is
// killed when the deletion's grace period ends.
func TestWorkerStubbornContainerKilled(t *testing.T) {
	rt := fake.New(fake.Options{Dir: t.TempDir()})
	rt.IgnoreSIGTERM(true)
	e := startWorkerEnv(t, rt, nil, workerPod("stubborn", workerSleeper("c")))
	proc := e.process("c", 1)
	e.eventually("Running", func() bool { return e.pod("stubborn").Status.Phase == corev1.PodRunning })
	p := e.pod("stubborn")
	now := metav1.Now()
	grace := int64(1)
	p.DeletionTimestamp, p.DeletionGracePeriodSeconds = &now, &grace
	if _, err := e.cs.CoreV1().Pods("default").Update(context.Background(), p, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("the pod deleted", func() bool {
		_, err := e.cs.CoreV1().Pods("default").Get(context.Background(), "stubborn", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if !slices.Equal(proc.Signals(), []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL}) || proc.Exit().Code != 137 {
		t.Errorf("signals %v, exit %+v; want SIGTERM then SIGKILL", proc.Signals(), proc.Exit())
	}
}

// TestWorkerForcedDeletion: a pod removed from the API without a grace
// period has its containers killed and its sandbox removed for good.
func TestWorkerForcedDeletion(t *testing.T) {
	rt := fake.New(fake.Options{Dir: t.TempDir()})
	e := startWorkerEnv(t, rt, nil, workerPod("gone", workerSleeper("c")))
	proc := e.process("c", 1)
	e.eventually("Running", func() bool { return e.pod("gone").Status.Phase == corev1.PodRunning })
	if err := e.cs.CoreV1().Pods("default").Delete(context.Background(), "gone", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	e.eventually("the sandbox removed", func() bool { return len(rt.Calls("RemoveSandbox")) > 0 })
	if proc.Running() || len(proc.Signals()) == 0 {
		t.Errorf("running %v, signals %v; want stopped", proc.Running(), proc.Signals())
	}
	if removes := rt.Calls("RemoveSandbox"); !removes[0].Final {
		t.Errorf("removal %+v; want final", removes[0])
	}
}
