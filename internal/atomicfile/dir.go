package atomicfile

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// dataLink is the link to the current content of a directory WriteDir
// keeps; each visible entry is a link through it.
const dataLink = "..data"

// WriteDir replaces the content of dir with files (relative paths → data,
// mode perm) so that a reader sees the old set or the new, never a mix,
// as the kubelet writes volumes: the files go to a new hidden directory,
// the link ..data is switched to it in one rename, and each top-level
// entry of dir is a link through ..data. dir itself stays (it may be
// mounted); the previous content is removed. Paths must stay inside dir
// and no part may start with "..".
func WriteDir(dir string, files map[string][]byte, perm os.FileMode) error {
	top := map[string]bool{}
	for rel := range files {
		clean := filepath.Clean(rel)
		if rel == "" || filepath.IsAbs(rel) || clean != strings.TrimSuffix(rel, "/") {
			return fmt.Errorf("path %q is not a clean relative path", rel)
		}
		for _, part := range strings.Split(clean, "/") {
			if strings.HasPrefix(part, "..") {
				return fmt.Errorf("path %q: no part may start with \"..\"", rel)
			}
		}
		top[strings.Split(clean, "/")[0]] = true
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	stamp := time.Now().UTC().Format("..2006_01_02_15_04_05.")
	next, err := os.MkdirTemp(dir, stamp)
	if err != nil {
		return err
	}
	fail := func(err error) error {
		os.RemoveAll(next)
		return err
	}
	if err := os.Chmod(next, 0o755); err != nil {
		return fail(err)
	}
	for rel, data := range files {
		p := filepath.Join(next, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return fail(err)
		}
		if err := os.WriteFile(p, data, perm); err != nil {
			return fail(err)
		}
		if err := os.Chmod(p, perm); err != nil {
			return fail(err)
		}
	}
	old, _ := os.Readlink(filepath.Join(dir, dataLink))
	if err := Symlink(filepath.Base(next), filepath.Join(dir, dataLink)); err != nil {
		return fail(err)
	}
	// The visible entries: a link through ..data for each, and nothing
	// else (what an earlier content had, or a plain earlier writer left).
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, "..") {
			if name != dataLink && name != filepath.Base(next) && (name == old || e.IsDir()) {
				os.RemoveAll(filepath.Join(dir, name))
			}
			continue
		}
		if top[name] {
			if target, err := os.Readlink(filepath.Join(dir, name)); err == nil && target == filepath.Join(dataLink, name) {
				delete(top, name) // already right
				continue
			}
		}
		if err := os.RemoveAll(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	for name := range top {
		if err := os.Symlink(filepath.Join(dataLink, name), filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}
