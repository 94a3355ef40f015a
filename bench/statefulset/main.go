// Command statefulset benchmarks the StatefulSet and EndpointSlice
// controllers: a StatefulSet of N replicas (default 500) with Parallel pod
// management behind a headless Service, on a simulated node whose kubelet
// (internal/testing/kubeletsim, the "fake runtime") marks
// each pod Running and Ready as soon as it is bound. It reports the time
// from creating the set until every pod is an endpoint marked ready in the
// Service's EndpointSlices, the phases on the way, and the API writes per
// pod by resource (from the API server's apiserver_request_total, read in
// process). Then it scales to 0 and reports the time until the slices are
// empty.
//
//	go run ./bench/statefulset -out bench/results-statefulset.md
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/internal/testing/kubeletsim"
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("bench/statefulset: ")
	replicas := flag.Int("replicas", 500, "replicas of the StatefulSet")
	runs := flag.Int("runs", 3, "runs, each on a fresh cluster; the median is reported")
	store := flag.String("store", "bolt", "store: bolt (durable, fsync'd) or memory")
	out := flag.String("out", "", "also write the markdown figures here")
	timeout := flag.Duration("timeout", 2*time.Minute, "give up on a run after this long")
	flag.BoolVar(&preBound, "prebound", false, "put spec.nodeName in the pod template, so pods skip the scheduler (isolates the controllers from its one-at-a-time bindings)")
	flag.Parse()

	var results []result
	for i := 0; i < *runs; i++ {
		r, err := run(*replicas, *store, *timeout)
		if err != nil {
			log.Fatalf("run %d: %v", i+1, err)
		}
		log.Printf("run %d: all endpoints ready in %v (%.1f writes/pod)", i+1, r.endpoints.Round(time.Millisecond), r.writesPerPod())
		results = append(results, r)
	}
	md := report(*replicas, *store, results)
	fmt.Print(md)
	if *out != "" {
		if err := os.WriteFile(*out, []byte(md), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

type result struct {
	created, running, endpoints, status, scaleDown time.Duration
	writes                                         map[string]float64
	slices                                         int
}

func (r result) total() float64 {
	var n float64
	for _, v := range r.writes {
		n += v
	}
	return n
}

func (r result) writesPerPod() float64 { return r.total() / float64(replicasOf(r)) }

var (
	benchReplicas int
	preBound      bool
)

func replicasOf(result) int { return benchReplicas }

// writeCounts reads apiserver_request_total for write verbs, by
// resource[/subresource].
func writeCounts() (map[string]float64, error) {
	mfs, err := prometheus.DefaultGatherer.Gather()
	if err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "apiserver_request_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := map[string]string{}
			for _, lp := range m.GetLabel() {
				l[lp.GetName()] = lp.GetValue()
			}
			switch l["verb"] {
			case "create", "update", "patch", "delete":
			default:
				continue
			}
			key := l["verb"] + " " + l["resource"]
			if l["subresource"] != "" {
				key += "/" + l["subresource"]
			}
			out[key] += m.GetCounter().GetValue()
		}
	}
	return out, nil
}

