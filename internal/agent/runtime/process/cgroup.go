package process

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	corev1 "k8s.io/api/core/v1"
)

// cgroups places each pod in a cgroup of its own, with one cgroup per
// container below it, under a parent Headway owns (<parent>/pod<uid>/<name>),
// and enforces the container's limits there.
//
// On a unified (cgroup v2) host everything is in /sys/fs/cgroup. On a
// hybrid host (v1 controllers, cgroup2 at /sys/fs/cgroup/unified without
// controllers) the unified hierarchy still tracks and kills a container's
// processes, and the limits go to the v1 memory and cpu controllers. What
// the host does not offer is logged once and skipped, never fatal.
type cgroups struct {
	parent string
	// unified is the cgroup2 mount ("" without one); v2limits says its
	// memory and cpu controllers are ours to use.
	unified  string
	v2limits bool
	// v1 is the mount of each v1 controller used for limits (memory, cpu).
	v1  map[string]string
	log *slog.Logger
}

const cgroup2Magic = 0x63677270

func detectCgroups(parent string, log *slog.Logger) *cgroups {
	g := &cgroups{parent: parent, v1: map[string]string{}, log: log}
	isV2 := func(p string) bool {
		var st unix.Statfs_t
		return unix.Statfs(p, &st) == nil && st.Type == cgroup2Magic
	}
	switch {
	case isV2("/sys/fs/cgroup"):
		g.unified = "/sys/fs/cgroup"
		ctrls, _ := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		have := strings.Fields(string(ctrls))
		var enable []string
		for _, c := range []string{"memory", "cpu", "pids"} {
			if contains(have, c) {
				enable = append(enable, "+"+c)
			}
		}
		base := filepath.Join(g.unified, parent)
		err := os.MkdirAll(base, 0o755)
		if err == nil {
			err = enableControllers(g.unified, enable)
		}
		if err == nil {
			err = enableControllers(base, enable)
		}
		if err != nil || !contains(have, "memory") {
			log.Warn("cgroup v2: the memory and cpu controllers cannot be used for pods; limits are not enforced",
				"root", g.unified, "controllers", have, "err", err)
		} else {
			g.v2limits = true
			log.Info("cgroup v2: pods get a cgroup each with their limits", "parent", base)
		}
	default:
		if isV2("/sys/fs/cgroup/unified") {
			g.unified = "/sys/fs/cgroup/unified"
		}
		for _, c := range []string{"memory", "cpu"} {
			m := filepath.Join("/sys/fs/cgroup", c)
			if err := os.MkdirAll(filepath.Join(m, parent), 0o755); err == nil {
				g.v1[c] = m
			}
		}
		switch {
		case len(g.v1) == 0 && g.unified == "":
			log.Warn("no usable cgroup hierarchy: pods run without cgroups and their limits are not enforced")
		case len(g.v1) == 0:
			log.Warn("cgroup v1 (hybrid) host without usable memory and cpu controllers: pods' limits are not enforced", "unified", g.unified)
		default:
			log.Info("cgroup v1 (hybrid) host: pods' limits are enforced through the v1 controllers, the unified hierarchy tracks their processes",
				"controllers", keys(g.v1), "unified", g.unified, "parent", parent)
		}
	}
	if g.unified != "" {
		if err := os.MkdirAll(filepath.Join(g.unified, parent), 0o755); err != nil {
			log.Warn("cannot make the pods' cgroup parent", "dir", filepath.Join(g.unified, parent), "err", err)
			g.unified, g.v2limits = "", false
		}
	}
	return g
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func enableControllers(dir string, enable []string) error {
	if len(enable) == 0 {
		return nil
	}
	return os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(enable, " ")), 0o644)
}

// enforces says whether limits are enforced at all.
func (g *cgroups) enforces() bool { return g != nil && (g.v2limits || g.v1["memory"] != "") }

// ctrCgroup is one container's cgroup in each hierarchy used.
type ctrCgroup struct {
	unified string // "" without a unified hierarchy
	v1      map[string]string
	// oomBefore is the container cgroup's OOM kill count when it started.
	oomBefore int
}

