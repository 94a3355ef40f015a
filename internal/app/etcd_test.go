package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/internal/testing/etcdtest"
)

// readyz answers GET /readyz?verbose: the status code and the body.
func readyz(t *testing.T, c *cluster.Cluster) (int, string, error) {
	t.Helper()
	hc, err := rest.HTTPClientFor(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	hc.Timeout = 10 * time.Second
	resp, err := hc.Get(c.URL + "/readyz?verbose")
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestReadyzFollowsEtcd: while etcd is down the server stays up and
// /readyz fails naming the store check; when etcd is back it is ready again
// and serves what was stored before.
func TestReadyzFollowsEtcd(t *testing.T) {
	e := etcdtest.Start(t)
	c := cluster.Start(t, cluster.WithEtcd(e.Endpoint), cluster.WithoutDNS(), cluster.WithoutControllers())
	ctx := context.Background()
	if _, err := c.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "before"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if code, body, err := readyz(t, c); err != nil || code != http.StatusOK || !strings.Contains(body, "[+]store ok") {
		t.Fatalf("with etcd up: /readyz %d %q %v", code, body, err)
	}

	e.Stop()
	cluster.WaitFor(t, 30*time.Second, "/readyz to fail on the store check while etcd is down", func() (bool, error) {
		code, body, err := readyz(t, c)
		if err != nil {
			return false, err
		}
		if code != http.StatusInternalServerError || !strings.Contains(body, "[-]store failed") {
			return false, fmt.Errorf("/readyz %d %q", code, body)
		}
		if !strings.Contains(body, "[+]ping ok") {
			return false, fmt.Errorf("only the store check should fail: %q", body)
		}
		return true, nil
	})

	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 60*time.Second, "/readyz to pass once etcd is back", func() (bool, error) {
		code, body, err := readyz(t, c)
		if err != nil {
			return false, err
		}
		if code != http.StatusOK || !strings.Contains(body, "[+]store ok") {
			return false, fmt.Errorf("/readyz %d %q", code, body)
		}
		return true, nil
	})
	if _, err := c.Client.CoreV1().ConfigMaps("default").Get(ctx, "before", metav1.GetOptions{}); err != nil {
		t.Fatalf("reading what was stored before the outage: %v", err)
	}
	if _, err := c.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "after"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("writing after the outage: %v", err)
	}
}

// TestAllocationAcrossServers: two API servers on one etcd creating
// Services concurrently (ClusterIP and NodePort) never hand out the same
// cluster IP or node port.
func TestAllocationAcrossServers(t *testing.T) {
	e := etcdtest.Start(t)
	a := cluster.Start(t, cluster.WithEtcd(e.Endpoint), cluster.WithoutDNS(), cluster.WithoutControllers())
	b := cluster.Start(t, cluster.WithEtcd(e.Endpoint), cluster.WithoutDNS(), cluster.WithoutControllers(), cluster.CopyPKI(t, a))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	type result struct {
		name, ip string
		ports    []int32
	}
	results := make(chan result, 1000)
	errs := make(chan error, 32)
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		c := a
		if w%2 == 1 {
			c = b
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				svc := &corev1.Service{
					ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("s-%d-%d", w, i)},
					Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "a", Port: 80}, {Name: "b", Port: 81}}},
				}
				if i%2 == 0 {
					svc.Spec.Type = corev1.ServiceTypeNodePort
				}
				out, err := c.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
				if err != nil {
					errs <- err
					return
				}
				r := result{name: out.Name, ip: out.Spec.ClusterIP}
				for _, p := range out.Spec.Ports {
					if p.NodePort != 0 {
						r.ports = append(r.ports, p.NodePort)
					}
				}
				results <- r
			}
		}()
	}
	wg.Wait()
	close(errs)
	close(results)
	for err := range errs {
		t.Fatal(err)
	}
	ips, ports := map[string]string{}, map[int32]string{}
	n, nodePorts := 0, 0
	for r := range results {
		n++
		if prev, dup := ips[r.ip]; dup || r.ip == "" {
			t.Fatalf("%s and %s share cluster IP %q", r.name, prev, r.ip)
		}
		ips[r.ip] = r.name
		for _, p := range r.ports {
			nodePorts++
			if prev, dup := ports[p]; dup {
				t.Fatalf("%s and %s share node port %d", r.name, prev, p)
			}
			ports[p] = r.name
		}
	}
	if n != 400 || nodePorts != 416 {
		t.Fatalf("created %d Services with %d node ports, want 400 and 416", n, nodePorts)
	}
	// Both servers list every Service (one store).
	for _, c := range []*cluster.Cluster{a, b} {
		list, err := c.Client.CoreV1().Services("default").List(ctx, metav1.ListOptions{})
		if err != nil || len(list.Items) != 401 {
			t.Fatalf("listing from %s: %d Services, %v; want 401 (with kubernetes)", c.URL, len(list.Items), err)
		}
	}
	// A taken address asked for by name on the other server is refused.
	var taken string
	for ip := range ips {
		taken = ip
		break
	}
	_, err := b.Client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "wants-taken"},
		Spec:       corev1.ServiceSpec{ClusterIP: taken, Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("a clusterIP taken through the other server: want 422, got %v", err)
	}
}