func run(n int, store string, timeout time.Duration) (result, error) {
	benchReplicas = n
	dir, err := os.MkdirTemp("", "headway-bench-sts-")
	if err != nil {
		return result{}, err
	}
	defer os.RemoveAll(dir)
	opts := []cluster.Option{func(o *app.Options) {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		o.NoDNS = true
	}}
	if store == "bolt" {
		opts = append(opts, cluster.WithBolt(filepath.Join(dir, "data")))
	}
	c, err := cluster.StartE(filepath.Join(dir, "data"), opts...)
	if err != nil {
		return result{}, err
	}
	defer c.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	client := c.Client

	k := &kubeletsim.Kubelet{Client: client, Node: "node-1", Workers: 16}
	if err := k.RegisterNode(ctx); err != nil {
		return result{}, err
	}
	kctx, stopKubelet := context.WithCancel(ctx)
	kdone := make(chan struct{})
	go func() { defer close(kdone); k.Run(kctx) }()
	defer func() { stopKubelet(); <-kdone }()

	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "nginx-headless", Labels: map[string]string{"app": "nginx"}},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": "nginx"},
			Ports: []corev1.ServicePort{{Name: "web", Port: 80, TargetPort: intstr.FromString("web")}}},
	}
	if _, err := client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		return result{}, err
	}

	// Watchers: pods, slices, the set.
	factory := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace("default"))
	podInf := factory.Core().V1().Pods().Informer()
	sliceInf := factory.Discovery().V1().EndpointSlices().Informer()
	setInf := factory.Apps().V1().StatefulSets().Informer()
	type mark struct {
		what string
		at   time.Time
	}
	marks := make(chan mark, 16)
	var startNanos atomic.Int64 // 0 until the set is created
	seenPods, runningPods := map[types.UID]bool{}, map[types.UID]bool{}
	podEvent := func(obj any) {
		p, ok := obj.(*corev1.Pod)
		if !ok || startNanos.Load() == 0 {
			return
		}
		seenPods[p.UID] = true
		if len(seenPods) == n {
			select {
			case marks <- mark{"created", time.Now()}:
			default:
			}
		}
		if p.Status.Phase == corev1.PodRunning && !runningPods[p.UID] {
			runningPods[p.UID] = true
			if len(runningPods) == n {
				marks <- mark{"running", time.Now()}
			}
		}
	}
	podInf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: podEvent, UpdateFunc: func(_, o any) { podEvent(o) }})
	readyInSlices := func() (int, int) {
		ready, count := 0, 0
		for _, o := range sliceInf.GetStore().List() {
			s := o.(*discoveryv1.EndpointSlice)
			if s.Labels[discoveryv1.LabelServiceName] != "nginx-headless" {
				continue
			}
			count++
			for _, ep := range s.Endpoints {
				if ep.Conditions.Ready != nil && *ep.Conditions.Ready {
					ready++
				}
			}
		}
		return ready, count
	}
	wantReady := n
	sliceEvent := func(any) {
		if startNanos.Load() == 0 {
			return
		}
		if r, _ := readyInSlices(); r == wantReady {
			marks <- mark{"endpoints", time.Now()}
			wantReady = -1
		}
	}
	sliceInf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: sliceEvent, UpdateFunc: func(_, o any) { sliceEvent(o) }, DeleteFunc: sliceEvent})
	statusDone := false
	setEvent := func(obj any) {
		s, ok := obj.(*appsv1.StatefulSet)
		if ok && !statusDone && s.Spec.Replicas != nil && int(*s.Spec.Replicas) == n && int(s.Status.ReadyReplicas) == n {
			statusDone = true
			marks <- mark{"status", time.Now()}
		}
	}
	setInf.AddEventHandler(cache.ResourceEventHandlerFuncs{AddFunc: setEvent, UpdateFunc: func(_, o any) { setEvent(o) }})
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	factory.WaitForCacheSync(ctx.Done())

	before, err := writeCounts()
	if err != nil {
		return result{}, err
	}
	r32 := int32(n)
	set := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: "nginx-headless", Replicas: &r32, PodManagementPolicy: appsv1.ParallelPodManagement,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "nginx"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "nginx"}},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:alpine",
					Ports: []corev1.ContainerPort{{ContainerPort: 80, Name: "web"}}}}},
			},
		},
	}
	if preBound {
		set.Spec.Template.Spec.NodeName = "node-1"
	}
	start := time.Now()
	startNanos.Store(start.UnixNano())
	if _, err := client.AppsV1().StatefulSets("default").Create(ctx, set, metav1.CreateOptions{}); err != nil {
		return result{}, err
	}
	var res result
	got := map[string]bool{}
	for len(got) < 4 {
		select {
		case m := <-marks:
			if got[m.what] {
				continue
			}
			got[m.what] = true
			d := m.at.Sub(start)
			switch m.what {
			case "created":
				res.created = d
			case "running":
				res.running = d
			case "endpoints":
				res.endpoints = d
			case "status":
				res.status = d
			}
		case <-ctx.Done():
			r, s := readyInSlices()
			return result{}, fmt.Errorf("timed out: phases %v, %d ready endpoints in %d slices", got, r, s)
		}
	}
	// Let trailing writes (status, events) settle before counting: wait
	// until the counts stop moving for a moment.
	after, _ := writeCounts()
	for i := 0; i < 50; i++ {
		time.Sleep(100 * time.Millisecond) // sampling until quiet, not synchronisation
		next, _ := writeCounts()
		if total(next) == total(after) {
			break
		}
		after = next
	}
	res.writes = map[string]float64{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			res.writes[k] = d
		}
	}
	_, res.slices = readyInSlices()

	// Scale to 0: time until the slices hold no endpoint.
	emptied := make(chan time.Time, 1)
	sliceInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		UpdateFunc: func(_, o any) {
			if r, _ := readyInSlices(); r == 0 {
				select {
				case emptied <- time.Now():
				default:
				}
			}
		},
		DeleteFunc: func(o any) {
			if r, _ := readyInSlices(); r == 0 {
				select {
				case emptied <- time.Now():
				default:
				}
			}
		},
	})
	t0 := time.Now()
	if _, err := client.AppsV1().StatefulSets("default").Patch(ctx, "web", types.MergePatchType, []byte(`{"spec":{"replicas":0}}`), metav1.PatchOptions{}, "scale"); err != nil {
		return result{}, err
	}
	select {
	case t1 := <-emptied:
		res.scaleDown = t1.Sub(t0)
	case <-ctx.Done():
		return result{}, fmt.Errorf("scale to 0: timed out")
	}
	return res, nil
}

