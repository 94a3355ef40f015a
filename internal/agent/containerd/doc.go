// Package containerd runs the containerd that Headway's CRI runtime talks to,
// the way k3s does: Headway writes its config.toml, starts it as a child
// process, restarts it if it dies, builds and imports the pod sandbox (pause)
// image and imports the image archives an air-gapped node is given.
//
// Everything containerd keeps lives under the data dir:
//
//	<data-dir>/containerd/config.toml      written at every start
//	<data-dir>/containerd/root, state      containerd's root and state dirs
//	<data-dir>/containerd/containerd.log   its output (the previous one in containerd.log.1)
//	<data-dir>/containerd/containerd.sock  the gRPC socket (under /run/headway/<hash>/ when
//	                                       the path is too long for a unix socket)
//	<data-dir>/images/*.tar                image archives imported at start
//	<data-dir>/registries/                 registry hosts (mirrors, CAs, credentials)
//	<data-dir>/cni/bin, cni/net.d          CNI plugins and the network config
//
// containerd 1.6 still puts its shims' sockets under /run/containerd/s/
// (named by a hash of the socket path, so they do not collide with a system
// containerd).
//
// # Image archives
//
// Every *.tar in <data-dir>/images is imported into the "k8s.io" namespace
// (the one CRI reads) at each start, before the pause image is checked:
// docker-archives (`docker save`, go-containerregistry's tarball.Write) and
// OCI archives. An OCI archive should name its images with the
// io.containerd.image.name annotation; images it does not name are kept under
// a digest name ("import-<date>@sha256:...").
//
// # Registries: mirrors and credentials
//
// containerd reads registry settings from <data-dir>/registries, one directory
// per registry host with a hosts.toml inside (containerd's "config_path"
// format; files are read at each pull, so no restart is needed). To pull
// docker.io images through a mirror, write
// <data-dir>/registries/docker.io/hosts.toml:
//
//	server = "https://registry-1.docker.io"   # where to go when no mirror answers
//
//	[host."https://mirror.example.com"]
//	  capabilities = ["pull", "resolve"]
//	  # ca = "/etc/ssl/mirror-ca.pem"            # a private CA
//	  # client = [["/path/client.crt", "/path/client.key"]]
//	  # [host."https://mirror.example.com".header]
//	  #   Authorization = ["Basic dXNlcjpwYXNzd29yZA=="]   # static credentials
//
// A registry on a plain-HTTP address uses "http://" in the host and, for a
// self-signed certificate, skip_verify = true. A registry on a port has a
// directory named host:port, e.g. <data-dir>/registries/registry.local:5000/.
// Newer containerd releases also read <data-dir>/registries/_default/hosts.toml
// for registries without a directory of their own. Credentials a Pod names in
// imagePullSecrets reach containerd through CRI and need no file.
package containerd
