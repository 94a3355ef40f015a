package images

import (
	"archive/tar"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

func digest(t *testing.T, img v1.Image) v1.Hash {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestRegistry(t *testing.T) {
	skipIfMissing(t)
	imgs, err := DefaultImages()
	if err != nil {
		t.Fatal(err)
	}
	reg, err := Start(imgs)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()

	// Pulled back by the names a docker.io mirror is asked for.
	for ref, img := range imgs {
		r, err := name.ParseReference(reg.Host()+"/"+ref, name.Insecure)
		if err != nil {
			t.Fatal(err)
		}
		got, err := remote.Image(r)
		if err != nil {
			t.Fatalf("pull %s: %v", r, err)
		}
		if digest(t, got) != digest(t, img) {
			t.Errorf("%s: pulled %s, pushed %s", ref, digest(t, got), digest(t, img))
		}
		cf, err := got.ConfigFile()
		if err != nil {
			t.Fatal(err)
		}
		want, _ := img.ConfigFile()
		if len(cf.Config.Cmd) == 0 || cf.Config.Cmd[0] != want.Config.Cmd[0] {
			t.Errorf("%s: pulled Cmd %q, want %q", ref, cf.Config.Cmd, want.Config.Cmd)
		}
		// Every layer comes back whole.
		layers, err := got.Layers()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range layers {
			rc, err := l.Compressed()
			if err != nil {
				t.Fatal(err)
			}
			if _, err := io.Copy(io.Discard, rc); err != nil {
				t.Fatalf("%s: layer: %v", ref, err)
			}
			rc.Close()
		}
	}

	// The request containerd makes through a docker.io mirror (hosts.toml), query included.
	req, err := http.NewRequest("GET", "http://"+reg.Host()+"/v2/library/nginx/manifests/alpine?ns=docker.io", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.index.v1+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Docker-Content-Digest") != digest(t, imgs[NginxRef]).String() {
		t.Errorf("mirror-style manifest request: %s, digest %q", resp.Status, resp.Header.Get("Docker-Content-Digest"))
	}

	// Push accepts short names as docker does.
	if err := Push(reg.Host(), "busybox:extra", imgs[BusyboxRef]); err != nil {
		t.Fatal(err)
	}
	extra, err := name.ParseReference(reg.Host()+"/library/busybox:extra", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := remote.Head(extra); err != nil {
		t.Errorf("short name push: %v", err)
	}
	if err := Push(reg.Host(), "quay.io/x/y:z", imgs[BusyboxRef]); err == nil {
		t.Error("push of a quay.io name should fail: only Docker Hub names are served")
	}

	host := reg.Host()
	if err := reg.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := http.Get("http://" + host + "/v2/"); err == nil {
		t.Error("registry still answers after Close")
	}
}

func TestWriteTarball(t *testing.T) {
	skipIfMissing(t)
	img, err := Busybox()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "busybox.tar")
	if err := WriteTarball(p, "busybox:1.28", img); err != nil {
		t.Fatal(err)
	}
	// The docker-archive manifest names the image as containerd will (docker.io/library/...).
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(f)
	var manifest []struct{ RepoTags []string }
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("no manifest.json: %v", err)
		}
		if h.Name == "manifest.json" {
			if err := json.NewDecoder(tr).Decode(&manifest); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	if len(manifest) != 1 || len(manifest[0].RepoTags) != 1 || manifest[0].RepoTags[0] != "docker.io/library/busybox:1.28" {
		t.Errorf("manifest.json: %+v", manifest)
	}
	back, err := tarball.ImageFromPath(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if digest(t, back) != digest(t, img) {
		t.Errorf("read back %s, wrote %s", digest(t, back), digest(t, img))
	}
}

func TestWriteMirrorConfig(t *testing.T) {
	dir := t.TempDir()
	if err := WriteMirrorConfig(dir, "127.0.0.1:5000"); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "docker.io", "hosts.toml"))
	if err != nil {
		t.Fatal(err)
	}
	want := "server = \"http://127.0.0.1:5000\"\n\n[host.\"http://127.0.0.1:5000\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
	if string(b) != want {
		t.Errorf("hosts.toml:\n%s\nwant:\n%s", b, want)
	}
	if err := WriteMirrorConfig(dir, "http://127.0.0.1:5000"); err == nil {
		t.Error("a URL is not a host:port")
	}
}
