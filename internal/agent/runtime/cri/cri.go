// Package cri runs pods through a Container Runtime Interface runtime
// (containerd, CRI-O) over gRPC: real OCI images, one sandbox per pod, the
// runtime's own streaming server for exec, attach and port-forward. Pod
// networks come from the agent through the headway-cni plugin (see
// agent/network), so both runtimes share one bridge and one IPAM.
package cri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/headway/headway/internal/agent/network"
	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

// Labels the runtime puts on sandboxes and containers (the kubelet's names,
// so crictl shows them as it does for a kubelet's pods), and Headway's own.
const (
	labelPodName       = "io.kubernetes.pod.name"
	labelPodNamespace  = "io.kubernetes.pod.namespace"
	labelPodUID        = "io.kubernetes.pod.uid"
	labelContainerName = "io.kubernetes.container.name"
	labelManaged       = "headway.io/node-agent"
)

// Config configures the CRI runtime.
type Config struct {
	// Endpoint is the runtime's socket (unix:///run/containerd/containerd.sock).
	Endpoint string
	// PodsDir holds one directory per pod (<data-dir>/pods): the pod's
	// /etc/hosts and volumes.
	PodsDir string
	// LogsDir holds the pods' log directories (<data-dir>/logs).
	LogsDir string
	// Network is the pod network; the headway-cni plugin asks it for
	// addresses (see Owner).
	Network *network.Network
	DNS     network.DNSSettings
	// NodeName labels sandboxes, so two agents on one containerd keep
	// apart.
	NodeName string
	// PollInterval is how often container states are read (250ms):
	// containerd 1.6 has no container events.
	PollInterval time.Duration
	// MaxStarting is how many sandboxes and containers are made at once
	// (2 per CPU when 0); the others wait their turn (see gate).
	MaxStarting int
	Log         *slog.Logger
}

// Runtime is the CRI runtime.
type Runtime struct {
	cfg     Config
	log     *slog.Logger
	conn    *grpc.ClientConn
	rs      runtimeapi.RuntimeServiceClient
	is      runtimeapi.ImageServiceClient
	name    string
	version string

	mu sync.Mutex
	// pending maps namespace/name to the UID of a pod whose sandbox is
	// being made, for the CNI plugin's question.
	pending   map[string]string
	live      map[string]*container // running containers by ID
	attempts  map[string]uint32     // sandbox attempts by pod UID
	starting  *gate
	pollWake  chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
}

// New connects to the runtime at cfg.Endpoint and waits (until ctx ends)
// for it to say it is ready to run pods.
func New(ctx context.Context, cfg Config) (*Runtime, error) {
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 250 * time.Millisecond
	}
	if cfg.MaxStarting == 0 {
		cfg.MaxStarting = 2 * goruntime.NumCPU()
	}
	target := cfg.Endpoint
	if !strings.Contains(target, "://") {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(16<<20)))
	if err != nil {
		return nil, fmt.Errorf("connecting to the container runtime at %s: %w", cfg.Endpoint, err)
	}
	r := &Runtime{cfg: cfg, log: cfg.Log, conn: conn, rs: runtimeapi.NewRuntimeServiceClient(conn),
		is: runtimeapi.NewImageServiceClient(conn), pending: map[string]string{}, live: map[string]*container{},
		attempts: map[string]uint32{}, starting: newGate(cfg.MaxStarting), pollWake: make(chan struct{}, 1), closed: make(chan struct{})}
	if err := r.waitReady(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	for _, d := range []string{cfg.PodsDir, cfg.LogsDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			conn.Close()
			return nil, err
		}
	}
	go r.poll()
	return r, nil
}

// waitReady waits for RuntimeReady and NetworkReady.
func (r *Runtime) waitReady(ctx context.Context) error {
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		v, err := r.rs.Version(cctx, &runtimeapi.VersionRequest{})
		if err == nil {
			r.name, r.version = v.RuntimeName, strings.TrimPrefix(v.RuntimeVersion, "v")
			var st *runtimeapi.StatusResponse
			st, err = r.rs.Status(cctx, &runtimeapi.StatusRequest{})
			if err == nil {
				var notReady []string
				for _, c := range st.GetStatus().GetConditions() {
					if (c.Type == runtimeapi.RuntimeReady || c.Type == runtimeapi.NetworkReady) && !c.Status {
						notReady = append(notReady, fmt.Sprintf("%s: %s %s", c.Type, c.Reason, c.Message))
					}
				}
				if len(notReady) == 0 {
					cancel()
					return nil
				}
				err = errors.New(strings.Join(notReady, "; "))
			}
		}
		cancel()
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("the container runtime at %s is not ready: %v", r.cfg.Endpoint, last)
		case <-tick.C:
		}
	}
}

