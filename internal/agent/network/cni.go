package network

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	cniversion "github.com/containernetworking/cni/pkg/version"
)

// Pods of the CRI runtime get their network through CNI: containerd makes
// the network namespace and runs the plugin named in the conflist Headway
// writes, "headway-cni". The plugin is a relay: it hands the call as it is
// (the CNI environment and the network configuration) to the agent over a
// unix socket, and prints the agent's answer. The agent joins the namespace
// to the bridge with the same code and the same IPAM as for process pods.
// So a pod keeps its address across sandboxes and restarts whatever the
// runtime, no NAT rule is written by CNI, and the bridge, veths and
// addresses keep one owner: this package. The relay is one bash process
// speaking to a loopback listener (CNIRelayBashScript) when the agent
// starts containerd itself, else a shell script with curl on the unix
// socket (CNIRelayScript), or this binary under the plugin's name
// (CNIPluginMain) where curl is missing.

// CNIPluginName is the plugin's type in the conflist and its file name.
const CNIPluginName = "headway-cni"

// cniRequest is a CNI call as the agent reads it.
type cniRequest struct {
	Command, ContainerID, NetNS, IfName string
	// From CNI_ARGS: the pod.
	Namespace, Name, UID string
}

// cniVersions are the CNI versions the plugin speaks.
var cniVersions = cniversion.PluginSupports("0.4.0", "1.0.0")

// CNIOwner maps a pod (namespace, name, and the UID when the runtime
// passes it) to its address owner, the pod UID; false when the node has no
// such pod.
type CNIOwner func(namespace, name, uid string) (string, bool)

// ConflistJSON is the CNI network configuration the CRI runtime loads.
func ConflistJSON(socket string) []byte {
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "headway",
		"plugins":    []any{map[string]any{"type": CNIPluginName, "socket": socket}},
	}
	data, _ := json.MarshalIndent(conf, "", "  ")
	return append(data, '\n')
}

// ServeCNI answers the plugin on the unix socket at path until ctx ends.
func (n *Network) ServeCNI(ctx context.Context, path string, owner CNIOwner) error {
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listening for the CNI plugin on %s: %w", path, err)
	}
	os.Chmod(path, 0o600)
	srv := &http.Server{Handler: n.cniHandler(owner), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
		os.Remove(path)
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("CNI socket stopped", "err", err)
		}
	}()
	return nil
}

func (n *Network) cniHandler(owner CNIOwner) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/v1/cni", func(w http.ResponseWriter, r *http.Request) { n.serveCNI(w, r, owner) })
	return mux
}

// cniDo runs an ADD (the pod's network) or a DEL (nil).
func (n *Network) cniDo(req cniRequest, owner CNIOwner) (*PodNetwork, error) {
	uid, ok := owner(req.Namespace, req.Name, req.UID)
	switch req.Command {
	case "ADD":
		if !ok {
			return nil, fmt.Errorf("pod %s/%s is not one this node runs", req.Namespace, req.Name)
		}
		if req.IfName != "eth0" {
			return nil, fmt.Errorf("interface %q: headway-cni makes eth0 only", req.IfName)
		}
		pn, err := n.AttachPod(uid, req.Namespace+"/"+req.Name, req.NetNS)
		if err != nil {
			n.log.Warn("CNI ADD failed", "pod", req.Namespace+"/"+req.Name, "err", err)
			return nil, err
		}
		n.log.Debug("CNI ADD", "pod", req.Namespace+"/"+req.Name, "ip", pn.IP)
		return pn, nil
	case "DEL":
		if ok {
			return nil, n.DetachPod(uid)
		}
		return nil, nil
	}
	return nil, fmt.Errorf("unknown command %q", req.Command)
}

// serveCNI answers a relayed CNI call: the CNI environment in headers, the
// network configuration as the body, and the answer exactly as a plugin
// prints it (a result, or an error with a non-2xx status, which makes the
// relay exit non-zero).
func (n *Network) serveCNI(w http.ResponseWriter, r *http.Request, owner CNIOwner) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var conf types.NetConf
	json.Unmarshal(body, &conf)
	if conf.CNIVersion == "" {
		conf.CNIVersion = "1.0.0"
	}
	req := cniRequest{Command: r.Header.Get("CNI-Command"), ContainerID: r.Header.Get("CNI-ContainerID"),
		NetNS: r.Header.Get("CNI-Netns"), IfName: r.Header.Get("CNI-IfName")}
	parseCNIArgs(r.Header.Get("CNI-Args"), &req)
	fail := func(err error) {
		w.WriteHeader(http.StatusInternalServerError)
		json.NewEncoder(w).Encode(&types.Error{Code: 100, Msg: "headway-cni: " + err.Error()})
	}
	switch req.Command {
	case "VERSION":
		cniVersions.Encode(w)
	case "ADD", "DEL":
		pn, err := n.cniDo(req, owner)
		if err != nil {
			fail(err)
			return
		}
		if pn == nil {
			return
		}
		res, err := n.cniResult(pn, req.IfName).GetAsVersion(conf.CNIVersion)
		if err != nil {
			fail(err)
			return
		}
		json.NewEncoder(w).Encode(res)
	default: // CHECK, GC, STATUS: nothing to do
	}
}

