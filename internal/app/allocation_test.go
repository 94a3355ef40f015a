package app_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/headway/headway/internal/testing/cluster"
)

func createServices(t *testing.T, cs kubernetes.Interface, prefix string, n int) map[string]string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	ips := map[string]string{}
	work := make(chan int)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%d", prefix, i)},
					Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Port: 80}}, Selector: map[string]string{"app": "x"}},
				}
				out, err := cs.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					continue
				}
				mu.Lock()
				ips[out.Name] = out.Spec.ClusterIP
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < n; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	return ips
}

func assertDistinct(t *testing.T, sets ...map[string]string) {
	t.Helper()
	seen := map[string]string{}
	for _, set := range sets {
		for name, ip := range set {
			if ip == "" || ip == "None" {
				t.Fatalf("%s got no cluster IP", name)
			}
			if other, dup := seen[ip]; dup {
				t.Fatalf("%s and %s share cluster IP %s", name, other, ip)
			}
			seen[ip] = name
		}
	}
}

// TestClusterIPAllocation: 1,000 Services created concurrently get 1,000
// distinct addresses; after deletes and a restart no address is handed out twice.
func TestClusterIPAllocation(t *testing.T) {
	dir := t.TempDir()
	c1, err := cluster.StartE(dir, cluster.WithBolt(dir))
	if err != nil {
		t.Fatal(err)
	}
	first := createServices(t, c1.Client, "a", 1000)
	if len(first) != 1000 {
		t.Fatalf("created %d Services, want 1000", len(first))
	}
	assertDistinct(t, first)
	ctx := context.Background()
	// A requested address that is taken is refused with 422.
	var taken string
	for _, ip := range first {
		taken = ip
		break
	}
	_, err = c1.Client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "wants-taken"},
		Spec:       corev1.ServiceSpec{ClusterIP: taken, Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("a taken clusterIP: want 422, got %v", err)
	}
	// Delete half, restart, create more: nothing still held is reused.
	kept := map[string]string{}
	for i := 0; i < 1000; i++ {
		name := fmt.Sprintf("a-%d", i)
		if i%2 == 0 {
			if err := c1.Client.CoreV1().Services("default").Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		} else {
			kept[name] = first[name]
		}
	}
	if err := c1.Stop(); err != nil {
		t.Fatal(err)
	}
	c2, err := cluster.StartE(dir, cluster.WithBolt(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Stop()
	second := createServices(t, c2.Client, "b", 600)
	assertDistinct(t, kept, second)
	k, err := c2.Client.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
	if err != nil || k.Spec.ClusterIP != "198.19.0.1" {
		t.Fatalf("kubernetes Service: %v %v", k, err)
	}
	for _, ip := range second {
		if ip == "198.19.0.1" {
			t.Fatal("the kubernetes Service's address was handed out")
		}
	}
}