// Close stops polling and closes the connection; pods keep running.
func (r *Runtime) Close() error {
	r.closeOnce.Do(func() { close(r.closed) })
	return r.conn.Close()
}

// Name implements runtime.Runtime.
func (r *Runtime) Name() string {
	if r.name == "" {
		return "cri"
	}
	return r.name
}

// RuntimeVersion implements runtime.Versioned: containerd://1.6.20.
func (r *Runtime) RuntimeVersion() string { return r.Name() + "://" + r.version }

// Check implements runtime.Runtime: with images, every container can run.
func (r *Runtime) Check(c *corev1.Container) error {
	if c.Image == "" {
		return fmt.Errorf("container %q has no image", c.Name)
	}
	return nil
}

// KeepOnStop implements runtime.Adopter: pods outlive the agent.
func (r *Runtime) KeepOnStop() bool { return true }

// Owner answers the CNI plugin: the UID of the pod whose sandbox is being
// made (or was made) under that name.
func (r *Runtime) Owner(namespace, name, uid string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if owner, ok := r.pending[namespace+"/"+name]; ok && (uid == "" || uid == owner) {
		return owner, true
	}
	if uid != "" {
		return uid, true
	}
	return "", false
}

func (r *Runtime) podDir(uid string) string { return filepath.Join(r.cfg.PodsDir, uid) }

// logDir is the pod's log directory, as the kubelet names it.
func (r *Runtime) logDir(pod *corev1.Pod) string {
	return hwruntime.PodLogDir(r.cfg.LogsDir, pod)
}

// sandboxesOf lists the sandboxes of a pod UID.
func (r *Runtime) sandboxesOf(ctx context.Context, uid string) ([]*runtimeapi.PodSandbox, error) {
	resp, err := r.rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{labelPodUID: uid, labelManaged: r.cfg.NodeName}}})
	if err != nil {
		return nil, err
	}
	return resp.Items, nil
}

// RunSandbox implements runtime.Runtime.
func (r *Runtime) RunSandbox(ctx context.Context, pod *corev1.Pod) (*hwruntime.Sandbox, error) {
	uid := string(pod.UID)
	dir := r.podDir(uid)
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return nil, err
	}
	sb := r.sandbox(pod, "")
	if err := os.MkdirAll(sb.LogDir, 0o755); err != nil {
		return nil, err
	}
	// A sandbox left from before (not ready: its network or pause process
	// died) goes; a ready one is the pod's.
	existing, err := r.sandboxesOf(ctx, uid)
	if err != nil {
		return nil, r.unavailable(err)
	}
	for _, s := range existing {
		if s.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			sb.ID = s.Id
			if err := r.fillFromStatus(ctx, sb, pod); err != nil {
				return nil, err
			}
			return sb, nil
		}
		r.removeSandboxID(ctx, s.Id)
		r.mu.Lock()
		r.attempts[uid] = max(r.attempts[uid], s.GetMetadata().GetAttempt()+1)
		r.mu.Unlock()
	}
	config := r.sandboxConfig(pod, sb)
	r.mu.Lock()
	r.pending[pod.Namespace+"/"+pod.Name] = uid
	config.Metadata.Attempt = r.attempts[uid]
	r.attempts[uid]++
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		if r.pending[pod.Namespace+"/"+pod.Name] == uid {
			delete(r.pending, pod.Namespace+"/"+pod.Name)
		}
		r.mu.Unlock()
	}()
	if err := r.starting.enter(ctx, forSandbox); err != nil {
		return nil, err
	}
	resp, err := r.rs.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: config})
	r.starting.leave()
	if err != nil {
		return nil, fmt.Errorf("RunPodSandbox: %w", r.unavailable(err))
	}
	sb.ID = resp.PodSandboxId
	if err := r.fillFromStatus(ctx, sb, pod); err != nil {
		r.removeSandboxID(context.WithoutCancel(ctx), sb.ID)
		return nil, err
	}
	r.log.Debug("sandbox ready", "pod", pod.Namespace+"/"+pod.Name, "sandbox", sb.ID, "ip", sb.IP)
	return sb, nil
}

