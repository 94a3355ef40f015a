package namespace_test

import (
	"context"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/testing/cluster"
)

func waitFor(t *testing.T, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ok, err := cond()
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// fill creates ns with six objects of several kinds and groups in it.
func fill(t *testing.T, ctx context.Context, cs kubernetes.Interface, ns string) {
	t.Helper()
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"a", "b", "c"} {
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "s"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Services(ns).Create(ctx, &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "svc"},
		Spec: corev1.ServiceSpec{Selector: map[string]string{"app": "x"}, Ports: []corev1.ServicePort{{Port: 80}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	labels := map[string]string{"app": "x"}
	if _, err := cs.AppsV1().StatefulSets(ns).Create(ctx, &appsv1.StatefulSet{ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{Replicas: ptr.To[int32](0), Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// contents counts what is left in ns among the kinds fill creates.
func contents(ctx context.Context, cs kubernetes.Interface, ns string) (int, error) {
	n := 0
	cms, err := cs.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	n += len(cms.Items)
	secrets, err := cs.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	n += len(secrets.Items)
	svcs, err := cs.CoreV1().Services(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	n += len(svcs.Items)
	sets, err := cs.AppsV1().StatefulSets(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0, err
	}
	return n + len(sets.Items), nil
}

func gone(ctx context.Context, cs kubernetes.Interface, ns string) func() (bool, error) {
	return func() (bool, error) {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return true, nil
		}
		return false, err
	}
}

func TestNamespaceDeletion(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cs := c.Client

	t.Run("content deleted, then the namespace", func(t *testing.T) {
		fill(t, ctx, cs, "doomed")
		fill(t, ctx, cs, "kept")
		if err := cs.CoreV1().Namespaces().Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the namespace to be removed", gone(ctx, cs, "doomed"))
		if n, err := contents(ctx, cs, "doomed"); err != nil || n != 0 {
			t.Fatalf("%d objects left in the removed namespace (%v)", n, err)
		}
		// Beside fill's six objects, "kept" holds the kube-root-ca.crt
		// ConfigMap the root CA publisher keeps in every namespace.
		waitFor(t, "kube-root-ca.crt in kept", func() (bool, error) {
			_, err := cs.CoreV1().ConfigMaps("kept").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
			return err == nil, nil
		})
		if n, err := contents(ctx, cs, "kept"); err != nil || n-1 != 6 {
			t.Fatalf("the other namespace has %d objects, want its 6 untouched (%v)", n, err)
		}
	})

	t.Run("an object with a finalizer holds the namespace", func(t *testing.T) {
		fill(t, ctx, cs, "held")
		if _, err := cs.CoreV1().ConfigMaps("held").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "hold",
			Finalizers: []string{"example.com/hold"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cs.CoreV1().Namespaces().Delete(ctx, "held", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "everything but the held object to go", func() (bool, error) {
			n, err := contents(ctx, cs, "held")
			return n == 1, err
		})
		time.Sleep(300 * time.Millisecond)
		ns, err := cs.CoreV1().Namespaces().Get(ctx, "held", metav1.GetOptions{})
		if err != nil {
			t.Fatalf("the namespace went while an object in it remains: %v", err)
		}
		if ns.Status.Phase != corev1.NamespaceTerminating || len(ns.Spec.Finalizers) != 1 || ns.Spec.Finalizers[0] != corev1.FinalizerKubernetes {
			t.Fatalf("namespace %s with finalizers %v, want Terminating with the kubernetes finalizer", ns.Status.Phase, ns.Spec.Finalizers)
		}
		hold, err := cs.CoreV1().ConfigMaps("held").Get(ctx, "hold", metav1.GetOptions{})
		if err != nil || hold.DeletionTimestamp == nil {
			t.Fatalf("the held object was not deleted (it waits for its finalizer): %v", err)
		}
		hold.Finalizers = nil
		if _, err := cs.CoreV1().ConfigMaps("held").Update(ctx, hold, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the namespace to go once the object has", gone(ctx, cs, "held"))
	})

	t.Run("other spec finalizers are left to their owners", func(t *testing.T) {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "shared"},
			Spec: corev1.NamespaceSpec{Finalizers: []corev1.FinalizerName{"example.com/other"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := cs.CoreV1().Namespaces().Delete(ctx, "shared", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		var ns *corev1.Namespace
		waitFor(t, "the kubernetes finalizer to be dropped", func() (bool, error) {
			var err error
			ns, err = cs.CoreV1().Namespaces().Get(ctx, "shared", metav1.GetOptions{})
			return err == nil && len(ns.Spec.Finalizers) == 1, err
		})
		if ns.Spec.Finalizers[0] != "example.com/other" {
			t.Fatalf("finalizers %v, want only example.com/other", ns.Spec.Finalizers)
		}
		ns.Spec.Finalizers = nil
		if _, err := cs.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the namespace to go once its owner finalized it", gone(ctx, cs, "shared"))
	})
}
