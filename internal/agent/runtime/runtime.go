// Package runtime is the seam between the node agent and whatever runs
// containers: the agent decides what should run; a Runtime runs it.
// process/ runs containers as namespaced processes on this machine; fake/
// records what it was asked, for the agent's tests.
package runtime

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Sandbox is what a pod's containers share: the network namespace and
// address, the host name, and the hosts and resolv.conf files.
type Sandbox struct {
	UID       string
	Namespace string
	Name      string
	Hostname  string
	IP        netip.Addr
	// Dir is the pod's directory in the data dir (volumes, files).
	Dir string
	// NetNS is the path of the network namespace ("" for the host's).
	NetNS string
	// HostsFile, ResolvConfFile and HostnameFile are mounted at
	// /etc/hosts, /etc/resolv.conf and /etc/hostname in each container.
	HostsFile      string
	ResolvConfFile string
	HostnameFile   string
}

// Mount is a host path (under the data dir, or a hostPath volume) made
// visible at Target inside a container.
type Mount struct {
	Source   string
	Target   string
	ReadOnly bool
}

// ContainerSpec is a container with everything resolved: argv after $(VAR)
// expansion, the environment, the mounts.
type ContainerSpec struct {
	Name       string
	Argv       []string
	Env        []string
	WorkingDir string
	// UID and GID, when set, are the user and group the process runs as.
	UID, GID *int64
	Mounts   []Mount
	// LogPath receives the container's stdout and stderr.
	LogPath string
	// Stdin keeps the container's stdin open for attach; StdinOnce closes
	// it when the first attached client's stdin ends; TTY gives the
	// container a terminal.
	Stdin, StdinOnce, TTY bool
}

// TerminalSize is a terminal's width and height in characters.
type TerminalSize struct {
	Width, Height uint16
}

// Attacher is a Process whose streams clients can attach to.
type Attacher interface {
	// Attach connects in, out and err to the container's streams until it
	// exits or ctx ends. resize carries terminal size changes (tty only).
	Attach(ctx context.Context, in io.Reader, out, err io.Writer, resize <-chan TerminalSize) error
}

// Exit is how a process ended.
type Exit struct {
	Code     int32
	Signal   int32
	Finished time.Time
}

// Process is a running container.
type Process interface {
	PID() int
	// Done is closed when the process has exited; Exit then says how.
	Done() <-chan struct{}
	Exit() Exit
	// Signal signals the container's whole process group.
	Signal(syscall.Signal) error
	Started() time.Time
}

// ExecResult is the outcome of a command run in a container.
type ExecResult struct {
	ExitCode int
	Output   []byte
}

// ErrNoCommand is returned for a container the runtime cannot start
// because it has nothing to run.
var ErrNoCommand = errors.New("container has no command")

// Runtime runs pods.
type Runtime interface {
	// Name is how the node reports the runtime (containerRuntimeVersion
	// scheme), e.g. "headway-process".
	Name() string
	// Check says whether the container can run at all under this runtime
	// (the process runtime needs a command); the error is for the user.
	Check(c *corev1.Container) error
	// RunSandbox makes the pod's sandbox, or returns the one it has.
	RunSandbox(ctx context.Context, pod *corev1.Pod) (*Sandbox, error)
	// RemoveSandbox removes it; final also frees its address for good.
	RemoveSandbox(ctx context.Context, uid string, final bool) error
	// Start starts a container in the sandbox.
	Start(ctx context.Context, sb *Sandbox, c *ContainerSpec) (Process, error)
	// Exec runs argv inside the running container p (probes, exec).
	Exec(ctx context.Context, p Process, c *ContainerSpec, argv []string) (ExecResult, error)
}
