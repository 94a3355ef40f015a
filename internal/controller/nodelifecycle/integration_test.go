package nodelifecycle_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/controller/nodelifecycle"
	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/internal/testing/kubeletsim"
)

const (
	grace      = 2 * time.Second
	leaseEvery = 800 * time.Millisecond // renewed every 200ms
	toleration = 5                      // seconds web pods stay on an unreachable node
)

// machine is a simulated node whose kubelet can be stopped (its Lease is
// then no longer renewed) and started again.
type machine struct {
	k    *kubeletsim.Kubelet
	stop context.CancelFunc
	done chan struct{}
}

func (m *machine) start(ctx context.Context) {
	kctx, cancel := context.WithCancel(ctx)
	m.stop, m.done = cancel, make(chan struct{})
	go func() { defer close(m.done); m.k.Run(kctx) }()
}

func (m *machine) halt() { m.stop(); <-m.done }

func seed() (*corev1.Service, *appsv1.StatefulSet) {
	labels := map[string]string{"app": "nginx"}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "nginx-headless"},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: labels,
			Ports: []corev1.ServicePort{{Name: "web", Port: 80, TargetPort: intstr.FromInt32(80)}}},
	}
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: "nginx-headless",
			Replicas:    ptr.To[int32](3),
			Selector:    &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					Containers: []corev1.Container{{Name: "nginx", Image: "nginx:alpine", Ports: []corev1.ContainerPort{{ContainerPort: 80, Name: "web"}}}},
					Tolerations: []corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists,
						Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To[int64](toleration)}},
				},
			},
		},
	}
	return svc, set
}

func condition(p *corev1.Pod, t corev1.PodConditionType) corev1.ConditionStatus {
	for _, c := range p.Status.Conditions {
		if c.Type == t {
			return c.Status
		}
	}
	return ""
}

func nodeReady(n *corev1.Node) *corev1.NodeCondition {
	for i := range n.Status.Conditions {
		if n.Status.Conditions[i].Type == corev1.NodeReady {
			return &n.Status.Conditions[i]
		}
	}
	return nil
}

func hasTaint(n *corev1.Node, key string, effect corev1.TaintEffect) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == key && t.Effect == effect {
			return true
		}
	}
	return false
}

// headless answers the A records of the headless Service, sorted.
func headless(ctx context.Context, addr, name string) ([]string, error) {
	m := new(mdns.Msg)
	m.SetQuestion(name, mdns.TypeA)
	r, err := mdns.ExchangeContext(ctx, m, addr)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*mdns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out, nil
}

// endpointReady is the Ready condition of pod's endpoint in the Service's
// slices ("" when it has none).
func endpointReady(ctx context.Context, client kubernetes.Interface, pod string) (string, error) {
	list, err := client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{LabelSelector: discoveryv1.LabelServiceName + "=nginx-headless"})
	if err != nil {
		return "", err
	}
	for _, s := range list.Items {
		for _, ep := range s.Endpoints {
			if ep.TargetRef != nil && ep.TargetRef.Name == pod && ep.Conditions.Ready != nil {
				return fmt.Sprint(*ep.Conditions.Ready), nil
			}
		}
	}
	return "", nil
}

