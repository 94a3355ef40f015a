package process

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The process runtime has no images. For the busybox image, which the
// Kubernetes DNS guides use for `kubectl run -it --rm --image=busybox:1.28
// ... -- sh`, it offers the host's busybox instead: containers of that image
// get a directory of applet links first in their PATH, so `sh`, `wget` and
// the rest are busybox's. `nslookup` is Headway's own busybox-1.28-style
// applet (this binary, by name), because newer busybox releases no longer
// print the name of each address.

// busyboxTarget is where containers see the applet directory (which is in
// the data dir, hidden from them): a path any user can read.
const busyboxTarget = "/run/headway/busybox"

// isBusyboxImage reports whether image is busybox (any tag or registry).
func isBusyboxImage(image string) bool {
	name := image
	if i := strings.IndexAny(name, "@"); i >= 0 {
		name = name[:i]
	}
	if i := strings.LastIndex(name, ":"); i > strings.LastIndex(name, "/") {
		name = name[:i]
	}
	return name == "busybox" || strings.HasSuffix(name, "/busybox")
}

// busyboxBin makes (once) and returns the applet directory on the host, or
// "" when the host has no busybox.
func (r *Runtime) busyboxBin() string {
	r.busyboxOnce.Do(func() {
		bb, err := exec.LookPath("busybox")
		if err != nil {
			r.log.Info("busybox is not installed: pods of the busybox image run the host's own tools (apt-get install busybox)")
			return
		}
		out, err := exec.Command(bb, "--list").Output()
		if err != nil {
			return
		}
		dir := filepath.Join(r.cfg.DataDir, "busybox", "bin")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return
		}
		// Containers see it bind-mounted at busyboxTarget, as any user.
		os.Chmod(dir, 0o755)
		self, _ := os.Executable()
		for _, applet := range strings.Fields(string(out)) {
			target := bb
			if applet == "nslookup" && self != "" && !strings.HasSuffix(self, ".test") {
				target = self
			}
			link := filepath.Join(dir, applet)
			if cur, err := os.Readlink(link); err == nil && cur == target {
				continue
			}
			os.Remove(link)
			os.Symlink(target, link)
		}
		r.busyboxDir = dir
	})
	return r.busyboxDir
}

// withBusyboxPath puts the applet directory first in env's PATH.
func withBusyboxPath(env []string, dir string) []string {
	out := append([]string(nil), env...)
	for i, e := range out {
		if v, ok := strings.CutPrefix(e, "PATH="); ok {
			out[i] = "PATH=" + dir + ":" + v
			return out
		}
	}
	return append(out, "PATH="+dir+":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
}
