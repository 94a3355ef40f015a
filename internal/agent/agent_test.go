package agent_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/wait"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/headway/headway/internal/agent/network"
	hwruntime "github.com/headway/headway/internal/agent/runtime"
	"github.com/headway/headway/internal/testing/cluster"
)

// The agent tests' pod network: a bridge and ranges of their own.
const (
	testBridge      = "hwt-agent"
	testClusterCIDR = "198.18.252.0/24"
	testServiceCIDR = "198.19.252.0/24"
)

func startCluster(t *testing.T, opts ...cluster.Option) *cluster.Cluster {
	t.Helper()
	if err := network.Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	return cluster.Start(t, append([]cluster.Option{cluster.WithAgent(testBridge, testClusterCIDR, testServiceCIDR)}, opts...)...)
}

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	err := wait.PollUntilContextTimeout(context.Background(), 20*time.Millisecond, timeout, true, func(context.Context) (bool, error) {
		return cond()
	})
	if err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

func getPod(t *testing.T, c kubernetes.Interface, name string) *corev1.Pod {
	t.Helper()
	p, err := c.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func createPod(t *testing.T, c kubernetes.Interface, p *corev1.Pod) *corev1.Pod {
	t.Helper()
	if p.Namespace == "" {
		p.Namespace = "default"
	}
	out, err := c.CoreV1().Pods(p.Namespace).Create(context.Background(), p, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// createFromFile creates every object of a YAML file.
func createFromFile(t *testing.T, c kubernetes.Interface, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for {
		doc, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		ctx := context.Background()
		switch o := obj.(type) {
		case *corev1.Service:
			_, err = c.CoreV1().Services("default").Create(ctx, o, metav1.CreateOptions{})
		case *appsv1.StatefulSet:
			_, err = c.AppsV1().StatefulSets("default").Create(ctx, o, metav1.CreateOptions{})
		default:
			t.Fatalf("unexpected %T in %s", obj, path)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// TestHeadlessProcessExample is issue 6's "must show": the process-runtime
// seed example comes up with three Ready pods, each with its own address;
// from inside web-0 the host name, the headless names through the pod's
// resolv.conf, and web-1's page are right.
func TestHeadlessProcessExample(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("skipping: the example runs busybox httpd (apt-get install busybox)")
	}
	c := startCluster(t)
	createFromFile(t, c.Client, filepath.Join(repoRoot(), "examples", "headless-process.yaml"))
	cidr := netip.MustParsePrefix(testClusterCIDR)
	waitFor(t, 30*time.Second, "three Ready pods", func() (bool, error) {
		pods, err := c.Client.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=nginx"})
		if err != nil {
			return false, err
		}
		ips := map[string]bool{}
		for _, p := range pods.Items {
			ip, err := netip.ParseAddr(p.Status.PodIP)
			if !podReady(&p) || err != nil || !cidr.Contains(ip) {
				return false, nil
			}
			ips[p.Status.PodIP] = true
		}
		return len(ips) == 3, nil
	})
	ag := c.Running.Agent
	run := func(cmd string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		res, err := ag.Exec(ctx, "default", "web-0", "", []string{"sh", "-c", cmd})
		if err != nil {
			t.Fatalf("exec %q: %v", cmd, err)
		}
		if res.ExitCode != 0 {
			t.Fatalf("exec %q: exit %d: %s", cmd, res.ExitCode, res.Output)
		}
		return string(res.Output)
	}
	if got := run("hostname"); got != "web-0\n" {
		t.Errorf("hostname: %q", got)
	}
	web1 := getPod(t, c.Client, "web-1").Status.PodIP
	if got := run("getent hosts web-1.nginx-headless"); !strings.HasPrefix(got, web1+" ") {
		t.Errorf("getent hosts web-1.nginx-headless: %q, want %s", got, web1)
	}
	if got := run("cat /etc/hosts"); !strings.Contains(got, "\tweb-0.nginx-headless.default.svc.cluster.local\tweb-0") {
		t.Errorf("/etc/hosts:\n%s", got)
	}
	nslookup := "nslookup nginx-headless"
	if _, err := exec.LookPath("nslookup"); err != nil {
		nslookup = "busybox " + nslookup
	}
	got := run(nslookup + " 2>&1")
	for _, p := range []string{"web-0", "web-1", "web-2"} {
		if ip := getPod(t, c.Client, p).Status.PodIP; !strings.Contains(got, ip) {
			t.Errorf("nslookup nginx-headless lacks %s (%s):\n%s", p, ip, got)
		}
	}
	if got := run("busybox wget -qO- http://web-1.nginx-headless/"); got != "hello from web-1\n" {
		t.Errorf("the page of web-1: %q", got)
	}
	// /www, where the pods' volume is mounted, is not on the host.
	if _, err := os.Lstat("/www"); err == nil {
		t.Log("note: /www exists on this host (not made by the test)")
	}
}

// TestImageOnlyPodSaysWhy: the seed's container (an image, no command)
// cannot run under the process runtime; the status and an event say so.
func TestImageOnlyPodSaysWhy(t *testing.T) {
	c := startCluster(t)
	createPod(t, c.Client, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "nginx"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:alpine"}}}})
	var msg string
	waitFor(t, 10*time.Second, "a waiting reason", func() (bool, error) {
		p := getPod(t, c.Client, "nginx")
		for _, cs := range p.Status.ContainerStatuses {
			if w := cs.State.Waiting; w != nil && w.Reason == "CreateContainerConfigError" {
				msg = w.Message
				return true, nil
			}
		}
		return false, nil
	})
	for _, want := range []string{`"nginx"`, "set `command`", "CRI runtime"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
	waitFor(t, 10*time.Second, "a warning event", func() (bool, error) {
		evs, err := c.Client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == "nginx" && e.Type == corev1.EventTypeWarning && strings.Contains(e.Message, "set `command`") {
				return true, nil
			}
		}
		return false, nil
	})
}

// TestCrashLoopBacksOff: a container that keeps failing is restarted with
// growing delays, shown as CrashLoopBackOff with its last termination.
func TestCrashLoopBacksOff(t *testing.T) {
	const base = 200 * time.Millisecond
	c := startCluster(t, cluster.WithBackoff(base))
	start := time.Now()
	createPod(t, c.Client, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "crash"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sh", "-c", "echo boom; exit 3"}}}}})
	sawBackOff := false
	waitFor(t, 30*time.Second, "four restarts", func() (bool, error) {
		p := getPod(t, c.Client, "crash")
		if len(p.Status.ContainerStatuses) != 1 {
			return false, nil
		}
		cs := p.Status.ContainerStatuses[0]
		if w := cs.State.Waiting; w != nil && w.Reason == "CrashLoopBackOff" {
			sawBackOff = true
			if lt := cs.LastTerminationState.Terminated; lt == nil || lt.ExitCode != 3 {
				t.Errorf("in CrashLoopBackOff, lastState is %+v; want exit code 3", cs.LastTerminationState)
			}
		}
		return cs.RestartCount >= 4, nil
	})
	// The first restart is immediate, then base, 2·base, 4·base.
	if el, least := time.Since(start), 7*base; el < least {
		t.Errorf("four restarts took %s; with back-off they take at least %s", el, least)
	}
	if !sawBackOff {
		t.Error("never saw the CrashLoopBackOff waiting reason")
	}
	logs, _ := filepath.Glob(filepath.Join(c.DataDir, "logs", "default_crash_*", "c", "*.log"))
	if len(logs) < 4 {
		t.Errorf("want a log file per start, got %v", logs)
	} else if data, _ := os.ReadFile(logs[0]); !regexp.MustCompile(`^\S+Z stdout F boom\n$`).Match(data) {
		t.Errorf("log %s is not one CRI-format line of boom: %q", logs[0], data)
	}
}

// TestProbes: readiness follows an exec probe, and a failing liveness
// probe restarts the container.
func TestProbes(t *testing.T) {
	c := startCluster(t, cluster.WithBackoff(100*time.Millisecond))
	vol := []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	createPod(t, c.Client, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "probed"},
		Spec: corev1.PodSpec{
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			Containers: []corev1.Container{{
				Name: "ready", Image: "busybox", Command: []string{"sleep", "1000"}, VolumeMounts: vol,
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/data/ready"}}},
					PeriodSeconds: 1, FailureThreshold: 1},
			}, {
				// Alive for its first run only: the file it checks is gone
				// after a second, and it is not made again.
				Name:         "live",
				Image:        "busybox",
				Command:      []string{"sh", "-c", "if [ ! -f /data/once ]; then touch /data/once /data/alive; fi; sleep 1; rm -f /data/alive; exec sleep 1000"},
				VolumeMounts: vol,
				LivenessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"test", "-f", "/data/alive"}}},
					PeriodSeconds: 1, FailureThreshold: 1},
			}},
		}})
	waitFor(t, 20*time.Second, "a liveness restart", func() (bool, error) {
		p := getPod(t, c.Client, "probed")
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name == "live" && cs.RestartCount >= 1 {
				return true, nil
			}
		}
		return false, nil
	})
	if podReady(getPod(t, c.Client, "probed")) {
		t.Fatal("Ready before the readiness file exists")
	}
	// Make the readiness file, through the container.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if res, err := c.Running.Agent.Exec(ctx, "default", "probed", "ready", []string{"touch", "/data/ready"}); err != nil || res.ExitCode != 0 {
		t.Fatalf("exec touch: %v %+v", err, res)
	}
	waitFor(t, 10*time.Second, "Ready", func() (bool, error) {
		p := getPod(t, c.Client, "probed")
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name == "ready" && !cs.Ready {
				return false, nil
			}
		}
		return true, nil
	})
}