// CNIRelayScript is headway-cni as a small shell script that hands the
// runtime's CNI call to the agent's socket with curl, instead of the whole
// headway binary starting for each pod (90 MB and a tenth of a second of
// CPU each; a 100-pod StatefulSet starts dozens at once). A DEL while the
// agent is down succeeds: nothing of the agent's is left to remove.
func CNIRelayScript(socket string) []byte {
	return []byte(`#!/bin/sh
# headway-cni, written by headway at start: relays the container runtime's
# CNI call to the node agent on its unix socket.
out=$(curl -sS --max-time 60 --fail-with-body --unix-socket '` + socket + `' \
	-H "CNI-Command: $CNI_COMMAND" -H "CNI-ContainerID: $CNI_CONTAINERID" \
	-H "CNI-Netns: $CNI_NETNS" -H "CNI-IfName: $CNI_IFNAME" -H "CNI-Args: $CNI_ARGS" \
	--data-binary @- http://headway-agent/v1/cni)
rc=$?
if [ "$rc" -eq 7 ] && [ "$CNI_COMMAND" = DEL ]; then exit 0; fi
printf '%s\n' "$out"
exit $rc
`)
}

// ServeCNILoopback answers the plugin over HTTP on 127.0.0.1 (a free port)
// until ctx ends, for CNIRelayBashScript: bash reaches TCP by itself
// (/dev/tcp) but no unix socket. Only calls that carry the returned token
// (in the CNI-Token header) are answered; the script holding it is
// readable by root only.
func (n *Network) ServeCNILoopback(ctx context.Context, owner CNIOwner) (netip.AddrPort, string, error) {
	var tok [16]byte
	if _, err := rand.Read(tok[:]); err != nil {
		return netip.AddrPort{}, "", err
	}
	token := hex.EncodeToString(tok[:])
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return netip.AddrPort{}, "", fmt.Errorf("listening for the CNI plugin on 127.0.0.1: %w", err)
	}
	h := n.cniHandler(owner)
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("CNI-Token")), []byte(token)) != 1 {
			// Read the call first: a connection closed with its request
			// unread is reset, and the reset can destroy the answer
			// before the plugin reads it.
			io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(&types.Error{Code: 100, Msg: "headway-cni: wrong or missing CNI-Token (the plugin script is written at headway's start)"})
			return
		}
		h.ServeHTTP(w, r)
	})}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("CNI loopback listener stopped", "err", err)
		}
	}()
	return ln.Addr().(*net.TCPAddr).AddrPort(), token, nil
}

// CNIRelayBashScript is headway-cni as one bash process that speaks HTTP to
// the agent's loopback listener (ServeCNILoopback) through bash's own
// /dev/tcp: no curl. curl's start-up (its libraries) is most of
// CNIRelayScript's cost: about 50 ms of CPU per call against 15 ms here,
// and a pod makes two calls (ADD, DEL). The answer is the one the unix
// socket gives.
func CNIRelayBashScript(addr netip.AddrPort, token string) []byte {
	return []byte(`#!/bin/bash
# headway-cni, written by headway at start: relays the container runtime's
# CNI call to the node agent on its loopback listener.
export LC_ALL=C
IFS= read -r -d '' body
if ! exec 3<>/dev/tcp/` + addr.Addr().String() + `/` + strconv.Itoa(int(addr.Port())) + ` 2>/dev/null; then
	[ "$CNI_COMMAND" = DEL ] && exit 0 # the agent is gone: nothing of its is left to remove
	printf '{"code":100,"msg":"headway-cni: the node agent does not answer on ` + addr.String() + ` (is headway running?)"}\n'
	exit 1
fi
printf 'POST /v1/cni HTTP/1.0\r\nHost: headway-agent\r\nCNI-Token: %s\r\nCNI-Command: %s\r\nCNI-ContainerID: %s\r\nCNI-Netns: %s\r\nCNI-IfName: %s\r\nCNI-Args: %s\r\nContent-Length: %d\r\n\r\n%s' \
	'` + token + `' "$CNI_COMMAND" "$CNI_CONTAINERID" "$CNI_NETNS" "$CNI_IFNAME" "$CNI_ARGS" "${#body}" "$body" >&3
IFS=' ' read -r -t 60 proto code rest <&3
while IFS= read -r -t 60 line <&3 && [ -n "${line%$'\r'}" ]; do :; done
IFS= read -r -d '' -t 60 out <&3
printf '%s' "$out"
case "$code" in 2[0-9][0-9]) exit 0 ;; esac
[ -n "$out" ] || printf '{"code":100,"msg":"headway-cni: no answer from the node agent on ` + addr.String() + `"}\n'
exit 1
`)
}

