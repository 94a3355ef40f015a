package process

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
	"github.com/headway/headway/internal/agent/runtime/process/containerinit"
)

// defaultCaps is the default set as /proc/<pid>/status prints it: CHOWN,
// DAC_OVERRIDE, FOWNER, FSETID, KILL, SETGID, SETUID, SETPCAP,
// NET_BIND_SERVICE, NET_RAW, SYS_CHROOT, MKNOD, AUDIT_WRITE, SETFCAP.
const defaultCaps = "00000000a80425fb"

func TestConfinementOf(t *testing.T) {
	yes, no := true, false
	uid, gid, fsGroup := int64(1001), int64(1002), int64(2000)
	capsOf := func(names ...string) []int {
		var out []int
		for n := 0; n <= 40; n++ {
			for _, name := range names {
				if c, _ := containerinit.CapabilityNumber(name); c == n {
					out = append(out, n)
				}
			}
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		psc     *corev1.PodSecurityContext
		sc      *corev1.SecurityContext
		hostPID bool
		want    confinement
		wantErr string
	}{
		{name: "defaults", want: confinement{Confinement: containerinit.Confinement{
			Caps: capsOf(containerinit.DefaultCapabilities...), NoNewPrivs: true, Seccomp: true}}},
		{name: "add and drop", sc: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
			Add: []corev1.Capability{"NET_ADMIN", "CAP_SYS_TIME"}, Drop: []corev1.Capability{"NET_RAW", "mknod"}}},
			want: confinement{Confinement: containerinit.Confinement{Caps: capsOf("CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER",
				"SETGID", "SETUID", "SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE", "NET_ADMIN", "SYS_TIME"),
				NoNewPrivs: true, Seccomp: true}}},
		{name: "drop ALL, add one", sc: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
			Add: []corev1.Capability{"NET_BIND_SERVICE"}, Drop: []corev1.Capability{"ALL"}}, AllowPrivilegeEscalation: &yes},
			want: confinement{Confinement: containerinit.Confinement{Caps: capsOf("NET_BIND_SERVICE"), Seccomp: true}}},
		{name: "escalation explicitly refused, unconfined pod", psc: &corev1.PodSecurityContext{
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}},
			sc:   &corev1.SecurityContext{AllowPrivilegeEscalation: &no},
			want: confinement{Confinement: containerinit.Confinement{Caps: capsOf(containerinit.DefaultCapabilities...), NoNewPrivs: true}}},
		{name: "container profile wins", psc: &corev1.PodSecurityContext{
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}},
			sc: &corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			want: confinement{Confinement: containerinit.Confinement{Caps: capsOf(containerinit.DefaultCapabilities...),
				NoNewPrivs: true, Seccomp: true}}},
		{name: "privileged, host PID", sc: &corev1.SecurityContext{Privileged: &yes}, hostPID: true,
			want: confinement{hostPID: true, Confinement: containerinit.Confinement{Privileged: true, Caps: capsOf(keysOf(containerinit.Capabilities)...)}}},
		{name: "users and groups", psc: &corev1.PodSecurityContext{FSGroup: &fsGroup, SupplementalGroups: []int64{3000, 2000}},
			want: confinement{cred: containerinit.Cred{UID: 1001, GID: 1002, Groups: []uint32{2000, 3000}},
				Confinement: containerinit.Confinement{Caps: capsOf(containerinit.DefaultCapabilities...), NoNewPrivs: true, Seccomp: true}}},
		{name: "unknown capability", sc: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"FLY"}}},
			wantErr: `unknown capability "FLY"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := testPod("p")
			pod.Spec.SecurityContext, pod.Spec.HostPID = tc.psc, tc.hostPID
			spec := &hwruntime.ContainerSpec{Name: "c", Pod: pod, Container: &corev1.Container{Name: "c", SecurityContext: tc.sc}}
			if tc.name == "users and groups" {
				spec.UID, spec.GID = &uid, &gid
			}
			got, err := confinementOf(spec)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.Contains(err.Error(), `container "c"`) {
					t.Fatalf("error %v, want one naming the container and %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) {
				t.Fatalf("confinement\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func keysOf(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestSeccompFilterAssembles: the filter builds on this architecture for
// the default set and for a set with every capability, as the kernel's
// sock_filter array, once per capability set.
func TestSeccompFilterAssembles(t *testing.T) {
	for _, caps := range [][]int{{unix.CAP_CHOWN}, {unix.CAP_SYS_ADMIN, unix.CAP_SYS_PTRACE}} {
		c, err := withSeccomp(containerinit.Confinement{Caps: caps, Seccomp: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Filter) < 8*10 || len(c.Filter)%8 != 0 {
			t.Fatalf("filter for %v: %d bytes, want whole sock_filter instructions", caps, len(c.Filter))
		}
		again, _ := withSeccomp(containerinit.Confinement{Caps: caps, Seccomp: true})
		if &again.Filter[0] != &c.Filter[0] {
			t.Errorf("filter for %v assembled twice", caps)
		}
	}
	if c, _ := withSeccomp(containerinit.Confinement{Caps: []int{0}}); c.Filter != nil {
		t.Errorf("a container without seccomp got a filter")
	}
}

// TestCapabilityNumbers: the capability table containerinit keeps
// (numbers, so that it imports nothing beyond the standard library) is the
// kernel's.
func TestCapabilityNumbers(t *testing.T) {
	want := map[string]int{"CHOWN": unix.CAP_CHOWN, "NET_BIND_SERVICE": unix.CAP_NET_BIND_SERVICE, "NET_ADMIN": unix.CAP_NET_ADMIN,
		"SYS_ADMIN": unix.CAP_SYS_ADMIN, "SYS_PTRACE": unix.CAP_SYS_PTRACE, "MKNOD": unix.CAP_MKNOD, "AUDIT_WRITE": unix.CAP_AUDIT_WRITE,
		"SETFCAP": unix.CAP_SETFCAP, "SYSLOG": unix.CAP_SYSLOG, "AUDIT_READ": unix.CAP_AUDIT_READ, "PERFMON": unix.CAP_PERFMON,
		"BPF": unix.CAP_BPF, "CHECKPOINT_RESTORE": unix.CAP_CHECKPOINT_RESTORE, "SYS_RESOURCE": unix.CAP_SYS_RESOURCE,
		"KILL": unix.CAP_KILL, "SETUID": unix.CAP_SETUID, "SETGID": unix.CAP_SETGID, "WAKE_ALARM": unix.CAP_WAKE_ALARM}
	for name, n := range want {
		if got := containerinit.Capabilities[name]; got != n {
			t.Errorf("%s: %d, want %d", name, got, n)
		}
	}
	if len(containerinit.Capabilities) != unix.CAP_LAST_CAP+1 {
		t.Errorf("%d capabilities, the kernel headers have %d", len(containerinit.Capabilities), unix.CAP_LAST_CAP+1)
	}
}

// runPod starts one container of pod in r running script with sh and
// returns its exit and output. It never leaves the sandbox behind.
func runPod(t *testing.T, r *Runtime, pod *corev1.Pod, ctr *corev1.Container, script string, mounts ...hwruntime.Mount) (hwruntime.Exit, string) {
	t.Helper()
	sb, err := r.RunSandbox(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.RemoveSandbox(context.Background(), sb.UID, true) })
	if ctr == nil {
		ctr = &corev1.Container{Name: "c"}
	}
	spec := &hwruntime.ContainerSpec{Name: ctr.Name, Image: ctr.Image, Argv: []string{"sh", "-c", script},
		Env: []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}, LogPath: filepath.Join(sb.Dir, "logs", ctr.Name, "0.log"),
		Pod: pod, Container: ctr, Mounts: mounts}
	if psc := pod.Spec.SecurityContext; psc != nil {
		spec.UID, spec.GID = psc.RunAsUser, psc.RunAsGroup
	}
	p := startOrFail(t, r, sb, spec)
	e := waitExitWithin(t, p, 60*time.Second)
	return e, string(logText(spec.LogPath))
}

func waitExitWithin(t *testing.T, p hwruntime.Process, limit time.Duration) hwruntime.Exit {
	t.Helper()
	select {
	case <-p.Done():
		return p.Exit()
	case <-time.After(limit):
		t.Fatalf("the container did not exit within %s", limit)
	}
	return hwruntime.Exit{}
}

// hostProcess starts a process on the host (outside any pod) for a pod to
// try to reach, ended when the test ends.
func hostProcess(t *testing.T) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	return cmd
}

func statusField(out, name string) string {
	m := regexp.MustCompile(`(?m)^` + name + `:\s+(\S+)`).FindStringSubmatch(out)
	if m == nil {
		return ""
	}
	return m[1]
}

// TestDefaultPodCannotEscape reproduces the probe of issue 17 from a
// default pod: it sees only its own processes, cannot kill a host
// process, cannot read the admin token, cannot enter another namespace,
// and has the default capabilities, no_new_privs and seccomp.
func TestDefaultPodCannotEscape(t *testing.T) {
	r := newTestRuntime(t)
	host := hostProcess(t)
	token := filepath.Join(r.cfg.DataDir, "pki", "admin.token")
	os.MkdirAll(filepath.Dir(token), 0o700)
	if err := os.WriteFile(token, []byte("secret-admin-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`echo "ps:"; ps -e -o pid=,comm=; echo "end ps"