func containerPID(t *testing.T, p *corev1.Pod) int {
	t.Helper()
	for _, cs := range p.Status.ContainerStatuses {
		if cs.State.Running != nil {
			i := strings.LastIndexByte(cs.ContainerID, '-')
			pid, err := strconv.Atoi(cs.ContainerID[i+1:])
			if err == nil {
				return pid
			}
		}
	}
	t.Fatalf("no running container in %s: %+v", p.Name, p.Status.ContainerStatuses)
	return 0
}

// TestGracefulDeletion: a deleted pod's processes get SIGTERM; one that
// ignores it is killed when the grace period ends; the agent then removes
// the pod object.
func TestGracefulDeletion(t *testing.T) {
	c := startCluster(t)
	one := int64(1)
	thirty := int64(30)
	createPod(t, c.Client, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "polite"},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &thirty, Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "1000"}}}}})
	createPod(t, c.Client, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "stubborn"},
		Spec: corev1.PodSpec{TerminationGracePeriodSeconds: &one, Containers: []corev1.Container{{Name: "c", Image: "busybox",
			Command: []string{"sh", "-c", "trap '' TERM; while :; do sleep 0.2; done"}}}}})
	pids := map[string]int{}
	for _, name := range []string{"polite", "stubborn"} {
		waitFor(t, 10*time.Second, name+" running", func() (bool, error) {
			p := getPod(t, c.Client, name)
			return p.Status.Phase == corev1.PodRunning, nil
		})
		pids[name] = containerPID(t, getPod(t, c.Client, name))
	}
	for name, limit := range map[string]time.Duration{"polite": 10 * time.Second, "stubborn": 10 * time.Second} {
		start := time.Now()
		if err := c.Client.CoreV1().Pods("default").Delete(context.Background(), name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, limit, name+" gone from the API", func() (bool, error) {
			_, err := c.Client.CoreV1().Pods("default").Get(context.Background(), name, metav1.GetOptions{})
			return apierrors.IsNotFound(err), nil
		})
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pids[name])); err == nil {
			t.Errorf("%s: process %d still there after the pod was deleted", name, pids[name])
		}
		if name == "stubborn" && time.Since(start) < time.Second {
			t.Errorf("stubborn: gone after %s, before its 1s grace period", time.Since(start))
		}
	}
}

