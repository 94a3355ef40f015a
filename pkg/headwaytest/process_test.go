package headwaytest_test

import (
	"context"
	"io"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/testing/netnstest"
	"github.com/headway/headway/pkg/headwaytest"
)

// TestProcessRuntimePod runs a real pod (busybox httpd) through the process
// runtime behind a headless Service: its per-pod name resolves through
// c.Resolver to its address in the cluster's pod range, and the process
// answers HTTP there.
func TestProcessRuntimePod(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("skipping: the pod runs busybox's httpd (apt-get install busybox)")
	}
	if !netnstest.RunInOwn(t) {
		return
	}
	podCIDR := netip.MustParsePrefix("198.18.252.0/24")
	c := headwaytest.Start(t, headwaytest.Options{Process: &headwaytest.ProcessRuntime{
		Bridge: "hwt-pkgtest", PodCIDR: podCIDR, ServiceCIDR: netip.MustParsePrefix("198.19.252.0/24"),
	}})
	if c.Kubelet != nil {
		t.Error("a process-runtime cluster has a simulated kubelet")
	}
	objs := c.Apply(`apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  clusterIP: None
  selector: {app: web}
  ports: [{name: http, port: 8080}]
---
apiVersion: v1
kind: Pod
metadata: {name: web-0, labels: {app: web}}
spec:
  hostname: web-0
  subdomain: web
  containers:
  - name: httpd
    image: busybox:1.28
    command: [sh, -c, 'd=$(mktemp -d) && echo served-by-web-0 > $d/index.html && exec httpd -f -p 8080 -h $d']
    readinessProbe:
      tcpSocket: {port: 8080}
      periodSeconds: 1
`)
	c.WaitReady(objs[1])
	c.WaitReady(objs[0])
	ctx := context.Background()
	pod, err := c.Client.CoreV1().Pods("default").Get(ctx, "web-0", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if pod.Status.Phase != corev1.PodRunning || !podCIDR.Contains(netip.MustParseAddr(pod.Status.PodIP)) {
		t.Fatalf("pod %s, IP %s; want Running with an IP in %s", pod.Status.Phase, pod.Status.PodIP, podCIDR)
	}
	name := "web-0.web.default.svc." + c.ClusterDomain + "."
	ips, err := c.Resolver.LookupNetIP(ctx, "ip4", name)
	if err != nil || len(ips) != 1 || ips[0].String() != pod.Status.PodIP {
		t.Fatalf("%s resolves to %v (%v); want the pod's %s", name, ips, err, pod.Status.PodIP)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get("http://" + ips[0].String() + ":8080/")
	if err != nil {
		t.Fatalf("the pod's httpd at %s: %v", ips[0], err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if got := strings.TrimSpace(string(body)); got != "served-by-web-0" {
		t.Errorf("the pod answered %q, want %q", got, "served-by-web-0")
	}
}
