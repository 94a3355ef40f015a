package serviceaccount_test

import (
	"context"
	"slices"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/controller/serviceaccount"
	"github.com/headway/headway/internal/testing/cluster"
)

func TestMissing(t *testing.T) {
	now := metav1.Now()
	none := func(string) bool { return false }
	all := func(string) bool { return true }
	for _, tc := range []struct {
		name   string
		ns     *corev1.Namespace
		exists func(string) bool
		want   []string
	}{
		{"new namespace", &corev1.Namespace{}, none, []string{"default"}},
		{"has its account", &corev1.Namespace{}, all, nil},
		{"being deleted", &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{DeletionTimestamp: &now}}, none, nil},
		{"terminating", &corev1.Namespace{Status: corev1.NamespaceStatus{Phase: corev1.NamespaceTerminating}}, none, nil},
		{"gone", nil, none, nil},
	} {
		if got := serviceaccount.Missing(tc.ns, tc.exists); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestEveryNamespaceHasItsDefaultAccount(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := context.Background()
	sas := func(ns string) func() (bool, error) {
		return func() (bool, error) {
			_, err := c.Client.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return err == nil, err
		}
	}
	for _, ns := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
		cluster.WaitFor(t, 10*time.Second, "the default ServiceAccount in "+ns, sas(ns))
	}
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shop"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 10*time.Second, "the default ServiceAccount in a new namespace", sas("shop"))
	old, err := c.Client.CoreV1().ServiceAccounts("shop").Get(ctx, "default", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Client.CoreV1().ServiceAccounts("shop").Delete(ctx, "default", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 10*time.Second, "the deleted default ServiceAccount made again", func() (bool, error) {
		sa, err := c.Client.CoreV1().ServiceAccounts("shop").Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, nil
		}
		return err == nil && sa.UID != old.UID, err
	})
}
