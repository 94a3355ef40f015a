package daemonset_test

import (
	"bytes"
	"context"
	stdregexp "regexp"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/cli-runtime/pkg/genericiooptions"
	"k8s.io/client-go/kubernetes"
	"k8s.io/kubectl/pkg/cmd/rollout"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"k8s.io/kubectl/pkg/polymorphichelpers"

	"github.com/headway/headway/internal/controller/daemonset"
	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/internal/testing/kubeletsim"
)

// startKubelet runs a simulated kubelet for another node until the test ends.
func startKubelet(t *testing.T, ctx context.Context, client kubernetes.Interface, node string) {
	t.Helper()
	k := &kubeletsim.Kubelet{Client: client, Node: node}
	if err := k.RegisterNode(ctx); err != nil {
		t.Fatal(err)
	}
	kctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); k.Run(kctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// podsByNode maps node → the images of the set's live pods there.
func podsByNode(ctx context.Context, client kubernetes.Interface) (map[string][]string, []corev1.Pod, error) {
	list, err := client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=agent"})
	if err != nil {
		return nil, nil, err
	}
	out := map[string][]string{}
	var live []corev1.Pod
	for _, p := range list.Items {
		if p.DeletionTimestamp == nil {
			out[p.Spec.NodeName] = append(out[p.Spec.NodeName], p.Spec.Containers[0].Image)
			live = append(live, p)
		}
	}
	return out, live, nil
}

func onEachNode(ctx context.Context, client kubernetes.Interface, image string, nodes ...string) func() (bool, error) {
	return func() (bool, error) {
		by, _, err := podsByNode(ctx, client)
		if err != nil || len(by) != len(nodes) {
			return false, err
		}
		for _, n := range nodes {
			if !slices.Equal(by[n], []string{image}) {
				return false, nil
			}
		}
		return true, nil
	}
}

// kubectlRolloutStatus runs kubectl's `rollout status daemonset/agent`
// (its options, watch loop and status viewer) against the cluster and
// returns what it printed.
func kubectlRolloutStatus(t *testing.T, c *cluster.Cluster) string {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &c.Kubeconfig
	ns := "default"
	flags.Namespace = &ns
	f := cmdutil.NewFactory(flags)
	var out, errOut bytes.Buffer
	o := rollout.NewRolloutStatusOptions(genericiooptions.IOStreams{In: strings.NewReader(""), Out: &out, ErrOut: &errOut})
	o.Timeout = 60 * time.Second
	if err := o.Complete(f, []string{"daemonset/agent"}); err != nil {
		t.Fatal(err)
	}
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := o.Run(); err != nil {
		t.Fatalf("kubectl rollout status: %v\n%s%s", err, out.String(), errOut.String())
	}
	return out.String()
}

// TestDaemonSet: a pod on each Ready node, status, a rolling update that
// kubectl rollout status follows to the end, history and undo, a deleted
// pod replaced on its node, and a narrowed nodeSelector.
func TestDaemonSet(t *testing.T) {
	c := cluster.Start(t)
	ctx := t.Context()
	client := c.Client
	for _, n := range []string{"node-1", "node-2", "node-3"} {
		startKubelet(t, ctx, client, n)
	}
	// A node that never becomes Ready gets no daemon pod.
	if _, err := client.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-down"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	one := intstr.FromInt32(1)
	ds := &appsv1.DaemonSet{
		ObjectMeta: metav1.ObjectMeta{Name: "agent", Namespace: "default"},
		Spec: appsv1.DaemonSetSpec{
			Selector:        &metav1.LabelSelector{MatchLabels: map[string]string{"app": "agent"}},
			MinReadySeconds: 1,
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "agent"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "agent", Image: "busybox:1.36", Command: []string{"sleep", "3600"}}}},
			},
			UpdateStrategy: appsv1.DaemonSetUpdateStrategy{Type: appsv1.RollingUpdateDaemonSetStrategyType,
				RollingUpdate: &appsv1.RollingUpdateDaemonSet{MaxUnavailable: &one}},
		},
	}
	ds, err := client.AppsV1().DaemonSets("default").Create(ctx, ds, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	get := func() *appsv1.DaemonSet {
		t.Helper()
		d, err := client.AppsV1().DaemonSets("default").Get(ctx, "agent", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	cluster.WaitFor(t, 20*time.Second, "one pod on each Ready node", onEachNode(ctx, client, "busybox:1.36", "node-1", "node-2", "node-3"))
	cluster.WaitFor(t, 20*time.Second, "status of 3 available", func() (bool, error) {
		st := get().Status
		return st.ObservedGeneration == ds.Generation && st.DesiredNumberScheduled == 3 && st.CurrentNumberScheduled == 3 &&
			st.NumberReady == 3 && st.NumberAvailable == 3 && st.UpdatedNumberScheduled == 3 && st.NumberMisscheduled == 0 && st.NumberUnavailable == 0, nil
	})
	_, pods, _ := podsByNode(ctx, client)
	hash1 := pods[0].Labels[daemonset.HashLabel]
	for _, p := range pods {
		ref := metav1.GetControllerOf(&p)
		if ref == nil || ref.UID != ds.UID || p.Labels[daemonset.HashLabel] != hash1 || hash1 == "" || p.Labels[daemonset.GenerationLabel] != "1" {
			t.Fatalf("pod %s: owner %+v labels %v", p.Name, ref, p.Labels)
		}
		if len(p.Spec.Tolerations) != 6 {
			t.Fatalf("pod %s tolerations %+v, want the 6 daemon ones", p.Name, p.Spec.Tolerations)
		}
	}

	t.Run("rolling update followed by kubectl rollout status; history; undo", func(t *testing.T) {
		patch := `{"metadata":{"annotations":{"kubernetes.io/change-cause":"image 1.37"}},"spec":{"template":{"spec":{"containers":[{"name":"agent","image":"busybox:1.37"}]}}}}`
		if _, err := client.AppsV1().DaemonSets("default").Patch(ctx, "agent", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		out := kubectlRolloutStatus(t, c)
		t.Logf("kubectl rollout status (%v):\n%s", time.Since(start).Round(time.Millisecond), out)
		if !strings.Contains(out, "Waiting for daemon set \"agent\" rollout to finish") || !strings.HasSuffix(out, "daemon set \"agent\" successfully rolled out\n") {
			t.Fatalf("kubectl rollout status did not follow a rollout:\n%s", out)
		}
		// With minReadySeconds 1 and maxUnavailable 1, three nodes take
		// at least two waits of a second each.
		if time.Since(start) < 2*time.Second {
			t.Fatalf("rolled out in %v: faster than maxUnavailable 1 with minReadySeconds 1 allows", time.Since(start))
		}
		if ok, err := onEachNode(ctx, client, "busybox:1.37", "node-1", "node-2", "node-3")(); !ok {
			by, _, _ := podsByNode(ctx, client)
			t.Fatalf("after the rollout: %v %v", by, err)
		}
		st := get().Status
		if st.UpdatedNumberScheduled != 3 || st.NumberAvailable != 3 {
			t.Fatalf("status after the rollout %+v", st)
		}

		gk := appsv1.SchemeGroupVersion.WithKind("DaemonSet").GroupKind()
		hv, err := polymorphichelpers.HistoryViewerFor(gk, client)
		if err != nil {
			t.Fatal(err)
		}
		hist, err := hv.ViewHistory("default", "agent", 0)
		if err != nil || !strings.Contains(hist, "\n1 ") || !regexp(hist, `\n2\s+image 1\.37`) {
			t.Fatalf("rollout history:\n%s\n%v", hist, err)
		}
		rb, err := polymorphichelpers.RollbackerFor(gk, client)
		if err != nil {
			t.Fatal(err)
		}
		msg, err := rb.Rollback(get(), nil, 0, cmdutil.DryRunNone)
		if err != nil || msg != "rolled back" {
			t.Fatalf("rollout undo: %q %v", msg, err)
		}
		out = kubectlRolloutStatus(t, c)
		if !strings.HasSuffix(out, "successfully rolled out\n") {
			t.Fatalf("rollout status after undo:\n%s", out)
		}
		cluster.WaitFor(t, 20*time.Second, "undo rolled out", onEachNode(ctx, client, "busybox:1.36", "node-1", "node-2", "node-3"))
		_, pods, _ := podsByNode(ctx, client)
		for _, p := range pods {
			if p.Labels[daemonset.HashLabel] != hash1 {
				t.Fatalf("after undo pod %s has hash %s, want the first revision's %s", p.Name, p.Labels[daemonset.HashLabel], hash1)
			}
		}
		revs, err := client.AppsV1().ControllerRevisions("default").List(ctx, metav1.ListOptions{LabelSelector: "app=agent"})
		if err != nil {
			t.Fatal(err)
		}
		nums := map[string]int64{}
		for _, r := range revs.Items {
			nums[r.Name] = r.Revision
		}
		if len(nums) != 2 || nums["agent-"+hash1] != 3 {
			t.Fatalf("revisions after undo %v: want 2, agent-%s renumbered 3", nums, hash1)
		}
		msg, err = rb.Rollback(get(), nil, 3, cmdutil.DryRunNone)
		if err != nil || !strings.Contains(msg, "skipped rollback") {
			t.Fatalf("undo to the current revision: %q %v", msg, err)
		}
	})

	t.Run("a deleted pod comes back on its node", func(t *testing.T) {
		_, pods, _ := podsByNode(ctx, client)
		var victim corev1.Pod
		for _, p := range pods {
			if p.Spec.NodeName == "node-2" {
				victim = p
			}
		}
		if err := client.CoreV1().Pods("default").Delete(ctx, victim.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, 20*time.Second, "a new pod on node-2", func() (bool, error) {
			_, pods, err := podsByNode(ctx, client)
			for _, p := range pods {
				if p.Spec.NodeName == "node-2" && p.UID != victim.UID {
					return true, err
				}
			}
			return false, err
		})
	})

	t.Run("a narrower nodeSelector removes the pods from the other nodes", func(t *testing.T) {
		if _, err := client.CoreV1().Nodes().Patch(ctx, "node-1", types.MergePatchType, []byte(`{"metadata":{"labels":{"role":"edge"}}}`), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		patch := `{"spec":{"template":{"spec":{"nodeSelector":{"role":"edge"}}}}}`
		if _, err := client.AppsV1().DaemonSets("default").Patch(ctx, "agent", types.StrategicMergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		cluster.WaitFor(t, 20*time.Second, "a pod on node-1 only", onEachNode(ctx, client, "busybox:1.36", "node-1"))
		cluster.WaitFor(t, 20*time.Second, "status of 1 desired", func() (bool, error) {
			d := get()
			st := d.Status
			return st.ObservedGeneration == d.Generation && st.DesiredNumberScheduled == 1 && st.NumberAvailable == 1 &&
				st.UpdatedNumberScheduled == 1 && st.NumberMisscheduled == 0, nil
		})
	})
}

func regexp(s, expr string) bool { return stdregexp.MustCompile(expr).MatchString(s) }
