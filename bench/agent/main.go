// Command agent measures pod start latency through the node agent and the
// process runtime: create → Ready for single pods one after another, and
// for a 100-replica Parallel StatefulSet; and memory per pod.
//
// It starts an in-process cluster (internal/testing/cluster, bolt store)
// with the agent on a bridge and pod range of its own (hwbench0,
// 198.18.240.0/22), needs root, and removes everything it made. Each pod
// runs busybox httpd with an HTTP readiness probe (sleep without a probe
// when busybox is missing). All traffic stays on this machine.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"

	"github.com/headway/headway/internal/agent/network"
	"github.com/headway/headway/internal/testing/cluster"
)

func main() {
	out := flag.String("out", "", "write the markdown figures here (default: stdout)")
	singles := flag.Int("single", 30, "single pods to start one after another")
	replicas := flag.Int("replicas", 100, "replicas of the Parallel StatefulSet")
	flag.Parse()
	if err := network.Check(); err != nil {
		log.Fatalf("bench/agent: %v", err)
	}
	dir, err := os.MkdirTemp("", "headway-bench-agent-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	c, err := cluster.StartE(dir, cluster.WithBolt(dir), cluster.WithAgent("hwbench0", "198.18.240.0/22", "198.19.240.0/24"))
	if err != nil {
		log.Fatal(err)
	}
	defer c.Stop()
	ctx := context.Background()
	waitNode(ctx, c.Client)

	tmpl := podTemplate()
	var b strings.Builder
	w := io.Writer(&b)
	fmt.Fprintf(w, "Pods run `%s`%s; in-process cluster, bolt store; times are create → Ready as seen by a watch.\n\n",
		strings.Join(tmpl.Spec.Containers[0].Command, " "), probeNote(tmpl))

	// Single pods, one after another.
	var single []time.Duration
	for i := range *singles {
		name := fmt.Sprintf("single-%d", i)
		p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"bench": "single"}}, Spec: tmpl.Spec}
		d, err := timeReady(ctx, c.Client, "bench=single", []string{name}, func() error {
			_, err := c.Client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
			return err
		})
		if err != nil {
			log.Fatal(err)
		}
		single = append(single, d[name])
		if err := c.Client.CoreV1().Pods("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			log.Fatal(err)
		}
	}
	waitNoPods(ctx, c.Client, "bench=single")

	// Memory before the StatefulSet.
	rssBefore := rss(os.Getpid())
	names := make([]string, *replicas)
	for i := range names {
		names[i] = fmt.Sprintf("web-%d", i)
	}
	n := int32(*replicas)
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			Replicas: &n, ServiceName: "web", PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}}, Spec: tmpl.Spec},
		},
	}
	start := time.Now()
	perPod, err := timeReady(ctx, c.Client, "app=web", names, func() error {
		_, err := c.Client.AppsV1().StatefulSets("default").Create(ctx, sts, metav1.CreateOptions{})
		return err
	})
	if err != nil {
		log.Fatal(err)
	}
	all := time.Since(start)
	rssAfter := rss(os.Getpid())
	podRSS := podProcessesRSS(filepath.Join(dir, "pods"))
	var stsLat []time.Duration
	for _, d := range perPod {
		stsLat = append(stsLat, d)
	}

	fmt.Fprintf(w, "| figure | value | target | met |\n| --- | --- | --- | --- |\n")
	med := pct(single, 50)
	fmt.Fprintf(w, "| single pod, create → Ready, median (%d pods) | %s | < 50 ms | %s |\n", len(single), ms(med), yes(med < 50*time.Millisecond))
	fmt.Fprintf(w, "| single pod, create → Ready, p99 | %s | | |\n", ms(pct(single, 99)))
	fmt.Fprintf(w, "| %d-replica Parallel StatefulSet, create → all Ready | %s | < 3 s | %s |\n", n, ms(all), yes(all < 3*time.Second))
	fmt.Fprintf(w, "| … per pod (its first sight → Ready), median | %s | | |\n", ms(pct(stsLat, 50)))
	fmt.Fprintf(w, "| … per pod, p99 | %s | | |\n", ms(pct(stsLat, 99)))
	fmt.Fprintf(w, "| headway process memory (RSS) per running pod | %.0f KiB | | |\n", float64(rssAfter-rssBefore)/float64(n)/1024)
	fmt.Fprintf(w, "| the pods' own processes (RSS) per pod | %.0f KiB | | |\n", float64(podRSS)/float64(n)/1024)
	fmt.Fprintf(w, "\nThe headway figure is the growth of the whole server process (API server, controllers, DNS and agent in one) from before the StatefulSet to all %d pods Ready, divided by %d.\n", n, n)

	// Tear down: delete the StatefulSet's pods and wait.
	c.Client.AppsV1().StatefulSets("default").Delete(ctx, "web", metav1.DeleteOptions{})
	c.Client.CoreV1().Pods("default").DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "app=web"})
	waitNoPods(ctx, c.Client, "app=web")

	if *out == "" {
		fmt.Print(b.String())
	} else if err := os.WriteFile(*out, []byte(b.String()), 0o644); err != nil {
		log.Fatal(err)
	}
}

