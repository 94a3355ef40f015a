package cri

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/headway/headway/internal/agent/containerd"
	"github.com/headway/headway/internal/agent/network"
	hwruntime "github.com/headway/headway/internal/agent/runtime"
	"github.com/headway/headway/internal/agent/runtime/runtimetest"
	"github.com/headway/headway/internal/testing/leftover"
	"github.com/headway/headway/test/images"
)

// The suite's pod network: a bridge and range of its own.
const (
	suiteBridge = "hwsuite0"
	suiteCIDR   = "198.18.232.0/22"
)

// suiteLog keeps the log of the runtime, containerd and the CNI socket,
// shown when the suite fails.
type suiteLog struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *suiteLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *suiteLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// TestSuite runs the runtime behaviour suite against the CRI runtime on a
// managed containerd of its own (in a temporary directory), with pods on
// their own bridge, addresses given by the headway-cni plugin, and
// busybox:1.28 pulled from a registry on 127.0.0.1 through a docker.io
// mirror.
//
// It runs twice: with the OCI runtime the managed containerd picks by itself
// (crun where it is installed and usable) and with runc, so both stay tried.
func TestSuite(t *testing.T) {
	for _, oci := range []string{"auto", "runc"} {
		t.Run("oci-runtime="+oci, func(t *testing.T) { suite(t, oci) })
	}
}

