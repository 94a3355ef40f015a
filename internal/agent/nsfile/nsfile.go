// Package nsfile keeps Linux namespaces alive as files: a namespace made
// by unshare on a throw-away thread and bind mounted on a path, as `ip netns
// add` does. The node agent's network (pod network namespaces) and the
// process runtime (pod IPC namespaces) use it.
package nsfile

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// kinds names the namespace files under /proc/<pid>/task/<tid>/ns.
var kinds = map[int]string{unix.CLONE_NEWNET: "net", unix.CLONE_NEWIPC: "ipc", unix.CLONE_NEWUTS: "uts"}

// Create makes a new namespace of the kind flag (CLONE_NEWNET, ...) and
// keeps it alive by bind mounting it on path; a namespace already mounted
// there is kept. The unshare happens on a locked thread, which goes back to
// its own namespace once the new one is mounted (a thread thrown away
// there could be the main thread, which Go keeps, wedged, and with it the
// namespace after its file is removed); one that cannot go back stays
// locked and ends with its goroutine, so no other goroutine runs in it.
func Create(path string, flag int) error {
	kind, ok := kinds[flag]
	if !ok {
		return fmt.Errorf("nsfile: unsupported namespace flag %#x", flag)
	}
	if IsMount(path) {
		return nil
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o444)
	if err != nil {
		return err
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self, err := unix.Open("/proc/thread-self/ns/"+kind, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer unix.Close(self)
		if err := unix.Unshare(flag); err != nil {
			// Still in its own namespace.
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/%d/task/%d/ns/%s", os.Getpid(), unix.Gettid(), kind)
		err = unix.Mount(src, path, "none", unix.MS_BIND, "")
		if err != nil {
			err = fmt.Errorf("bind mounting the namespace on %s: %w", path, err)
		}
		if unix.Setns(self, flag) == nil {
			runtime.UnlockOSThread()
		} // else the thread ends with this goroutine
		errc <- err
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// Remove unmounts the namespace on path (it ends once nothing else holds
// it) and removes the file; a path already gone is not an error.
func Remove(path string) error {
	if IsMount(path) {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("unmounting %s: %w", path, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

const nsfsMagic = 0x6e736673

// IsMount reports whether a namespace is mounted on path.
func IsMount(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == nsfsMagic
}
