package agent

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	goruntime "runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
	"github.com/headway/headway/internal/version"
)

func labelsEverything() labels.Selector { return labels.Everything() }

// MaxPods is the node's pod capacity.
const MaxPods = 250

// nodeStatus is the node's status as the agent sees it now.
func (a *Agent) nodeStatus(old *corev1.NodeStatus) corev1.NodeStatus {
	now := metav1.Now()
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    *resource.NewQuantity(int64(goruntime.NumCPU()), resource.DecimalSI),
		corev1.ResourceMemory: *resource.NewQuantity(memTotal(), resource.BinarySI),
		corev1.ResourcePods:   *resource.NewQuantity(MaxPods, resource.DecimalSI),
	}
	var st unix.Statfs_t
	if unix.Statfs(a.cfg.DataDir, &st) == nil {
		capacity[corev1.ResourceEphemeralStorage] = *resource.NewQuantity(int64(st.Blocks)*st.Bsize, resource.BinarySI)
	}
	hostname, _ := os.Hostname()
	s := corev1.NodeStatus{
		Capacity:    capacity,
		Allocatable: capacity.DeepCopy(),
		Addresses: []corev1.NodeAddress{
			{Type: corev1.NodeInternalIP, Address: a.hostIP.String()},
			{Type: corev1.NodeHostName, Address: hostname},
		},
		NodeInfo: corev1.NodeSystemInfo{
			MachineID:               readTrim("/etc/machine-id"),
			SystemUUID:              readTrim("/sys/class/dmi/id/product_uuid"),
			BootID:                  readTrim("/proc/sys/kernel/random/boot_id"),
			KernelVersion:           kernelVersion(),
			OSImage:                 osImage(),
			ContainerRuntimeVersion: a.runtimeVersion(),
			KubeletVersion:          version.Kubernetes,
			OperatingSystem:         goruntime.GOOS,
			Architecture:            goruntime.GOARCH,
		},
		DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: int32(a.streamPort)}},
	}
	ready := corev1.NodeCondition{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady",
		Message: "kubelet is posting ready status", LastHeartbeatTime: now, LastTransitionTime: now}
	if a.notReady != "" {
		ready.Status, ready.Reason, ready.Message = corev1.ConditionFalse, "RuntimeUnavailable", a.notReady
	}
	conds := []corev1.NodeCondition{
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"},
		ready,
	}
	if a.net == nil && a.cfg.Runtime == nil {
		conds = append(conds, corev1.NodeCondition{Type: corev1.NodeNetworkUnavailable, Status: corev1.ConditionTrue,
			Reason: "NoPodNetwork", Message: a.notReady})
	}
	for i := range conds {
		c := &conds[i]
		c.LastHeartbeatTime = now
		c.LastTransitionTime = now
		if old != nil {
			for _, o := range old.Conditions {
				if o.Type == c.Type && o.Status == c.Status {
					c.LastTransitionTime = o.LastTransitionTime
				}
			}
		}
	}
	s.Conditions = conds
	if il, ok := a.rt.(interface {
		Images(context.Context) ([]corev1.ContainerImage, error)
	}); ok {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if images, err := il.Images(ctx); err == nil {
			s.Images = images
		}
		cancel()
	}
	return s
}

// runtimeVersion is the Node's containerRuntimeVersion: containerd://1.6.20
// with the CRI runtime, headway-process://<headway's version> with the
// process runtime.
func (a *Agent) runtimeVersion() string {
	if v, ok := a.rt.(hwruntime.Versioned); ok {
		return v.RuntimeVersion()
	}
	return a.runtimeName() + "://" + strings.TrimPrefix(version.Version, "v")
}

// registerNode creates the Node, or brings an existing one up to date.
func (a *Agent) registerNode(ctx context.Context) error {
	nodes := a.cfg.Client.CoreV1().Nodes()
	for attempt := 0; ; attempt++ {
		node, err := nodes.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			node = a.newNode()
			if a.cfg.ClusterCIDR.IsValid() && !a.cfg.AwaitPodCIDR {
				node.Spec.PodCIDR = a.cfg.ClusterCIDR.String()
				node.Spec.PodCIDRs = []string{a.cfg.ClusterCIDR.String()}
			}
			node, err = nodes.Create(ctx, node, metav1.CreateOptions{FieldManager: "headway-agent"})
			if apierrors.IsAlreadyExists(err) && attempt < 3 {
				continue
			}
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("registering node %s: %w", a.cfg.NodeName, err)
			}
			a.log.Info("node registered")
		} else if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if attempt >= 3 {
				return fmt.Errorf("registering node %s: %w", a.cfg.NodeName, err)
			}
			continue
		}
		node.Status = a.nodeStatus(&node.Status)
		if _, err := nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{FieldManager: "headway-agent"}); err != nil {
			if apierrors.IsConflict(err) && attempt < 3 {
				continue
			}
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("writing node %s status: %w", a.cfg.NodeName, err)
		}
		if a.notReady != "" {
			ref := &corev1.ObjectReference{Kind: "Node", Name: a.cfg.NodeName, UID: node.UID}
			a.recorder.Event(ref, corev1.EventTypeWarning, "RuntimeUnavailable", a.notReady)
		}
		return nil
	}
}

// newNode is the Node the agent registers, before its status.
func (a *Agent) newNode() *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Labels: map[string]string{
		"kubernetes.io/hostname": a.cfg.NodeName, "kubernetes.io/os": goruntime.GOOS, "kubernetes.io/arch": goruntime.GOARCH,
		"beta.kubernetes.io/os": goruntime.GOOS, "beta.kubernetes.io/arch": goruntime.GOARCH,
	}}}
}