// sandbox is the pod's sandbox with the runtime's sandbox ID id, before
// its address is known (fillFromStatus).
func (r *Runtime) sandbox(pod *corev1.Pod, id string) *hwruntime.Sandbox {
	dir := r.podDir(string(pod.UID))
	return &hwruntime.Sandbox{UID: string(pod.UID), Namespace: pod.Namespace, Name: pod.Name, ID: id,
		Hostname: network.Hostname(pod), Dir: dir, LogDir: r.logDir(pod), HostsFile: filepath.Join(dir, "etc-hosts")}
}

// fillFromStatus reads the sandbox's address and writes the pod's hosts
// file (containers get it at /etc/hosts, as the kubelet does).
func (r *Runtime) fillFromStatus(ctx context.Context, sb *hwruntime.Sandbox, pod *corev1.Pod) error {
	st, err := r.rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: sb.ID})
	if err != nil {
		return fmt.Errorf("PodSandboxStatus: %w", r.unavailable(err))
	}
	if ip := st.GetStatus().GetNetwork().GetIp(); ip != "" {
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return fmt.Errorf("sandbox %s has address %q: %w", sb.ID, ip, err)
		}
		sb.IP = a
	}
	if pod.Spec.HostNetwork {
		if h, err := os.Hostname(); err == nil {
			sb.Hostname = h
		}
	}
	if !pod.Spec.HostNetwork {
		if err := os.WriteFile(sb.HostsFile, network.Hosts(pod, sb.IP, r.cfg.DNS.ClusterDomain), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func (r *Runtime) sandboxConfig(pod *corev1.Pod, sb *hwruntime.Sandbox) *runtimeapi.PodSandboxConfig {
	labels := map[string]string{}
	for k, v := range pod.Labels {
		labels[k] = v
	}
	labels[labelPodName], labels[labelPodNamespace], labels[labelPodUID] = pod.Name, pod.Namespace, string(pod.UID)
	labels[labelManaged] = r.cfg.NodeName
	annotations := map[string]string{}
	for k, v := range pod.Annotations {
		annotations[k] = v
	}
	c := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: pod.Name, Namespace: pod.Namespace, Uid: string(pod.UID)},
		Hostname:     sb.Hostname,
		LogDirectory: sb.LogDir,
		Labels:       labels,
		Annotations:  annotations,
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			CgroupParent:    cgroupParent(string(pod.UID)),
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{NamespaceOptions: namespaceOptions(pod)},
		},
	}
	if !pod.Spec.HostNetwork {
		c.Hostname = network.Hostname(pod)
		d := network.PodDNS(pod, r.cfg.DNS)
		c.DnsConfig = &runtimeapi.DNSConfig{Servers: d.Servers, Searches: d.Searches, Options: d.Options}
	}
	if psc := pod.Spec.SecurityContext; psc != nil {
		sc := c.Linux.SecurityContext
		if psc.RunAsUser != nil {
			sc.RunAsUser = &runtimeapi.Int64Value{Value: *psc.RunAsUser}
		}
		if psc.RunAsGroup != nil {
			sc.RunAsGroup = &runtimeapi.Int64Value{Value: *psc.RunAsGroup}
		}
		sc.SupplementalGroups = supplementalGroups(pod)
		for _, s := range psc.Sysctls {
			if c.Linux.Sysctls == nil {
				c.Linux.Sysctls = map[string]string{}
			}
			c.Linux.Sysctls[s.Name] = s.Value
		}
	}
	for _, ctr := range pod.Spec.Containers {
		for _, p := range ctr.Ports {
			if p.HostPort == 0 {
				continue
			}
			proto := runtimeapi.Protocol_TCP
			switch p.Protocol {
			case corev1.ProtocolUDP:
				proto = runtimeapi.Protocol_UDP
			case corev1.ProtocolSCTP:
				proto = runtimeapi.Protocol_SCTP
			}
			c.PortMappings = append(c.PortMappings, &runtimeapi.PortMapping{Protocol: proto,
				ContainerPort: p.ContainerPort, HostPort: p.HostPort, HostIp: p.HostIP})
		}
	}
	return c
}

// cgroupParent is the pod's cgroup (cgroupfs driver): /headway/pod<uid>.
func cgroupParent(uid string) string { return "/headway/pod" + uid }

// removeCgroups removes the pod's (empty) cgroup directories, in every
// hierarchy, once its containers are gone.
func removeCgroups(uid string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", "headway", "pod"+uid))
	if d := filepath.Join("/sys/fs/cgroup", "headway", "pod"+uid); dirExists(d) {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		os.Remove(d)
		os.Remove(filepath.Dir(d)) // /headway too, once no pod is left in it
	}
}

func dirExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}

func namespaceOptions(pod *corev1.Pod) *runtimeapi.NamespaceOption {
	ns := &runtimeapi.NamespaceOption{Network: runtimeapi.NamespaceMode_POD, Pid: runtimeapi.NamespaceMode_CONTAINER,
		Ipc: runtimeapi.NamespaceMode_POD}
	if pod.Spec.HostNetwork {
		ns.Network = runtimeapi.NamespaceMode_NODE
	}
	if pod.Spec.ShareProcessNamespace != nil && *pod.Spec.ShareProcessNamespace {
		ns.Pid = runtimeapi.NamespaceMode_POD
	}
	if pod.Spec.HostPID {
		ns.Pid = runtimeapi.NamespaceMode_NODE
	}
	if pod.Spec.HostIPC {
		ns.Ipc = runtimeapi.NamespaceMode_NODE
	}
	return ns
}

func supplementalGroups(pod *corev1.Pod) []int64 {
	psc := pod.Spec.SecurityContext
	if psc == nil {
		return nil
	}
	groups := append([]int64(nil), psc.SupplementalGroups...)
	if psc.FSGroup != nil {
		groups = append(groups, *psc.FSGroup)
	}
	return groups
}

// RemoveSandbox implements runtime.Runtime: it stops and removes every
// sandbox of the pod (their containers go with them).
func (r *Runtime) RemoveSandbox(ctx context.Context, uid string, final bool) error {
	list, err := r.sandboxesOf(ctx, uid)
	if err != nil {
		return r.unavailable(err)
	}
	var errs []error
	for _, s := range list {
		errs = append(errs, r.removeSandboxID(ctx, s.Id))
	}
	removeCgroups(uid)
	if r.cfg.Network != nil {
		errs = append(errs, r.cfg.Network.DetachPod(uid))
		if final {
			errs = append(errs, r.cfg.Network.IPAM().Release(uid))
		}
	}
	if final {
		errs = append(errs, os.RemoveAll(r.podDir(uid)))
		r.mu.Lock()
		delete(r.attempts, uid)
		r.mu.Unlock()
	}
	return errors.Join(errs...)
}

func (r *Runtime) removeSandboxID(ctx context.Context, id string) error {
	if _, err := r.rs.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil && !isNotFound(err) {
		return fmt.Errorf("StopPodSandbox %s: %w", id, err)
	}
	if _, err := r.rs.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil && !isNotFound(err) {
		return fmt.Errorf("RemovePodSandbox %s: %w", id, err)
	}
	return nil
}

// ForgetPods implements runtime.Cleaner: sandboxes of pods that are gone
// (deleted while the agent was down) are removed with their addresses and
// directories.
func (r *Runtime) ForgetPods(ctx context.Context, keep map[string]bool) {
	resp, err := r.rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
		LabelSelector: map[string]string{labelManaged: r.cfg.NodeName}}})
	if err == nil {
		for _, s := range resp.Items {
			if uid := s.Labels[labelPodUID]; !keep[uid] {
				r.log.Info("removing the sandbox of a pod that is gone", "pod", s.Labels[labelPodNamespace]+"/"+s.Labels[labelPodName], "sandbox", s.Id)
				r.RemoveSandbox(ctx, uid, true)
			}
		}
	}
	entries, _ := os.ReadDir(r.cfg.PodsDir)
	for _, e := range entries {
		if !keep[e.Name()] {
			os.RemoveAll(filepath.Join(r.cfg.PodsDir, e.Name()))
		}
	}
	if r.cfg.Network != nil {
		for _, o := range r.cfg.Network.IPAM().Owners() {
			if !keep[o] {
				r.cfg.Network.IPAM().Release(o)
			}
		}
		r.cfg.Network.ForgetAttached(keep)
	}
}

// Start implements runtime.Runtime: CreateContainer and StartContainer.
func (r *Runtime) Start(ctx context.Context, sb *hwruntime.Sandbox, c *hwruntime.ContainerSpec) (hwruntime.Process, error) {
	config, err := r.containerConfig(sb, c)
	if err != nil {
		return nil, err
	}
	sbConfig := r.sandboxConfig(c.Pod, sb)
	if err := r.starting.enter(ctx, forContainer); err != nil {
		return nil, err
	}
	defer r.starting.leave()
	created, err := r.rs.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: sb.ID, Config: config, SandboxConfig: sbConfig})
	if err != nil {
		return nil, fmt.Errorf("CreateContainer: %w", r.unavailable(err))
	}
	id := created.ContainerId
	if _, err := r.rs.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		r.rs.RemoveContainer(context.WithoutCancel(ctx), &runtimeapi.RemoveContainerRequest{ContainerId: id})
		return nil, fmt.Errorf("StartContainer: %w", r.unavailable(err))
	}
	ct := r.track(id, time.Now())
	return ct, nil
}

