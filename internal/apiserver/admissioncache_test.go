package apiserver

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiresource "k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/apiserver/admission"
	"github.com/headway/headway/internal/apiserver/admission/limitranger"
	"github.com/headway/headway/internal/storage"
	"github.com/headway/headway/internal/storage/memory"
)

// lateWatches is a store whose watches deliver each event a while after
// it was written: the object cache, fed by a watch, lags the store.
type lateWatches struct {
	storage.Interface
	delay time.Duration
}

func (s lateWatches) Watch(ctx context.Context, prefix string, from int64) (<-chan storage.Event, error) {
	in, err := s.Interface.Watch(ctx, prefix, from)
	if err != nil {
		return nil, err
	}
	out := make(chan storage.Event, 1024)
	go func() {
		defer close(out)
		for ev := range in {
			select {
			case <-time.After(s.delay):
			case <-ctx.Done():
				return
			}
			select {
			case out <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, nil
}

// TestAdmissionSeesItsOwnWrites: admission reads LimitRanges (as webhook
// configurations, quotas and priority classes) from the object cache, but
// never older than the server's own last write of them. With the cache
// 150 ms behind the store, a pod created right after a LimitRange is
// created, changed or deleted gets the defaults of the LimitRange as it is
// now, every time.
func TestAdmissionSeesItsOwnWrites(t *testing.T) {
	_, cs := serveForTest(t, Config{
		Store:     lateWatches{Interface: memory.New(), delay: 150 * time.Millisecond},
		Admission: admission.Chain{limitranger.New()},
	})
	ctx := context.Background()
	mkNamespaces(t, cs, "adm")
	lrs, pods := cs.CoreV1().LimitRanges("adm"), cs.CoreV1().Pods("adm")
	limits := func(cpu string) *corev1.LimitRange {
		return &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "limits"}, Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
			Type: corev1.LimitTypeContainer, DefaultRequest: corev1.ResourceList{corev1.ResourceCPU: apiresource.MustParse(cpu)}}}}}
	}
	n := 0
	podCPU := func() string {
		t.Helper()
		n++
		p, err := pods.Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("p%d", n)},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "busybox"}}}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		q, ok := p.Spec.Containers[0].Resources.Requests[corev1.ResourceCPU]
		if !ok {
			return "none"
		}
		return q.String()
	}
	for round := range 3 {
		if _, err := lrs.Create(ctx, limits("100m"), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := podCPU(); got != "100m" {
			t.Fatalf("round %d: the pod created after the LimitRange was created has cpu request %s, want 100m", round, got)
		}
		cur, err := lrs.Get(ctx, "limits", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Spec = limits("200m").Spec
		if _, err := lrs.Update(ctx, cur, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := podCPU(); got != "200m" {
			t.Fatalf("round %d: the pod created after the LimitRange was changed has cpu request %s, want 200m", round, got)
		}
		if err := lrs.Delete(ctx, "limits", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if got := podCPU(); got != "none" {
			t.Fatalf("round %d: the pod created after the LimitRange was deleted has cpu request %s, want none", round, got)
		}
	}
}
