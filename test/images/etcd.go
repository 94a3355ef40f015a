package images

import (
	"fmt"
	"sync"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// EtcdRef is the repository and tag under which tests serve the Etcd image: the etcd
// project's published image is quay.io/coreos/etcd:v3.4.23, which examples/etcd-cluster.yaml
// names, so tests mirror quay.io to the local registry too. Debian bookworm ships the same
// etcd, 3.4.23.
const EtcdRef = "coreos/etcd:v3.4.23"

var etcdReqs = append([]requirement{
	{"/usr/bin/etcd", "etcd-server", "the etcd executable"},
	{"/usr/bin/etcdctl", "etcd-client", "the etcdctl executable"},
}, busyboxReqs...)

// EtcdMissing lists the Debian packages that Etcd needs and this machine lacks, sorted; nil
// when the image can be built.
func EtcdMissing() []string { return missing(etcdReqs) }

var etcdImage = sync.OnceValues(buildEtcd)

func buildEtcd() (v1.Image, error) {
	if err := check("etcd", etcdReqs); err != nil {
		return nil, err
	}
	fs := newRootfs()
	if err := addBusybox(fs); err != nil {
		return nil, fmt.Errorf("images: etcd: %w", err)
	}
	for _, bin := range []string{"/usr/bin/etcd", "/usr/bin/etcdctl"} {
		if err := fs.binary(bin, bin); err != nil {
			return nil, fmt.Errorf("images: etcd: %w", err)
		}
	}
	// The official images keep data in /var/lib/etcd (quay.io/coreos/etcd's docs) or
	// /var/etcd (gcr.io/etcd-development/etcd); both exist, empty, for a volume or for
	// etcd's default data dir "<name>.etcd" relative to the working directory /.
	fs.dir("/var/lib/etcd", 0o700)
	fs.dir("/var/etcd", 0o700)
	return image(fs, v1.Config{
		Env:          []string{"PATH=" + defaultPath},
		Cmd:          []string{"etcd"},
		ExposedPorts: map[string]struct{}{"2379/tcp": {}, "2380/tcp": {}},
	})
}

// Etcd is Debian's etcd (3.4, packages etcd-server and etcd-client) as an image: /usr/bin/etcd
// and /usr/bin/etcdctl (the v3 API is etcdctl 3.4's default), the closure of their shared
// libraries, and busybox (sh, wget, nslookup, ...) so that manifests can start etcd from a
// shell command and `kubectl exec` works. Cmd ["etcd"] starts a single member with its data
// in /default.etcd, as the upstream image does; ports 2379 (clients) and 2380 (peers). Built
// once per process and shared; the image is immutable.
func Etcd() (v1.Image, error) { return etcdImage() }
