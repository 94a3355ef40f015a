package containerd

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// criNamespace is the containerd namespace the CRI plugin keeps its images in.
const criNamespace = "k8s.io"

// catatonitPath is Debian's static catatonit, the pause process of the sandbox
// image Headway builds.
const catatonitPath = "/usr/bin/catatonit"

// errNoCatatonit says what to install when the pause image cannot be built.
var errNoCatatonit = errors.New("cannot build the pod sandbox (pause) image: " + catatonitPath +
	" not found; install it (Debian/Ubuntu: apt-get install catatonit) or put an image archive " +
	"holding the pause image into the images directory")

// pauseImageArchive writes a docker-archive holding a one-file image: the
// static catatonit binary at /catatonit, run as `/catatonit -P` (pause mode:
// it sleeps and reaps, as registry.k8s.io/pause does). The image is
// reproducible: the same binary gives the same digest.
func pauseImageArchive(path, ref, binary string) error {
	tag, err := name.NewTag(ref)
	if err != nil {
		return fmt.Errorf("pause image name %q: %w", ref, err)
	}
	bin, err := os.ReadFile(binary)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errNoCatatonit
		}
		return err
	}
	var layerTar bytes.Buffer
	tw := tar.NewWriter(&layerTar)
	if err := tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg,
		Name:     "catatonit",
		Mode:     0o755,
		Size:     int64(len(bin)),
		ModTime:  time.Unix(0, 0),
		Format:   tar.FormatPAX,
	}); err != nil {
		return err
	}
	if _, err := tw.Write(bin); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	raw := layerTar.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	})
	if err != nil {
		return err
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Created = v1.Time{Time: time.Unix(0, 0).UTC()}
	cf.Config.Entrypoint = []string{"/catatonit", "-P"}
	cf.Config.WorkingDir = "/"
	cf.Config.Labels = map[string]string{"io.headway.image": "pause"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return err
	}
	return tarball.WriteToFile(path, tag, img)
}

// ensurePauseImage imports the pause image into the CRI namespace unless it is
// there already (from an earlier start or an archive in the images dir).
func (c *Containerd) ensurePauseImage(ctx context.Context) error {
	present, err := c.imagePresent(ctx, c.pauseImage)
	if err != nil {
		return err
	}
	if present {
		c.log.Info("pause image present", "image", c.pauseImage)
		return nil
	}
	start := time.Now()
	f, err := os.CreateTemp(c.dir, ".pause-*.tar")
	if err != nil {
		return err
	}
	path := f.Name()
	f.Close()
	defer os.Remove(path)
	if err := pauseImageArchive(path, c.pauseImage, catatonitPath); err != nil {
		return err
	}
	if _, err := c.importArchive(ctx, path, false); err != nil {
		return fmt.Errorf("import pause image: %w", err)
	}
	present, err = c.imagePresent(ctx, c.pauseImage)
	if err != nil {
		return err
	}
	if !present {
		return fmt.Errorf("pause image %s not listed in namespace %s after import", c.pauseImage, criNamespace)
	}
	c.log.Info("pause image built and imported", "image", c.pauseImage, "from", catatonitPath,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// imagePresent reports whether ref is an image in the CRI namespace.
func (c *Containerd) imagePresent(ctx context.Context, ref string) (bool, error) {
	refs, err := c.listImages(ctx)
	if err != nil {
		return false, err
	}
	for _, r := range refs {
		if r == ref {
			return true, nil
		}
	}
	return false, nil
}

// listImages lists the image names in the CRI namespace.
func (c *Containerd) listImages(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := c.ctr(ctx, criNamespace, "images", "ls", "-q")
	if err != nil {
		return nil, err
	}
	return strings.Fields(string(out)), nil
}

// importImagesDir imports every *.tar of dir (docker-archive or OCI archive)
// into the CRI namespace, in name order. A failing archive is logged and
// skipped: one bad file must not keep the node from starting.
func (c *Containerd) importImagesDir(ctx context.Context, dir string) {
	if dir == "" {
		return
	}
	matches, err := filepath.Glob(filepath.Join(dir, "*.tar"))
	if err != nil {
		c.log.Error("list image archives", "dir", dir, "err", err)
		return
	}
	sort.Strings(matches)
	var archives []string
	for _, m := range matches {
		if st, err := os.Stat(m); err == nil && st.Mode().IsRegular() {
			archives = append(archives, m)
		}
	}
	if len(archives) == 0 {
		return
	}
	start := time.Now()
	imported := 0
	for i, path := range archives {
		if ctx.Err() != nil {
			return
		}
		var size int64
		if st, err := os.Stat(path); err == nil {
			size = st.Size()
		}
		c.log.Info("importing image archive", "file", path, "n", i+1, "of", len(archives), "bytes", size)
		t := time.Now()
		images, err := c.importArchive(ctx, path, true)
		if err != nil {
			c.log.Error("import image archive failed", "file", path, "err", err)
			continue
		}
		imported++
		if len(images) == 0 {
			c.log.Warn("image archive held no named image", "file", path)
		}
		c.log.Info("imported image archive", "file", path, "n", i+1, "of", len(archives),
			"images", images, "took", time.Since(t).Round(time.Millisecond))
	}
	c.log.Info("image archives imported", "dir", dir, "archives", len(archives), "ok", imported,
		"took", time.Since(start).Round(time.Millisecond))
}

// importArchive runs `ctr images import` into the CRI namespace, unpacking
// into the snapshotter CRI uses, and returns the image names it reported.
// With digests, images the archive does not name (an OCI archive without
// io.containerd.image.name / org.opencontainers.image.ref.name annotations)
// are kept under a digest name instead of being garbage-collected.
func (c *Containerd) importArchive(ctx context.Context, path string, digests bool) ([]string, error) {
	args := []string{"images", "import", "--snapshotter", c.snapshotter}
	if digests {
		args = append(args, "--digests", "--skip-digest-for-named")
	}
	args = append(args, path)
	out, err := c.ctr(ctx, criNamespace, args...)
	if err != nil {
		return nil, err
	}
	return importedNames(string(out)), nil
}

// importedNames reads the images ctr reports while importing:
// "unpacking docker.io/library/busybox:1.36 (sha256:...)...done".
func importedNames(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		rest, ok := strings.CutPrefix(strings.TrimSpace(line), "unpacking ")
		if !ok {
			continue
		}
		if i := strings.Index(rest, " ("); i > 0 {
			names = append(names, rest[:i])
		}
	}
	return names
}

// ctr runs ctr against this containerd. namespace may be empty.
func (c *Containerd) ctr(ctx context.Context, namespace string, args ...string) ([]byte, error) {
	full := []string{"--address", c.socket}
	if namespace != "" {
		full = append(full, "--namespace", namespace)
	}
	full = append(full, args...)
	cmd := exec.CommandContext(ctx, c.ctrPath, full...)
	cmd.Env = ctrEnv()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg := strings.TrimSpace(stderr.String())
		if msg == "" {
			msg = strings.TrimSpace(string(out))
		}
		return out, fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return out, nil
}

// ctrEnv is the environment without the variables that would point ctr at
// another containerd, namespace or snapshotter.
func ctrEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if strings.HasPrefix(kv, "CONTAINERD_") {
			continue
		}
		env = append(env, kv)
	}
	return env
}