// TestNodeLostStatefulSetPodMovesWithItsName: three simulated nodes renew
// their Leases; the seed StatefulSet spreads one pod per node. One node's
// kubelet stops: within the grace period the node goes Unknown with the
// unreachable taints, its pod goes not ready (its endpoint not ready, the
// headless DNS name no longer lists it), and after the pod's toleration it
// is evicted and re-created, with the same name, on another node. When the
// node renews its Lease again the taints go.
func TestNodeLostStatefulSetPodMovesWithItsName(t *testing.T) {
	c := cluster.Start(t, cluster.WithNodeMonitorGracePeriod(grace))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	client := c.Client

	machines := map[string]*machine{}
	for i, name := range []string{"node-a", "node-b", "node-c"} {
		m := &machine{k: &kubeletsim.Kubelet{Client: client, Node: name, LeaseDuration: leaseEvery,
			PodCIDR: netip.MustParsePrefix(fmt.Sprintf("198.18.%d.0/24", i+1))}}
		if err := m.k.RegisterNode(ctx); err != nil {
			t.Fatal(err)
		}
		m.start(ctx)
		t.Cleanup(func() {
			if m.stop != nil {
				m.halt()
			}
		})
		machines[name] = m
	}

	svc, set := seed()
	if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.AppsV1().StatefulSets("default").Create(ctx, set, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	placement := map[string]*corev1.Pod{}
	cluster.WaitFor(t, time.Minute, "three Ready web pods, one per node", func() (bool, error) {
		pods, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=nginx"})
		if err != nil {
			return false, err
		}
		clear(placement)
		for i := range pods.Items {
			p := &pods.Items[i]
			if p.DeletionTimestamp != nil || condition(p, corev1.PodReady) != corev1.ConditionTrue {
				return false, nil
			}
			if other := placement[p.Spec.NodeName]; other != nil {
				return false, fmt.Errorf("%s and %s both on %s", other.Name, p.Name, p.Spec.NodeName)
			}
			placement[p.Spec.NodeName] = p
		}
		return len(placement) == 3, nil
	})
	var all []string
	for _, p := range placement {
		all = append(all, p.Status.PodIP)
	}
	slices.Sort(all)
	const name = "nginx-headless.default.svc.cluster.local."
	cluster.WaitFor(t, 30*time.Second, "the headless name to list the three pods", func() (bool, error) {
		got, err := headless(ctx, c.DNSAddr, name)
		return slices.Equal(got, all), err
	})

	// Stop the kubelet of web-1's node: its Lease is no longer renewed.
	var lost string
	var victim *corev1.Pod
	for n, p := range placement {
		if p.Name == "web-1" {
			lost, victim = n, p
		}
	}
	if victim == nil {
		t.Fatalf("no web-1 among %v", placement)
	}
	stopped := time.Now()
	machines[lost].halt()
	machines[lost].stop = nil

	cluster.WaitFor(t, 30*time.Second, lost+" Unknown with the unreachable taints", func() (bool, error) {
		n, err := client.CoreV1().Nodes().Get(ctx, lost, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		r := nodeReady(n)
		return r != nil && r.Status == corev1.ConditionUnknown && r.Reason == nodelifecycle.ReasonNodeStatusUnknown && r.Message == "Kubelet stopped posting node status." &&
			hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoSchedule) && hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute), nil
	})
	if took := time.Since(stopped); took < grace-leaseEvery/4 {
		t.Fatalf("%s marked Unknown %v after its last renewal at the latest, before the %v grace period", lost, took, grace)
	}
	for n := range machines {
		if n == lost {
			continue
		}
		node, err := client.CoreV1().Nodes().Get(ctx, n, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if r := nodeReady(node); r == nil || r.Status != corev1.ConditionTrue || len(node.Spec.Taints) != 0 {
			t.Fatalf("node %s, still renewing its Lease: Ready %+v, taints %v", n, r, node.Spec.Taints)
		}
	}

	// The pod is still there (it tolerates the taint for a while) but not
	// ready: its endpoint is not ready and DNS leaves it out.
	cluster.WaitFor(t, 30*time.Second, "web-1 not ready, its endpoint not ready", func() (bool, error) {
		p, err := client.CoreV1().Pods("default").Get(ctx, "web-1", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		if p.UID != victim.UID {
			return false, fmt.Errorf("web-1 replaced before it was seen not ready (toleration %ds)", toleration)
		}
		ep, err := endpointReady(ctx, client, "web-1")
		return condition(p, corev1.PodReady) == corev1.ConditionFalse && ep == "false", err
	})
	var rest []string
	for _, ip := range all {
		if ip != victim.Status.PodIP {
			rest = append(rest, ip)
		}
	}
	cluster.WaitFor(t, 30*time.Second, "the headless name without web-1", func() (bool, error) {
		got, err := headless(ctx, c.DNSAddr, name)
		return slices.Equal(got, rest), err
	})

	// After the toleration it is evicted and re-created elsewhere, same name.
	var moved *corev1.Pod
	cluster.WaitFor(t, time.Minute, "web-1 re-created and Ready on another node", func() (bool, error) {
		p, err := client.CoreV1().Pods("default").Get(ctx, "web-1", metav1.GetOptions{})
		if err != nil {
			return false, nil // between the eviction and the re-creation
		}
		if p.UID == victim.UID || condition(p, corev1.PodReady) != corev1.ConditionTrue {
			return false, nil
		}
		moved = p
		return true, nil
	})
	if moved.Spec.NodeName == lost || moved.Spec.NodeName == "" {
		t.Fatalf("web-1 re-created on %q, the lost node is %s", moved.Spec.NodeName, lost)
	}
	if moved.Spec.Hostname != "web-1" || moved.Spec.Subdomain != "nginx-headless" {
		t.Fatalf("web-1 re-created with hostname %q subdomain %q", moved.Spec.Hostname, moved.Spec.Subdomain)
	}
	if evicted := time.Since(stopped); evicted < toleration*time.Second {
		t.Fatalf("web-1 replaced %v after its node stopped, before its %ds toleration", evicted, toleration)
	}
	if _, err := client.CoreV1().Pods("default").Get(ctx, "web-1", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 30*time.Second, "web-1.nginx-headless to answer the new address", func() (bool, error) {
		got, err := headless(ctx, c.DNSAddr, "web-1."+name)
		return slices.Equal(got, []string{moved.Status.PodIP}), err
	})

	// The node's kubelet comes back and renews its Lease: the unreachable
	// taints are lifted.
	machines[lost].start(ctx)
	cluster.WaitFor(t, 30*time.Second, lost+" untainted once its Lease is renewed", func() (bool, error) {
		n, err := client.CoreV1().Nodes().Get(ctx, lost, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		return !hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoSchedule) && !hasTaint(n, corev1.TaintNodeUnreachable, corev1.TaintEffectNoExecute), nil
	})
	// The set kept its three pods throughout its identity: web-0..web-2.
	pods, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=nginx"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	uids := map[types.UID]bool{}
	for _, p := range pods.Items {
		names = append(names, p.Name)
		uids[p.UID] = true
	}
	slices.Sort(names)
	if !slices.Equal(names, []string{"web-0", "web-1", "web-2"}) || uids[victim.UID] {
		t.Fatalf("pods %v after the move (old web-1 still there: %v)", names, uids[victim.UID])
	}
}
