package containerinit

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"unsafe"
)

// Capabilities by name (as Kubernetes writes them, without CAP_), with
// their numbers in linux/capability.h.
var Capabilities = map[string]int{
	"CHOWN": 0, "DAC_OVERRIDE": 1, "DAC_READ_SEARCH": 2,
	"FOWNER": 3, "FSETID": 4, "KILL": 5, "SETGID": 6,
	"SETUID": 7, "SETPCAP": 8, "LINUX_IMMUTABLE": 9,
	"NET_BIND_SERVICE": 10, "NET_BROADCAST": 11, "NET_ADMIN": 12,
	"NET_RAW": 13, "IPC_LOCK": 14, "IPC_OWNER": 15,
	"SYS_MODULE": 16, "SYS_RAWIO": 17, "SYS_CHROOT": 18,
	"SYS_PTRACE": 19, "SYS_PACCT": 20, "SYS_ADMIN": 21,
	"SYS_BOOT": 22, "SYS_NICE": 23, "SYS_RESOURCE": 24,
	"SYS_TIME": 25, "SYS_TTY_CONFIG": 26, "MKNOD": 27,
	"LEASE": 28, "AUDIT_WRITE": 29, "AUDIT_CONTROL": 30,
	"SETFCAP": 31, "MAC_OVERRIDE": 32, "MAC_ADMIN": 33,
	"SYSLOG": 34, "WAKE_ALARM": 35, "BLOCK_SUSPEND": 36,
	"AUDIT_READ": 37, "PERFMON": 38, "BPF": 39,
	"CHECKPOINT_RESTORE": 40,
}

// DefaultCapabilities is the set a container runtime (runc, containerd)
// gives a container by default.
var DefaultCapabilities = []string{"CHOWN", "DAC_OVERRIDE", "FSETID", "FOWNER", "MKNOD", "NET_RAW", "SETGID", "SETUID",
	"SETFCAP", "SETPCAP", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL", "AUDIT_WRITE"}

// CapabilityNumber is the number of a capability named as Kubernetes
// names it ("NET_ADMIN"; "CAP_NET_ADMIN" and lower case are accepted).
func CapabilityNumber(name string) (int, bool) {
	n, ok := Capabilities[strings.TrimPrefix(strings.ToUpper(name), "CAP_")]
	return n, ok
}

// Has reports whether the set holds capability c.
func (c Confinement) Has(capability int) bool {
	return c.Privileged || slices.Contains(c.Caps, capability)
}

// Apply confines the calling thread (which must be locked, and is the one
// that then forks the container's program): the capability bounding set
// becomes Caps, the inheritable and ambient sets are emptied, then
// no_new_privs and the seccomp filter. A root program started from it
// then has exactly Caps as permitted and effective set; another user none.
func (c Confinement) Apply() error {
	if c.Privileged {
		return nil
	}
	for i := 0; ; i++ {
		if _, err := prctl(prCapbsetRead, uintptr(i), 0, 0, 0); err != nil {
			break // past the kernel's last capability
		}
		if slices.Contains(c.Caps, i) {
			continue
		}
		if _, err := prctl(prCapbsetDrop, uintptr(i), 0, 0, 0); err != nil {
			return fmt.Errorf("dropping capability %d: %w", i, err)
		}
	}
	if _, err := prctl(prCapAmbient, prCapAmbientClearAll, 0, 0, 0); err != nil && !errors.Is(err, syscall.EINVAL) {
		return fmt.Errorf("clearing the ambient capabilities: %w", err)
	}
	hdr := capHeader{version: linuxCapabilityVersion3}
	var data [2]capData
	if _, _, errno := syscall.RawSyscall(syscall.SYS_CAPGET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); errno != 0 {
		return fmt.Errorf("reading capabilities: %w", errno)
	}
	data[0].inheritable, data[1].inheritable = 0, 0
	if _, _, errno := syscall.RawSyscall(syscall.SYS_CAPSET, uintptr(unsafe.Pointer(&hdr)), uintptr(unsafe.Pointer(&data[0])), 0); errno != 0 {
		return fmt.Errorf("clearing the inheritable capabilities: %w", errno)
	}
	if c.NoNewPrivs {
		if _, err := prctl(prSetNoNewPrivs, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("setting no_new_privs: %w", err)
		}
	}
	if c.Seccomp {
		if err := loadSeccomp(c.Filter); err != nil {
			return err
		}
	}
	return nil
}

// capHeader and capData are the kernel's capget/capset structures.
type capHeader struct {
	version uint32
	pid     int32
}

type capData struct {
	effective, permitted, inheritable uint32
}

// loadSeccomp loads filter (an assembled classic BPF program: the
// kernel's sock_filter array) on the calling thread only, the thread that
// forks the container's program.
func loadSeccomp(filter []byte) error {
	const insn = 8 // sizeof(struct sock_filter)
	if len(filter) == 0 || len(filter)%insn != 0 || len(filter)/insn > 0xffff {
		return fmt.Errorf("loading the seccomp filter: no assembled filter (%d bytes) in the container's confinement", len(filter))
	}
	prog := struct {
		len    uint16
		filter unsafe.Pointer
	}{uint16(len(filter) / insn), unsafe.Pointer(&filter[0])}
	if _, err := prctl(prSetSeccomp, seccompModeFilter, uintptr(unsafe.Pointer(&prog)), 0, 0); err != nil {
		return fmt.Errorf("loading the seccomp filter: %w", err)
	}
	return nil
}
