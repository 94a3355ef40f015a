package cri

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/headway/headway/internal/agent/network"
	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

func TestResources(t *testing.T) {
	q := resource.MustParse
	for _, tc := range []struct {
		name            string
		requests, limit corev1.ResourceList
		shares, quota   int64
		memory          int64
	}{
		{name: "nothing asked: the minimum shares, no quota", shares: 2},
		{name: "cpu request", requests: corev1.ResourceList{corev1.ResourceCPU: q("500m")}, shares: 512},
		{name: "whole cpus", requests: corev1.ResourceList{corev1.ResourceCPU: q("2")}, shares: 2048},
		{name: "a limit alone sets the shares too", limit: corev1.ResourceList{corev1.ResourceCPU: q("250m")}, shares: 256, quota: 25000},
		{name: "request and limit", requests: corev1.ResourceList{corev1.ResourceCPU: q("100m")},
			limit: corev1.ResourceList{corev1.ResourceCPU: q("2")}, shares: 102, quota: 200000},
		{name: "tiny: the minimum shares and quota", requests: corev1.ResourceList{corev1.ResourceCPU: q("1m")},
			limit: corev1.ResourceList{corev1.ResourceCPU: q("1m")}, shares: 2, quota: 1000},
		{name: "memory limit", limit: corev1.ResourceList{corev1.ResourceMemory: q("64Mi")}, shares: 2, memory: 64 << 20},
		{name: "memory request only: no limit", requests: corev1.ResourceList{corev1.ResourceMemory: q("1Gi")}, shares: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := resources(&corev1.Container{Resources: corev1.ResourceRequirements{Requests: tc.requests, Limits: tc.limit}})
			if got.CpuShares != tc.shares || got.CpuQuota != tc.quota || got.CpuPeriod != 100000 || got.MemoryLimitInBytes != tc.memory {
				t.Errorf("got shares %d, quota %d/%d, memory %d; want shares %d, quota %d/100000, memory %d",
					got.CpuShares, got.CpuQuota, got.CpuPeriod, got.MemoryLimitInBytes, tc.shares, tc.quota, tc.memory)
			}
		})
	}
}