// LoopbackPluginScript is the "loopback" CNI plugin Headway puts first in
// containerd's plugin directory. containerd (1.x) runs loopback for every
// sandbox's lo besides the network's own plugins; the agent already brings
// lo up when headway-cni attaches eth0, so this one only answers, with the
// result the reference plugin gives, in the shell that runs it: no Go
// program of its own starts per sandbox and per removal.
const LoopbackPluginScript = `#!/bin/sh
# loopback, written by headway at start: the node agent brings the pod's lo
# up with eth0 (headway-cni); this answers the container runtime's call.
IFS= read -r conf
v=${conf#*\"cniVersion\"}
v=${v#*\"}
v=${v%%\"*}
case "$v" in [0-9]*.*.*) ;; *) v=1.0.0 ;; esac
case "$CNI_COMMAND" in
ADD)
	printf '{"cniVersion":"%s","interfaces":[{"name":"lo","mac":"00:00:00:00:00:00","sandbox":"%s"}],"ips":[{"interface":0,"address":"127.0.0.1/8"},{"interface":0,"address":"::1/128"}],"dns":{}}\n' "$v" "$CNI_NETNS" ;;
VERSION)
	printf '{"cniVersion":"1.0.0","supportedVersions":["0.1.0","0.2.0","0.3.0","0.3.1","0.4.0","1.0.0"]}\n' ;;
esac
exit 0
`

func parseCNIArgs(args string, req *cniRequest) {
	for _, kv := range strings.Split(args, ";") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "K8S_POD_NAMESPACE":
			req.Namespace = v
		case "K8S_POD_NAME":
			req.Name = v
		case "K8S_POD_UID":
			req.UID = v
		}
	}
}

// cniResult is the CNI result for an attached pod.
func (n *Network) cniResult(pn *PodNetwork, ifName string) *types100.Result {
	gw := net.IP(pn.Gateway.AsSlice())
	idx := 0
	return &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{{Name: ifName, Mac: pn.MAC, Sandbox: pn.NetNS}},
		IPs:        []*types100.IPConfig{{Interface: &idx, Address: *ipNet(netip.PrefixFrom(pn.IP, n.cfg.PodCIDR.Bits())), Gateway: gw}},
		Routes:     []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, GW: gw}},
	}
}

// netConf is the plugin's configuration from the conflist.
type netConf struct {
	types.NetConf
	Socket string `json:"socket"`
}

// CNIPluginMain is headway-cni as this binary (run under that name by the
// container runtime where curl is missing): the relay of CNIRelayScript.
func CNIPluginMain() {
	os.Exit(cniRelay(os.Stdin, os.Stdout, os.Getenv))
}

func cniRelay(stdin io.Reader, stdout io.Writer, getenv func(string) string) int {
	body, _ := io.ReadAll(io.LimitReader(stdin, 1<<20))
	command := getenv("CNI_COMMAND")
	fail := func(err error) int {
		json.NewEncoder(stdout).Encode(&types.Error{Code: 100, Msg: "headway-cni: " + err.Error()})
		return 1
	}
	if command == "VERSION" {
		if err := cniVersions.Encode(stdout); err != nil {
			return fail(err)
		}
		return 0
	}
	var conf netConf
	if err := json.Unmarshal(body, &conf); err != nil {
		return fail(fmt.Errorf("reading the network configuration: %w", err))
	}
	if conf.Socket == "" {
		return fail(errors.New("the network configuration names no agent socket"))
	}
	req, _ := http.NewRequest(http.MethodPost, "http://headway-agent/v1/cni", bytes.NewReader(body))
	for _, h := range []string{"Command", "ContainerID", "Netns", "IfName", "Args"} {
		req.Header.Set("CNI-"+h, getenv("CNI_"+strings.ToUpper(h)))
	}
	client := &http.Client{Timeout: 60 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", conf.Socket)
		}}}
	resp, err := client.Do(req)
	if err != nil {
		if command == "DEL" {
			return 0 // the agent is gone: nothing of its is left to remove
		}
		return fail(fmt.Errorf("the node agent does not answer on %s (is headway running?): %w", conf.Socket, err))
	}
	defer resp.Body.Close()
	io.Copy(stdout, resp.Body)
	if resp.StatusCode >= 300 {
		return 1
	}
	return 0
}
