//go:build !linux

package bolt

import "os"

// datasync waits until f is on disk.
func datasync(f *os.File) error { return f.Sync() }

// reserve does nothing where Linux's fallocate is missing.
func reserve(*os.File, int64) {}