func leaseHolder(ctx context.Context, c *cluster.Cluster) (string, error) {
	l, err := c.Client.CoordinationV1().Leases(app.LeaderLeaseNamespace).Get(ctx, app.LeaderLeaseName, metav1.GetOptions{})
	if err != nil {
		return "", err
	}
	if l.Spec.HolderIdentity == nil {
		return "", nil
	}
	return *l.Spec.HolderIdentity, nil
}

func countPods(ctx context.Context, c *cluster.Cluster, selector string) (int, error) {
	pods, err := c.Client.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return 0, err
	}
	return len(pods.Items), nil
}

// TestControllersRunOnce: two servers on one etcd elect one to run the
// controllers (the kube-controller-manager Lease names it); a ReplicaSet
// created through the other gets exactly its pods; when the leader stops,
// the other takes the Lease and a scale-up completes.
func TestControllersRunOnce(t *testing.T) {
	e := etcdtest.Start(t)
	a := cluster.Start(t, cluster.WithEtcd(e.Endpoint), cluster.WithoutDNS())
	b := cluster.Start(t, cluster.WithEtcd(e.Endpoint), cluster.WithoutDNS(), cluster.CopyPKI(t, a))
	ids := map[string]*cluster.Cluster{a.Running.LeaderIdentity: a, b.Running.LeaderIdentity: b}
	if len(ids) != 2 || a.Running.LeaderIdentity == "" {
		t.Fatalf("leader identities %q and %q: want two distinct", a.Running.LeaderIdentity, b.Running.LeaderIdentity)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var leader, other *cluster.Cluster
	cluster.WaitFor(t, 30*time.Second, "one server to hold the controllers' lease", func() (bool, error) {
		h, err := leaseHolder(ctx, a)
		leader = ids[h]
		return leader != nil, err
	})
	other = a
	if leader == a {
		other = b
	}

	replicas := int32(3)
	rs := &appsv1.ReplicaSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.ReplicaSetSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "web"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			},
		},
	}
	if _, err := other.Client.AppsV1().ReplicaSets("default").Create(ctx, rs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 60*time.Second, "the ReplicaSet's 3 pods", func() (bool, error) {
		got, err := other.Client.AppsV1().ReplicaSets("default").Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		n, err := countPods(ctx, other, "app=web")
		return got.Status.Replicas == 3 && n == 3, err
	})

	start := time.Now()
	if err := leader.Stop(); err != nil {
		t.Fatal(err)
	}
	scaled := int32(5)
	if _, err := other.Client.AppsV1().ReplicaSets("default").UpdateScale(ctx, "web", &autoscalingv1.Scale{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "default"}, Spec: autoscalingv1.ScaleSpec{Replicas: scaled},
	}, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 30*time.Second, "the other server to take the lease", func() (bool, error) {
		h, err := leaseHolder(ctx, other)
		return ids[h] == other, err
	})
	cluster.WaitFor(t, 30*time.Second, "the scale-up to 5 pods after the fail-over", func() (bool, error) {
		n, err := countPods(ctx, other, "app=web")
		return n == 5, err
	})
	t.Logf("controllers resumed on the other server %v after the leader stopped", time.Since(start).Round(time.Millisecond))
	// Exactly 5: no second controller set is creating pods.
	if n, err := countPods(ctx, other, "app=web"); err != nil || n != 5 {
		t.Fatalf("pods after the scale-up: %d %v, want 5", n, err)
	}
}

// TestSharedPKI: a second server started with a copy of the first one's
// PKI accepts the first one's admin token and is verified by its CA; one
// with its own PKI is refused at start, naming what differs and the fix.
func TestSharedPKI(t *testing.T) {
	e := etcdtest.Start(t)
	a := cluster.Start(t, cluster.WithEtcd(e.Endpoint), cluster.WithoutDNS(), cluster.WithoutControllers())
	b := cluster.Start(t, cluster.WithEtcd(e.Endpoint), cluster.WithoutDNS(), cluster.WithoutControllers(), cluster.CopyPKI(t, a))
	ctx := context.Background()
	// a's admin credentials and CA, pointed at b.
	cfg := rest.CopyConfig(a.Config)
	cfg.Host = b.URL
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "through-b"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("a's admin token against b: %v", err)
	}
	if _, err := a.Client.CoreV1().ConfigMaps("default").Get(ctx, "through-b", metav1.GetOptions{}); err != nil {
		t.Fatalf("reading through a what was written through b: %v", err)
	}
	// A service-account token issued by a is accepted by b.
	if _, err := a.Client.CoreV1().ServiceAccounts("default").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "robot"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := a.Client.CoreV1().ServiceAccounts("default").CreateToken(ctx, "robot", &authenticationv1.TokenRequest{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	saCfg := rest.AnonymousClientConfig(cfg)
	saCfg.BearerToken = tr.Status.Token
	saClient, err := kubernetes.NewForConfig(saCfg)
	if err != nil {
		t.Fatal(err)
	}
	review, err := saClient.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil || review.Status.UserInfo.Username != "system:serviceaccount:default:robot" {
		t.Fatalf("a's service-account token at b: %+v %v", review, err)
	}

	_, err = cluster.StartE(t.TempDir(), cluster.WithEtcd(e.Endpoint), cluster.WithoutDNS(), cluster.WithoutControllers())
	if err == nil || !strings.Contains(err.Error(), "CA (ca.crt)") || !strings.Contains(err.Error(), "--pki-dir") {
		t.Fatalf("a server with its own PKI on the shared store: want a refusal naming the CA and --pki-dir, got %v", err)
	}
}
