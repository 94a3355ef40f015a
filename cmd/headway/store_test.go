package main

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/storage/bolt"
	"github.com/headway/headway/internal/testing/cluster"
)

// TestStoreCheckAcceptsReservations: a healthy store with Services (whose
// cluster IPs and node ports are reserved as keys of their own) checks
// clean, and a value under /registry/ that is no object is still reported.
func TestStoreCheckAcceptsReservations(t *testing.T) {
	dir := t.TempDir()
	c, err := cluster.StartE(dir, cluster.WithBolt(dir), cluster.WithoutDNS(), cluster.WithoutControllers())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Client.CoreV1().Services("default").Create(context.Background(), &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "np"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeNodePort, Ports: []corev1.ServicePort{{Port: 80}}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	rep, err := bolt.Check(app.StorePath(dir), decodeObject())
	if err != nil || !rep.OK() {
		t.Fatalf("store check of a healthy store: %+v %v", rep, err)
	}
	if err := decodeObject()("/registry/configmaps/default/x", []byte("default/np")); err == nil {
		t.Fatal("a value under /registry/ that is no object passed the check")
	}
}