func podTemplate() corev1.PodTemplateSpec {
	zero := int64(0)
	spec := corev1.PodSpec{TerminationGracePeriodSeconds: &zero}
	if _, err := exec.LookPath("busybox"); err == nil {
		spec.Containers = []corev1.Container{{
			Name: "web", Image: "busybox", Command: []string{"busybox", "httpd", "-f", "-p", "80", "-h", "/etc"},
			ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: intstr.FromInt32(80)}}},
		}}
	} else {
		spec.Containers = []corev1.Container{{Name: "web", Image: "none", Command: []string{"sleep", "3600"}}}
	}
	return corev1.PodTemplateSpec{Spec: spec}
}

func probeNote(t corev1.PodTemplateSpec) string {
	if t.Spec.Containers[0].ReadinessProbe != nil {
		return " with a tcpSocket readiness probe on port 80"
	}
	return " (no probe: busybox is not installed)"
}

func waitNode(ctx context.Context, c kubernetes.Interface) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		nodes, err := c.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err == nil {
			for _, n := range nodes.Items {
				for _, cond := range n.Status.Conditions {
					if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
						return
					}
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Fatal("no Ready node after 30s")
}

func ready(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// timeReady starts a watch, runs create, and returns for each name the time
// from create's start (or, for pods a controller makes, from the pod's first
// sight in the watch) to Ready.
func timeReady(ctx context.Context, c kubernetes.Interface, selector string, names []string, create func() error) (map[string]time.Duration, error) {
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	wt, err := c.CoreV1().Pods("default").Watch(wctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	defer wt.Stop()
	want := map[string]bool{}
	for _, n := range names {
		want[n] = true
	}
	begin := time.Now()
	if err := create(); err != nil {
		return nil, err
	}
	seen := map[string]time.Time{}
	out := map[string]time.Duration{}
	single := len(names) == 1
	var mu sync.Mutex
	for ev := range wt.ResultChan() {
		if ev.Type == watch.Error {
			return nil, fmt.Errorf("watch error: %v", ev.Object)
		}
		p, ok := ev.Object.(*corev1.Pod)
		if !ok || !want[p.Name] {
			continue
		}
		mu.Lock()
		if _, ok := seen[p.Name]; !ok {
			seen[p.Name] = time.Now()
			if single {
				seen[p.Name] = begin
			}
		}
		if _, done := out[p.Name]; !done && ready(p) {
			out[p.Name] = time.Since(seen[p.Name])
		}
		n := len(out)
		mu.Unlock()
		if n == len(names) {
			return out, nil
		}
	}
	return nil, fmt.Errorf("only %d of %d pods Ready within 60s", len(out), len(names))
}

func waitNoPods(ctx context.Context, c kubernetes.Interface, selector string) {
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		pods, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err == nil && len(pods.Items) == 0 {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Printf("pods %s still there after 60s", selector)
}

// rss is a process's resident set in bytes.
func rss(pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// podProcessesRSS adds up the RSS of the containers recorded in pid files.
func podProcessesRSS(podsDir string) int64 {
	files, _ := filepath.Glob(filepath.Join(podsDir, "*", "containers", "*.pid"))
	var total int64
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.Fields(string(data))[0]); err == nil {
			total += rss(pid)
		}
	}
	return total
}

func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[min(i, len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func yes(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}
