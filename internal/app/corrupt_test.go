package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/storage/bolt"
	"github.com/headway/headway/internal/testing/cluster"
)

// warnings collects the Warning headers a client receives.
type warnings struct{ got []string }

func (w *warnings) HandleWarningHeader(_ int, _ string, text string) { w.got = append(w.got, text) }

// One undecodable object does not break the lists and watches of its
// resource: it is skipped with a warning, a get names it, and a delete with
// ignoreStoreReadErrorWithClusterBreakingPotential removes it.
func TestUndecodableObjectIsSkippedAndDeletable(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// No controllers: only the test's own ConfigMaps in default (no
	// kube-root-ca.crt published there).
	c1, err := cluster.StartE(dir, cluster.WithBolt(dir), cluster.WithoutControllers())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"good-1", "broken", "good-2"} {
		if _, err := c1.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := c1.Stop(); err != nil {
		t.Fatal(err)
	}
	// Damage one value in the file, as a bad disk would.
	s, err := bolt.Open(app.StorePath(dir), bolt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	key := "/registry/core/configmaps/default/broken"
	kv, err := s.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), kv.Value...)
	for i := len(bad) / 2; i < len(bad); i++ {
		bad[i] ^= 0x5a
	}
	if _, err := s.Update(ctx, key, bad, kv.ModRevision); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	c2, err := cluster.StartE(dir, cluster.WithBolt(dir), cluster.WithoutControllers())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Stop()
	w := &warnings{}
	cfg := rest.CopyConfig(c2.Running.RestConfig)
	cfg.WarningHandler = w
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	list, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatalf("list with one undecodable object: %v", err)
	}
	var names []string
	for _, cm := range list.Items {
		names = append(names, cm.Name)
	}
	if strings.Join(names, ",") != "good-1,good-2" || len(w.got) != 1 || !strings.Contains(w.got[0], `"default/broken"`) {
		t.Fatalf("list: %v, warnings %q", names, w.got)
	}
	_, err = cs.CoreV1().ConfigMaps("default").Get(ctx, "broken", metav1.GetOptions{})
	if st, ok := err.(apierrors.APIStatus); !ok || st.Status().Code != 500 || st.Status().Reason != metav1.StatusReasonStoreReadError ||
		!strings.Contains(err.Error(), "ignoreStoreReadErrorWithClusterBreakingPotential") {
		t.Fatalf("get of the undecodable object: %v", err)
	}
	// A plain delete cannot read it either; the unsafe one removes it.
	if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, "broken", metav1.DeleteOptions{}); err == nil {
		t.Fatal("a plain delete of an undecodable object succeeded")
	}
	yes := true
	if err := cs.CoreV1().ConfigMaps("default").Delete(ctx, "broken", metav1.DeleteOptions{IgnoreStoreReadErrorWithClusterBreakingPotential: &yes}); err != nil {
		t.Fatalf("unsafe delete: %v", err)
	}
	if _, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "broken", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("after the unsafe delete: %v", err)
	}
	w.got = nil
	if list, err := cs.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{}); err != nil || len(list.Items) != 2 || len(w.got) != 0 {
		t.Fatalf("list after the unsafe delete: %v, %v, warnings %q", list, err, w.got)
	}
}
