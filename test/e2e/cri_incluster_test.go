package e2e

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/headway/headway/test/images"
)

// leaderImage is the Docker Hub name the in-cluster client is served under
// (from the test's mirror of docker.io).
const leaderImage = "headway/leader:e2e"

// criInClusterClient runs examples/leader (client-go, rest.InClusterConfig)
// as two CRI pods from an image holding only the static binary: each finds
// the API through KUBERNETES_SERVICE_HOST, authenticates with its mounted
// service-account token (RBAC: the example's Role) and lists the pods; the
// two hold one Lease, one leader at a time.
func criInClusterClient(t *testing.T, c *criCluster, k kubectl) {
	// Built as the module is (the build cache serves it), so the image
	// carries the program and the C library it links.
	bin := filepath.Join(t.TempDir(), "headway-leader")
	build := exec.Command("go", "build", "-o", bin, "./examples/leader")
	build.Dir = repoFile(".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building examples/leader: %v\n%s", err, out)
	}
	img, err := binaryImage(bin, "/tmp/headway-leader")
	if err != nil {
		t.Fatal(err)
	}
	if err := images.Push(c.regHost, leaderImage, img); err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(repoFile("examples/leader/leader.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// The example's manifest as it is, with the image the test built
	// instead of the process runtime's placeholder, and a short lease so
	// that a fail-over takes seconds.
	m := strings.Replace(string(manifest), "image: headway.example/leader", "image: "+leaderImage, 1)
	m = strings.Replace(m, "command: [/tmp/headway-leader]", `command: [/tmp/headway-leader, --lease-duration=4s, --renew-deadline=3s, --retry-period=500ms]`, 1)
	if !strings.Contains(m, leaderImage) || !strings.Contains(m, "--lease-duration=4s") {
		t.Fatalf("examples/leader/leader.yaml changed: the test cannot set its image and lease times")
	}
	if out, err := c.run(k, m, "apply", "-f", "-"); err != nil {
		t.Fatalf("kubectl apply of examples/leader/leader.yaml: %v\n%s", err, out)
	}
	defer c.run(k, m, "delete", "-f", "-", "--wait=true")

	var pods map[string]podState
	if !waitFor(120*time.Second, func() bool {
		pods = c.pods(t, "app=leader")
		ready := 0
		for _, p := range pods {
			if p.Phase == "Running" && p.Ready && p.IP != "" {
				ready++
			}
		}
		return len(pods) == 2 && ready == 2
	}) {
		wide, _ := c.run(k, "", "get", "pods", "-l", "app=leader", "-o", "wide")
		t.Fatalf("the two leader pods not Running and Ready within 120s:\n%s", wide)
	}
	for name := range pods {
		c.wait(t, k, regexp.MustCompile(`"msg":"listed pods".*"count":[1-9]`), 60*time.Second, "logs", name)
	}
	holder := func() string {
		out := c.wait(t, k, regexp.MustCompile(`^leader-\S+$`), 60*time.Second,
			"get", "lease", "leader-example", "-o", "jsonpath={.spec.holderIdentity}")
		return strings.TrimSpace(out)
	}
	first := holder()
	if _, ok := pods[first]; !ok {
		t.Fatalf("the Lease is held by %q, not by one of the pods %v", first, pods)
	}
	c.must(t, k, "delete", "pod", first, "--wait=false")
	deadline := time.Now().Add(60 * time.Second)
	for {
		if h := holder(); h != first {
			// The other replica, or the one the Deployment made in place
			// of the deleted pod: a pod that runs now.
			if now := c.pods(t, "app=leader"); now[h].Phase != "Running" {
				t.Fatalf("after %s went, the Lease is held by %q, which is not a running leader pod: %v", first, h, now)
			}
			t.Logf("leader %s deleted; %s took the Lease", first, h)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the Lease still names the deleted pod %s after 60s", first)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// binaryImage is an image of the program at path, as target (0755), with
// the shared libraries it links (ldd's list, at their paths), and the
// program as its command.
func binaryImage(path, target string) (v1.Image, error) {
	files := map[string]string{target: path} // in the image → on the host
	out, err := exec.Command("ldd", path).CombinedOutput()
	if err != nil && !strings.Contains(string(out), "not a dynamic executable") {
		return nil, fmt.Errorf("ldd %s: %v %s", path, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "/") {
				files[f] = f
			}
		}
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	dirs := map[string]bool{}
	for _, dst := range slices.Sorted(maps.Keys(files)) {
		data, err := os.ReadFile(files[dst])
		if err != nil {
			return nil, err
		}
		var parents []string
		for d := filepath.Dir(dst); d != "/"; d = filepath.Dir(d) {
			parents = append([]string{d}, parents...)
		}
		for _, d := range parents {
			if !dirs[d] {
				dirs[d] = true
				if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: strings.TrimPrefix(d, "/") + "/", Mode: 0o1777}); err != nil {
					return nil, err
				}
			}
		}
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: strings.TrimPrefix(dst, "/"), Mode: 0o755, Size: int64(len(data))}); err != nil {
			return nil, err
		}
		if _, err := tw.Write(data); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf.Bytes())), nil })
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = v1.Config{Cmd: []string{target}}
	return mutate.ConfigFile(img, cf)
}
