package proxy

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/headway/headway/internal/netnsrun"
)

// NetNS is a network namespace the proxy works in; the zero value (no
// path) is the process's own.
type NetNS struct {
	// Path of the namespace file, e.g. /var/run/netns/<name>.
	Path string
}

// open returns a file descriptor of the namespace, or -1 for our own.
func (n NetNS) open() (int, error) {
	if n.Path == "" {
		return -1, nil
	}
	fd, err := unix.Open(n.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("opening network namespace %s: %w", n.Path, err)
	}
	return fd, nil
}

// Do runs fn with a thread in the namespace: sockets fn creates belong to
// it for good. Our own namespace: fn runs as is.
func (n NetNS) Do(fn func() error) error {
	if n.Path == "" {
		return fn()
	}
	return netnsrun.Do(n.Path, fn)
}

func closeFd(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}