// TestLimitsEnforcedOrSaid: resources.limits are the container's cgroup's
// where the host lets the process runtime make cgroups; where it does not,
// the pod's events say they are not enforced.
func TestLimitsEnforcedOrSaid(t *testing.T) {
	c := startCluster(t)
	createPod(t, c.Client, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "limited"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "60"},
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("64Mi")}}}}}})
	waitFor(t, 10*time.Second, "limited running", func() (bool, error) {
		p := getPod(t, c.Client, "limited")
		return len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil, nil
	})
	if enf, ok := c.Running.Agent.Runtime().(hwruntime.LimitEnforcer); ok && enf.EnforcesLimits() {
		if got := memoryLimit(t, containerPID(t, getPod(t, c.Client, "limited"))); got != 64<<20 {
			t.Fatalf("the container's memory limit is %d, want 64Mi", got)
		}
		return
	}
	waitFor(t, 10*time.Second, "a LimitsNotEnforced event", func() (bool, error) {
		evs, err := c.Client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == "limited" && e.Reason == "LimitsNotEnforced" && strings.Contains(e.Message, "memory=64Mi") {
				return true, nil
			}
		}
		return false, nil
	})
}

// memoryLimit is the memory limit of pid's cgroup (v2 memory.max, else
// the v1 memory controller's limit).
func memoryLimit(t *testing.T, pid int) int64 {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		f := strings.SplitN(line, ":", 3)
		var file string
		switch {
		case f[1] == "memory":
			file = filepath.Join("/sys/fs/cgroup/memory", f[2], "memory.limit_in_bytes")
		case f[0] == "0" && f[1] == "":
			file = filepath.Join("/sys/fs/cgroup", f[2], "memory.max")
		}
		if b, err := os.ReadFile(file); file != "" && err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
				return n
			}
		}
	}
	t.Fatalf("no memory limit found for process %d:\n%s", pid, data)
	return 0
}

