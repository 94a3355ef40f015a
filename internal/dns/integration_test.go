package dns_test

import (
	"context"
	"slices"
	"testing"
	"time"

	mdns "github.com/miekg/dns"
	dto "github.com/prometheus/client_model/go"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"

	"github.com/headway/headway/internal/dns"
	"github.com/headway/headway/internal/testing/cluster"
)

// create writes objects through the API, as a user or controller would.
func create(t *testing.T, ctx context.Context, c kubernetes.Interface, objs ...runtime.Object) {
	t.Helper()
	for _, o := range objs {
		var err error
		switch o := o.(type) {
		case *corev1.Namespace:
			_, err = c.CoreV1().Namespaces().Create(ctx, o, metav1.CreateOptions{})
			if err != nil && o.Name != "other" {
				err = nil // default and kube-system exist already
			}
		case *corev1.Service:
			if o.Name == "kube-dns" {
				continue // the server makes it
			}
			_, err = c.CoreV1().Services(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *discoveryv1.EndpointSlice:
			_, err = c.DiscoveryV1().EndpointSlices(o.Namespace).Create(ctx, o, metav1.CreateOptions{})
		case *corev1.Pod:
			continue // written by the pod tests, where pods are served
		}
		if err != nil {
			t.Fatalf("creating %T: %v", o, err)
		}
	}
}

// eventually retries f until it returns "" or the deadline passes.
func eventually(t *testing.T, d time.Duration, f func() string) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		msg := f()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", d, msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestServerDNS: `headway server` (in process) answers the seed example
// once its EndpointSlice is written, and has made the kube-dns Service.
func TestServerDNS(t *testing.T) {
	c := cluster.Start(t)
	if c.DNSAddr == "" {
		t.Fatal("the cluster has no DNS address")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	eventually(t, 10*time.Second, func() string {
		s, err := c.Client.CoreV1().Services("kube-system").Get(ctx, "kube-dns", metav1.GetOptions{})
		if err != nil {
			return err.Error()
		}
		if s.Spec.ClusterIP != "198.19.0.10" {
			return "kube-dns ClusterIP " + s.Spec.ClusterIP
		}
		return ""
	})
	create(t, ctx, c.Client, fixture()...)

	want := []string{"198.18.0.22", "198.18.0.23", "198.18.0.39"}
	eventually(t, 10*time.Second, func() string {
		r, err := dns.Exchange(ctx, "udp", c.DNSAddr, query("nginx-headless.default.svc.cluster.local.", mdns.TypeA))
		if err != nil {
			return err.Error()
		}
		var got []string
		for _, rr := range r.Answer {
			got = append(got, rr.(*mdns.A).A.String())
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return "answer " + r.String()
		}
		return ""
	})
	r := exchange(t, "udp", c.DNSAddr, query("kube-dns.kube-system.svc.cluster.local.", mdns.TypeA))
	if len(r.Answer) != 1 || r.Answer[0].(*mdns.A).A.String() != "198.19.0.10" {
		t.Fatalf("kube-dns: %v", r)
	}
	r = exchange(t, "udp", c.DNSAddr, query("cluster.local.", mdns.TypeNS))
	if len(r.Answer) != 1 || len(r.Extra) != 1 {
		t.Fatalf("apex NS: %v", r)
	}

	// A pod becoming ready: its slice is updated with a trigger time; the
	// change is answerable within a deadline, and the programming latency
	// is recorded.
	before := histogramCount(t)
	s, err := c.Client.DiscoveryV1().EndpointSlices("default").Get(ctx, "nginx-headless-abc", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Endpoints[3].Conditions.Ready = ptr(true)
	s.Annotations = map[string]string{corev1.EndpointsLastChangeTriggerTime: time.Now().UTC().Format(time.RFC3339Nano)}
	if _, err := c.Client.DiscoveryV1().EndpointSlices("default").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() string {
		r, err := dns.Exchange(ctx, "udp", c.DNSAddr, query("web-3.nginx-headless.default.svc.cluster.local.", mdns.TypeA))
		if err != nil {
			return err.Error()
		}
		if len(r.Answer) != 1 {
			return "web-3: " + r.String()
		}
		return ""
	})
	if after := histogramCount(t); after <= before {
		t.Fatalf("programming latency not observed: %d → %d", before, after)
	}
	// Deleting the Service removes every name it defined.
	if err := c.Client.CoreV1().Services("default").Delete(ctx, "nginx-headless", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() string {
		r, err := dns.Exchange(ctx, "udp", c.DNSAddr, query("web-0.nginx-headless.default.svc.cluster.local.", mdns.TypeA))
		if err != nil {
			return err.Error()
		}
		if r.Rcode != mdns.RcodeNameError {
			return "after delete: " + r.String()
		}
		return ""
	})
}

func histogramCount(t *testing.T) uint64 {
	t.Helper()
	var m dto.Metric
	if err := dns.DefaultMetrics().ProgrammingLatency.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}

// TestPodRecordsVerified: pod records follow pods through the API (when the
// API server serves pods; otherwise through a fake clientset).
func TestPodRecordsVerified(t *testing.T) {
	c := cluster.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:alpine"}}}}
	created, err := c.Client.CoreV1().Pods("default").Create(ctx, p, metav1.CreateOptions{})
	if err != nil {
		t.Skipf("the API server does not take pods (%v); TestPodRecordsFake covers pod records", err)
	}
	_ = created
	setPodIP(t, ctx, c.Client, "default", "web-0", "198.18.0.77")
	name := "198-18-0-77.default.pod.cluster.local."
	eventually(t, 10*time.Second, func() string {
		r, err := dns.Exchange(ctx, "udp", c.DNSAddr, query(name, mdns.TypeA))
		if err != nil {
			return err.Error()
		}
		if len(r.Answer) != 1 {
			return r.String()
		}
		return ""
	})
	if err := c.Client.CoreV1().Pods("default").Delete(ctx, "web-0", metav1.DeleteOptions{GracePeriodSeconds: ptr(int64(0))}); err != nil {
		t.Fatal(err)
	}
	eventually(t, 10*time.Second, func() string {
		r, err := dns.Exchange(ctx, "udp", c.DNSAddr, query(name, mdns.TypeA))
		if err != nil {
			return err.Error()
		}
		if r.Rcode != mdns.RcodeNameError {
			return "after delete: " + r.String()
		}
		return ""
	})
}

// setPodIP writes a pod's address through the status subresource, as the
// node agent does.
func setPodIP(t *testing.T, ctx context.Context, c kubernetes.Interface, ns, name, ip string) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		p, err := c.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		p.Status.PodIP = ip
		p.Status.PodIPs = []corev1.PodIP{{IP: ip}}
		_, err = c.CoreV1().Pods(ns).UpdateStatus(ctx, p, metav1.UpdateOptions{})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}
