package agent_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// fstypeAt is the filesystem type of the mount at path ("" when path is
// not a mount point), from the host's mount table.
func fstypeAt(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fstype := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && fields[4] == path {
			_, after, _ := strings.Cut(sc.Text(), " - ")
			fstype = strings.Fields(after)[0]
		}
	}
	return fstype
}

// TestPodFilesOnTmpfs: the pods' own files (hosts, tokens, mount staging)
// are on a tmpfs the agent mounts on <data-dir>/pods and removes when it
// stops; emptyDir volumes stay on the disk under <data-dir>/emptydir and go
// with their pod.
func TestPodFilesOnTmpfs(t *testing.T) {
	c := startCluster(t)
	pods := filepath.Join(c.DataDir, "pods")
	waitFor(t, 20*time.Second, "a tmpfs on "+pods, func() (bool, error) { return fstypeAt(t, pods) == "tmpfs", nil })
	p := createPod(t, c.Client, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "scratch"},
		Spec: corev1.PodSpec{
			TerminationGracePeriodSeconds: new(int64),
			Volumes:                       []corev1.Volume{{Name: "data", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}},
			Containers: []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sh", "-c", "echo kept > /data/file; exec sleep 1000"},
				VolumeMounts: []corev1.VolumeMount{{Name: "data", MountPath: "/data"}}}},
		}})
	file := filepath.Join(c.DataDir, "emptydir", string(p.UID), "data", "file")
	waitFor(t, 20*time.Second, "the container's file in its emptyDir on the disk", func() (bool, error) {
		b, err := os.ReadFile(file)
		return err == nil && string(b) == "kept\n", nil
	})
	if _, err := os.Stat(filepath.Join(pods, string(p.UID), "etc-hosts")); err != nil {
		t.Fatalf("the pod's hosts file is not in the pods' tmpfs: %v", err)
	}
	if err := c.Client.CoreV1().Pods("default").Delete(context.Background(), "scratch", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, "the pod gone with its emptyDir", func() (bool, error) {
		_, err := c.Client.CoreV1().Pods("default").Get(context.Background(), "scratch", metav1.GetOptions{})
		_, serr := os.Stat(filepath.Join(c.DataDir, "emptydir", string(p.UID)))
		return apierrors.IsNotFound(err) && os.IsNotExist(serr), nil
	})
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	if got := fstypeAt(t, pods); got != "" {
		t.Fatalf("%s is still mounted (%s) after the agent stopped", pods, got)
	}
}
