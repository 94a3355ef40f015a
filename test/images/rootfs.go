package images

import (
	"archive/tar"
	"bytes"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// epoch is the modification time of every file in a built layer and the image's creation
// time, so that building the same packages twice gives the same digests.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// libDirs is where shared libraries are looked up, in the order of Debian's ld.so system
// search path (`/lib64/ld-linux-x86-64.so.2 --help`). A library found in one of them is put at
// the same path in the image, where the image's ld.so finds it without an ld.so.cache.
var libDirs = []string{
	"/lib/x86_64-linux-gnu",
	"/usr/lib/x86_64-linux-gnu",
	"/lib64",
	"/usr/lib64",
	"/lib",
	"/usr/lib",
}

type entry struct {
	typ    byte // tar.TypeDir, tar.TypeReg, tar.TypeSymlink
	mode   int64
	data   []byte
	target string
}

// rootfs is an image filesystem being assembled in memory; it becomes one layer.
type rootfs struct {
	entries map[string]*entry // by clean absolute path
}

func newRootfs() *rootfs { return &rootfs{entries: map[string]*entry{}} }

func (r *rootfs) add(p string, e *entry) {
	p = path.Clean("/" + p)
	for d := path.Dir(p); d != "/"; d = path.Dir(d) {
		if _, ok := r.entries[d]; !ok {
			r.entries[d] = &entry{typ: tar.TypeDir, mode: 0o755}
		}
	}
	r.entries[p] = e
}

// dir adds a directory with the given permission bits (0o1777 for /tmp).
func (r *rootfs) dir(p string, mode int64) { r.add(p, &entry{typ: tar.TypeDir, mode: mode}) }

// file adds a regular file.
func (r *rootfs) file(p string, mode int64, data string) {
	r.add(p, &entry{typ: tar.TypeReg, mode: mode, data: []byte(data)})
}

// symlink adds a symbolic link p -> target.
func (r *rootfs) symlink(p, target string) {
	r.add(p, &entry{typ: tar.TypeSymlink, mode: 0o777, target: target})
}

func (r *rootfs) has(p string) bool {
	_, ok := r.entries[path.Clean("/"+p)]
	return ok
}

// hostFile copies the host file src (symlinks followed) to dst as a regular file with the
// host file's permission bits.
func (r *rootfs) hostFile(dst, src string) error {
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s is not a regular file", src)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	r.add(dst, &entry{typ: tar.TypeReg, mode: int64(fi.Mode().Perm()), data: data})
	return nil
}

// binary copies the host executable src to dst together with everything it needs to start:
// its ELF interpreter (the dynamic loader) and the closure of its DT_NEEDED libraries.
func (r *rootfs) binary(dst, src string) error {
	if err := r.hostFile(dst, src); err != nil {
		return err
	}
	return r.elfClosure(src)
}

// elfClosure adds the interpreter and the shared libraries file needs, transitively. A file
// that is not ELF (a script) needs nothing; a static executable needs nothing either.
func (r *rootfs) elfClosure(file string) error {
	f, err := elf.Open(file)
	if err != nil {
		if _, ok := err.(*elf.FormatError); ok {
			return nil
		}
		return err
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("%s: machine %v, want x86-64", file, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type != elf.PT_INTERP {
			continue
		}
		b, err := io.ReadAll(p.Open())
		if err != nil {
			return fmt.Errorf("%s: reading PT_INTERP: %w", file, err)
		}
		interp := strings.TrimRight(string(b), "\x00")
		if !r.has(interp) {
			if err := r.hostFile(interp, interp); err != nil {
				return fmt.Errorf("%s: interpreter: %w", file, err)
			}
		}
	}
	needed, err := f.DynString(elf.DT_NEEDED)
	if err != nil {
		return fmt.Errorf("%s: DT_NEEDED: %w", file, err)
	}
	var extra []string
	for _, tag := range []elf.DynTag{elf.DT_RUNPATH, elf.DT_RPATH} {
		paths, _ := f.DynString(tag)
		for _, p := range paths {
			for _, d := range strings.Split(p, ":") {
				if d != "" && !strings.Contains(d, "$") {
					extra = append(extra, d)
				}
			}
		}
	}
	for _, lib := range needed {
		found := ""
		for _, d := range append(extra, libDirs...) {
			p := path.Join(d, lib)
			if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() {
				found = p
				break
			}
		}
		if found == "" {
			return fmt.Errorf("%s needs %s, not found in %s (find its package with `dpkg -S %s` on a machine that has it)",
				file, lib, strings.Join(libDirs, ", "), lib)
		}
		if r.has(found) {
			continue
		}
		if err := r.hostFile(found, found); err != nil {
			return err
		}
		if err := r.elfClosure(found); err != nil {
			return err
		}
	}
	return nil
}

// tar writes the filesystem as a tar stream: sorted paths (a directory before its contents),
// owned by root, every time the same.
func (r *rootfs) tar() ([]byte, error) {
	paths := make([]string, 0, len(r.entries))
	for p := range r.entries {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		e := r.entries[p]
		h := &tar.Header{
			Typeflag: e.typ,
			Name:     strings.TrimPrefix(p, "/"),
			Mode:     e.mode,
			ModTime:  epoch,
			Format:   tar.FormatPAX,
		}
		switch e.typ {
		case tar.TypeDir:
			h.Name += "/"
		case tar.TypeReg:
			h.Size = int64(len(e.data))
		case tar.TypeSymlink:
			h.Linkname = e.target
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if e.typ == tar.TypeReg {
			if _, err := tw.Write(e.data); err != nil {
				return nil, err
			}
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// layer turns the filesystem into an image layer (gzip-compressed once, then cached).
func (r *rootfs) layer() (v1.Layer, error) {
	b, err := r.tar()
	if err != nil {
		return nil, err
	}
	return tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, tarball.WithCompressedCaching)
}
