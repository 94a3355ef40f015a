package containerd

import (
	"fmt"
	"strconv"
	"strings"
)

// version is containerd's release, as reported by `containerd --version`.
type version struct {
	Major, Minor, Patch int
}

func (v version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// atLeast reports whether v is major.minor or later.
func (v version) atLeast(major, minor int) bool {
	return v.Major > major || (v.Major == major && v.Minor >= minor)
}

// parseVersion reads the output of `containerd --version`, e.g.
//
//	containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3   (Debian)
//	containerd github.com/containerd/containerd v1.7.13 7c3aca7a6...             (upstream)
//	containerd github.com/containerd/containerd/v2 v2.1.4 75cb2b7...             (2.x)
func parseVersion(out string) (version, error) {
	fields := strings.Fields(out)
	for i, f := range fields {
		if i == 0 || strings.Contains(f, "/") {
			continue // the program name and the module path
		}
		f = strings.TrimPrefix(f, "v")
		end := 0
		for end < len(f) && (f[end] == '.' || (f[end] >= '0' && f[end] <= '9')) {
			end++
		}
		parts := strings.Split(strings.Trim(f[:end], "."), ".")
		if len(parts) < 2 {
			continue
		}
		var nums [3]int
		ok := true
		for j := 0; j < len(parts) && j < 3; j++ {
			n, err := strconv.Atoi(parts[j])
			if err != nil {
				ok = false
				break
			}
			nums[j] = n
		}
		if ok {
			return version{nums[0], nums[1], nums[2]}, nil
		}
	}
	return version{}, fmt.Errorf("no version number in %q", strings.TrimSpace(out))
}

// settings is every decision that goes into config.toml. It is computed once
// from the host (see detect.go) and rendered by renderConfig, a pure function.
type settings struct {
	Version version

	Root, State, Socket, OptDir string

	PauseImage  string
	Snapshotter string // "overlayfs" or "native"

	// RestrictOOMScoreAdj is set when containerd cannot lower oom_score_adj
	// (no CAP_SYS_RESOURCE): without it runc fails every sandbox.
	RestrictOOMScoreAdj bool
	DisableAppArmor     bool
	// OCIRuntime is the OCI runtime the runc shims run: "runc" (also when
	// empty) or "crun". It names the runtime's state directory.
	OCIRuntime string
	// OCIBinary is the OCI runtime binary (runc, crun or crun's wrapper)
	// the shims run (BinaryName); empty means runc from PATH.
	OCIBinary string

	// CNIBinDirs are the plugin directories in search order. For containerd
	// before 2.1 only the first one is written (bin_dir takes one directory):
	// Start links the plugins of the others into it.
	CNIBinDirs        []string
	CNIConfDir        string
	RegistryConfigDir string
}

// configVersion is the config.toml schema the containerd release reads
// natively: 2 for 1.x, 3 for 2.x (whose CRI plugin is split into
// io.containerd.cri.v1.runtime and io.containerd.cri.v1.images).
func (s settings) configVersion() int {
	if s.Version.Major >= 2 {
		return 3
	}
	return 2
}

// ociRoot is the OCI runtime's state directory, inside containerd's state
// dir rather than the shim's default /run/containerd/runc. runc and crun
// keep different state, so each has its own: a container made by one stays
// with it (its shim keeps the options it was created with).
func (s settings) ociRoot() string {
	if s.OCIRuntime == "" {
		return s.State + "/runc"
	}
	return s.State + "/" + s.OCIRuntime
}

// multipleCNIBinDirs reports whether containerd takes a list of CNI plugin
// directories (bin_dirs, containerd 2.1 and later).
func (v version) multipleCNIBinDirs() bool { return v.atLeast(2, 1) }

// disabledPlugins are plugins Headway never uses: snapshotters other than
// overlayfs and native, tracing, the restart monitor, and (2.x) NRI, whose
// socket would live at /var/run/nri outside the data dir.
func (s settings) disabledPlugins() []string {
	p := []string{
		"io.containerd.snapshotter.v1.aufs",
		"io.containerd.snapshotter.v1.btrfs",
		"io.containerd.snapshotter.v1.zfs",
		"io.containerd.snapshotter.v1.devmapper",
		"io.containerd.tracing.processor.v1.otlp",
		"io.containerd.internal.v1.tracing",
		"io.containerd.internal.v1.restart",
	}
	if s.Version.Major >= 2 {
		p = append(p,
			"io.containerd.snapshotter.v1.blockfile",
			"io.containerd.snapshotter.v1.erofs",
			"io.containerd.nri.v1.nri",
		)
	}
	return p
}

// renderConfig writes config.toml for s.
func renderConfig(s settings) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	w("# Written by Headway at every start; edits are overwritten.")
	w("# containerd %s: config version %d.", s.Version, s.configVersion())
	w("version = %d", s.configVersion())
	w("root = %s", tomlString(s.Root))
	w("state = %s", tomlString(s.State))
	w("disabled_plugins = %s", tomlStrings(s.disabledPlugins()))
	w("")
	w("[grpc]")
	w("  address = %s", tomlString(s.Socket))
	w("  tcp_address = \"\"")
	w("")
	w("[debug]")
	w("  address = \"\"")
	w("")
	w("[metrics]")
	w("  address = \"\"")
	w("")
	w("[plugins.%s]", tomlString("io.containerd.internal.v1.opt"))
	w("  path = %s", tomlString(s.OptDir))
	w("")

	if s.configVersion() == 2 {
		cri := "plugins." + tomlString("io.containerd.grpc.v1.cri")
		w("[%s]", cri)
		w("  sandbox_image = %s", tomlString(s.PauseImage))
		w("  stream_server_address = \"127.0.0.1\"")
		w("  stream_server_port = \"0\"")
		w("  disable_tcp_service = true")
		w("  enable_selinux = false")
		w("  restrict_oom_score_adj = %t", s.RestrictOOMScoreAdj)
		w("  disable_apparmor = %t", s.DisableAppArmor)
		w("  netns_mounts_under_state_dir = true")
		w("")
		w("[%s.containerd]", cri)
		w("  snapshotter = %s", tomlString(s.Snapshotter))
		w("  default_runtime_name = \"runc\"")
		w("")
		w("[%s.containerd.runtimes.runc]", cri)
		w("  runtime_type = \"io.containerd.runc.v2\"")
		w("")
		w("[%s.containerd.runtimes.runc.options]", cri)
		w("  SystemdCgroup = false")
		w("  Root = %s", tomlString(s.ociRoot()))
		if s.OCIBinary != "" {
			w("  BinaryName = %s", tomlString(s.OCIBinary))
		}
		w("")
		w("[%s.cni]", cri)
		writeCNI(w, s)
		w("")
		w("[%s.registry]", cri)
		w("  config_path = %s", tomlString(s.RegistryConfigDir))
		return b.String()
	}

	images := "plugins." + tomlString("io.containerd.cri.v1.images")
	runtime := "plugins." + tomlString("io.containerd.cri.v1.runtime")
	w("[%s]", images)
	w("  snapshotter = %s", tomlString(s.Snapshotter))
	w("")
	w("[%s.pinned_images]", images)
	w("  sandbox = %s", tomlString(s.PauseImage))
	w("")
	w("[%s.registry]", images)
	w("  config_path = %s", tomlString(s.RegistryConfigDir))
	w("")
	w("[%s]", runtime)
	w("  enable_selinux = false")
	w("  restrict_oom_score_adj = %t", s.RestrictOOMScoreAdj)
	w("  disable_apparmor = %t", s.DisableAppArmor)
	w("  netns_mounts_under_state_dir = true")
	w("")
	w("[%s.containerd]", runtime)
	w("  default_runtime_name = \"runc\"")
	w("")
	w("[%s.containerd.runtimes.runc]", runtime)
	w("  runtime_type = \"io.containerd.runc.v2\"")
	w("")
	w("[%s.containerd.runtimes.runc.options]", runtime)
	w("  SystemdCgroup = false")
	w("  Root = %s", tomlString(s.ociRoot()))
	if s.OCIBinary != "" {
		w("  BinaryName = %s", tomlString(s.OCIBinary))
	}
	w("")
	w("[%s.cni]", runtime)
	writeCNI(w, s)
	w("")
	w("[plugins.%s]", tomlString("io.containerd.grpc.v1.cri"))
	w("  stream_server_address = \"127.0.0.1\"")
	w("  stream_server_port = \"0\"")
	w("  disable_tcp_service = true")
	return b.String()
}

func writeCNI(w func(string, ...any), s settings) {
	if s.Version.multipleCNIBinDirs() {
		w("  bin_dirs = %s", tomlStrings(s.CNIBinDirs))
	} else if len(s.CNIBinDirs) > 0 {
		w("  bin_dir = %s", tomlString(s.CNIBinDirs[0]))
	}
	w("  conf_dir = %s", tomlString(s.CNIConfDir))
	w("  max_conf_num = 1")
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func tomlStrings(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = tomlString(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}