// awaitPodCIDR registers the Node (without a pod range) unless it exists,
// and waits until the server has assigned it one (node.spec.podCIDR).
func (a *Agent) awaitPodCIDR(ctx context.Context) (netip.Prefix, error) {
	nodes := a.cfg.Client.CoreV1().Nodes()
	logged := false
	for {
		node, err := nodes.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			node, err = nodes.Create(ctx, a.newNode(), metav1.CreateOptions{FieldManager: "headway-agent"})
			if err == nil {
				a.log.Info("node registered; waiting for the server to assign its pod range")
			}
		}
		switch {
		case ctx.Err() != nil:
			return netip.Prefix{}, nil
		case err != nil && !apierrors.IsAlreadyExists(err):
			a.log.Warn("registering the node to get its pod range", "err", err)
		case err == nil && node.Spec.PodCIDR != "":
			p, perr := netip.ParsePrefix(node.Spec.PodCIDR)
			if perr != nil || !p.Addr().Is4() || p.Bits() > 30 || !a.cfg.ClusterCIDR.Contains(p.Addr()) {
				return netip.Prefix{}, fmt.Errorf("node %s has pod range %q: want an IPv4 CIDR of 4 addresses or more inside the cluster's %s", a.cfg.NodeName, node.Spec.PodCIDR, a.cfg.ClusterCIDR)
			}
			a.log.Info("node pod range assigned", "pod-cidr", p)
			return p.Masked(), nil
		case !logged:
			logged = true
			a.log.Info("waiting for the server to assign this node's pod range (node.spec.podCIDR); a server without --allocate-node-cidrs never does")
		}
		select {
		case <-ctx.Done():
			return netip.Prefix{}, nil
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// heartbeat renews the node's Lease every quarter of its duration. With
// the same period it reads its Node and posts the status when the Node's
// Ready condition is not what the agent would say (the node lifecycle
// controller marked it Unknown during a gap in the Lease, say) and at
// least once a minute otherwise, as the kubelet does.
func (a *Agent) heartbeat(ctx context.Context) {
	renew := a.cfg.LeaseDuration / 4
	lastStatus := time.Now()
	var lease *coordinationv1.Lease
	for {
		var err error
		if lease, err = a.renewLease(ctx, lease); err != nil && ctx.Err() == nil {
			a.log.Warn("renewing the node lease", "err", err)
		}
		nodes := a.cfg.Client.CoreV1().Nodes()
		if node, err := nodes.Get(ctx, a.cfg.NodeName, metav1.GetOptions{}); err == nil {
			if time.Since(lastStatus) >= time.Minute || readyStatus(&node.Status) != a.readyStatus() {
				lastStatus = time.Now()
				node.Status = a.nodeStatus(&node.Status)
				if _, err := nodes.UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil {
					a.log.Warn("updating the node status", "err", err)
				}
			}
		} else if apierrors.IsNotFound(err) {
			a.registerNode(ctx)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(renew):
		}
	}
}

// readyStatus is the status of s's Ready condition ("" without one).
func readyStatus(s *corev1.NodeStatus) corev1.ConditionStatus {
	for _, c := range s.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status
		}
	}
	return ""
}

// readyStatus is the Ready status the agent reports (see nodeStatus).
func (a *Agent) readyStatus() corev1.ConditionStatus {
	if a.notReady != "" {
		return corev1.ConditionFalse
	}
	return corev1.ConditionTrue
}

// renewLease renews the node's Lease and returns it as renewed (nil after
// a failure). As the kubelet does, it renews last, the Lease the previous
// renewal returned, without reading it first; with none (the first
// renewal, or one after a failure: a conflict, the Lease deleted) it reads
// it, or makes it.
func (a *Agent) renewLease(ctx context.Context, last *coordinationv1.Lease) (*coordinationv1.Lease, error) {
	leases := a.cfg.Client.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	secs := int32(a.cfg.LeaseDuration / time.Second)
	l := last
	if l == nil {
		var err error
		l, err = leases.Get(ctx, a.cfg.NodeName, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			l = &coordinationv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: a.cfg.NodeName, Namespace: corev1.NamespaceNodeLease},
				Spec:       coordinationv1.LeaseSpec{HolderIdentity: &a.cfg.NodeName, LeaseDurationSeconds: &secs, RenewTime: &now, AcquireTime: &now},
			}
			if node, err := a.cfg.Client.CoreV1().Nodes().Get(ctx, a.cfg.NodeName, metav1.GetOptions{}); err == nil {
				l.OwnerReferences = []metav1.OwnerReference{{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}}
			}
			return orNil(leases.Create(ctx, l, metav1.CreateOptions{FieldManager: "headway-agent"}))
		}
		if err != nil {
			return nil, err
		}
	}
	l.Spec.HolderIdentity, l.Spec.LeaseDurationSeconds, l.Spec.RenewTime = &a.cfg.NodeName, &secs, &now
	return orNil(leases.Update(ctx, l, metav1.UpdateOptions{FieldManager: "headway-agent"}))
}

// orNil is a write's result, nil when it failed.
func orNil(l *coordinationv1.Lease, err error) (*coordinationv1.Lease, error) {
	if err != nil {
		return nil, err
	}
	return l, nil
}

func readTrim(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func kernelVersion() string {
	var u unix.Utsname
	if unix.Uname(&u) != nil {
		return ""
	}
	return unix.ByteSliceToString(u.Release[:])
}

func osImage() string {
	f, err := os.Open("/etc/os-release")
	if err != nil {
		return goruntime.GOOS
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "PRETTY_NAME="); ok {
			return strings.Trim(v, `"`)
		}
	}
	return goruntime.GOOS
}

func memTotal() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var kb int64
		if _, err := fmt.Sscanf(sc.Text(), "MemTotal: %d kB", &kb); err == nil {
			return kb * 1024
		}
	}
	return 0
}
