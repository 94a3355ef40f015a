// Package runtime is the seam between the node agent and whatever runs
// containers: the agent decides what should run; a Runtime runs it.
// process/ runs containers as namespaced processes on this machine; cri/
// runs images through a CRI runtime (containerd); fake/ records what it
// was asked, for the agent's tests. What only some runtimes can do (images,
// interactive exec, streaming URLs, adopting pods after a restart) is an
// optional interface below, so the agent asks the runtime, never its type.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
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
	// LogDir is the pod's log directory (<data-dir>/logs/<ns>_<name>_<uid>);
	// container logs are <LogDir>/<container>/<restart>.log.
	LogDir string
	// ID is the runtime's sandbox ID ("" for the process runtime).
	ID string
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
	Name string
	// Image is the pod spec's image; ImageRef what the runtime resolved it
	// to (the CRI runtime's image ID; "" without images).
	Image, ImageRef string
	// Command and Args are the spec's after $(VAR) expansion; an empty
	// Command means the image's entrypoint. Argv is Command+Args.
	Command, Args []string
	Argv          []string
	Env           []string
	WorkingDir    string
	// UID and GID, when set, are the user and group the process runs as.
	UID, GID *int64
	Mounts   []Mount
	// LogPath receives the container's stdout and stderr.
	LogPath string
	// Attempt is the restart count this start will have.
	Attempt uint32
	// Pod and Container are the objects as the API has them: security
	// context, resources, ports, lifecycle.
	Pod       *corev1.Pod
	Container *corev1.Container
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
	// Reason is the runtime's reason when it has one (OOMKilled); Message
	// its message.
	Reason, Message string
}

// Process is a running container.
type Process interface {
	// ID is the container ID as the pod status shows it
	// (containerd://<id>, headway-process://<uid>-<pid>).
	ID() string
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

// ImageService is a runtime with images (CRI). Runtimes without one run
// containers from the host's file system.
type ImageService interface {
	// ImagePresent says whether image is on the node, and its ref.
	ImagePresent(ctx context.Context, image string) (ref string, ok bool, err error)
	// PullImage pulls image with the credentials (may be empty) and
	// returns its ref.
	PullImage(ctx context.Context, image string, auth []Auth, sb *Sandbox) (ref string, err error)
}

// Auth is one registry credential from an imagePullSecret.
type Auth struct {
	Server, Username, Password, Auth, IdentityToken, RegistryToken string
}

// InteractiveExec runs a command in a container with the caller's streams
// (the process runtime; a CRI runtime gives URLs instead).
type InteractiveExec interface {
	StartExec(target Process, c *ContainerSpec, argv []string, stdin io.Reader, stdout, stderr io.Writer, tty bool) (Waiter, error)
}

// Waiter is a started command.
type Waiter interface {
	// Wait returns the command's exit code (or the error that kept it
	// from finishing).
	Wait() (int, error)
	Kill() error
}

// StreamingURLs is a runtime with its own streaming server (CRI): the
// agent proxies exec and attach to the URLs it returns (port-forward is
// the agent's own: it dials the pod's address).
type StreamingURLs interface {
	ExecURL(ctx context.Context, target Process, argv []string, stdin, stdout, stderr, tty bool) (string, error)
	AttachURL(ctx context.Context, target Process, stdin, stdout, stderr, tty bool) (string, error)
}

// Adopter is a runtime whose pods outlive the agent: at start the agent
// asks for what is still running and takes it over instead of starting
// it again; at stop it leaves pods running (unless told to clean up).
type Adopter interface {
	// Running returns the pod's sandbox and its running containers by
	// name, when the runtime still has them.
	Running(ctx context.Context, pod *corev1.Pod) (*Sandbox, map[string]Process, error)
	// KeepOnStop says pods stay when the agent stops.
	KeepOnStop() bool
}

// Cleaner ends what a previous run left that no pod owns any more.
type Cleaner interface {
	// ForgetPods removes sandboxes, directories and addresses of pods not
	// in keep (deleted while the agent was down).
	ForgetPods(ctx context.Context, keep map[string]bool)
}

// LimitEnforcer is a runtime that can say whether it enforces
// containers' resource limits (the process runtime does where the host
// lets it make cgroups; a CRI runtime always does).
type LimitEnforcer interface {
	EnforcesLimits() bool
}

// Versioned reports the runtime's version for the Node status
// (containerRuntimeVersion, e.g. containerd://1.6.20).
type Versioned interface {
	RuntimeVersion() string
}

// PodLogDir is a pod's log directory under root, named as the kubelet
// names it: <namespace>_<name>_<uid>.
func PodLogDir(root string, pod *corev1.Pod) string {
	return filepath.Join(root, fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID))
}
