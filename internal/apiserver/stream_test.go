package apiserver_test

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/testing/cluster"
)

// TestPodLogsAreProxiedToTheAgent: GET pods/log reaches the agent on the
// pod's node over TLS with the server's client certificate.
func TestPodLogsAreProxiedToTheAgent(t *testing.T) {
	c := cluster.Start(t)
	ctx := ctxT(t)
	tlsCfg, err := c.Running.PKI.AgentServerTLS([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	var gotPath, gotQuery, gotUser string
	agent := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotQuery = r.URL.Path, r.URL.RawQuery
		if len(r.TLS.PeerCertificates) > 0 {
			gotUser = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		io.WriteString(w, "hello from web-0\n")
	}), TLSConfig: tlsCfg}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go agent.ServeTLS(ln, "", "")
	t.Cleanup(func() { agent.Close() })
	port := ln.Addr().(*net.TCPAddr).Port

	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "node-a"}}
	node, err = c.Client.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = int32(port)
	node.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue}}
	if _, err := c.Client.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web-0"}, Spec: corev1.PodSpec{NodeName: "node-a", Containers: []corev1.Container{{Name: "nginx", Image: "nginx:alpine"}}}}
	pod, err = c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.Status.Phase = corev1.PodRunning
	pod.Status.ContainerStatuses = []corev1.ContainerStatus{{Name: "nginx", State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{}}}}
	if _, err := c.Client.CoreV1().Pods("default").UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	tail := int64(5)
	body, err := c.Client.CoreV1().Pods("default").GetLogs("web-0", &corev1.PodLogOptions{TailLines: &tail, Timestamps: true}).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if string(body) != "hello from web-0\n" || gotPath != "/containerLogs/default/web-0/nginx" || !strings.Contains(gotQuery, "tailLines=5") || !strings.Contains(gotQuery, "timestamps=true") {
		t.Fatalf("proxied %q %q → %q", gotPath, gotQuery, body)
	}
	if gotUser != "kube-apiserver-kubelet-client" {
		t.Fatalf("the agent saw client certificate %q", gotUser)
	}
	// A container the pod does not have is a 400.
	_, err = c.Client.CoreV1().Pods("default").GetLogs("web-0", &corev1.PodLogOptions{Container: "nope"}).DoRaw(ctx)
	if !apierrors.IsBadRequest(err) {
		t.Fatalf("unknown container: want 400, got %v", err)
	}
}