func TestSecurityContext(t *testing.T) {
	yes, no := true, false
	uid, gid := int64(1000), int64(2000)
	unmasked := corev1.UnmaskedProcMount
	localhost := "profiles/strict.json"
	r := &Runtime{}
	for _, tc := range []struct {
		name  string
		pod   *corev1.PodSecurityContext
		sc    *corev1.SecurityContext
		share bool
		check func(t *testing.T, got *runtimeapi.LinuxContainerSecurityContext)
	}{
		{name: "defaults: RuntimeDefault seccomp, masked /proc", check: func(t *testing.T, got *runtimeapi.LinuxContainerSecurityContext) {
			if got.Seccomp.GetProfileType() != runtimeapi.SecurityProfile_RuntimeDefault {
				t.Errorf("seccomp %v", got.Seccomp)
			}
			if got.Privileged || got.Capabilities != nil || got.ReadonlyRootfs || got.RunAsUser != nil {
				t.Errorf("unasked settings: %+v", got)
			}
			if !slices.Equal(got.MaskedPaths, defaultMaskedPaths) || !slices.Equal(got.ReadonlyPaths, defaultReadonlyPaths) {
				t.Errorf("masked %v, read-only %v", got.MaskedPaths, got.ReadonlyPaths)
			}
			if ns := got.NamespaceOptions; ns.GetNetwork() != runtimeapi.NamespaceMode_POD || ns.GetPid() != runtimeapi.NamespaceMode_CONTAINER ||
				ns.GetIpc() != runtimeapi.NamespaceMode_POD {
				t.Errorf("namespaces %v", ns)
			}
		}},
		{name: "privileged unmasks and unconfines", sc: &corev1.SecurityContext{Privileged: &yes,
			SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			check: func(t *testing.T, got *runtimeapi.LinuxContainerSecurityContext) {
				if !got.Privileged || got.MaskedPaths != nil || got.ReadonlyPaths != nil ||
					got.Seccomp.GetProfileType() != runtimeapi.SecurityProfile_Unconfined {
					t.Errorf("privileged: %+v", got)
				}
			}},
		{name: "privileged false is not privileged", sc: &corev1.SecurityContext{Privileged: &no},
			check: func(t *testing.T, got *runtimeapi.LinuxContainerSecurityContext) {
				if got.Privileged || len(got.MaskedPaths) == 0 {
					t.Errorf("privileged: false gave %+v", got)
				}
			}},
		{name: "capabilities", sc: &corev1.SecurityContext{Capabilities: &corev1.Capabilities{
			Add: []corev1.Capability{"NET_ADMIN", "SYS_TIME"}, Drop: []corev1.Capability{"ALL"}}},
			check: func(t *testing.T, got *runtimeapi.LinuxContainerSecurityContext) {
				if !slices.Equal(got.Capabilities.GetAddCapabilities(), []string{"NET_ADMIN", "SYS_TIME"}) ||
					!slices.Equal(got.Capabilities.GetDropCapabilities(), []string{"ALL"}) {
					t.Errorf("capabilities %v", got.Capabilities)
				}
			}},
		{name: "the pod's seccomp profile", pod: &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}},
			check: func(t *testing.T, got *runtimeapi.LinuxContainerSecurityContext) {
				if got.Seccomp.GetProfileType() != runtimeapi.SecurityProfile_Unconfined {
					t.Errorf("seccomp %v", got.Seccomp)
				}
			}},
		{name: "the container's seccomp profile wins",
			pod: &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeUnconfined}},
			sc:  &corev1.SecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeLocalhost, LocalhostProfile: &localhost}},
			check: func(t *testing.T, got *runtimeapi.LinuxContainerSecurityContext) {
				if got.Seccomp.GetProfileType() != runtimeapi.SecurityProfile_Localhost || got.Seccomp.GetLocalhostRef() != localhost {
					t.Errorf("seccomp %v", got.Seccomp)
				}
			}},
		{name: "unmasked /proc", sc: &corev1.SecurityContext{ProcMount: &unmasked},
			check: func(t *testing.T, got *runtimeapi.LinuxContainerSecurityContext) {
				if got.MaskedPaths == nil || len(got.MaskedPaths) != 0 || got.ReadonlyPaths == nil || len(got.ReadonlyPaths) != 0 {
					t.Errorf("masked %v, read-only %v; want empty lists (not nil: nil means the runtime's defaults)", got.MaskedPaths, got.ReadonlyPaths)
				}
			}},
		{name: "read-only root, no privilege escalation", sc: &corev1.SecurityContext{ReadOnlyRootFilesystem: &yes, AllowPrivilegeEscalation: &no},
			check: func(t *testing.T, got *runtimeapi.LinuxContainerSecurityContext) {
				if !got.ReadonlyRootfs || !got.NoNewPrivs {
					t.Errorf("read-only %v, no new privileges %v", got.ReadonlyRootfs, got.NoNewPrivs)
				}
			}},
		{name: "groups and a shared process namespace", share: true,
			pod: &corev1.PodSecurityContext{SupplementalGroups: []int64{5, 6}, FSGroup: &gid},
			check: func(t *testing.T, got *runtimeapi.LinuxContainerSecurityContext) {
				if !slices.Equal(got.SupplementalGroups, []int64{5, 6, gid}) || got.NamespaceOptions.GetPid() != runtimeapi.NamespaceMode_POD {
					t.Errorf("groups %v, pid namespace %v", got.SupplementalGroups, got.NamespaceOptions.GetPid())
				}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := &corev1.Pod{Spec: corev1.PodSpec{SecurityContext: tc.pod, ShareProcessNamespace: &tc.share}}
			spec := &corev1.Container{Name: "c", SecurityContext: tc.sc}
			tc.check(t, r.securityContext(&hwruntime.ContainerSpec{Name: "c", Pod: pod, Container: spec}, spec))
		})
	}
	t.Run("user and group", func(t *testing.T) {
		spec := &corev1.Container{Name: "c"}
		got := r.securityContext(&hwruntime.ContainerSpec{Name: "c", UID: &uid, GID: &gid}, spec)
		if got.RunAsUser.GetValue() != uid || got.RunAsGroup.GetValue() != gid {
			t.Errorf("runAs %v:%v", got.RunAsUser, got.RunAsGroup)
		}
	})
}

// TestPodDNS: the sandbox gets the pod's DNS configuration whole, the
// values network.ResolvConf renders for the process runtime.
func TestPodDNS(t *testing.T) {
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop"}}
	settings := network.DNSSettings{ClusterDNS: netip.MustParseAddr("198.19.0.10"), ClusterDomain: "cluster.local"}
	d := network.PodDNS(pod, settings)
	if !slices.Equal(d.Servers, []string{"198.19.0.10"}) || !slices.Contains(d.Searches, "shop.svc.cluster.local") || !slices.Contains(d.Options, "ndots:5") {
		t.Errorf("servers %q, searches %q, options %q", d.Servers, d.Searches, d.Options)
	}
	want := "nameserver 198.19.0.10\nsearch " + strings.Join(d.Searches, " ") + "\noptions ndots:5\n"
	if got := string(network.ResolvConf(pod, settings)); got != want {
		t.Errorf("resolv.conf %q, want %q", got, want)
	}
	r := &Runtime{cfg: Config{DNS: settings}}
	c := r.sandboxConfig(pod, &hwruntime.Sandbox{}).DnsConfig
	if !slices.Equal(c.Servers, d.Servers) || !slices.Equal(c.Searches, d.Searches) || !slices.Equal(c.Options, d.Options) {
		t.Errorf("sandbox DNS config %v, want %+v", c, d)
	}
}