func (r *Runtime) containerConfig(sb *hwruntime.Sandbox, c *hwruntime.ContainerSpec) (*runtimeapi.ContainerConfig, error) {
	rel, err := filepath.Rel(sb.LogDir, c.LogPath)
	if err != nil || strings.HasPrefix(rel, "..") {
		rel = filepath.Join(c.Name, fmt.Sprintf("%d.log", c.Attempt))
	}
	if err := os.MkdirAll(filepath.Join(sb.LogDir, filepath.Dir(rel)), 0o755); err != nil {
		return nil, err
	}
	image := c.ImageRef
	if image == "" {
		image = c.Image
	}
	spec := c.Container
	if spec == nil {
		spec = &corev1.Container{Name: c.Name}
	}
	config := &runtimeapi.ContainerConfig{
		Metadata:   &runtimeapi.ContainerMetadata{Name: c.Name, Attempt: c.Attempt},
		Image:      &runtimeapi.ImageSpec{Image: image, UserSpecifiedImage: c.Image},
		Command:    c.Command,
		Args:       c.Args,
		WorkingDir: c.WorkingDir,
		LogPath:    rel,
		Stdin:      c.Stdin,
		StdinOnce:  c.StdinOnce,
		Tty:        c.TTY,
		Labels: map[string]string{labelContainerName: c.Name, labelPodUID: sb.UID, labelPodName: sb.Name,
			labelPodNamespace: sb.Namespace, labelManaged: r.cfg.NodeName},
		Annotations: map[string]string{"io.kubernetes.container.restartCount": strconv.Itoa(int(c.Attempt))},
	}
	for _, e := range c.Env {
		k, v, _ := strings.Cut(e, "=")
		config.Envs = append(config.Envs, &runtimeapi.KeyValue{Key: k, Value: []byte(v)})
	}
	for _, m := range c.Mounts {
		config.Mounts = append(config.Mounts, &runtimeapi.Mount{ContainerPath: m.Target, HostPath: m.Source, Readonly: m.ReadOnly})
	}
	if c.Pod != nil && !c.Pod.Spec.HostNetwork && sb.HostsFile != "" && !mountsAt(c.Mounts, "/etc/hosts") {
		config.Mounts = append(config.Mounts, &runtimeapi.Mount{ContainerPath: "/etc/hosts", HostPath: sb.HostsFile})
	}
	if path := spec.TerminationMessagePath; path != "" && !mountsAt(c.Mounts, path) {
		f := filepath.Join(sb.Dir, "containers", c.Name, fmt.Sprintf("termination-log-%d", c.Attempt))
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			return nil, err
		}
		if err := os.WriteFile(f, nil, 0o666); err != nil {
			return nil, err
		}
		os.Chmod(f, 0o666)
		config.Mounts = append(config.Mounts, &runtimeapi.Mount{ContainerPath: path, HostPath: f})
	}
	config.Linux = &runtimeapi.LinuxContainerConfig{Resources: resources(spec), SecurityContext: r.securityContext(c, spec)}
	return config, nil
}

func mountsAt(ms []hwruntime.Mount, target string) bool {
	for _, m := range ms {
		if filepath.Clean(m.Target) == target {
			return true
		}
	}
	return false
}

// resources turns requests and limits into cgroup settings as the kubelet
// does: cpu shares from the request, a CFS quota from the limit, the
// memory limit.
func resources(c *corev1.Container) *runtimeapi.LinuxContainerResources {
	res := &runtimeapi.LinuxContainerResources{CpuShares: 2, CpuPeriod: 100000}
	if q, ok := c.Resources.Requests[corev1.ResourceCPU]; ok {
		res.CpuShares = max(q.MilliValue()*1024/1000, 2)
	} else if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		res.CpuShares = max(q.MilliValue()*1024/1000, 2)
	}
	if q, ok := c.Resources.Limits[corev1.ResourceCPU]; ok {
		res.CpuQuota = max(q.MilliValue()*res.CpuPeriod/1000, 1000)
	}
	if q, ok := c.Resources.Limits[corev1.ResourceMemory]; ok {
		res.MemoryLimitInBytes = q.Value()
	}
	return res
}