// TestPostStartHooks: an exec postStart hook runs in the container (the
// readiness probe sees its file); an httpGet hook that fails kills the
// container, which is restarted, with a FailedPostStartHook event.
func TestPostStartHooks(t *testing.T) {
	c := startCluster(t, cluster.WithBackoff(100*time.Millisecond))
	vol := []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}
	createPod(t, c.Client, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hooked"},
		Spec: corev1.PodSpec{
			Volumes: []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			Containers: []corev1.Container{{
				Name: "exec", Image: "busybox", Command: []string{"sleep", "1000"}, VolumeMounts: vol,
				Lifecycle: &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{Exec: &corev1.ExecAction{
					Command: []string{"sh", "-c", "echo $HOSTNAME > /data/hooked"}}}},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"grep", "-q", "hooked", "/data/hooked"}}},
					PeriodSeconds: 1, FailureThreshold: 1},
			}, {
				Name: "http", Image: "busybox", Command: []string{"sleep", "1000"},
				Lifecycle: &corev1.Lifecycle{PostStart: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{
					Path: "/", Port: intstr.FromInt32(1), Scheme: corev1.URISchemeHTTP}}},
			}},
		}})
	waitFor(t, 20*time.Second, "the exec container Ready and the http container restarted", func() (bool, error) {
		p := getPod(t, c.Client, "hooked")
		ready, restarted := false, false
		for _, cs := range p.Status.ContainerStatuses {
			ready = ready || (cs.Name == "exec" && cs.Ready)
			restarted = restarted || (cs.Name == "http" && cs.RestartCount >= 1)
		}
		return ready && restarted, nil
	})
	for _, cs := range getPod(t, c.Client, "hooked").Status.ContainerStatuses {
		if cs.Name == "exec" && cs.RestartCount != 0 {
			t.Errorf("the exec container restarted %d times: its hook succeeded", cs.RestartCount)
		}
	}
	waitFor(t, 10*time.Second, "a FailedPostStartHook event", func() (bool, error) {
		evs, err := c.Client.CoreV1().Events("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return false, err
		}
		for _, e := range evs.Items {
			if e.InvolvedObject.Name == "hooked" && e.Reason == "FailedPostStartHook" && strings.Contains(e.Message, `Container "http"`) {
				return true, nil
			}
		}
		return false, nil
	})
}

// TestHostNetworkPodHasTheNodeIP: a hostNetwork pod's IP is the node's.
func TestHostNetworkPodHasTheNodeIP(t *testing.T) {
	c := startCluster(t)
	createPod(t, c.Client, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "hostnet"},
		Spec: corev1.PodSpec{HostNetwork: true, Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "60"}}}}})
	waitFor(t, 10*time.Second, "hostnet running with an IP", func() (bool, error) {
		p := getPod(t, c.Client, "hostnet")
		return p.Status.PodIP != "" && p.Status.HostIP != "" && len(p.Status.ContainerStatuses) == 1 && p.Status.ContainerStatuses[0].State.Running != nil, nil
	})
	p := getPod(t, c.Client, "hostnet")
	if p.Status.PodIP != p.Status.HostIP || len(p.Status.PodIPs) != 1 || p.Status.PodIPs[0].IP != p.Status.HostIP {
		t.Fatalf("hostNetwork pod: podIP %s podIPs %v, want the node's %s", p.Status.PodIP, p.Status.PodIPs, p.Status.HostIP)
	}
}
