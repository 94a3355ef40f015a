package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/headway/headway/internal/proxy"
)

// lab is a node made of network namespaces the test creates: "node" with
// the bridge headway0 (198.18.0.1/16) where the proxy programs its rules,
// and pods joined to the bridge by veth pairs, as the agent makes them.
// Everything lives in namespaces that are deleted when the test ends; the
// host's own namespace is never touched.
type lab struct {
	t    testing.TB
	name string
	node proxy.NetNS
	pods []*labPod
}

type labPod struct {
	lab *lab
	ns  proxy.NetNS
	ip  netip.Addr
}

var labSeq atomic.Int32

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces, veths and nftables rules inside them (run as root)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs the ip command (iproute2)")
	}
}

func run(t testing.TB, args ...string) {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func addNetns(t testing.TB, name string) proxy.NetNS {
	t.Helper()
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("removing network namespace %s: %v %s", name, err, out)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return proxy.NetNS{Path: "/var/run/netns/" + name}
}

// newLab makes the node namespace with the bridge.
func newLab(t testing.TB) *lab {
	t.Helper()
	requireRoot(t)
	name := fmt.Sprintf("hwpx%d-%d", os.Getpid(), labSeq.Add(1))
	l := &lab{t: t, name: name}
	l.node = addNetns(t, name+"-node")
	n := name + "-node"
	run(t, "ip", "-n", n, "link", "add", "headway0", "type", "bridge")
	run(t, "ip", "-n", n, "addr", "add", "198.18.0.1/16", "dev", "headway0")
	run(t, "ip", "-n", n, "link", "set", "headway0", "up")
	run(t, "ip", "netns", "exec", n, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return l
}

// addPod makes a pod namespace with address ip on the bridge.
func (l *lab) addPod(ip string) *labPod {
	l.t.Helper()
	i := len(l.pods)
	ns := fmt.Sprintf("%s-p%d", l.name, i)
	p := &labPod{lab: l, ns: addNetns(l.t, ns), ip: netip.MustParseAddr(ip)}
	node := l.name + "-node"
	veth := fmt.Sprintf("veth%d", i)
	run(l.t, "ip", "-n", node, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
	run(l.t, "ip", "-n", node, "link", "set", veth, "master", "headway0", "up")
	run(l.t, "ip", "-n", ns, "addr", "add", ip+"/16", "dev", "eth0")
	run(l.t, "ip", "-n", ns, "link", "set", "eth0", "up")
	run(l.t, "ip", "-n", ns, "route", "add", "default", "via", "198.18.0.1")
	l.pods = append(l.pods, p)
	return p
}

// nft lists the node's ruleset (for logs).
func (l *lab) nft(args ...string) string {
	out, err := exec.Command("ip", append([]string{"netns", "exec", l.name + "-node", "nft"}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("nft %v: %v: %s", args, err, out)
	}
	return string(out)
}

// serveHTTP answers every request with name, on the pod's port.
func (p *labPod) serveHTTP(port int, name string) {
	t := p.lab.t
	t.Helper()
	var ln net.Listener
	err := p.ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", fmt.Sprintf("%s:%d", p.ip, port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, name)
	})}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
}

// serveUDP echoes name to every datagram.
func (p *labPod) serveUDP(port int, name string) {
	t := p.lab.t
	t.Helper()
	var c net.PacketConn
	err := p.ns.Do(func() error {
		var err error
		c, err = net.ListenPacket("udp", fmt.Sprintf("%s:%d", p.ip, port))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			_, from, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			c.WriteTo([]byte(name), from)
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
}

// dial connects from inside ns.
func dialIn(ns proxy.NetNS, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}

// get does one HTTP GET from inside ns, on a fresh connection.
func get(ns proxy.NetNS, url string) (string, error) {
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			DisableKeepAlives: true,
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				return dialIn(ns, network, addr, 3*time.Second)
			},
		},
	}
	resp, err := client.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// udpAsk sends one datagram from ns and waits for the answer.
func udpAsk(ns proxy.NetNS, addr string) (string, error) {
	c, err := dialIn(ns, "udp", addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := c.Write([]byte("hi")); err != nil {
		return "", err
	}
	buf := make([]byte, 1500)
	n, err := c.Read(buf)
	return string(buf[:n]), err
}

// refused says whether err is a connection refused (a reset or an ICMP
// port unreachable), as opposed to a timeout.
func refused(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil && (strings.Contains(err.Error(), "connection refused") || strings.Contains(err.Error(), "connection reset"))
}

var labCfg = struct{ ServiceCIDR, PodCIDR netip.Prefix }{
	ServiceCIDR: netip.MustParsePrefix("198.19.0.0/16"),
	PodCIDR:     netip.MustParsePrefix("198.18.0.0/16"),
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
