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
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req cniRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
			http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
			return
		}
		uid, ok := owner(req.Namespace, req.Name, req.UID)
		switch req.Command {
		case "ADD":
			if !ok {
				http.Error(w, fmt.Sprintf("pod %s/%s is not one this node runs", req.Namespace, req.Name), http.StatusNotFound)
				return
			}
			if req.IfName != "eth0" {
				http.Error(w, fmt.Sprintf("interface %q: headway-cni makes eth0 only", req.IfName), http.StatusBadRequest)
				return
			}
			pn, err := n.AttachPod(uid, req.Namespace+"/"+req.Name, req.NetNS)
			if err != nil {
				n.log.Warn("CNI ADD failed", "pod", req.Namespace+"/"+req.Name, "err", err)
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			n.log.Debug("CNI ADD", "pod", req.Namespace+"/"+req.Name, "ip", pn.IP)
			json.NewEncoder(w).Encode(cniResponse{IP: netip.PrefixFrom(pn.IP, n.cfg.ClusterCIDR.Bits()).String(),
				Gateway: pn.Gateway.String(), MAC: pn.MAC})
		case "DEL":
			if ok {
				if err := n.DetachPod(uid); err != nil {
					http.Error(w, err.Error(), http.StatusInternalServerError)
					return
				}
			}
			w.WriteHeader(http.StatusNoContent)
		default:
			http.Error(w, "unknown command "+req.Command, http.StatusBadRequest)
		}
	})
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
	for _, kv := range strings.Split(args.Args, ";") {
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
	ip, ipn, err := net.ParseCIDR(out.IP)
	if err != nil {
		return err
	}
	ipn.IP = ip
	gw := net.ParseIP(out.Gateway)
	idx := 0
	result := &types100.Result{
		CNIVersion: types100.ImplementedSpecVersion,
		Interfaces: []*types100.Interface{{Name: args.IfName, Mac: out.MAC, Sandbox: args.Netns}},
		IPs:        []*types100.IPConfig{{Interface: &idx, Address: *ipn, Gateway: gw}},
		Routes:     []*types.Route{{Dst: net.IPNet{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)}, GW: gw}},
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
