package apiserver

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/proxy"
)

// The node agent's streaming paths, as the kubelet's:
//
//	/containerLogs/<namespace>/<pod>/<container>
//	/exec/<namespace>/<pod>/<container>
//	/attach/<namespace>/<pod>/<container>
//	/portForward/<namespace>/<pod>
var streamPaths = map[string]string{
	"log":         "containerLogs",
	"exec":        "exec",
	"attach":      "attach",
	"portforward": "portForward",
}

// handleStream proxies pods/{log,exec,attach,portforward} to the agent on
// the pod's node, upgrading the connection (SPDY or WebSocket) as the
// client asked.
func (res *resource) handleStream(w http.ResponseWriter, r *http.Request, info requestInfo) error {
	switch {
	case info.Subresource == "log" && info.Verb != "get":
		return methodNotSupported(res.reg.GroupResource(), info.Verb)
	case info.Subresource != "log" && info.Verb != "get" && info.Verb != "create":
		return methodNotSupported(res.reg.GroupResource(), info.Verb)
	}
	websocket := strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
	if websocket && (info.Subresource == "portforward" || !wantsV5(r)) {
		// Port-forward tunnelling over WebSocket is not translated yet (nor
		// pre-v5 WebSocket exec); refusing the upgrade makes kubectl fall
		// back to SPDY, which goes straight through to the agent.
		return badRequest("pods/%s over this WebSocket protocol is not supported by this server; use SPDY or v5.channel.k8s.io (kubectl falls back by itself)", info.Subresource)
	}
	if res.s.cfg.AgentTransport == nil {
		return apierrors.NewServiceUnavailable("streaming to pods is not available: this server has no node agent transport")
	}
	obj, err := res.get(r.Context(), info.Namespace, info.Name)
	if err != nil {
		return err
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		return notFoundResource()
	}
	q := r.URL.Query()
	container := q.Get("container")
	path := "/" + streamPaths[info.Subresource] + "/" + url.PathEscape(pod.Namespace) + "/" + url.PathEscape(pod.Name)
	if info.Subresource != "portforward" {
		if container == "" {
			if len(pod.Spec.Containers) != 1 {
				var names []string
				for _, c := range pod.Spec.Containers {
					names = append(names, c.Name)
				}
				return badRequest("a container name must be specified for pod %s, choose one of: [%s]", pod.Name, strings.Join(names, " "))
			}
			container = pod.Spec.Containers[0].Name
		}
		if !hasContainer(pod, container) {
			return badRequest("container %s is not valid for pod %s", container, pod.Name)
		}
		path += "/" + url.PathEscape(container)
	}
	if pod.Spec.NodeName == "" {
		return badRequest("pod %s does not have a host assigned", pod.Name)
	}
	if info.Subresource == "log" && pod.Status.Phase == corev1.PodPending && !started(pod, container) {
		return badRequest("container %q in pod %q is waiting to start: %s", container, pod.Name, waitingReason(pod, container))
	}
	host, err := res.s.nodeAddress(r.Context(), pod.Spec.NodeName)
	if err != nil {
		return err
	}
	q.Del("container")
	if info.Subresource == "exec" || info.Subresource == "attach" {
		// PodExecOptions / PodAttachOptions become the kubelet's parameters.
		agentQ := url.Values{}
		for from, to := range map[string]string{"stdin": "input", "stdout": "output", "stderr": "error", "tty": "tty"} {
			if v := q.Get(from); v == "true" || v == "1" {
				agentQ.Set(to, "1")
			}
		}
		if info.Subresource == "exec" {
			agentQ["command"] = q["command"]
			if len(q["command"]) == 0 {
				return badRequest("you must specify at least one command for the container")
			}
		}
		if agentQ.Get("input")+agentQ.Get("output")+agentQ.Get("error") == "" {
			return badRequest("you must specify at least 1 of stdin, stdout, stderr")
		}
		q = agentQ
	}
	loc := &url.URL{Scheme: "https", Host: host, Path: path, RawQuery: q.Encode()}
	if websocket {
		return res.translateExec(w, r, loc, q)
	}
	h := proxy.NewUpgradeAwareHandler(loc, res.s.cfg.AgentTransport, false, info.Subresource != "log", streamErrors{res.s})
	h.UseRequestLocation = false
	h.UseLocationHost = true
	h.MaxBytesPerSec = 0
	r.Header.Del("Authorization")
	h.ServeHTTP(w, r)
	return nil
}

func hasContainer(pod *corev1.Pod, name string) bool {
	for _, c := range append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...) {
		if c.Name == name {
			return true
		}
	}
	return false
}

func started(pod *corev1.Pod, container string) bool {
	for _, cs := range append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...) {
		if cs.Name == container {
			return cs.State.Running != nil || cs.State.Terminated != nil || cs.LastTerminationState.Terminated != nil
		}
	}
	return false
}

func waitingReason(pod *corev1.Pod, container string) string {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == container && cs.State.Waiting != nil {
			return cs.State.Waiting.Reason
		}
	}
	return "ContainerCreating"
}

// nodeAddress returns host:port of the agent on a node.
func (s *Server) nodeAddress(ctx context.Context, nodeName string) (string, error) {
	res := s.resources["/v1/nodes"]
	if res == nil {
		return "", notFoundResource()
	}
	obj, err := res.get(ctx, "", nodeName)
	if err != nil {
		if apierrors.IsNotFound(err) {
			return "", apierrors.NewServiceUnavailable(fmt.Sprintf("node %s of the pod is not registered", nodeName))
		}
		return "", err
	}
	node := obj.(*corev1.Node)
	port := node.Status.DaemonEndpoints.KubeletEndpoint.Port
	if port == 0 {
		return "", apierrors.NewServiceUnavailable(fmt.Sprintf("node %s does not publish its agent port (status.daemonEndpoints.kubeletEndpoint.port)", nodeName))
	}
	addr := ""
	for _, want := range []corev1.NodeAddressType{corev1.NodeInternalIP, corev1.NodeExternalIP, corev1.NodeHostName} {
		for _, a := range node.Status.Addresses {
			if a.Type == want && addr == "" {
				addr = a.Address
			}
		}
	}
	if addr == "" {
		return "", apierrors.NewServiceUnavailable(fmt.Sprintf("node %s has no address", nodeName))
	}
	return net.JoinHostPort(addr, strconv.Itoa(int(port))), nil
}

// streamErrors writes proxy failures as a Status.
type streamErrors struct{ s *Server }

func (e streamErrors) Error(w http.ResponseWriter, r *http.Request, err error) {
	e.s.writeError(w, r, apierrors.NewServiceUnavailable(fmt.Sprintf("error reaching the node agent: %v", err)))
}
