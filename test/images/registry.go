package images

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// Registry is an OCI distribution registry served from memory on 127.0.0.1.
type Registry struct {
	host string
	srv  *http.Server
	done chan error

	closeOnce sync.Once
	closeErr  error
}

// Start serves a registry on 127.0.0.1 on a free port and pushes images into it, each under
// its key: a Docker Hub name as a mirror of docker.io is asked for it ("library/nginx:alpine";
// "nginx:alpine" and "docker.io/library/nginx:alpine" mean the same). Close stops it.
func Start(images map[string]v1.Image) (*Registry, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &Registry{
		host: ln.Addr().String(),
		srv: &http.Server{
			Handler:  registry.New(registry.Logger(log.New(io.Discard, "", 0))),
			ErrorLog: log.New(io.Discard, "", 0),
		},
		done: make(chan error, 1),
	}
	go func() { r.done <- r.srv.Serve(ln) }()
	for ref, img := range images {
		if err := Push(r.host, ref, img); err != nil {
			r.Close()
			return nil, err
		}
	}
	return r, nil
}

// Host is the registry's address, "127.0.0.1:port".
func (r *Registry) Host() string { return r.host }

// Close stops serving and waits until the server has stopped. Closing again does nothing.
func (r *Registry) Close() error {
	r.closeOnce.Do(func() {
		r.closeErr = r.srv.Close()
		if err := <-r.done; !errors.Is(err, http.ErrServerClosed) && r.closeErr == nil {
			r.closeErr = err
		}
	})
	return r.closeErr
}

// dockerTag parses a Docker Hub name the way docker and containerd do ("nginx:alpine" is
// docker.io/library/nginx:alpine) and returns its repository and tag.
func dockerTag(ref string) (repo, tag string, err error) {
	t, err := name.NewTag(ref)
	if err != nil {
		return "", "", fmt.Errorf("images: %q: %w", ref, err)
	}
	if reg := t.RegistryStr(); reg != name.DefaultRegistry {
		return "", "", fmt.Errorf("images: %q names registry %s; want a Docker Hub name", ref, reg)
	}
	return t.RepositoryStr(), t.TagStr(), nil
}

// Push puts img into the registry at host (plain HTTP, "127.0.0.1:port") under the Docker Hub
// name ref ("library/busybox:1.28", "busybox:1.28").
func Push(host, ref string, img v1.Image) error {
	repo, tag, err := dockerTag(ref)
	if err != nil {
		return err
	}
	dst, err := name.NewTag(host+"/"+repo+":"+tag, name.Insecure)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if err := remote.Write(dst, img); err != nil {
		return fmt.Errorf("images: pushing %s: %w", dst, err)
	}
	return nil
}

// WriteTarball writes img to path as a docker-archive tarball (what `docker save` writes and
// `ctr images import` reads) tagged with the normalised name of ref
// ("docker.io/library/nginx:alpine" for "nginx:alpine").
func WriteTarball(path, ref string, img v1.Image) error {
	repo, tag, err := dockerTag(ref)
	if err != nil {
		return err
	}
	t, err := name.NewTag("docker.io/" + repo + ":" + tag)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if err := tarball.WriteToFile(path, t, img); err != nil {
		return fmt.Errorf("images: writing %s: %w", path, err)
	}
	return nil
}

// WriteMirrorConfig writes dir/docker.io/hosts.toml, which makes a containerd (1.5 or later)
// whose CRI registry config_path is dir pull and resolve docker.io images from the plain-HTTP
// registry at registryHost ("127.0.0.1:port") first. In containerd's config.toml (version 2):
//
//	[plugins."io.containerd.grpc.v1.cri".registry]
//	  config_path = "<dir>"
//
// The server line names the local registry too, so a name it lacks is answered 404 there and
// never falls through to registry-1.docker.io: tests stay off the network.
func WriteMirrorConfig(dir, registryHost string) error {
	if h, _, err := net.SplitHostPort(registryHost); err != nil || h == "" || strings.Contains(registryHost, "/") {
		return fmt.Errorf("images: registry host %q: want host:port", registryHost)
	}
	d := filepath.Join(dir, "docker.io")
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(d, "hosts.toml"), []byte(MirrorConfig(registryHost)), 0o644)
}

// MirrorConfig is the hosts.toml that WriteMirrorConfig writes.
func MirrorConfig(registryHost string) string {
	return fmt.Sprintf(`server = "http://%[1]s"

[host."http://%[1]s"]
  capabilities = ["pull", "resolve"]
`, registryHost)
}
