package proxy

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
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

// Do runs fn with the calling goroutine's thread in the namespace: sockets
// fn creates belong to it for good. Our own namespace: fn runs as is.
func (n NetNS) Do(fn func() error) error {
	if n.Path == "" {
		return fn()
	}
	target, err := n.open()
	if err != nil {
		return err
	}
	defer unix.Close(target)
	runtime.LockOSThread()
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer unix.Close(self)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering network namespace %s: %w", n.Path, err)
	}
	ferr := fn()
	if err := unix.Setns(self, unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so the runtime ends it with the goroutine
		// instead of reusing it in the wrong namespace.
		return errors.Join(ferr, fmt.Errorf("leaving network namespace %s: %w", n.Path, err))
	}
	runtime.UnlockOSThread()
	return ferr
}

func closeFd(fd int) {
	if fd >= 0 {
		unix.Close(fd)
	}
}
