package containerd

import (
	"context"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/headway/headway/internal/testing/leftover"
)

// TestSandboxRuns is the end-to-end proof of the config: CRI runs a pod
// sandbox from the pause image Headway built, offline, with runc's cgroupfs
// driver and the oom_score_adj restriction this host needs. The sandbox uses
// the host network (and so no hostname of its own) so that no CNI config is
// needed. (cri-api belongs to runtime/cri; this test only checks that what
// this package sets up works.)
func TestSandboxRuns(t *testing.T) {
	needContainerd(t)
	data := t.TempDir()
	// Start's context bounds containerd's life: it must outlive the cleanups.
	c, err := Start(context.Background(), Config{
		Dir:        filepath.Join(data, "containerd"),
		CNIBinDirs: []string{filepath.Join(data, "cni", "bin"), "/usr/lib/cni"},
		CNIConfDir: filepath.Join(data, "cni", "net.d"),
		Log:        testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	// Cleanups run last-registered first: the sandbox is removed, then the
	// connection closed, then containerd stopped; anything still left (a shim,
	// the pause process, a mount) is reported and removed.
	sock := strings.TrimPrefix(c.Endpoint(), "unix://")
	t.Cleanup(func() {
		for _, pid := range leftover.Shims(sock) {
			t.Errorf("shim pid %d left running; killing it and its pause process", pid)
			for _, child := range leftover.Children(pid) {
				syscall.Kill(child, syscall.SIGKILL)
			}
			syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, m := range leftover.MountsUnder(data) {
			t.Errorf("mount left behind: %s", m)
			unix.Unmount(m, unix.MNT_DETACH)
		}
	})
	t.Cleanup(func() { c.Stop() })

	conn, err := grpc.NewClient(c.Endpoint(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	rt := cri.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	cfg := &cri.PodSandboxConfig{
		Metadata: &cri.PodSandboxMetadata{Name: "pause-check", Namespace: "headway-test", Uid: "headway-test-" + filepath.Base(data)},
		Linux: &cri.LinuxPodSandboxConfig{SecurityContext: &cri.LinuxSandboxSecurityContext{
			NamespaceOptions: &cri.NamespaceOption{Network: cri.NamespaceMode_NODE},
		}},
	}
	start := time.Now()
	run, err := rt.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: cfg})
	if err != nil {
		t.Fatalf("RunPodSandbox: %v\n%s", err, c.logTail(20))
	}
	t.Logf("sandbox ready in %s", time.Since(start))
	id := run.PodSandboxId
	t.Cleanup(func() {
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		if _, err := rt.StopPodSandbox(cctx, &cri.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("StopPodSandbox: %v", err)
		}
		if _, err := rt.RemovePodSandbox(cctx, &cri.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Errorf("RemovePodSandbox: %v", err)
		}
	})
	st, err := rt.PodSandboxStatus(ctx, &cri.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatal(err)
	}
	if st.Status.State != cri.PodSandboxState_SANDBOX_READY {
		t.Errorf("sandbox state %v", st.Status.State)
	}
	img := cri.NewImageServiceClient(conn)
	is, err := img.ImageStatus(ctx, &cri.ImageStatusRequest{Image: &cri.ImageSpec{Image: c.PauseImage()}})
	if err != nil || is.Image == nil {
		t.Errorf("CRI does not see the pause image %s: %v", c.PauseImage(), err)
	}
}