func total(m map[string]float64) float64 {
	var n float64
	for _, v := range m {
		n += v
	}
	return n
}

func median(rs []result, f func(result) time.Duration) time.Duration {
	var ds []time.Duration
	for _, r := range rs {
		ds = append(ds, f(r))
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.0f ms", float64(d)/float64(time.Millisecond)) }

func report(n int, store string, rs []result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "StatefulSet of %d replicas, `Parallel`, headless Service, %s store, simulated kubelet (fake runtime) on one node%s; median of %d runs.\n\n", n, store, bindNote(), len(rs))
	fmt.Fprintln(&b, "| figure | median | runs | target | met |")
	fmt.Fprintln(&b, "| --- | --- | --- | --- | --- |")
	row := func(name string, f func(result) time.Duration, target string, met string) {
		var all []string
		for _, r := range rs {
			all = append(all, ms(f(r)))
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", name, ms(median(rs, f)), strings.Join(all, ", "), target, met)
	}
	endpoints := median(rs, func(r result) time.Duration { return r.endpoints })
	met := "no"
	if endpoints < 5*time.Second {
		met = "yes"
	}
	row("create set → all pods exist", func(r result) time.Duration { return r.created }, "", "")
	row("create set → all pods Running (kubelet status written)", func(r result) time.Duration { return r.running }, "", "")
	row(fmt.Sprintf("**create set → all %d endpoints ready in EndpointSlices**", n), func(r result) time.Duration { return r.endpoints }, "< 5 s", met)
	row("create set → status.readyReplicas = replicas", func(r result) time.Duration { return r.status }, "", "")
	row("scale to 0 → no endpoint left in the slices", func(r result) time.Duration { return r.scaleDown }, "", "")
	fmt.Fprintln(&b)
	last := rs[len(rs)-1]
	fmt.Fprintf(&b, "API writes during the scale-up (last run): **%.0f in all, %.2f per pod**; %d slices at the end.\n\n", last.total(), last.total()/float64(n), last.slices)
	fmt.Fprintln(&b, "| write | count | per pod |")
	fmt.Fprintln(&b, "| --- | --- | --- |")
	var keys []string
	for k := range last.writes {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return last.writes[keys[i]] > last.writes[keys[j]] })
	for _, k := range keys {
		fmt.Fprintf(&b, "| %s | %.0f | %.2f |\n", k, last.writes[k], last.writes[k]/float64(n))
	}
	return b.String()
}

func bindNote() string {
	if preBound {
		return ", pods pre-bound to the node (no scheduler)"
	}
	return ", pods bound by the scheduler"
}