// The paths runc masks and makes read-only unless a container asks for
// an unmasked /proc (the kubelet passes the same lists).
var (
	defaultMaskedPaths = []string{"/proc/asound", "/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
		"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware", "/sys/devices/virtual/powercap"}
	defaultReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}
)

func (r *Runtime) securityContext(c *hwruntime.ContainerSpec, spec *corev1.Container) *runtimeapi.LinuxContainerSecurityContext {
	sc := &runtimeapi.LinuxContainerSecurityContext{
		MaskedPaths: defaultMaskedPaths, ReadonlyPaths: defaultReadonlyPaths,
		Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault},
	}
	if c.Pod != nil {
		sc.NamespaceOptions = namespaceOptions(c.Pod)
		sc.SupplementalGroups = supplementalGroups(c.Pod)
		if psc := c.Pod.Spec.SecurityContext; psc != nil && psc.SeccompProfile != nil {
			sc.Seccomp = seccomp(psc.SeccompProfile)
		}
	}
	if c.UID != nil {
		sc.RunAsUser = &runtimeapi.Int64Value{Value: *c.UID}
	}
	if c.GID != nil {
		sc.RunAsGroup = &runtimeapi.Int64Value{Value: *c.GID}
	}
	if s := spec.SecurityContext; s != nil {
		if s.Privileged != nil && *s.Privileged {
			sc.Privileged = true
			sc.MaskedPaths, sc.ReadonlyPaths = nil, nil
			sc.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
		}
		if s.ReadOnlyRootFilesystem != nil {
			sc.ReadonlyRootfs = *s.ReadOnlyRootFilesystem
		}
		if s.AllowPrivilegeEscalation != nil {
			sc.NoNewPrivs = !*s.AllowPrivilegeEscalation
		}
		if s.Capabilities != nil {
			sc.Capabilities = &runtimeapi.Capability{}
			for _, a := range s.Capabilities.Add {
				sc.Capabilities.AddCapabilities = append(sc.Capabilities.AddCapabilities, string(a))
			}
			for _, d := range s.Capabilities.Drop {
				sc.Capabilities.DropCapabilities = append(sc.Capabilities.DropCapabilities, string(d))
			}
		}
		if s.SeccompProfile != nil && !sc.Privileged {
			sc.Seccomp = seccomp(s.SeccompProfile)
		}
		if s.ProcMount != nil && *s.ProcMount == corev1.UnmaskedProcMount {
			sc.MaskedPaths, sc.ReadonlyPaths = []string{}, []string{}
		}
	}
	return sc
}

func seccomp(p *corev1.SeccompProfile) *runtimeapi.SecurityProfile {
	switch p.Type {
	case corev1.SeccompProfileTypeUnconfined:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
	case corev1.SeccompProfileTypeLocalhost:
		ref := ""
		if p.LocalhostProfile != nil {
			ref = *p.LocalhostProfile
		}
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: ref}
	}
	return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
}

// Exec implements runtime.Runtime with ExecSync.
func (r *Runtime) Exec(ctx context.Context, target hwruntime.Process, _ *hwruntime.ContainerSpec, argv []string) (hwruntime.ExecResult, error) {
	if len(argv) == 0 {
		return hwruntime.ExecResult{}, errors.New("exec: no command")
	}
	timeout := int64(0)
	if d, ok := ctx.Deadline(); ok {
		timeout = max(int64(time.Until(d).Round(time.Second)/time.Second), 1)
	}
	resp, err := r.rs.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: containerID(target), Cmd: argv, Timeout: timeout})
	if err != nil {
		if ctx.Err() != nil {
			return hwruntime.ExecResult{}, ctx.Err()
		}
		return hwruntime.ExecResult{}, fmt.Errorf("exec in container %s: %w", target.ID(), r.unavailable(err))
	}
	return hwruntime.ExecResult{ExitCode: int(resp.ExitCode), Output: append(resp.Stdout, resp.Stderr...)}, nil
}

// ExecURL implements runtime.StreamingURLs.
func (r *Runtime) ExecURL(ctx context.Context, target hwruntime.Process, argv []string, stdin, stdout, stderr, tty bool) (string, error) {
	resp, err := r.rs.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: containerID(target), Cmd: argv, Tty: tty,
		Stdin: stdin, Stdout: stdout, Stderr: stderr && !tty})
	if err != nil {
		return "", r.unavailable(err)
	}
	return resp.Url, nil
}

