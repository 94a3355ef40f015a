package process

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

// view is a container's file system as it is being set up, inside its own
// private mount namespace. Mounts never create anything on the host outside
// the data dir: where a mount point is missing, the nearest existing
// directory above it is "shadowed" — a tmpfs is mounted over it (in the
// container's namespace only) and every entry it had is bind-mounted back
// into it, so the container sees the same directory plus the new mount
// point. Shadowing "/" itself is done on a private root under the data dir
// that the container is chrooted into.
type view struct {
	// root is "" (the host's root) or the private root the process is
	// chrooted into.
	root string
	// scratch is a directory of the container's in the data dir, for the
	// private root and staging.
	scratch string
	// mine holds the directories (container paths) that are ours to
	// write: shadows and what was made in them.
	mine map[string]bool
	n    int
}

func (v *view) path(p string) string {
	if v.root == "" {
		return p
	}
	return filepath.Join(v.root, p)
}

// bind mounts m.Source at m.Target, read-only if asked.
func (v *view) bind(m hwruntime.Mount) error {
	st, err := os.Stat(m.Source)
	if err != nil {
		return err
	}
	target := filepath.Clean("/" + m.Target)
	if err := v.ensure(target, st.IsDir()); err != nil {
		return err
	}
	full := v.path(target)
	if err := unix.Mount(m.Source, full, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	if m.ReadOnly {
		if err := unix.Mount("", full, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("making it read-only: %w", err)
		}
	}
	return nil
}

// ensure makes target exist in the view (a directory, or an empty file),
// shadowing its nearest existing ancestor if it does not.
func (v *view) ensure(target string, dir bool) error {
	full := v.path(target)
	if _, err := os.Stat(full); err == nil {
		return nil
	}
	anc := filepath.Dir(target)
	for {
		st, err := os.Stat(v.path(anc))
		if err == nil {
			if !st.IsDir() {
				return fmt.Errorf("%s is not a directory", anc)
			}
			break
		}
		anc = filepath.Dir(anc)
	}
	below := strings.TrimPrefix(strings.TrimPrefix(target, anc), "/")
	if v.root == "" {
		// The directory itself, not a link to it: /var/run and /run are one
		// directory on most hosts, and shadowing it under both names would
		// stack a second tmpfs and a second bind of every entry on the first.
		if real, err := filepath.EvalSymlinks(anc); err == nil {
			anc = real
		}
	}
	if !v.mine[anc] {
		if err := v.shadow(anc); err != nil {
			return fmt.Errorf("making a private view of %s: %w", anc, err)
		}
	}
	// Below anc, everything is in a tmpfs of ours.
	rest := strings.Split(below, "/")
	p := anc
	for i, part := range rest {
		p = filepath.Join(p, part)
		fp := v.path(p)
		if st, err := os.Lstat(fp); err == nil && st.Mode()&os.ModeSymlink != 0 {
			os.Remove(fp) // a dangling link copied into the shadow
		}
		if i == len(rest)-1 && !dir {
			f, err := os.OpenFile(fp, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			f.Close()
			break
		}
		if err := os.Mkdir(fp, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
		v.mine[p] = true
	}
	return nil
}

// shadow puts a tmpfs over dir holding bind mounts of everything dir had.
func (v *view) shadow(dir string) error {
	if dir == "/" && v.root == "" {
		root := filepath.Join(v.scratch, "root")
		if err := os.MkdirAll(root, 0o755); err != nil {
			return err
		}
		if err := populate("/", root); err != nil {
			return err
		}
		v.root = root
		v.mine["/"] = true
		return nil
	}
	full := v.path(dir)
	v.n++
	stage := filepath.Join(v.scratch, fmt.Sprintf("stage%d", v.n))
	if err := os.MkdirAll(stage, 0o700); err != nil {
		return err
	}
	if err := unix.Mount(full, stage, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	err := populate(stage, full)
	unix.Unmount(stage, unix.MNT_DETACH)
	if err != nil {
		return err
	}
	v.mine[dir] = true
	return nil
}

// populate mounts a tmpfs on dst (with src's mode and owner) and puts in it
// every entry of src: directories and files bind-mounted, links copied.
func populate(src, dst string) error {
	st, err := os.Stat(src)
	if err != nil {
		return err
	}
	opts := fmt.Sprintf("mode=%o", uint32(st.Mode().Perm()))
	if s, ok := st.Sys().(*syscall.Stat_t); ok {
		opts += fmt.Sprintf(",uid=%d,gid=%d", s.Uid, s.Gid)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", dst, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return err
	}
	for _, e := range entries {
		s, d := filepath.Join(src, e.Name()), filepath.Join(dst, e.Name())
		switch {
		case e.Type()&os.ModeSymlink != 0:
			target, err := os.Readlink(s)
			if err != nil {
				return err
			}
			if err := os.Symlink(target, d); err != nil {
				return err
			}
		case e.IsDir():
			if err := os.Mkdir(d, 0o755); err != nil {
				return err
			}
			if err := unix.Mount(s, d, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
				return fmt.Errorf("bind mounting %s: %w", s, err)
			}
		default:
			f, err := os.OpenFile(d, os.O_CREATE|os.O_WRONLY, 0o644)
			if err != nil {
				return err
			}
			f.Close()
			if err := unix.Mount(s, d, "", unix.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind mounting %s: %w", s, err)
			}
		}
	}
	return nil
}