func (g *cgroups) podDir(root, uid string) string {
	return filepath.Join(root, g.parent, "pod"+uid)
}

// container makes (or reuses, emptied) the container's cgroup with the
// container's limits.
func (g *cgroups) container(uid, name string, res corev1.ResourceRequirements) (*ctrCgroup, error) {
	cg := &ctrCgroup{v1: map[string]string{}}
	if g.unified != "" {
		pod := g.podDir(g.unified, uid)
		if err := os.MkdirAll(pod, 0o755); err != nil {
			return nil, err
		}
		if g.v2limits {
			// The parent may have been removed and made again meanwhile.
			enableControllers(filepath.Join(g.unified, g.parent), []string{"+memory", "+cpu"})
			if err := enableControllers(pod, []string{"+memory", "+cpu"}); err != nil {
				return nil, fmt.Errorf("enabling controllers in %s: %w", pod, err)
			}
		}
		cg.unified = filepath.Join(pod, name)
		killCgroup(cg.unified)
		if err := os.Mkdir(cg.unified, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, err
		}
	}
	for c, m := range g.v1 {
		dir := filepath.Join(g.podDir(m, uid), name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		cg.v1[c] = dir
	}
	mem, hasMem := res.Limits[corev1.ResourceMemory]
	cpu, hasCPU := res.Limits[corev1.ResourceCPU]
	var errs []error
	set := func(dir, file, value string) {
		if dir == "" {
			return
		}
		if err := os.WriteFile(filepath.Join(dir, file), []byte(value), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("setting %s to %s: %w", file, value, err))
		}
	}
	quota := func() int64 { return max(cpu.MilliValue()*100, 1000) } // µs per 100ms period
	if g.v2limits {
		memMax, cpuMax := "max", "max 100000"
		if hasMem {
			memMax = strconv.FormatInt(mem.Value(), 10)
		}
		if hasCPU {
			cpuMax = fmt.Sprintf("%d 100000", quota())
		}
		set(cg.unified, "memory.max", memMax)
		if hasMem {
			set(cg.unified, "memory.swap.max", "0")
		}
		set(cg.unified, "cpu.max", cpuMax)
	}
	if dir := cg.v1["memory"]; dir != "" {
		limit := "-1"
		if hasMem {
			limit = strconv.FormatInt(mem.Value(), 10)
		}
		// Lowering memsw below the memory limit is refused: order matters.
		os.WriteFile(filepath.Join(dir, "memory.memsw.limit_in_bytes"), []byte("-1"), 0o644)
		set(dir, "memory.limit_in_bytes", limit)
		if _, err := os.Stat(filepath.Join(dir, "memory.memsw.limit_in_bytes")); err == nil && hasMem {
			set(dir, "memory.memsw.limit_in_bytes", limit)
		}
	}
	if dir := cg.v1["cpu"]; dir != "" {
		q := "-1"
		if hasCPU {
			q = strconv.FormatInt(quota(), 10)
		}
		set(dir, "cpu.cfs_period_us", "100000")
		set(dir, "cpu.cfs_quota_us", q)
	}
	cg.oomBefore = cg.oomKills()
	return cg, errors.Join(errs...)
}

// addProcess moves pid into the container's cgroups. The init is moved
// before it is sent its configuration, so the program it starts is born
// inside; a command exec'd into the container is moved right after it
// starts. (The agent's own threads never enter a container's cgroup: in
// v1 a process with one thread in a cgroup is listed, charged and killed
// with it.)
func (cg *ctrCgroup) addProcess(pid int) error {
	if cg == nil {
		return nil
	}
	var errs []error
	for _, dir := range append(slices.Collect(maps.Values(cg.v1)), cg.unified) {
		if dir == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644); err != nil {
			errs = append(errs, fmt.Errorf("moving process %d into %s: %w", pid, dir, err))
		}
	}
	return errors.Join(errs...)
}

