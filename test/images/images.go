// Package images builds the OCI images that Headway's end-to-end tests and benchmarks run
// (busybox, nginx) from the Debian packages installed on this machine, and serves them from a
// registry on 127.0.0.1, so that manifests keep `image: nginx:alpine` and
// `image: busybox:1.28` while nothing is ever pulled from the network.
//
// Images are linux/amd64, one layer each, built in memory: the package's executables, the
// dynamic loader and the closure of their shared libraries (read from ELF DT_NEEDED), the
// data files they need, and configuration written here. Building the same packages twice
// gives the same digests.
//
// A test that needs the images and runs where the packages are absent skips:
//
//	if missing := images.Missing(); len(missing) > 0 {
//		t.Skipf("test images need Debian packages: %s", images.InstallCommand(missing...))
//	}
package images

import (
	"fmt"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Docker Hub names under which Start and DefaultImages serve the images.
const (
	NginxRef         = "library/nginx:alpine"
	BusyboxRef       = "library/busybox:1.28"
	BusyboxLatestRef = "library/busybox:latest"
)

// A requirement is a host file an image is built from and the Debian package that ships it.
type requirement struct {
	path string
	pkg  string
	what string
}

var (
	busyboxReqs = []requirement{
		// busybox-static ships the same path and works as well.
		{"/bin/busybox", "busybox", "the busybox executable"},
	}
	nginxReqs = append([]requirement{
		{"/usr/sbin/nginx", "nginx", "the nginx executable"},
		{"/etc/nginx/mime.types", "nginx-common", "nginx's MIME types"},
		{nginxWelcome, "nginx-common", "nginx's welcome page"},
	}, busyboxReqs...)
)

// MissingPackageError says which Debian package an image needs and how to install it.
type MissingPackageError struct {
	Image   string   // "nginx", "busybox"
	Path    string   // the host file that is absent
	What    string   // what that file is
	Package string   // the Debian package that ships it
	Err     error    // what went wrong reading it
	All     []string // every package the image needs that is absent
}

func (e *MissingPackageError) Error() string {
	return fmt.Sprintf("images: the %s image needs %s (%s) from Debian package %s (%v); install with: %s",
		e.Image, e.Path, e.What, e.Package, e.Err, InstallCommand(e.All...))
}

func (e *MissingPackageError) Unwrap() error { return e.Err }

// InstallCommand is the apt-get command line that installs pkgs.
func InstallCommand(pkgs ...string) string {
	return "DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends " + strings.Join(pkgs, " ")
}

func missing(reqs []requirement) []string {
	seen := map[string]bool{}
	var out []string
	for _, r := range reqs {
		if _, err := os.Stat(r.path); err != nil && !seen[r.pkg] {
			seen[r.pkg] = true
			out = append(out, r.pkg)
		}
	}
	sort.Strings(out)
	return out
}

// Missing lists the Debian packages that Nginx and Busybox need and this machine lacks, sorted;
// nil when both images can be built.
func Missing() []string { return missing(nginxReqs) }

func check(image string, reqs []requirement) error {
	for _, r := range reqs {
		if _, err := os.Stat(r.path); err != nil {
			return &MissingPackageError{Image: image, Path: r.path, What: r.what, Package: r.pkg, Err: err, All: missing(reqs)}
		}
	}
	return nil
}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// image makes a linux/amd64 image of one layer with the given runtime config.
func image(fs *rootfs, cfg v1.Config) (v1.Image, error) {
	layer, err := fs.layer()
	if err != nil {
		return nil, err
	}
	img, err := mutate.ConfigFile(empty.Image, &v1.ConfigFile{
		Architecture: "amd64",
		OS:           "linux",
		Created:      v1.Time{Time: epoch},
		Config:       cfg,
		RootFS:       v1.RootFS{Type: "layers"},
	})
	if err != nil {
		return nil, err
	}
	return mutate.Append(img, mutate.Addendum{
		Layer: layer,
		History: v1.History{
			Created:   v1.Time{Time: epoch},
			CreatedBy: "github.com/headway/headway/test/images",
			Comment:   "built from the host's Debian packages",
		},
	})
}

// busyboxApplets lists the applets the host's busybox was built with.
var busyboxApplets = sync.OnceValues(func() ([]string, error) {
	out, err := exec.Command("/bin/busybox", "--list").Output()
	if err != nil {
		return nil, fmt.Errorf("busybox --list: %w", err)
	}
	return strings.Fields(string(out)), nil
})

// addBusybox puts busybox in /bin with a symlink for every applet (as the official image has
// them), the accounts files, name service configuration and the usual empty directories.
// Busybox's wget resolves names through glibc's getaddrinfo; glibc 2.34 and later have the
// files and dns NSS services built into libc.so.6, so /etc/nsswitch.conf suffices and no
// libnss_* module is needed. nslookup reads /etc/resolv.conf itself (libresolv).
func addBusybox(fs *rootfs) error {
	if err := fs.binary("/bin/busybox", "/bin/busybox"); err != nil {
		return err
	}
	applets, err := busyboxApplets()
	if err != nil {
		return err
	}
	for _, a := range applets {
		if a != "busybox" && !strings.Contains(a, "/") {
			fs.symlink("/bin/"+a, "busybox")
		}
	}
	fs.symlink("/usr/bin/env", "/bin/busybox")
	fs.file("/etc/passwd", 0o644, passwd)
	fs.file("/etc/group", 0o644, group)
	fs.file("/etc/nsswitch.conf", 0o644, "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nservices: files\nprotocols: files\n")
	for _, d := range []string{"/home", "/var", "/usr/sbin", "/usr/bin", "/sbin", "/etc", "/dev", "/proc", "/sys", "/run"} {
		fs.dir(d, 0o755)
	}
	fs.dir("/root", 0o700)
	fs.dir("/tmp", 0o1777)
	fs.dir("/var/tmp", 0o1777)
	return nil
}

const passwd = `root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
sys:x:3:3:sys:/dev:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/home:/bin/false
`

const group = `root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
tty:x:5:
www-data:x:33:
nogroup:x:65534:
`

var busyboxImage = sync.OnceValues(buildBusybox)

func buildBusybox() (v1.Image, error) {
	if err := check("busybox", busyboxReqs); err != nil {
		return nil, err
	}
	fs := newRootfs()
	if err := addBusybox(fs); err != nil {
		return nil, fmt.Errorf("images: busybox: %w", err)
	}
	return image(fs, v1.Config{
		Env: []string{"PATH=" + defaultPath},
		Cmd: []string{"sh"},
	})
}

// Busybox is Debian's busybox (1.35) standing in for busybox:1.28: /bin/busybox, a /bin
// symlink for each of its applets (sh, ls, ps, hostname, nslookup, wget, cat, echo, sleep, id,
// ...), Cmd ["sh"]. The image is built once per process and shared; it is immutable.
func Busybox() (v1.Image, error) { return busyboxImage() }

// DefaultImages are the images Headway's tests run, by the Docker Hub name each is served
// under: nginx:alpine, busybox:1.28 and busybox:latest.
func DefaultImages() (map[string]v1.Image, error) {
	nginx, err := Nginx()
	if err != nil {
		return nil, err
	}
	busybox, err := Busybox()
	if err != nil {
		return nil, err
	}
	return map[string]v1.Image{NginxRef: nginx, BusyboxRef: busybox, BusyboxLatestRef: busybox}, nil
}
