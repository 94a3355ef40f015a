package apiserver_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/headway/headway/internal/testing/cluster"
)

// A client whose HTTP/2 windows are the protocol's smallest (64 KiB for
// the stream and the connection) gets a list 25 times its window and a
// watch's 800 KiB of events: the server gathers the client's grants
// (h2window.go) and must never hold so many that it waits for window.
func TestSmallWindowClient(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS(), cluster.WithoutControllers())
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const ns = "default"
	value := strings.Repeat("x", 8<<10)
	create := func(prefix string, n int) {
		t.Helper()
		for i := range n {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("%s-%03d", prefix, i)}, Data: map[string]string{"v": value}}
			if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
	}
	create("listed", 200)

	tlsCfg, err := rest.TLSConfigFor(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{
		TLSClientConfig:   tlsCfg,
		ForceAttemptHTTP2: true,
		HTTP2:             &http.HTTP2Config{MaxReceiveBufferPerConnection: 65535, MaxReceiveBufferPerStream: 65535},
	}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr}
	get := func(path string) *http.Response {
		t.Helper()
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+c.Config.BearerToken)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
			resp.Body.Close()
			t.Fatalf("GET %s: %s over %s, want 200 over HTTP/2", path, resp.Status, resp.Proto)
		}
		return resp
	}

	resp := get("/api/v1/namespaces/" + ns + "/configmaps")
	var list corev1.ConfigMapList
	err = json.NewDecoder(resp.Body).Decode(&list)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) < 200 {
		t.Fatalf("list: %d ConfigMaps, want at least 200", len(list.Items))
	}

	// The watch's events queue behind the small window while the creates
	// go on; all of them must arrive, in order.
	w := get("/api/v1/namespaces/" + ns + "/configmaps?watch=1&resourceVersion=" + list.ResourceVersion)
	defer w.Body.Close()
	create("watched", 100)
	dec := json.NewDecoder(w.Body)
	for i := range 100 {
		var ev struct {
			Type   string
			Object corev1.ConfigMap
		}
		if err := dec.Decode(&ev); err != nil {
			t.Fatalf("watch event %d: %v", i, err)
		}
		if want := fmt.Sprintf("watched-%03d", i); ev.Type != "ADDED" || ev.Object.Name != want || len(ev.Object.Data["v"]) != len(value) {
			t.Fatalf("watch event %d: %s %s, want ADDED %s", i, ev.Type, ev.Object.Name, want)
		}
	}
}