// oomKills is the number of processes the kernel's OOM killer ended in the
// container's cgroup.
func (cg *ctrCgroup) oomKills() int {
	if cg == nil {
		return 0
	}
	if cg.unified != "" {
		if n, ok := counter(filepath.Join(cg.unified, "memory.events"), "oom_kill"); ok {
			return n
		}
	}
	if dir := cg.v1["memory"]; dir != "" {
		n, _ := counter(filepath.Join(dir, "memory.oom_control"), "oom_kill")
		return n
	}
	return 0
}

// oomKilled says whether the OOM killer ended a process of the container
// since it started.
func (cg *ctrCgroup) oomKilled() bool { return cg != nil && cg.oomKills() > cg.oomBefore }

func counter(file, name string) (int, bool) {
	f, err := os.Open(file)
	if err != nil {
		return 0, false
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if k, v, ok := strings.Cut(s.Text(), " "); ok && k == name {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			return n, err == nil
		}
	}
	return 0, false
}

// kill ends every process in the container's cgroups.
func (cg *ctrCgroup) kill() {
	if cg == nil {
		return
	}
	if cg.unified != "" {
		killCgroup(cg.unified)
	}
	for _, dir := range cg.v1 {
		killCgroup(dir)
	}
}

// killCgroup SIGKILLs every process in dir (cgroup.kill where the kernel
// has it) and waits briefly for it to empty.
func killCgroup(dir string) {
	if _, err := os.Stat(dir); err != nil {
		return
	}
	if os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0o644) != nil {
		for _, pid := range procs(dir) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for len(procs(dir)) > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond) // the kernel empties it; nothing to wait on
	}
}

// procs lists the processes in the cgroup dir, never the agent itself.
func procs(dir string) []int {
	data, _ := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	var out []int
	for _, f := range strings.Fields(string(data)) {
		if n, err := strconv.Atoi(f); err == nil && n != os.Getpid() {
			out = append(out, n)
		}
	}
	return out
}

// removePod kills what is left in the pod's cgroups and removes them.
func (g *cgroups) removePod(uid string) error {
	if g == nil {
		return nil
	}
	var errs []error
	for _, root := range g.hierarchies() {
		errs = append(errs, removeTree(g.podDir(root, uid)))
	}
	return errors.Join(errs...)
}

// removeAll removes every pod cgroup under the parent, and the parent
// itself when final (tests, which have a parent of their own).
func (g *cgroups) removeAll(final bool) error {
	if g == nil {
		return nil
	}
	var errs []error
	for _, root := range g.hierarchies() {
		pods, _ := filepath.Glob(filepath.Join(root, g.parent, "pod*"))
		for _, p := range pods {
			errs = append(errs, removeTree(p))
		}
		if final {
			if err := os.Remove(filepath.Join(root, g.parent)); err != nil && !errors.Is(err, os.ErrNotExist) {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// removeParent removes the parent in each hierarchy if it is empty
// (another agent's pods may still be in it).
func (g *cgroups) removeParent() {
	if g == nil {
		return
	}
	for _, root := range g.hierarchies() {
		unix.Rmdir(filepath.Join(root, g.parent))
	}
}

// hierarchies are the mounts of every hierarchy in use.
func (g *cgroups) hierarchies() []string {
	var out []string
	if g.unified != "" {
		out = append(out, g.unified)
	}
	for _, m := range g.v1 {
		out = append(out, m)
	}
	return out
}

// removeTree removes a cgroup directory and its children, deepest first,
// killing what still runs there.
func removeTree(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	var errs []error
	for _, e := range entries {
		if e.IsDir() {
			errs = append(errs, removeTree(filepath.Join(dir, e.Name())))
		}
	}
	killCgroup(dir)
	var rerr error
	for i := 0; i < 100; i++ {
		// A cgroup whose last process is still exiting is busy a moment.
		if rerr = unix.Rmdir(dir); rerr == nil || errors.Is(rerr, unix.ENOENT) {
			rerr = nil
			break
		}
		if !errors.Is(rerr, unix.EBUSY) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if rerr != nil {
		errs = append(errs, fmt.Errorf("removing cgroup %s: %w", dir, rerr))
	}
	return errors.Join(errs...)
}
