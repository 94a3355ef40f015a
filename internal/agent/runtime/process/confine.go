package process

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	corev1 "k8s.io/api/core/v1"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
	"github.com/headway/headway/internal/agent/runtime/process/containerinit"
)

// confinement is how a container is confined, from its pod's and its own
// security context: a container runtime's defaults unless the spec asks
// for the host's namespaces or privileges.
type confinement struct {
	hostPID, hostIPC bool
	cred             containerinit.Cred
	containerinit.Confinement
}

// confinementOf decides c's confinement. A spec without pod or container
// (tests, adopted containers) gets the defaults.
func confinementOf(c *hwruntime.ContainerSpec) (confinement, error) {
	var conf confinement
	var psc *corev1.PodSecurityContext
	var sc *corev1.SecurityContext
	if c.Pod != nil {
		conf.hostPID, conf.hostIPC = c.Pod.Spec.HostPID, c.Pod.Spec.HostIPC
		psc = c.Pod.Spec.SecurityContext
	}
	if c.Container != nil {
		sc = c.Container.SecurityContext
	}
	if c.UID != nil {
		conf.cred.UID = uint32(*c.UID)
	}
	if c.GID != nil {
		conf.cred.GID = uint32(*c.GID)
	}
	if psc != nil {
		if psc.FSGroup != nil {
			conf.cred.Groups = append(conf.cred.Groups, uint32(*psc.FSGroup))
		}
		for _, g := range psc.SupplementalGroups {
			if !slices.Contains(conf.cred.Groups, uint32(g)) {
				conf.cred.Groups = append(conf.cred.Groups, uint32(g))
			}
		}
	}
	if sc != nil && sc.Privileged != nil && *sc.Privileged {
		conf.Privileged = true
		for _, n := range containerinit.Capabilities {
			conf.Caps = append(conf.Caps, n)
		}
		slices.Sort(conf.Caps)
		return conf, nil
	}
	caps := map[int]bool{}
	for _, name := range containerinit.DefaultCapabilities {
		n, _ := containerinit.CapabilityNumber(name)
		caps[n] = true
	}
	if sc != nil && sc.Capabilities != nil {
		isAll := func(c corev1.Capability) bool { return strings.EqualFold(string(c), "ALL") }
		if slices.ContainsFunc(sc.Capabilities.Add, isAll) {
			for _, n := range containerinit.Capabilities {
				caps[n] = true
			}
		}
		if slices.ContainsFunc(sc.Capabilities.Drop, isAll) {
			clear(caps)
		}
		for _, list := range []struct {
			caps []corev1.Capability
			on   bool
		}{{sc.Capabilities.Add, true}, {sc.Capabilities.Drop, false}} {
			for _, name := range list.caps {
				if isAll(name) {
					continue
				}
				n, ok := containerinit.CapabilityNumber(string(name))
				if !ok {
					return conf, fmt.Errorf("container %q: unknown capability %q in securityContext.capabilities", c.Name, name)
				}
				if list.on {
					caps[n] = true
				} else {
					delete(caps, n)
				}
			}
		}
	}
	for n := range caps {
		conf.Caps = append(conf.Caps, n)
	}
	slices.Sort(conf.Caps)
	conf.NoNewPrivs = sc == nil || sc.AllowPrivilegeEscalation == nil || !*sc.AllowPrivilegeEscalation
	profile := (*corev1.SeccompProfile)(nil)
	if psc != nil {
		profile = psc.SeccompProfile
	}
	if sc != nil && sc.SeccompProfile != nil {
		profile = sc.SeccompProfile
	}
	conf.Seccomp = profile == nil || profile.Type != corev1.SeccompProfileTypeUnconfined
	return conf, nil
}

// applyFSGroup gives the pod's fsGroup to a volume as the kubelet does:
// group-owned by it, group read-write (read for a read-only mount), the
// set-group-ID bit on directories so new files inherit the group. A
// volume whose root already has the group and bit is left alone.
func applyFSGroup(dir string, gid int64, readOnly bool) error {
	st, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if s, ok := st.Sys().(*syscall.Stat_t); ok && int64(s.Gid) == gid && st.Mode()&os.ModeSetgid != 0 {
		return nil
	}
	fileBits, dirBits := os.FileMode(0o660), os.FileMode(0o770)
	if readOnly {
		fileBits, dirBits = 0o440, 0o550
	}
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type()&os.ModeSymlink != 0 {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if err := os.Lchown(p, -1, int(gid)); err != nil {
			return err
		}
		mode := info.Mode().Perm() | fileBits
		if d.IsDir() {
			mode = info.Mode().Perm() | dirBits | os.ModeSetgid
		}
		return os.Chmod(p, mode)
	})
}
