package app_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

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
