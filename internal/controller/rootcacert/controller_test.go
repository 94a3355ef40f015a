package rootcacert_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/controller/rootcacert"
	"github.com/headway/headway/internal/testing/cluster"
)

func TestDecide(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n")
	now := metav1.Now()
	good := rootcacert.Want("shop", ca)
	stale := good.DeepCopy()
	stale.Data[rootcacert.Key] = "old"
	extra := good.DeepCopy()
	extra.Data["other"] = "x"
	for _, tc := range []struct {
		name string
		ns   *corev1.Namespace
		cm   *corev1.ConfigMap
		want rootcacert.Action
	}{
		{"missing", &corev1.Namespace{}, nil, rootcacert.Create},
		{"as it should be", &corev1.Namespace{}, good, rootcacert.Nothing},
		{"another CA", &corev1.Namespace{}, stale, rootcacert.Update},
		{"another key", &corev1.Namespace{}, extra, rootcacert.Update},
		{"namespace being deleted", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}}, nil, rootcacert.Nothing},
		{"namespace gone", nil, nil, rootcacert.Nothing},
	} {
		if got := rootcacert.Decide(tc.ns, tc.cm, ca); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestEveryNamespaceHasTheRootCA(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := context.Background()
	ca := string(c.Running.PKI.CAPEM)
	published := func(ns string) func() (bool, error) {
		return func() (bool, error) {
			cm, err := c.Client.CoreV1().ConfigMaps(ns).Get(ctx, rootcacert.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return err == nil && cm.Data[rootcacert.Key] == ca, err
		}
	}
	cluster.WaitFor(t, 10*time.Second, "kube-root-ca.crt in default", published("default"))
	cluster.WaitFor(t, 10*time.Second, "kube-root-ca.crt in kube-system", published("kube-system"))
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 10*time.Second, "kube-root-ca.crt in a new namespace", published("shop"))

	// Deleted: made again. Changed: put back.
	cms := c.Client.CoreV1().ConfigMaps("shop")
	if err := cms.Delete(ctx, rootcacert.Name, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 10*time.Second, "the deleted kube-root-ca.crt made again", published("shop"))
	cm, err := cms.Get(ctx, rootcacert.Name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data[rootcacert.Key] = "tampered"
	if _, err := cms.Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 10*time.Second, "the changed kube-root-ca.crt put back", published("shop"))
}
