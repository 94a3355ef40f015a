package fake

import (
	"context"
	"errors"
	"sync"
	"syscall"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

func pod(name string) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default", UID: types.UID("uid-" + name)}}
}

func TestViewHasWhatOptionsSay(t *testing.T) {
	for _, o := range []Options{{}, {Images: true}, {Adopter: true}, {Images: true, Adopter: true}} {
		v := New(o).View()
		_, images := v.(hwruntime.ImageService)
		_, adopter := v.(hwruntime.Adopter)
		if images != o.Images || adopter != o.Adopter {
			t.Errorf("%+v: ImageService %v, Adopter %v", o, images, adopter)
		}
	}
}

func TestLifecycle(t *testing.T) {
	r := New(Options{Dir: t.TempDir()})
	ctx := context.Background()
	p := pod("a")
	r.FailRunSandbox(errors.New("no"))
	if _, err := r.RunSandbox(ctx, p); err == nil {
		t.Fatal("RunSandbox did not fail")
	}
	r.FailRunSandbox(nil)
	sb, err := r.RunSandbox(ctx, p)
	if err != nil || !sb.IP.IsValid() || sb.Hostname != "a" {
		t.Fatalf("sandbox %+v, %v", sb, err)
	}
	again, _ := r.RunSandbox(ctx, p)
	if again.IP != sb.IP {
		t.Errorf("second RunSandbox gave %s, first %s", again.IP, sb.IP)
	}
	proc, err := r.Start(ctx, sb, &hwruntime.ContainerSpec{Name: "c", Argv: []string{"sleep", "1"}})
	if err != nil {
		t.Fatal(err)
	}
	changed := r.Changed()
	proc.(*Process).End(3)
	<-changed
	<-proc.Done()
	if e := proc.Exit(); e.Code != 3 || e.Finished.IsZero() {
		t.Errorf("exit %+v", e)
	}
	if _, err := r.Exec(ctx, proc, nil, []string{"true"}); err == nil {
		t.Error("exec in an ended process succeeded")
	}
	proc2, _ := r.Start(ctx, sb, &hwruntime.ContainerSpec{Name: "c"})
	r.IgnoreSIGTERM(true)
	proc2.Signal(syscall.SIGTERM)
	if !proc2.(*Process).Running() {
		t.Error("SIGTERM ended a process that ignores it")
	}
	proc2.Signal(syscall.SIGKILL)
	if e := proc2.Exit(); e.Code != 137 || e.Signal != int32(syscall.SIGKILL) {
		t.Errorf("exit after SIGKILL %+v", e)
	}
	if err := r.RemoveSandbox(ctx, sb.UID, true); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Start(ctx, sb, &hwruntime.ContainerSpec{Name: "c"}); err == nil {
		t.Error("Start without a sandbox succeeded")
	}
	if n := len(r.Calls("Start")); n != 3 {
		t.Errorf("%d Start calls recorded", n)
	}
}

func TestImagesAndAdoption(t *testing.T) {
	r := New(Options{Images: true, Adopter: true, KeepOnStop: true})
	v := r.View()
	images, adopter := v.(hwruntime.ImageService), v.(hwruntime.Adopter)
	ctx := context.Background()
	r.FailPull("img", errors.New("denied"))
	if _, err := images.PullImage(ctx, "img", nil, nil); err == nil {
		t.Error("pull did not fail")
	}
	r.FailPull("img", nil)
	ref, err := images.PullImage(ctx, "img", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok, _ := images.ImagePresent(ctx, "img"); !ok || got != ref {
		t.Errorf("present %v %q, pulled %q", ok, got, ref)
	}
	p := pod("b")
	left := r.AddRunning(p, "c")
	sb, procs, err := adopter.Running(ctx, p)
	if err != nil || sb == nil || procs["c"] != hwruntime.Process(left["c"]) || !adopter.KeepOnStop() {
		t.Errorf("Running: %+v %v %v", sb, procs, err)
	}
	if sb, _, _ := adopter.Running(ctx, pod("other")); sb != nil {
		t.Error("Running reported a pod it never had")
	}
}

// TestConcurrentUse: the agent calls from many goroutines (run with -race).
func TestConcurrentUse(t *testing.T) {
	r := New(Options{Images: true})
	v := r.View()
	ctx := context.Background()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p := pod(string(rune('a' + i)))
			sb, err := v.RunSandbox(ctx, p)
			if err != nil {
				t.Error(err)
				return
			}
			v.(hwruntime.ImageService).PullImage(ctx, "img", nil, sb)
			proc, err := v.Start(ctx, sb, &hwruntime.ContainerSpec{Name: "c"})
			if err != nil {
				t.Error(err)
				return
			}
			v.Exec(ctx, proc, nil, []string{"true"})
			proc.Signal(syscall.SIGTERM)
			<-proc.Done()
			v.RemoveSandbox(ctx, sb.UID, true)
		}()
	}
	wg.Wait()
	if n := len(r.Processes("c")); n != 8 {
		t.Errorf("%d processes", n)
	}
}
