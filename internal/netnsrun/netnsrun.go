// Package netnsrun runs code on a thread in another network namespace:
// sockets it makes there stay there. The node agent's pod network and the
// Service proxy both use it.
package netnsrun

import (
	"errors"
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on a thread in the network namespace whose file is path, then
// takes the thread back to its own namespace. fn runs on a goroutine of
// its own, locked to the thread; only a thread that cannot go back stays
// locked, to end with that goroutine (a thread left in the namespace could
// be the main thread, which Go keeps, wedged, and with it the namespace).
func Do(path string, fn func() error) error {
	target, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", path, err)
	}
	defer unix.Close(target)
	errc := make(chan error, 1)
	go func() {
		var err error
		defer func() { errc <- err }() // also when fn ends its goroutine
		runtime.LockOSThread()
		self, serr := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if serr != nil {
			runtime.UnlockOSThread()
			err = serr
			return
		}
		defer unix.Close(self)
		if serr := unix.Setns(target, unix.CLONE_NEWNET); serr != nil {
			runtime.UnlockOSThread()
			err = fmt.Errorf("entering network namespace %s: %w", path, serr)
			return
		}
		defer func() {
			if serr := unix.Setns(self, unix.CLONE_NEWNET); serr != nil {
				err = errors.Join(err, fmt.Errorf("leaving network namespace %s: %w", path, serr))
				return
			}
			runtime.UnlockOSThread()
		}()
		err = fn()
	}()
	return <-errc
}