// AttachURL implements runtime.StreamingURLs.
func (r *Runtime) AttachURL(ctx context.Context, target hwruntime.Process, stdin, stdout, stderr, tty bool) (string, error) {
	resp, err := r.rs.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: containerID(target), Tty: tty,
		Stdin: stdin, Stdout: stdout, Stderr: stderr && !tty})
	if err != nil {
		return "", r.unavailable(err)
	}
	return resp.Url, nil
}

// Running implements runtime.Adopter: the pod's ready sandbox and its
// running containers, left by a previous run of the agent.
func (r *Runtime) Running(ctx context.Context, pod *corev1.Pod) (*hwruntime.Sandbox, map[string]hwruntime.Process, error) {
	list, err := r.sandboxesOf(ctx, string(pod.UID))
	if err != nil {
		return nil, nil, r.unavailable(err)
	}
	var ready *runtimeapi.PodSandbox
	for _, s := range list {
		if s.State == runtimeapi.PodSandboxState_SANDBOX_READY {
			ready = s
		}
	}
	if ready == nil {
		return nil, nil, nil
	}
	uid := string(pod.UID)
	sb := r.sandbox(pod, ready.Id)
	if err := r.fillFromStatus(ctx, sb, pod); err != nil {
		return nil, nil, err
	}
	if r.cfg.Network != nil && !pod.Spec.HostNetwork {
		if ok, err := r.cfg.Network.Reattach(uid); !ok || err != nil {
			// Its network is gone: a new sandbox it is.
			r.log.Info("the pod's sandbox lost its network; making a new one", "pod", pod.Namespace+"/"+pod.Name, "err", err)
			return nil, nil, nil
		}
	}
	r.mu.Lock()
	r.attempts[uid] = max(r.attempts[uid], ready.GetMetadata().GetAttempt()+1)
	r.mu.Unlock()
	resp, err := r.rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
		PodSandboxId: ready.Id, State: &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}}})
	if err != nil {
		return nil, nil, r.unavailable(err)
	}
	procs := map[string]hwruntime.Process{}
	for _, c := range resp.Containers {
		name := c.GetMetadata().GetName()
		if old, ok := procs[name]; ok && old.(*container).started.After(time.Unix(0, c.CreatedAt)) {
			continue
		}
		started := time.Unix(0, c.CreatedAt)
		if st, err := r.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.Id}); err == nil && st.Status.StartedAt > 0 {
			started = time.Unix(0, st.Status.StartedAt)
		}
		procs[name] = r.track(c.Id, started)
	}
	return sb, procs, nil
}

// unavailable says what to do when the runtime does not answer.
func (r *Runtime) unavailable(err error) error {
	if isUnavailable(err) {
		return fmt.Errorf("the container runtime at %s does not answer (is containerd running?): %w", r.cfg.Endpoint, err)
	}
	return err
}

// container is a running (or ended) CRI container.
type container struct {
	r       *Runtime
	id      string
	started time.Time
	done    chan struct{}

	mu   sync.Mutex
	exit hwruntime.Exit
}

func containerID(p hwruntime.Process) string {
	if c, ok := p.(*container); ok {
		return c.id
	}
	_, id, _ := strings.Cut(p.ID(), "://")
	return id
}

func (r *Runtime) track(id string, started time.Time) *container {
	c := &container{r: r, id: id, started: started, done: make(chan struct{})}
	r.mu.Lock()
	r.live[id] = c
	r.mu.Unlock()
	// No poll now: it would only find the container running. A 100-pod
	// start woke one ListContainers of every container per container.
	return c
}

func (c *container) ID() string            { return c.r.Name() + "://" + c.id }
func (c *container) PID() int              { return 0 }
func (c *container) Done() <-chan struct{} { return c.done }
func (c *container) Started() time.Time    { return c.started }
func (c *container) Exit() hwruntime.Exit  { c.mu.Lock(); defer c.mu.Unlock(); return c.exit }
func (c *container) isDone() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// Signal implements runtime.Process. A CRI runtime only stops containers:
// SIGKILL stops at once, any other signal asks the container to stop with
// its image's stop signal and kills it after an hour (the agent sends
// SIGKILL itself when the grace period ends).
func (c *container) Signal(s syscall.Signal) error {
	if c.isDone() {
		return nil
	}
	timeout := int64(3600)
	if s == syscall.SIGKILL {
		timeout = 0
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(timeout+30)*time.Second)
		defer cancel()
		if _, err := c.r.rs.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c.id, Timeout: timeout}); err != nil && !isNotFound(err) && ctx.Err() == nil {
			c.r.log.Warn("stopping a container", "container", c.id, "err", err)
		}
		c.r.wakePoll()
	}()
	return nil
}