func TestSandboxConfig(t *testing.T) {
	r := &Runtime{cfg: Config{NodeName: "node-1",
		DNS: network.DNSSettings{ClusterDNS: netip.MustParseAddr("198.19.0.10"), ClusterDomain: "cluster.local"}}}
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "shop", UID: "u-1", Labels: map[string]string{"app": "web"},
			Annotations: map[string]string{"note": "x"}},
		Spec: corev1.PodSpec{Hostname: "web-0", Subdomain: "web", Containers: []corev1.Container{{Name: "c", Ports: []corev1.ContainerPort{
			{ContainerPort: 80},
			{ContainerPort: 53, HostPort: 5353, Protocol: corev1.ProtocolUDP, HostIP: "127.0.0.1"},
		}}}},
	}
	sb := &hwruntime.Sandbox{UID: "u-1", LogDir: "/logs/shop_web-0_u-1"}
	got := r.sandboxConfig(pod, sb)
	if m := got.Metadata; m.Name != "web-0" || m.Namespace != "shop" || m.Uid != "u-1" {
		t.Errorf("metadata %v", m)
	}
	if got.Hostname != "web-0" || got.LogDirectory != sb.LogDir || got.Linux.CgroupParent != "/headway/podu-1" {
		t.Errorf("hostname %q, log dir %q, cgroup %q", got.Hostname, got.LogDirectory, got.Linux.CgroupParent)
	}
	for k, v := range map[string]string{"app": "web", labelPodName: "web-0", labelPodNamespace: "shop", labelPodUID: "u-1", labelManaged: "node-1"} {
		if got.Labels[k] != v {
			t.Errorf("label %s=%q, want %q", k, got.Labels[k], v)
		}
	}
	if got.Annotations["note"] != "x" {
		t.Errorf("annotations %v", got.Annotations)
	}
	if d := got.DnsConfig; d == nil || !slices.Equal(d.Servers, []string{"198.19.0.10"}) || !slices.Contains(d.Searches, "shop.svc.cluster.local") {
		t.Errorf("DNS config %v", got.DnsConfig)
	}
	if len(got.PortMappings) != 1 || got.PortMappings[0].HostPort != 5353 || got.PortMappings[0].ContainerPort != 53 ||
		got.PortMappings[0].Protocol != runtimeapi.Protocol_UDP || got.PortMappings[0].HostIp != "127.0.0.1" {
		t.Errorf("port mappings %v", got.PortMappings)
	}
	if ns := got.Linux.SecurityContext.NamespaceOptions; ns.Network != runtimeapi.NamespaceMode_POD {
		t.Errorf("network namespace %v", ns.Network)
	}

	pod.Spec.HostNetwork = true
	got = r.sandboxConfig(pod, sb)
	if got.DnsConfig != nil || got.Linux.SecurityContext.NamespaceOptions.Network != runtimeapi.NamespaceMode_NODE {
		t.Errorf("host network: DNS %v, namespace %v", got.DnsConfig, got.Linux.SecurityContext.NamespaceOptions.Network)
	}
}

