package app_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/internal/testing/netnstest"
)

// The manifest's command, where examples/leader/leader.yaml tells users to
// build the program; the test builds it elsewhere and points the command
// there.
const leaderCommand = "/tmp/headway-leader"

// TestLeaderElectionFromPods runs examples/leader as its manifest says, on
// the process runtime: two replicas that find the API with
// rest.InClusterConfig (the kubernetes Service's ClusterIP, the proxy, the
// mounted token and ca.crt), list the pods (their Role allows it) and
// contend for a Lease. Exactly one leads; when its pod is deleted another
// replica takes over within the deadline.
func TestLeaderElectionFromPods(t *testing.T) {
	if !netnstest.RunInOwn(t) {
		return
	}
	bin := filepath.Join(t.TempDir(), "headway-leader")
	build := exec.Command("go", "build", "-o", bin, "github.com/headway/headway/examples/leader")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build examples/leader: %v\n%s", err, out)
	}
	manifest, err := os.ReadFile("../../examples/leader/leader.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(manifest, []byte("command: ["+leaderCommand+"]")) {
		t.Fatalf("examples/leader/leader.yaml no longer runs %s", leaderCommand)
	}
	manifest = bytes.ReplaceAll(manifest, []byte(leaderCommand), []byte(bin))

	c := cluster.Start(t, cluster.WithAgent("hwt-leader", "198.18.246.0/24", "198.19.246.0/24"))
	ctx := context.Background()
	cluster.WaitFor(t, 30*time.Second, "the default ServiceAccount", func() (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	applyManifest(t, c.Client, manifest)

	const ns = "default"
	pods := c.Client.CoreV1().Pods(ns)
	leases := c.Client.CoordinationV1().Leases(ns)
	selector := labels.Set{"app": "leader"}.String()
	logsOf := func(name string) string {
		b, err := pods.GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
		if err != nil {
			return ""
		}
		return string(b)
	}
	// running are the names of the leader pods running and not being
	// deleted.
	running := func() ([]string, error) {
		list, err := pods.List(ctx, metav1.ListOptions{LabelSelector: selector})
		if err != nil {
			return nil, err
		}
		var names []string
		for _, p := range list.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				names = append(names, p.Name)
			}
		}
		return names, nil
	}
	holder := func() string {
		l, err := leases.Get(ctx, "leader-example", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return ""
		}
		return *l.Spec.HolderIdentity
	}
	// settled waits until two replicas run, each has listed the pods
	// through the API, the Lease names one of them and that one says it
	// leads while the other has seen it as leader; it returns the leader.
	// Each replica logs "started leading" only when it acquires the Lease:
	// exactly one of the two has.
	settled := func(what string, not string) string {
		t.Helper()
		var leader string
		var last []string
		cluster.WaitFor(t, 60*time.Second, what, func() (bool, error) {
			names, err := running()
			if err != nil || len(names) != 2 {
				last = names
				return false, err
			}
			h := holder()
			if h == "" || h == not {
				return false, fmt.Errorf("lease holder %q", h)
			}
			leading := 0
			for _, n := range names {
				logs := logsOf(n)
				if !strings.Contains(logs, `"msg":"listed pods"`) {
					return false, fmt.Errorf("%s has not listed the pods:\n%s", n, logs)
				}
				if strings.Contains(logs, `"msg":"started leading"`) {
					leading++
					if n != h {
						return false, fmt.Errorf("%s says it leads, the Lease names %s", n, h)
					}
				} else if n == h || !strings.Contains(logs, `"leader":"`+h+`"`) {
					return false, fmt.Errorf("%s has not seen %s lead:\n%s", n, h, logs)
				}
			}
			if leading != 1 {
				return false, fmt.Errorf("%d of %v lead", leading, names)
			}
			leader, last = h, names
			return true, nil
		})
		t.Logf("%s: %s leads (replicas %v)", what, leader, last)
		return leader
	}

	first := settled("one leader of two replicas", "")
	deleted := time.Now()
	if err := pods.Delete(ctx, first, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 30*time.Second, "another replica to take the Lease after the leader's pod was deleted", func() (bool, error) {
		h := holder()
		if h == "" || h == first {
			return false, fmt.Errorf("lease holder %q", h)
		}
		return strings.Contains(logsOf(h), `"msg":"started leading"`), nil
	})
	t.Logf("fail-over took %v", time.Since(deleted).Round(time.Millisecond))
	settled("one leader again, with the replacement replica", first)
}

// applyManifest creates every object of a multi-document YAML manifest of
// the kinds examples/leader uses.
func applyManifest(t *testing.T, client kubernetes.Interface, manifest []byte) {
	t.Helper()
	ctx := context.Background()
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(manifest)))
	for {
		doc, err := docs.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			t.Fatal(err)
		}
		data, err := utilyaml.ToJSON(doc)
		if err != nil {
			t.Fatal(err)
		}
		if len(bytes.TrimSpace(data)) == 0 || string(bytes.TrimSpace(data)) == "null" {
			continue // a document of comments only
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(data, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		const ns = "default"
		opts := metav1.CreateOptions{}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			_, err = client.CoreV1().ServiceAccounts(ns).Create(ctx, o, opts)
		case *rbacv1.Role:
			_, err = client.RbacV1().Roles(ns).Create(ctx, o, opts)
		case *rbacv1.RoleBinding:
			_, err = client.RbacV1().RoleBindings(ns).Create(ctx, o, opts)
		case *appsv1.Deployment:
			_, err = client.AppsV1().Deployments(ns).Create(ctx, o, opts)
		default:
			t.Fatalf("the manifest has a %T", obj)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}