kill -9 %d 2>/dev/null && echo kill-worked || echo kill-refused
cat %s 2>/dev/null && echo read-worked || echo read-refused
ls %s 2>/dev/null | grep -q . && echo datadir-listed || echo datadir-empty
nsenter -t 1 -n true 2>/dev/null && echo nsenter-worked || echo nsenter-refused
unshare -U true 2>/dev/null && echo userns-worked || echo userns-refused
mount -t tmpfs none /mnt 2>/dev/null && echo mount-worked || echo mount-refused
ls /dev; echo "end dev"
cat /proc/kcore 2>/dev/null | head -c 1 | grep -q . && echo kcore-read || echo kcore-masked
echo 1 > /proc/sysrq-trigger 2>/dev/null && echo sysrq-written || echo sysrq-readonly
grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status`, host.Process.Pid, token, r.cfg.DataDir)
	e, out := runPod(t, r, testPod("escape"), nil, script)
	if e.Code != 0 {
		t.Fatalf("exit %+v:\n%s", e, out)
	}
	ps := out[strings.Index(out, "ps:\n")+4 : strings.Index(out, "end ps")]
	for _, line := range strings.Split(strings.TrimSpace(ps), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || !(f[1] == containerinit.InitName || f[1] == "sh" || f[1] == "ps") {
			t.Errorf("ps in the pod lists %q, want only the pod's init, sh and ps:\n%s", line, ps)
		}
		if f[0] == strconv.Itoa(host.Process.Pid) {
			t.Errorf("ps in the pod lists the host process %d", host.Process.Pid)
		}
	}
	if !strings.Contains(ps, " 1 "+containerinit.InitName) {
		t.Errorf("PID 1 in the pod is not its init:\n%s", ps)
	}
	for _, want := range []string{"kill-refused", "read-refused", "datadir-empty", "nsenter-refused", "userns-refused",
		"mount-refused", "kcore-masked", "sysrq-readonly"} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, "secret-admin-token") {
		t.Errorf("the pod read the admin token:\n%s", out)
	}
	if err := host.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the host process is gone: %v", err)
	}
	dev := out[strings.Index(out, "end dev")-200:]
	for _, d := range []string{"vda", "sda", "nvme0n1", "mem", "kmsg"} {
		if regexp.MustCompile(`(?m)^` + d + `$`).MatchString(dev) {
			t.Errorf("the pod's /dev has the host's %s", d)
		}
	}
	for field, want := range map[string]string{"CapBnd": defaultCaps, "CapEff": defaultCaps, "CapPrm": defaultCaps,
		"CapInh": "0000000000000000", "CapAmb": "0000000000000000", "NoNewPrivs": "1", "Seccomp": "2"} {
		if got := statusField(out, field); got != want {
			t.Errorf("%s = %q, want %s\n%s", field, got, want, out)
		}
	}
}

// TestCapabilitiesFollowTheSpec: add and drop change the set; privileged
// keeps every capability the agent has, without seccomp or no_new_privs.
func TestCapabilitiesFollowTheSpec(t *testing.T) {
	r := newTestRuntime(t)
	yes := true
	own, _ := os.ReadFile("/proc/self/status")
	for _, tc := range []struct {
		name string
		sc   *corev1.SecurityContext
		want map[string]string
	}{
		// + NET_ADMIN (12), SYS_TIME (25); - NET_RAW (13), MKNOD (27).
		{"add-drop", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN", "SYS_TIME"},
			Drop: []corev1.Capability{"NET_RAW", "MKNOD"}}},
			map[string]string{"CapEff": "00000000a20415fb", "CapBnd": "00000000a20415fb", "Seccomp": "2"}},
		{"drop-all", &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_BIND_SERVICE"},
			Drop: []corev1.Capability{"ALL"}}, AllowPrivilegeEscalation: &yes},
			map[string]string{"CapEff": "0000000000000400", "NoNewPrivs": "0"}},
		{"privileged", &corev1.SecurityContext{Privileged: &yes},
			map[string]string{"CapEff": statusField(string(own), "CapEff"), "CapBnd": statusField(string(own), "CapBnd"),
				"NoNewPrivs": "0", "Seccomp": "0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, out := runPod(t, r, testPod(tc.name), &corev1.Container{Name: "c", SecurityContext: tc.sc},
				`grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status`)
			if e.Code != 0 {
				t.Fatalf("exit %+v:\n%s", e, out)
			}
			for field, want := range tc.want {
				if got := statusField(out, field); got != want {
					t.Errorf("%s = %q, want %s\n%s", field, got, want, out)
				}
			}
		})
	}
}

// TestExecIsConfinedToo: a command exec'd into a running container is in
// its PID namespace, with its capabilities and without the data dir. ps
// runs alone (its output sorted afterwards): in a pipeline it could see the
// next stage forked but not yet sort.
func TestExecIsConfinedToo(t *testing.T) {
	r := newTestRuntime(t)
	sb, err := r.RunSandbox(context.Background(), testPod("exec-conf"))
	if err != nil {
		t.Fatal(err)
	}
	defer r.RemoveSandbox(context.Background(), sb.UID, true)
	uid := int64(1001)
	spec := &hwruntime.ContainerSpec{Name: "c", Argv: []string{"sleep", "60"}, UID: &uid,
		LogPath: filepath.Join(sb.Dir, "logs", "c", "0.log"), Pod: testPod("exec-conf"), Container: &corev1.Container{Name: "c"}}
	p := startOrFail(t, r, sb, spec)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := r.Exec(ctx, p, spec, []string{"sh", "-c", "id -u; f=$(mktemp); ps -e -o comm= >$f; sort $f | tr '\\n' ' '; rm -f $f; echo; ls " + r.cfg.DataDir + " | wc -l; grep -E '^(CapBnd|Seccomp:)' /proc/self/status"})
	if err != nil {
		t.Fatal(err)
	}
	out := string(res.Output)
	for _, want := range []string{"1001\n", containerinit.InitName + " ps sh sleep \n", "\n0\n", "CapBnd:\t" + defaultCaps, "Seccomp:\t2"} {
		if !strings.Contains(out, want) {
			t.Errorf("exec output lacks %q:\n%s", want, out)
		}
	}
}

// TestMemoryLimitOOMKills: a container allocating past limits.memory is
// ended by the kernel and its exit says OOMKilled with code 137; the CPU
// limit is the cgroup's quota; the cgroups go with the pod.
func TestMemoryLimitOOMKills(t *testing.T) {
	r := newTestRuntime(t)
	if !r.EnforcesLimits() {
		t.Skip("skipping: this host gives Headway no memory cgroup controller")
	}
	ctr := &corev1.Container{Name: "hog", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{
		corev1.ResourceMemory: resource.MustParse("32Mi"), corev1.ResourceCPU: resource.MustParse("250m")}}}
	pod := testPod("hog")
	e, out := runPod(t, r, pod, ctr, "head -c 200m /dev/zero | tail")
	if e.Reason != "OOMKilled" || e.Code != 137 {
		t.Fatalf("exit %+v, want OOMKilled with code 137:\n%s", e, out)
	}
	var quota string
	if d := r.cgroups.v1["cpu"]; d != "" {
		b, _ := os.ReadFile(filepath.Join(r.cgroups.podDir(d, string(pod.UID)), "hog", "cpu.cfs_quota_us"))
		quota = strings.TrimSpace(string(b))
	} else if r.cgroups.v2limits {
		b, _ := os.ReadFile(filepath.Join(r.cgroups.podDir(r.cgroups.unified, string(pod.UID)), "hog", "cpu.max"))
		quota, _, _ = strings.Cut(strings.TrimSpace(string(b)), " ")
	}
	if quota != "25000" {
		t.Errorf("the container's CPU quota is %q µs per 100 ms, want 25000 (250m)", quota)
	}
	if err := r.RemoveSandbox(context.Background(), string(pod.UID), true); err != nil {
		t.Fatal(err)
	}
	for _, root := range r.cgroups.hierarchies() {
		if _, err := os.Stat(r.cgroups.podDir(root, string(pod.UID))); !os.IsNotExist(err) {
			t.Errorf("the pod's cgroup in %s is left: %v", root, err)
		}
	}
}

// TestRunAsUserBusybox: a busybox-image pod with runAsUser 1001 starts
// (the applets are readable by any user), runs as 1001 with the fsGroup
// and supplemental groups, and can write its fsGroup-owned volume.
func TestRunAsUserBusybox(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("skipping: busybox is not installed")
	}
	r := newTestRuntime(t)
	uid, fsGroup := int64(1001), int64(2000)
	pod := testPod("nonroot")
	pod.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: &uid, FSGroup: &fsGroup, SupplementalGroups: []int64{3000}}
	sb, err := r.RunSandbox(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	vol := filepath.Join(sb.Dir, "volumes", "data")
	if err := os.MkdirAll(vol, 0o755); err != nil {
		t.Fatal(err)
	}
	e, out := runPod(t, r, pod, &corev1.Container{Name: "c", Image: "busybox:1.28"},
		"id -u; id -G; readlink -f $(command -v wget); touch /data/x && echo wrote; ls -ln /data/x",
		hwruntime.Mount{Source: vol, Target: "/data"})
	if e.Code != 0 {
		t.Fatalf("exit %+v:\n%s", e, out)
	}
	for _, want := range []string{"1001\n", "0 2000 3000\n", "wrote\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`\s1001\s+2000\s`).MatchString(out) {
		t.Errorf("the new file is not owned by 1001 and the fsGroup 2000 (set-group-ID directory):\n%s", out)
	}
	if !strings.Contains(out, "busybox") {
		t.Errorf("wget is not busybox's:\n%s", out)
	}
}

// TestHostNamespacesOnlyWhenAsked: hostPID shows the host's processes,
// hostNetwork pods get the node's address.
func TestHostNamespacesOnlyWhenAsked(t *testing.T) {
	r := newTestRuntime(t)
	host := hostProcess(t)
	pod := testPod("hostpid")
	pod.Spec.HostPID = true
	e, out := runPod(t, r, pod, nil, fmt.Sprintf("kill -0 %d && echo sees-host", host.Process.Pid))
	if e.Code != 0 || !strings.Contains(out, "sees-host") {
		t.Errorf("a hostPID pod does not see host process %d: %+v\n%s", host.Process.Pid, e, out)
	}
	r.cfg.HostIP = r.cfg.Network.Gateway()
	hn := testPod("hostnet")
	hn.Spec.HostNetwork = true
	sb, err := r.RunSandbox(context.Background(), hn)
	if err != nil {
		t.Fatal(err)
	}
	defer r.RemoveSandbox(context.Background(), sb.UID, true)
	if sb.IP != r.cfg.HostIP || sb.NetNS != "" {
		t.Errorf("hostNetwork sandbox: IP %s netns %q, want the node's %s and no namespace", sb.IP, sb.NetNS, r.cfg.HostIP)
	}
}
