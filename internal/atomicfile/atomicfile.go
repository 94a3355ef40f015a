// Package atomicfile replaces files so that a crash leaves the old content
// or the new, never half of one.
package atomicfile

import (
	"io"
	"os"
	"path/filepath"
)

// Write replaces path with data (mode perm) through a temporary file in the
// same directory, synced before the rename. The directory is made if needed.
func Write(path string, data []byte, perm os.FileMode) error {
	return WriteFrom(path, perm, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteUnsynced is Write without the sync: readers still see the old
// content or the new, but a crash of the machine may lose the file. For
// throwaway directories (pkg/headwaytest's data dirs), where a sync costs
// milliseconds and protects nothing.
func WriteUnsynced(path string, data []byte, perm os.FileMode) error {
	return writeFrom(path, perm, false, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// WriteFrom is Write for content produced by write (a stream too large to
// hold in memory, e.g. a database snapshot).
func WriteFrom(path string, perm os.FileMode, write func(w io.Writer) error) error {
	return writeFrom(path, perm, true, write)
}

func writeFrom(path string, perm os.FileMode, sync bool, write func(w io.Writer) error) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := write(tmp); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return err
	}
	if sync {
		if err := tmp.Sync(); err != nil {
			tmp.Close()
			return err
		}
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Symlink makes link a symbolic link to target in one rename (through
// link+"_tmp"), replacing what link was, so that a reader finds the old
// link or the new one, never none. A link already pointing at target is
// left as it is.
func Symlink(target, link string) error {
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return nil
	}
	tmp := link + "_tmp"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, link); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
