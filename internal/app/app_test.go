package app_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/testing/cluster"
)

func TestRestartKeepsStatePKIAndHistory(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	c1, err := cluster.StartE(dir, cluster.WithBolt(dir))
	if err != nil {
		t.Fatal(err)
	}
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "nginx-headless"},
		Spec:       corev1.ServiceSpec{ClusterIP: "None", Selector: map[string]string{"app": "nginx"}, Ports: []corev1.ServicePort{{Name: "web", Port: 80}}},
	}
	created, err := c1.Client.CoreV1().Services("default").Create(ctx, svc, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm, err := c1.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "later"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ca1, token1 := c1.Running.PKI.CAPEM, c1.Running.PKI.Token
	if err := c1.Stop(); err != nil {
		t.Fatal(err)
	}

	c2, err := cluster.StartE(dir, cluster.WithBolt(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Stop()
	if !bytes.Equal(ca1, c2.Running.PKI.CAPEM) || token1 != c2.Running.PKI.Token {
		t.Fatal("the CA or the admin token changed across a restart")
	}
	if _, err := os.Stat(filepath.Join(dir, "kubeconfig")); err != nil {
		t.Fatal(err)
	}
	got, err := c2.Client.CoreV1().Services("default").Get(ctx, "nginx-headless", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.ResourceVersion != created.ResourceVersion || got.UID != created.UID {
		t.Fatalf("object changed across restart: rv %s→%s uid %s→%s", created.ResourceVersion, got.ResourceVersion, created.UID, got.UID)
	}
	// A watch from the Service's version, made before the restart, resumes:
	// it sees the ConfigMap created after it.
	w, err := c2.Client.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: created.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	ev := <-w.ResultChan()
	w.Stop()
	if ev.Type != watch.Added || ev.Object.(*corev1.ConfigMap).Name != "later" || ev.Object.(*corev1.ConfigMap).ResourceVersion != cm.ResourceVersion {
		t.Fatalf("resumed watch: got %s %v", ev.Type, ev.Object)
	}
	// After compaction the same watch gets 410 Expired.
	if err := c2.Running.Store.Compact(ctx, c2.Running.Store.Revision()); err != nil {
		t.Fatal(err)
	}
	w, err = c2.Client.CoreV1().ConfigMaps("default").Watch(ctx, metav1.ListOptions{ResourceVersion: created.ResourceVersion})
	if err == nil {
		ev = <-w.ResultChan()
		w.Stop()
		err = apierrors.FromObject(ev.Object)
	}
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("watch from a compacted version: want 410, got %v", err)
	}
}

func TestSecondServerOnSameDataDirFailsClearly(t *testing.T) {
	dir := t.TempDir()
	c1, err := cluster.StartE(dir, cluster.WithBolt(dir))
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Stop()
	_, err = cluster.StartE(dir, cluster.WithBolt(dir))
	if err == nil {
		t.Fatal("a second server on the same data dir started")
	}
	if !bytes.Contains([]byte(err.Error()), []byte("headway.db")) {
		t.Fatalf("error does not name the store file: %v", err)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*app.Options)
	}{
		{"bad store", func(o *app.Options) { o.Store = "etcd3" }},
		{"bad runtime", func(o *app.Options) { o.Runtime = "docker" }},
		{"bad listen", func(o *app.Options) { o.Listen = "6443" }},
		{"bad service cidr", func(o *app.Options) { o.ServiceCIDR = "198.19.0.0" }},
		{"bad cluster cidr", func(o *app.Options) { o.ClusterCIDR = "x" }},
		{"bad dns listen", func(o *app.Options) { o.DNSListen = "nope" }},
		{"bad domain", func(o *app.Options) { o.ClusterDomain = "" }},
	} {
		o := app.DefaultOptions()
		tc.mod(&o)
		if err := o.Validate(); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
	o := app.DefaultOptions()
	if err := o.Validate(); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
}
