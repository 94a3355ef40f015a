package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/skel"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	cniversion "github.com/containernetworking/cni/pkg/version"
)

// Pods of the CRI runtime get their network through CNI: containerd makes
// the network namespace and runs the plugin named in the conflist Headway
// writes, "headway-cni" (this binary under that name). The plugin is a thin
// client: it asks the agent, over a unix socket, to join the namespace to
// the bridge, and the agent does it with the same code and the same IPAM as
// for process pods. So a pod keeps its address across sandboxes and
// restarts whatever the runtime, no NAT rule is written by CNI, and the
// bridge, veths and addresses keep one owner: this package.

// CNIPluginName is the plugin's type in the conflist and its file name.
const CNIPluginName = "headway-cni"

// cniRequest is what the plugin sends the agent.
type cniRequest struct {
	Command     string `json:"command"`
	ContainerID string `json:"containerID"`
	NetNS       string `json:"netns"`
	IfName      string `json:"ifName"`
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	UID         string `json:"uid,omitempty"`
}

// cniResponse is the agent's answer to an ADD.
type cniResponse struct {
	IP      string `json:"ip"` // address/prefix length
	Gateway string `json:"gateway"`
	MAC     string `json:"mac"`
}

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
	mux.HandleFunc("/v1/cni", func(w http.ResponseWriter, r *http.Request) { n.serveRawCNI(w, r, owner) })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		var req cniRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
			http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
		out, status, err := n.cniDo(req, owner)
		switch {
		case err != nil:
			http.Error(w, err.Error(), status)
		case out != nil:
			json.NewEncoder(w).Encode(out)
		default:
			w.WriteHeader(http.StatusNoContent)
		}
	})
	return mux
}

// cniDo runs an ADD (the answer) or a DEL (nil); status is the HTTP status
// of an error.
func (n *Network) cniDo(req cniRequest, owner CNIOwner) (*cniResponse, int, error) {
	uid, ok := owner(req.Namespace, req.Name, req.UID)
	switch req.Command {
	case "ADD":
		if !ok {
			return nil, http.StatusNotFound, fmt.Errorf("pod %s/%s is not one this node runs", req.Namespace, req.Name)
		}
		if req.IfName != "eth0" {
			return nil, http.StatusBadRequest, fmt.Errorf("interface %q: headway-cni makes eth0 only", req.IfName)
		}
		pn, err := n.AttachPod(uid, req.Namespace+"/"+req.Name, req.NetNS)
		if err != nil {
			n.log.Warn("CNI ADD failed", "pod", req.Namespace+"/"+req.Name, "err", err)
			return nil, http.StatusInternalServerError, err
		}
		n.log.Debug("CNI ADD", "pod", req.Namespace+"/"+req.Name, "ip", pn.IP)
		return &cniResponse{IP: netip.PrefixFrom(pn.IP, n.cfg.ClusterCIDR.Bits()).String(),
			Gateway: pn.Gateway.String(), MAC: pn.MAC}, 0, nil
	case "DEL":
		if ok {
			if err := n.DetachPod(uid); err != nil {
				return nil, http.StatusInternalServerError, err
			}
		}
		return nil, 0, nil
	}
	return nil, http.StatusBadRequest, fmt.Errorf("unknown command %q", req.Command)
}

// serveRawCNI answers the shell relay (see CNIRelayScript): the CNI
// environment in headers, the network configuration as the body, and the
// answer exactly as a plugin prints it (a result, or an error with a
// non-2xx status, which makes the relay exit non-zero).
func (n *Network) serveRawCNI(w http.ResponseWriter, r *http.Request, owner CNIOwner) {
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
		cniversion.PluginSupports("0.4.0", "1.0.0").Encode(w)
	case "ADD", "DEL":
		out, _, err := n.cniDo(req, owner)
		if err != nil {
			fail(err)
			return
		}
		if out == nil {
			return
		}
		result, err := cniResult(out, req.IfName, req.NetNS)
		if err == nil {
			var res types.Result
			if res, err = result.GetAsVersion(conf.CNIVersion); err == nil {
				json.NewEncoder(w).Encode(res)
				return
			}
		}
		fail(err)
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
func cniResult(out *cniResponse, ifName, netns string) (*types100.Result, error) {
	ip, ipn, err := net.ParseCIDR(out.IP)
	if err != nil {
		return nil, err
	}
	ipn.IP = ip
	gw := net.ParseIP(out.Gateway)
	idx := 0
	return &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{{Name: ifName, Mac: out.MAC, Sandbox: netns}},
		IPs:        []*types100.IPConfig{{Interface: &idx, Address: *ipn, Gateway: gw}},
		Routes:     []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, GW: gw}},
	}, nil
}

// netConf is the plugin's configuration from the conflist.
type netConf struct {
	types.NetConf
	Socket string `json:"socket"`
}

// CNIPluginMain is the headway-cni plugin's main (the binary run under
// that name by the container runtime).
func CNIPluginMain() {
	skel.PluginMainFuncs(skel.CNIFuncs{Add: cniAdd, Del: cniDel, Check: cniCheck},
		cniversion.PluginSupports("0.4.0", "1.0.0"), "headway-cni: pod networks of the Headway node agent")
}

func cniCall(args *skel.CmdArgs, command string) (*netConf, *cniResponse, error) {
	var conf netConf
	if err := json.Unmarshal(args.StdinData, &conf); err != nil {
		return nil, nil, fmt.Errorf("headway-cni: reading the network configuration: %w", err)
	}
	if conf.Socket == "" {
		return nil, nil, errors.New("headway-cni: the network configuration names no agent socket")
	}
	req := cniRequest{Command: command, ContainerID: args.ContainerID, NetNS: args.Netns, IfName: args.IfName}
	parseCNIArgs(args.Args, &req)
	body, _ := json.Marshal(req)
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", conf.Socket)
		}}}
	resp, err := client.Post("http://headway-agent/v1/"+strings.ToLower(command), "application/json", strings.NewReader(string(body)))
	if err != nil {
		if command == "DEL" {
			return &conf, nil, nil // the agent is gone: nothing of ours is left to remove
		}
		return nil, nil, fmt.Errorf("headway-cni: the node agent does not answer on %s (is headway running?): %w", conf.Socket, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode >= 300 {
		return nil, nil, fmt.Errorf("headway-cni %s: %s", command, strings.TrimSpace(string(data)))
	}
	if command != "ADD" {
		return &conf, nil, nil
	}
	var out cniResponse
	if err := json.Unmarshal(data, &out); err != nil {
		return nil, nil, fmt.Errorf("headway-cni: the agent's answer: %w", err)
	}
	return &conf, &out, nil
}

func cniAdd(args *skel.CmdArgs) error {
	conf, out, err := cniCall(args, "ADD")
	if err != nil {
		return err
	}
	result, err := cniResult(out, args.IfName, args.Netns)
	if err != nil {
		return err
	}
	return types.PrintResult(result, conf.CNIVersion)
}

func cniDel(args *skel.CmdArgs) error {
	_, _, err := cniCall(args, "DEL")
	return err
}

func cniCheck(args *skel.CmdArgs) error {
	var conf netConf
	if err := json.Unmarshal(args.StdinData, &conf); err != nil {
		return err
	}
	if _, err := os.Stat(conf.Socket); err != nil {
		return fmt.Errorf("headway-cni: the node agent's socket %s: %w", conf.Socket, err)
	}
	return nil
}