func TestContainerConfig(t *testing.T) {
	r := &Runtime{cfg: Config{NodeName: "node-1"}}
	dir := t.TempDir()
	sb := &hwruntime.Sandbox{UID: "u-1", Name: "web-0", Namespace: "shop", Dir: filepath.Join(dir, "pods", "u-1"),
		LogDir: filepath.Join(dir, "logs", "shop_web-0_u-1"), HostsFile: filepath.Join(dir, "pods", "u-1", "etc-hosts")}
	pod := &corev1.Pod{Spec: corev1.PodSpec{}}
	spec := &corev1.Container{Name: "c", Image: "busybox:1.28", Command: []string{"sh", "-c"}, Args: []string{"echo hi"},
		TerminationMessagePath: corev1.TerminationMessagePathDefault}
	c := &hwruntime.ContainerSpec{Name: "c", Image: "busybox:1.28", ImageRef: "sha256:abc", Command: spec.Command, Args: spec.Args,
		Env: []string{"A=1", "B=x=y", "EMPTY="}, WorkingDir: "/w", Attempt: 2, Pod: pod, Container: spec,
		LogPath: filepath.Join(sb.LogDir, "c", "2.log"), Mounts: []hwruntime.Mount{{Source: "/srv/data", Target: "/data", ReadOnly: true}}}
	got, err := r.containerConfig(sb, c)
	if err != nil {
		t.Fatal(err)
	}
	if got.LogPath != "c/2.log" {
		t.Errorf("log path %q; want it relative to the sandbox's log directory", got.LogPath)
	}
	if got.Image.Image != "sha256:abc" || got.Image.UserSpecifiedImage != "busybox:1.28" {
		t.Errorf("image %v", got.Image)
	}
	if !slices.Equal(got.Command, []string{"sh", "-c"}) || !slices.Equal(got.Args, []string{"echo hi"}) || got.WorkingDir != "/w" {
		t.Errorf("command %q, args %q, dir %q", got.Command, got.Args, got.WorkingDir)
	}
	env := map[string]string{}
	for _, kv := range got.Envs {
		env[kv.Key] = string(kv.Value)
	}
	if v, ok := env["EMPTY"]; env["A"] != "1" || env["B"] != "x=y" || !ok || v != "" {
		t.Errorf("env %v", env)
	}
	if got.Metadata.Attempt != 2 || got.Annotations["io.kubernetes.container.restartCount"] != "2" {
		t.Errorf("attempt %d, annotations %v", got.Metadata.Attempt, got.Annotations)
	}
	if got.Labels[labelManaged] != "node-1" || got.Labels[labelContainerName] != "c" || got.Labels[labelPodUID] != "u-1" {
		t.Errorf("labels %v", got.Labels)
	}
	mounts := map[string]*runtimeapi.Mount{}
	for _, m := range got.Mounts {
		mounts[m.ContainerPath] = m
	}
	if m := mounts["/data"]; m == nil || m.HostPath != "/srv/data" || !m.Readonly {
		t.Errorf("/data mount %v", m)
	}
	if m := mounts["/etc/hosts"]; m == nil || m.HostPath != sb.HostsFile {
		t.Errorf("/etc/hosts mount %v; want the pod's hosts file", m)
	}
	m := mounts[corev1.TerminationMessagePathDefault]
	if m == nil {
		t.Fatalf("no termination message mount in %v", got.Mounts)
	}
	if st, err := os.Stat(m.HostPath); err != nil || st.Mode().Perm() != 0o666 || filepath.Base(m.HostPath) != "termination-log-2" {
		t.Errorf("termination message file %s: %v %v", m.HostPath, st, err)
	}
	if st, err := os.Stat(filepath.Join(sb.LogDir, "c")); err != nil || !st.IsDir() {
		t.Errorf("the container's log directory was not made: %v", err)
	}
	if got.Linux.GetResources().GetCpuShares() != 2 || got.Linux.GetSecurityContext().GetSeccomp() == nil {
		t.Errorf("linux config %v", got.Linux)
	}

	t.Run("a log path outside the log directory", func(t *testing.T) {
		c := *c
		c.LogPath = filepath.Join(dir, "elsewhere", "x.log")
		got, err := r.containerConfig(sb, &c)
		if err != nil {
			t.Fatal(err)
		}
		if got.LogPath != "c/2.log" {
			t.Errorf("log path %q", got.LogPath)
		}
	})
	t.Run("the image's entrypoint", func(t *testing.T) {
		c := *c
		c.Command, c.Args, c.ImageRef = nil, nil, ""
		c.Container = &corev1.Container{Name: "c", Image: "busybox:1.28"}
		got, err := r.containerConfig(sb, &c)
		if err != nil {
			t.Fatal(err)
		}
		if got.Command != nil || got.Args != nil || got.Image.Image != "busybox:1.28" {
			t.Errorf("command %q, args %q, image %v", got.Command, got.Args, got.Image)
		}
		if _, ok := mountsOf(got)[corev1.TerminationMessagePathDefault]; ok {
			t.Error("a termination message mount without a terminationMessagePath")
		}
	})
	t.Run("the pod's own /etc/hosts mount wins", func(t *testing.T) {
		c := *c
		c.Mounts = []hwruntime.Mount{{Source: "/srv/hosts", Target: "/etc/hosts"}}
		got, err := r.containerConfig(sb, &c)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, m := range got.Mounts {
			if m.ContainerPath == "/etc/hosts" {
				n++
				if m.HostPath != "/srv/hosts" {
					t.Errorf("/etc/hosts from %s", m.HostPath)
				}
			}
		}
		if n != 1 {
			t.Errorf("%d mounts at /etc/hosts", n)
		}
	})
}

func mountsOf(c *runtimeapi.ContainerConfig) map[string]*runtimeapi.Mount {
	out := map[string]*runtimeapi.Mount{}
	for _, m := range c.Mounts {
		out[m.ContainerPath] = m
	}
	return out
}
