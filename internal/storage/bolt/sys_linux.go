package bolt

import (
	"os"

	"golang.org/x/sys/unix"
)

// datasync waits until f's data (and the size, where it grew) is on disk.
func datasync(f *os.File) error { return unix.Fdatasync(int(f.Fd())) }

// reserve allocates n bytes of disk for f without changing its size, where
// the file system can.
func reserve(f *os.File, n int64) {
	_ = unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, n)
}
