package apiserver

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/managedfields"

	"github.com/headway/headway/internal/registry/builtin"
)

func benchCM(i int) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "cm", Namespace: "ns", UID: "u", CreationTimestamp: metav1.Now(), Labels: map[string]string{"app": "bench"}},
		Data:       map[string]string{"name": "cm", "payload": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"},
	}
}

func BenchmarkFMCreate(b *testing.B) {
	scheme := builtin.Scheme()
	gvk := corev1.SchemeGroupVersion.WithKind("ConfigMap")
	fm, err := managedfields.NewDefaultFieldManager(typeConverter(scheme), scheme, scheme, scheme, gvk, gvk.GroupVersion(), "", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("warm", func(b *testing.B) {
		defer cpuPerOp(b)()
		for i := 0; b.Loop(); i++ {
			fm.UpdateNoErrors(&corev1.ConfigMap{}, benchCM(i), "bench")
		}
	})
	b.Run("fresh-goroutine-warm-stacks", func(b *testing.B) {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		p := newWarmStacks()
		p.start(ctx, 2, &wg)
		defer wg.Wait()
		defer cancel()
		defer cpuPerOp(b)()
		for i := 0; b.Loop(); i++ {
			done := make(chan struct{})
			go func() { p.run(func() { fm.UpdateNoErrors(&corev1.ConfigMap{}, benchCM(i), "bench") }); close(done) }()
			<-done
		}
	})
	b.Run("fresh-goroutine", func(b *testing.B) {
		defer cpuPerOp(b)()
		for i := 0; b.Loop(); i++ {
			done := make(chan struct{})
			go func() { fm.UpdateNoErrors(&corev1.ConfigMap{}, benchCM(i), "bench"); close(done) }()
			<-done
		}
	})
}

// cpuPerOp reports the process's CPU time per operation: on a shared
// machine, steadier than the wall time.
func cpuPerOp(b *testing.B) func() {
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	start := cpu()
	return func() { b.ReportMetric(float64(cpu()-start)/float64(b.N)/1e3, "cpu-µs/op") }
}