func (r *Runtime) wakePoll() {
	select {
	case r.pollWake <- struct{}{}:
	default:
	}
}

// poll reads the states of the running containers and ends the ones that
// exited (containerd 1.6 has no container events).
func (r *Runtime) poll() {
	t := time.NewTicker(r.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-r.closed:
			return
		case <-t.C:
		case <-r.pollWake:
		}
		r.mu.Lock()
		n := len(r.live)
		r.mu.Unlock()
		if n == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		resp, err := r.rs.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{
			LabelSelector: map[string]string{labelManaged: r.cfg.NodeName}}})
		if err != nil {
			cancel()
			continue
		}
		state := map[string]runtimeapi.ContainerState{}
		for _, c := range resp.Containers {
			state[c.Id] = c.State
		}
		r.mu.Lock()
		var ended []*container
		for id, c := range r.live {
			if st, ok := state[id]; !ok || st == runtimeapi.ContainerState_CONTAINER_EXITED || st == runtimeapi.ContainerState_CONTAINER_UNKNOWN {
				ended = append(ended, c)
				delete(r.live, id)
			}
		}
		r.mu.Unlock()
		for _, c := range ended {
			e := hwruntime.Exit{Code: 137, Finished: time.Now(), Reason: "ContainerStatusUnknown",
				Message: "the container could not be found when it ended"}
			if st, err := r.rs.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.id}); err == nil {
				s := st.Status
				e = hwruntime.Exit{Code: s.ExitCode, Reason: s.Reason, Message: s.Message, Finished: time.Unix(0, s.FinishedAt)}
				if s.FinishedAt == 0 {
					e.Finished = time.Now()
				}
				if e.Reason == "Completed" || e.Reason == "Error" {
					e.Reason = "" // the agent's own words for these
				}
				if e.Code > 128 && e.Code < 128+65 {
					e.Signal = e.Code - 128
				}
			}
			c.mu.Lock()
			c.exit = e
			c.mu.Unlock()
			close(c.done)
		}
		cancel()
	}
}

// ImagePresent implements runtime.ImageService.
func (r *Runtime) ImagePresent(ctx context.Context, image string) (string, bool, error) {
	resp, err := r.is.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: image}})
	if err != nil {
		return "", false, r.unavailable(err)
	}
	if resp.Image == nil {
		return "", false, nil
	}
	return resp.Image.Id, true, nil
}

// PullImage implements runtime.ImageService.
func (r *Runtime) PullImage(ctx context.Context, image string, auth []hwruntime.Auth, sb *hwruntime.Sandbox) (string, error) {
	var cfg *runtimeapi.PodSandboxConfig
	if sb != nil {
		cfg = &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: sb.Name, Namespace: sb.Namespace, Uid: sb.UID}}
	}
	var last error
	for i := 0; i < max(len(auth), 1); i++ {
		req := &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: image}, SandboxConfig: cfg}
		if i < len(auth) {
			a := auth[i]
			req.Auth = &runtimeapi.AuthConfig{Username: a.Username, Password: a.Password, Auth: a.Auth,
				ServerAddress: a.Server, IdentityToken: a.IdentityToken, RegistryToken: a.RegistryToken}
		}
		resp, err := r.is.PullImage(ctx, req)
		if err == nil {
			return resp.ImageRef, nil
		}
		last = r.unavailable(err)
	}
	return "", last
}

// Images lists the node's images for the Node status.
func (r *Runtime) Images(ctx context.Context) ([]corev1.ContainerImage, error) {
	resp, err := r.is.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		return nil, r.unavailable(err)
	}
	var out []corev1.ContainerImage
	for _, img := range resp.Images {
		names := append(append([]string(nil), img.RepoTags...), img.RepoDigests...)
		if len(names) == 0 {
			continue
		}
		out = append(out, corev1.ContainerImage{Names: names, SizeBytes: int64(img.Size)})
	}
	return out, nil
}

func isNotFound(err error) bool    { return status.Code(err) == codes.NotFound }
func isUnavailable(err error) bool { return status.Code(err) == codes.Unavailable }
