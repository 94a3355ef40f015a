package process

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"sync"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"github.com/elastic/go-seccomp-bpf/arch"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/headway/headway/internal/agent/runtime/process/containerinit"
)

// The RuntimeDefault-like filter: everything is allowed except what
// Docker's default profile refuses a container without the capability
// that would make the call meaningful. Refused calls fail with EPERM;
// clone3 fails with ENOSYS (its flags cannot be inspected, so C libraries
// fall back to clone, whose flags can).

// alwaysRefused are refused whatever the capabilities.
var alwaysRefused = []string{"kexec_load", "kexec_file_load", "keyctl", "add_key", "request_key", "userfaultfd",
	"uselib", "lookup_dcookie", "ustat", "sysfs", "_sysctl", "create_module", "get_kernel_syms", "query_module",
	"nfsservctl", "vm86", "vm86old"}

// refusedWithout are refused unless the container has the capability.
var refusedWithout = map[int][]string{
	unix.CAP_SYS_MODULE: {"init_module", "finit_module", "delete_module"},
	unix.CAP_SYS_BOOT:   {"reboot"},
	unix.CAP_SYS_ADMIN: {"mount", "umount", "umount2", "pivot_root", "swapon", "swapoff", "unshare", "setns",
		"fsopen", "fsconfig", "fsmount", "fspick", "move_mount", "open_tree", "mount_setattr", "quotactl", "quotactl_fd",
		"bpf", "perf_event_open", "fanotify_init", "lsm_set_self_attr"},
	unix.CAP_SYS_PTRACE:      {"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "process_madvise"},
	unix.CAP_SYS_TIME:        {"settimeofday", "clock_settime", "clock_adjtime", "stime"},
	unix.CAP_SYS_PACCT:       {"acct"},
	unix.CAP_SYS_RAWIO:       {"iopl", "ioperm"},
	unix.CAP_SYS_NICE:        {"mbind", "set_mempolicy", "move_pages", "set_mempolicy_home_node"},
	unix.CAP_SYSLOG:          {"syslog"},
	unix.CAP_DAC_READ_SEARCH: {"open_by_handle_at"},
}

// namespaceFlags are clone's flags that make namespaces (CLONE_NEWTIME is
// clone3's only: in clone's first argument that bit is the exit signal's).
const namespaceFlags = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER |
	unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP

// Policy is the filter for a container with confinement c.
func Policy(c containerinit.Confinement) (seccomp.Policy, error) {
	info, err := arch.GetInfo("")
	if err != nil {
		return seccomp.Policy{}, err
	}
	exists := func(names []string) []string {
		var out []string
		for _, n := range names {
			if _, ok := info.SyscallNames[n]; ok {
				out = append(out, n)
			}
		}
		return out
	}
	refused := exists(alwaysRefused)
	for capability, names := range refusedWithout {
		if !c.Has(capability) {
			refused = append(refused, exists(names)...)
		}
	}
	// bpf and perf_event_open also come with their own capabilities.
	if c.Has(unix.CAP_BPF) && !c.Has(unix.CAP_SYS_ADMIN) {
		refused = remove(refused, "bpf")
	}
	if c.Has(unix.CAP_PERFMON) && !c.Has(unix.CAP_SYS_ADMIN) {
		refused = remove(refused, "perf_event_open")
	}
	var conditional []seccomp.NameWithConditions
	// Device nodes: S_IFCHR and S_IFBLK share this bit (MKNOD is in the
	// default set; without a device cgroup, creating nodes is refused).
	const devBit = unix.S_IFCHR
	for _, nc := range []struct {
		name string
		arg  uint32
	}{{"mknod", 1}, {"mknodat", 2}} {
		if _, ok := info.SyscallNames[nc.name]; ok {
			conditional = append(conditional, seccomp.NameWithConditions{Name: nc.name,
				Conditions: seccomp.ArgumentConditions{{Argument: nc.arg, Operation: seccomp.BitsSet, Value: devBit}}})
		}
	}
	groups := []seccomp.SyscallGroup{{Names: refused, NamesWithCondtions: conditional, Action: seccomp.ActionErrno}}
	if !c.Has(unix.CAP_SYS_ADMIN) {
		groups = append(groups, seccomp.SyscallGroup{
			NamesWithCondtions: []seccomp.NameWithConditions{{Name: "clone",
				Conditions: seccomp.ArgumentConditions{{Argument: 0, Operation: seccomp.BitsSet, Value: namespaceFlags}}}},
			Action: seccomp.ActionErrno})
		if _, ok := info.SyscallNames["clone3"]; ok {
			groups = append(groups, seccomp.SyscallGroup{Names: []string{"clone3"}, Action: seccomp.ActionErrno | seccomp.Action(unix.ENOSYS)})
		}
	}
	return seccomp.Policy{DefaultAction: seccomp.ActionAllow, Syscalls: groups}, nil
}

func remove(list []string, name string) []string {
	out := list[:0]
	for _, n := range list {
		if n != name {
			out = append(out, n)
		}
	}
	return out
}

// filters caches assembled filters by capability set: every container
// with the same capabilities gets the same program.
var filters sync.Map // string -> []byte

// withSeccomp returns c with its seccomp filter assembled (when it asks
// for one): the kernel's sock_filter array that the container's init (or
// the agent's exec thread) loads as it is.
func withSeccomp(c containerinit.Confinement) (containerinit.Confinement, error) {
	if !c.Seccomp || c.Privileged {
		return c, nil
	}
	var key strings.Builder
	for _, n := range c.Caps {
		key.WriteString(strconv.Itoa(n))
		key.WriteByte(',')
	}
	if f, ok := filters.Load(key.String()); ok {
		c.Filter = f.([]byte)
		return c, nil
	}
	policy, err := Policy(c)
	if err != nil {
		return c, fmt.Errorf("building the seccomp filter: %w", err)
	}
	insts, err := policy.Assemble()
	if err != nil {
		return c, fmt.Errorf("building the seccomp filter: %w", err)
	}
	raw, err := bpf.Assemble(insts)
	if err != nil {
		return c, fmt.Errorf("assembling the seccomp filter: %w", err)
	}
	out := make([]byte, 0, 8*len(raw))
	for _, in := range raw {
		out = binary.NativeEndian.AppendUint16(out, in.Op)
		out = append(out, in.Jt, in.Jf)
		out = binary.NativeEndian.AppendUint32(out, in.K)
	}
	filters.Store(key.String(), out)
	c.Filter = out
	return c, nil
}