func suite(t *testing.T, oci string) {
	if err := network.Check(); err != nil {
		t.Skipf("skipping: %v", err)
	}
	if ok, why := containerd.Available(); !ok {
		t.Skipf("skipping: %s", why)
	}
	if _, err := exec.LookPath("catatonit"); err != nil {
		t.Skip("skipping: the pause image is built from catatonit (apt-get install catatonit)")
	}
	bin := os.Getenv("HEADWAY_BIN")
	if bin == "" {
		t.Skip("skipping: HEADWAY_BIN is unset; the CRI suite needs the built headway binary as its CNI plugin (make build; HEADWAY_BIN=$PWD/bin/headway)")
	}
	if st, err := os.Stat(bin); err != nil || st.IsDir() {
		t.Fatalf("HEADWAY_BIN=%s is not the headway binary: %v", bin, err)
	}
	bin, _ = filepath.Abs(bin)
	busybox, err := images.Busybox()
	if err != nil {
		t.Skipf("skipping: %v", err)
	}

	logs := &suiteLog{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("runtime log:\n%s", logs.String())
		}
	})
	dir := t.TempDir()
	var b [4]byte
	rand.Read(b[:])
	node := "suite-" + hex.EncodeToString(b[:])

	// The pod network; removed last.
	prefix := netip.MustParsePrefix(suiteCIDR)
	n, err := network.Open(network.Config{StateDir: filepath.Join(dir, "network"), Bridge: suiteBridge, ClusterCIDR: prefix,
		Gateway: prefix.Addr().Next(), Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Setup(); err != nil {
		n.Teardown()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := n.Teardown(); err != nil {
			t.Error(err)
		}
		if _, err := netlink.LinkByName(suiteBridge); err == nil {
			t.Errorf("bridge %s left", suiteBridge)
		}
	})

	// busybox:1.28 from a registry on 127.0.0.1: the mirror's hosts.toml
	// names it as the server too, so nothing falls through to Docker Hub.
	reg, err := images.Start(map[string]v1.Image{images.BusyboxRef: busybox})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	regDir := filepath.Join(dir, "registries")
	if err := images.WriteMirrorConfig(regDir, reg.Host()); err != nil {
		t.Fatal(err)
	}

	// The CNI plugin is the headway binary named headway-cni; it asks the
	// socket served here for the pod's address.
	binDir, confDir := filepath.Join(dir, "cni", "bin"), filepath.Join(dir, "cni", "net.d")
	for _, d := range []string{binDir, confDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(bin, filepath.Join(binDir, network.CNIPluginName)); err != nil {
		t.Fatal(err)
	}
	// loopback as the agent installs it: lo comes up with eth0.
	if err := os.WriteFile(filepath.Join(binDir, "loopback"), []byte(network.LoopbackPluginScript), 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "cni", "agent.sock")
	if len(sock) >= 100 {
		sdir, err := os.MkdirTemp("/run", "hwsuite")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(sdir) })
		sock = filepath.Join(sdir, "agent.sock")
	}
	if err := os.WriteFile(filepath.Join(confDir, "10-headway.conflist"), network.ConflistJSON(sock), 0o644); err != nil {
		t.Fatal(err)
	}
	var rtp atomic.Pointer[Runtime]
	owner := func(ns, name, uid string) (string, bool) {
		if r := rtp.Load(); r != nil {
			return r.Owner(ns, name, uid)
		}
		return "", false
	}
	cniCtx, stopCNI := context.WithCancel(context.Background())
	if err := n.ServeCNI(cniCtx, sock, owner); err != nil {
		stopCNI()
		t.Fatal(err)
	}

	// containerd; its shims (and so the pods) outlive it, so whatever is
	// still left when it stopped is killed by PID.
	cd, err := containerd.Start(context.Background(), containerd.Config{
		Dir: filepath.Join(dir, "containerd"), RegistryConfigDir: regDir,
		CNIBinDirs: []string{binDir, "/usr/lib/cni", "/opt/cni/bin"}, CNIConfDir: confDir, OCIRuntime: oci, Log: log,
	})
	if err != nil {
		stopCNI()
		t.Fatal(err)
	}
	want := "oci_runtime=runc"
	if _, err := exec.LookPath("crun"); err == nil && oci == "auto" {
		want = "oci_runtime=crun"
	}
	if !strings.Contains(logs.String(), want) {
		t.Errorf("containerd's decisions do not say %s:\n%s", want, logs.String())
	}
	cdSock := strings.TrimPrefix(cd.Endpoint(), "unix://")
	t.Cleanup(func() {
		for _, pid := range leftover.Shims(cdSock) {
			t.Errorf("shim %d left running; killing it and its processes", pid)
			for _, child := range leftover.Children(pid) {
				syscall.Kill(child, syscall.SIGKILL)
			}
			syscall.Kill(pid, syscall.SIGKILL)
		}
		for _, m := range leftover.MountsUnder(dir) {
			t.Errorf("mount left: %s", m)
			unix.Unmount(m, unix.MNT_DETACH)
		}
	})
	t.Cleanup(func() {
		if err := cd.Stop(); err != nil {
			t.Logf("stopping containerd: %v", err)
		}
	})
	t.Cleanup(stopCNI)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r, err := New(ctx, Config{Endpoint: cd.Endpoint(), PodsDir: filepath.Join(dir, "pods"), LogsDir: filepath.Join(dir, "logs"),
		Network: n, DNS: network.DNSSettings{ClusterDNS: netip.MustParseAddr("198.19.0.10"), ClusterDomain: "cluster.local"},
		NodeName: node, PollInterval: 100 * time.Millisecond, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	rtp.Store(r)
	t.Cleanup(func() {
		// Every sandbox of this node goes (with its containers, veth and
		// address) while containerd and the CNI socket still answer.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		r.ForgetPods(ctx, nil)
		if resp, err := r.rs.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{Filter: &runtimeapi.PodSandboxFilter{
			LabelSelector: map[string]string{labelManaged: node}}}); err == nil && len(resp.Items) > 0 {
			t.Errorf("%d sandboxes left", len(resp.Items))
		}
		r.Close()
	})

	runtimetest.Run(t, runtimetest.Env{
		Runtime: r, Prefix: prefix, ClusterDNS: netip.MustParseAddr("198.19.0.10"), ClusterDomain: "cluster.local",
		Image: "busybox:1.28", Timeout: time.Minute,
		Leftovers: func(t *testing.T, sb *hwruntime.Sandbox) func() []string {
			netns, err := sandboxNetNS(r, sb.ID)
			if err != nil {
				t.Errorf("the sandbox's network namespace: %v", err)
			}
			return func() []string {
				var left []string
				if netns != "" {
					if _, err := os.Stat(netns); err == nil {
						left = append(left, "the network namespace "+netns)
					}
				}
				if ip, ok := n.IPAM().Lookup(sb.UID); ok {
					left = append(left, "the address "+ip.String())
				}
				left = append(left, bridgePorts(suiteBridge)...)
				if cg, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", "headway", "pod"+sb.UID)); len(cg) > 0 {
					left = append(left, "cgroups "+strings.Join(cg, " "))
				}
				resp, err := r.rs.ListPodSandbox(context.Background(), &runtimeapi.ListPodSandboxRequest{
					Filter: &runtimeapi.PodSandboxFilter{Id: sb.ID}})
				if err == nil && len(resp.Items) > 0 {
					left = append(left, "the sandbox "+sb.ID)
				}
				return left
			}
		},
	})
}

// sandboxNetNS is the path of a sandbox's network namespace, from
// containerd's verbose sandbox status.
func sandboxNetNS(r *Runtime, id string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := r.rs.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		return "", err
	}
	var info struct {
		RuntimeSpec struct {
			Linux struct {
				Namespaces []struct{ Type, Path string } `json:"namespaces"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil {
		return "", err
	}
	for _, ns := range info.RuntimeSpec.Linux.Namespaces {
		if ns.Type == "network" && ns.Path != "" {
			return ns.Path, nil
		}
	}
	return "", errors.New("the verbose status names no network namespace")
}

// bridgePorts lists the links on a bridge (pods' veths).
func bridgePorts(bridge string) []string {
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil
	}
	links, _ := netlink.LinkList()
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			out = append(out, "veth "+l.Attrs().Name+" on "+bridge)
		}
	}
	return out
}
