package headwaytest_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/pkg/headwaytest"
)

const web = `apiVersion: v1
kind: Service
metadata:
  name: nginx-headless
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{name: web, port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: web
spec:
  serviceName: nginx-headless
  replicas: 2
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers: [{name: nginx, image: nginx}]
`

// TestStatefulSetToDNS applies a headless Service and a StatefulSet, waits
// for them, and finds each pod by its per-pod name through the cluster DNS.
func TestStatefulSetToDNS(t *testing.T) {
	t.Parallel()
	c := headwaytest.Start(t, headwaytest.Options{ClusterDomain: "example.test"})
	objs := c.Apply(web)
	if len(objs) != 2 || objs[1].GetKind() != "StatefulSet" || objs[1].GetNamespace() != "default" {
		t.Fatalf("Apply returned %v", objs)
	}
	c.WaitReady(objs[1])
	c.WaitReady(objs[0])
	ctx := context.Background()
	pods, err := c.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=nginx"})
	if err != nil || len(pods.Items) != 2 {
		t.Fatalf("pods: %v %v", pods, err)
	}
	for _, p := range pods.Items {
		name := p.Name + ".nginx-headless.default.svc.example.test."
		ips, err := c.Resolver.LookupNetIP(ctx, "ip4", name)
		if err != nil || len(ips) != 1 || ips[0].String() != p.Status.PodIP {
			t.Errorf("%s: got %v %v, want %s", name, ips, err, p.Status.PodIP)
		}
	}
	_, srvs, err := c.Resolver.LookupSRV(ctx, "web", "tcp", "nginx-headless.default.svc.example.test.")
	if err != nil || len(srvs) != 2 {
		t.Fatalf("SRV: %v %v", srvs, err)
	}
	// Apply again changes the object in place (server-side apply).
	again := c.Apply(`apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx-headless
  replicas: 3
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers: [{name: nginx, image: nginx}]
`)
	c.WaitReady(again[0])
	sts, err := c.Client.AppsV1().StatefulSets("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil || sts.Status.ReadyReplicas != 3 || sts.UID != objs[1].GetUID() {
		t.Fatalf("after the second apply: %+v %v", sts.Status, err)
	}
	// WaitReady also takes typed objects.
	c.WaitReady(sts)
}

// TestTenClustersInParallel starts ten clusters at once in this binary;
// each gets its own API, store and DNS, and what one holds the others do
// not.
func TestTenClustersInParallel(t *testing.T) {
	t.Parallel()
	type result struct {
		url, dns string
		took     time.Duration
	}
	results := make(chan result, 10)
	t.Run("group", func(t *testing.T) {
		for i := range 10 {
			t.Run(fmt.Sprint(i), func(t *testing.T) {
				t.Parallel()
				c := headwaytest.Start(t, headwaytest.Options{
					PodCIDR: netip.MustParsePrefix(fmt.Sprintf("198.18.%d.0/24", i)),
				})
				name := fmt.Sprintf("only-in-%d", i)
				objs := c.Apply(fmt.Sprintf(`apiVersion: v1
kind: Namespace
metadata: {name: %s}
---
apiVersion: v1
kind: Pod
metadata: {name: p, namespace: %s}
spec:
  containers: [{name: c, image: busybox}]
`, name, name))
				c.WaitReady(objs[0])
				c.WaitReady(objs[1])
				ctx := context.Background()
				nss, err := c.Client.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
				if err != nil {
					t.Fatal(err)
				}
				var names []string
				for _, ns := range nss.Items {
					names = append(names, ns.Name)
				}
				if !slices.Contains(names, name) {
					t.Fatalf("namespace %s missing: %v", name, names)
				}
				for _, n := range names {
					if n != name && len(n) > 8 && n[:8] == "only-in-" {
						t.Errorf("cluster %d sees another cluster's namespace %s", i, n)
					}
				}
				pod, err := c.Client.CoreV1().Pods(name).Get(ctx, "p", metav1.GetOptions{})
				if err != nil {
					t.Fatal(err)
				}
				if ip := netip.MustParseAddr(pod.Status.PodIP); !netip.MustParsePrefix(fmt.Sprintf("198.18.%d.0/24", i)).Contains(ip) {
					t.Errorf("pod IP %s is not from this cluster's PodCIDR", ip)
				}
				// The pod's a-b-c-d name resolves in this cluster's DNS only.
				dashed := netip.MustParseAddr(pod.Status.PodIP).String()
				// (The DNS follows the API through its own informers: poll.)
				deadline := time.Now().Add(30 * time.Second)
				for {
					ips, err := c.Resolver.LookupNetIP(ctx, "ip4", dashedName(dashed, name))
					if err == nil && len(ips) == 1 && ips[0].String() == pod.Status.PodIP {
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("pod name %s: %v %v", dashedName(dashed, name), ips, err)
					}
					time.Sleep(10 * time.Millisecond) // polling interval
				}
				results <- result{c.URL, c.DNSAddr, c.StartedIn}
			})
		}
	})
	close(results)
	urls, dnss := map[string]bool{}, map[string]bool{}
	n := 0
	for r := range results {
		n++
		urls[r.url], dnss[r.dns] = true, true
		t.Logf("cluster ready in %v (API %s, DNS %s)", r.took, r.url, r.dns)
	}
	if n != 10 || len(urls) != 10 || len(dnss) != 10 {
		t.Fatalf("%d clusters, %d distinct API addresses, %d distinct DNS addresses; want 10 each", n, len(urls), len(dnss))
	}
}

func dashedName(ip, ns string) string {
	b := []byte(ip)
	for i := range b {
		if b[i] == '.' {
			b[i] = '-'
		}
	}
	return string(b) + "." + ns + ".pod.cluster.local."
}

// TestStop stops a cluster before the test ends: the API refuses
// connections afterwards, and the cleanup does not fail.
func TestStop(t *testing.T) {
	t.Parallel()
	c := headwaytest.Start(t, headwaytest.Options{NoDNS: true, NoControllers: true})
	if c.Resolver != nil || c.Kubelet != nil {
		t.Fatal("NoDNS/NoControllers still started DNS or the simulated node")
	}
	ctx := context.Background()
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatal(err)
	}
	c.Stop()
	c.Stop()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := c.Client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err == nil {
		t.Fatal("the API still answers after Stop")
	}
}

// TestApplyErrors: a manifest with an unknown kind or without a name is
// refused with a message naming the document.
func TestApplyErrors(t *testing.T) {
	t.Parallel()
	c := headwaytest.Start(t, headwaytest.Options{NoDNS: true, NoControllers: true})
	ctx := context.Background()
	if _, err := c.ApplyE(ctx, "apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n"); err == nil {
		t.Error("a ConfigMap without a name was applied")
	}
	_, err := c.ApplyE(ctx, "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\napiVersion: example.com/v1\nkind: Nothing\nmetadata: {name: b}\n")
	if err == nil || !strings.Contains(err.Error(), "document 2") {
		t.Errorf("unknown kind: %v", err)
	}
	if _, err := c.Client.CoreV1().ConfigMaps("default").Get(ctx, "a", metav1.GetOptions{}); err != nil {
		t.Errorf("the first document was not applied: %v", err)
	}
}
