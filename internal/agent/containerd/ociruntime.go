package containerd

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/headway/headway/internal/agent/containerd/ociwrap"
	"github.com/headway/headway/internal/agent/runtime/process/initbin"
	"github.com/headway/headway/internal/atomicfile"
)

// decideOCIRuntime chooses the OCI runtime the shims run and sets s's
// OCIRuntime and OCIBinary (empty: runc from PATH). want is the
// --oci-runtime asked for: auto (or empty), crun or runc; crun asked for
// and not usable is an error.
//
// crun when it is installed and can manage the host's cgroups, else runc.
// Both make the same containers from the same OCI spec; crun is a small C
// program where runc is a Go one that executes itself again as every
// container's init, and a pod's start runs the runtime four times (create
// and start, for the sandbox and for the container). On this project's
// machines, where a new process costs more the more pages it touches, crun
// takes a 100-pod StatefulSet's start from about 35 s to about 27 s (see
// bench/results-agent.md).
//
// Either binary runs from a sealed in-memory copy (see sealedBinary), and
// crun on a hybrid cgroup host through the ociwrap wrapper.
func (c *Containerd) decideOCIRuntime(s *settings, want string) error {
	binDir := filepath.Join(c.dir, "bin")
	if want == "runc" {
		c.log.Info("containerd decision", "oci_runtime", "runc", "reason", "--oci-runtime runc")
	} else if crun, err := exec.LookPath("crun"); err != nil {
		if want == "crun" {
			return errors.New("--oci-runtime crun: crun is not installed (Debian: apt-get install crun)")
		}
		c.log.Info("containerd decision", "oci_runtime", "runc", "reason", "crun is not installed (Debian: apt-get install crun)")
	} else if err := c.useCrun(s, crun, binDir); err != nil {
		if want == "crun" {
			return fmt.Errorf("--oci-runtime crun: %s is not usable here: %w", crun, err)
		}
		c.log.Info("containerd decision", "oci_runtime", "runc", "reason", "crun "+crun+" is not usable here: "+err.Error())
	} else {
		return nil
	}
	s.OCIRuntime = "runc"
	runc, err := exec.LookPath("runc")
	if err != nil {
		c.log.Info("containerd decision", "runc", "from PATH", "reason", "runc not found: "+err.Error())
		return nil
	}
	sr, err := sealBinary("runc", runc, filepath.Join(binDir, "runc"))
	if err != nil {
		c.log.Info("containerd decision", "runc", runc, "reason", "a sealed copy could not be made ("+err.Error()+"): each container init copies runc itself")
		return nil
	}
	c.oci = sr
	s.OCIBinary = sr.link
	c.log.Info("containerd decision", "runc", sr.link, "reason", "a sealed in-memory copy of "+runc+": runc init skips copying itself for every container")
	return nil
}

// useCrun sets s up for crun at path, or says why crun cannot be used.
func (c *Containerd) useCrun(s *settings, path, binDir string) error {
	controllers, err := hybridV2Controllers()
	if err != nil {
		return fmt.Errorf("reading the cgroup layout: %w", err)
	}
	sr, err := sealBinary("crun", path, filepath.Join(binDir, ociwrap.Target))
	if err != nil {
		return fmt.Errorf("a sealed copy could not be made: %w", err)
	}
	binary, reason := sr.link, "a sealed in-memory copy of "+path+" (crun skips copying itself at every call)"
	if controllers != "" {
		wrapper, err := c.installWrapper(binDir)
		if err != nil {
			sr.Close()
			return fmt.Errorf("the cgroup v2 hierarchy at %s holds controllers (%s), which crun refuses, and its wrapper could not be installed: %w", ociwrap.Unified, controllers, err)
		}
		// sealBinary ran the copy; run it through the wrapper too.
		out, err := exec.Command(wrapper, "--version").CombinedOutput()
		if err != nil || !strings.HasPrefix(string(out), "crun version") {
			sr.Close()
			return fmt.Errorf("%s --version: %v: %s", wrapper, err, firstLine(string(out)))
		}
		binary = wrapper
		reason += ", run through " + ociwrap.Name + ": the cgroup v2 hierarchy at " + ociwrap.Unified +
			" holds controllers (" + controllers + "), which crun refuses; each crun call gets a mount namespace without it"
	}
	c.oci = sr
	s.OCIRuntime, s.OCIBinary = "crun", binary
	c.log.Info("containerd decision", "oci_runtime", "crun", "binary", binary, "version", sr.version, "reason", reason)
	return nil
}

// installWrapper writes binDir/headway-crun, the wrapper that executes
// binDir/crun (package ociwrap): the static ELF one where there is one for
// this architecture, else a link to the small headway-init this binary
// embeds, or to this executable when it embeds none (either wraps crun when
// run under that name).
func (c *Containerd) installWrapper(binDir string) (string, error) {
	link := filepath.Join(binDir, ociwrap.Name)
	data, ok, err := ociwrap.ELF(filepath.Join(binDir, ociwrap.Target))
	if err != nil {
		return "", err
	}
	if ok {
		if cur, err := os.ReadFile(link); err == nil && bytes.Equal(cur, data) {
			return link, nil
		}
		if err := atomicfile.WriteUnsynced(link, data, 0o555); err != nil {
			return "", err
		}
		return link, nil
	}
	target, err := initbin.Install(binDir)
	if err != nil {
		return "", err
	}
	if target == "" {
		if target, err = os.Executable(); err != nil {
			return "", err
		}
	}
	if err := atomicfile.Symlink(target, link); err != nil {
		return "", err
	}
	return link, nil
}

// hybridV2Controllers returns the controllers the cgroup v2 hierarchy holds
// on a host that mounts cgroups the hybrid way (v1 controllers under a tmpfs
// at /sys/fs/cgroup, the v2 hierarchy at /sys/fs/cgroup/unified): what crun
// refuses. "" on other hosts, or when it holds none.
func hybridV2Controllers() (string, error) {
	var st unix.Statfs_t
	if err := unix.Statfs("/sys/fs/cgroup", &st); err != nil {
		return "", err
	}
	if st.Type != unix.TMPFS_MAGIC {
		return "", nil // cgroup v2 alone (or something crun will say)
	}
	if err := unix.Statfs(ociwrap.Unified, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return "", nil
		}
		return "", err
	}
	if st.Type != unix.CGROUP2_SUPER_MAGIC {
		return "", nil
	}
	data, err := os.ReadFile(ociwrap.Unified + "/cgroup.controllers")
	if err != nil {
		return "", err
	}
	return string(bytes.TrimSpace(data)), nil
}
