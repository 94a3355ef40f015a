package agent_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/testing/cluster"
	"github.com/headway/headway/internal/testing/netnstest"
)

// TestPodReachesTheAPIWithItsToken is the in-cluster identity path on the
// process runtime: a busybox pod finds the API through its environment
// and https://kubernetes.default.svc (cluster DNS, the kubernetes
// Service's ClusterIP, the proxy's DNAT to the API's pod address), and its
// mounted service-account token authenticates (a bad one does not) and is
// authorized by RBAC: listing the namespace's pods is 403 Forbidden until a
// RoleBinding gives the default ServiceAccount the view ClusterRole, then
// 200; curl and wget verify the API's certificate with the mounted ca.crt.
func TestPodReachesTheAPIWithItsToken(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("skipping: the pod runs busybox's sh and wget (apt-get install busybox)")
	}
	if !netnstest.RunInOwn(t) {
		return
	}
	c := cluster.Start(t, cluster.WithAgent("hwt-identity", "198.18.248.0/24", "198.19.248.0/24"))
	ctx := context.Background()
	cluster.WaitFor(t, 30*time.Second, "the default ServiceAccount", func() (bool, error) {
		_, err := c.Client.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "client"}, Spec: corev1.PodSpec{
		Containers: []corev1.Container{{Name: "c", Image: "busybox:1.28", Command: []string{"sleep", "3600"}}},
	}}
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 60*time.Second, "the client pod running", func() (bool, error) {
		p, err := c.Client.CoreV1().Pods("default").Get(ctx, "client", metav1.GetOptions{})
		return err == nil && p.Status.Phase == corev1.PodRunning, err
	})
	run := func(script string) string {
		t.Helper()
		ectx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		res, err := c.Running.Agent.Exec(ectx, "default", "client", "c", []string{"sh", "-c", script})
		if err != nil {
			t.Fatalf("exec %q: %v", script, err)
		}
		return string(res.Output)
	}
	const sa = "/var/run/secrets/kubernetes.io/serviceaccount"

	if got := run("cat " + sa + "/namespace"); got != "default" {
		t.Errorf("the mounted namespace: %q", got)
	}
	if got := run("echo $KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT $KUBERNETES_PORT_443_TCP"); got != "198.19.248.1:443 tcp://198.19.248.1:443\n" {
		t.Errorf("the API's environment: %q", got)
	}
	if got := run("cat " + sa + "/ca.crt"); got != string(c.Running.PKI.CAPEM) {
		t.Errorf("the mounted ca.crt is not the cluster CA:\n%s", got)
	}
	if got := run("touch " + sa + "/x 2>&1 || echo read-only"); !strings.Contains(got, "read-only") {
		t.Errorf("the token volume is writable: %q", got)
	}

	// With the token, the pods of its namespace: 403 while the default
	// ServiceAccount has no binding, with kube-apiserver's message (curl
	// prints the Status body; busybox wget only the status line).
	listPods := `https://kubernetes.default.svc/api/v1/namespaces/$(cat ` + sa + `/namespace)/pods`
	forbidden := run(`wget -S -q -O - --no-check-certificate --header "Authorization: Bearer $(cat ` + sa + `/token)" ` + listPods + ` 2>&1`)
	if !strings.Contains(forbidden, "HTTP/1.1 403") {
		t.Errorf("listing pods with the mounted token and no binding: want 403, got\n%s", forbidden)
	}
	if _, err := exec.LookPath("curl"); err == nil {
		got := run(`curl -sS --cacert ` + sa + `/ca.crt -H "Authorization: Bearer $(cat ` + sa + `/token)" ` + listPods + ` 2>&1`)
		const msg = `pods is forbidden: User \"system:serviceaccount:default:default\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"`
		if !strings.Contains(got, `"reason":"Forbidden"`) || !strings.Contains(got, msg) || !strings.Contains(got, `"code":403`) {
			t.Errorf("the 403 Status body from the pod:\n%s", got)
		}
	}
	// 200 after binding the account to the view ClusterRole, as
	// `kubectl create rolebinding --clusterrole=view --serviceaccount=default:default` does.
	binding := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "default-view"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.ServiceAccountKind, Name: "default", Namespace: "default"}}}
	if _, err := c.Client.RbacV1().RoleBindings("default").Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var pods string
	cluster.WaitFor(t, 20*time.Second, "the pods listed with the token after the binding", func() (bool, error) {
		// SSL_CERT_FILE: Debian's busybox wget verifies through openssl,
		// here against the mounted CA.
		pods = run(`SSL_CERT_FILE=` + sa + `/ca.crt wget -q -O - --header "Authorization: Bearer $(cat ` + sa + `/token)" ` + listPods + ` 2>&1`)
		return strings.Contains(pods, `"kind":"PodList"`) && strings.Contains(pods, `"name":"client"`), nil
	})
	// GET /api: 200 with the token, 401 with a bad one.
	status := func(token string) string {
		return run(`wget -S -q -O /dev/null --no-check-certificate --header "Authorization: Bearer ` + token + `" https://kubernetes.default.svc/api 2>&1 | grep -o 'HTTP/1.1 [0-9]*' | head -1`)
	}
	t.Logf("pods listed from the pod: %.120s...", pods)
	if got := status("$(cat " + sa + "/token)"); !strings.Contains(got, "200") {
		t.Errorf("GET /api with the mounted token: %q, want 200", got)
	}
	if got := status("not-a-token"); !strings.Contains(got, "401") {
		t.Errorf("GET /api with a bad token: %q, want 401", got)
	}
	if _, err := exec.LookPath("curl"); err == nil {
		// The certificate verifies against the mounted CA, by the name.
		got := run(`curl -sS -o /dev/null -w '%{http_code}' --cacert ` + sa + `/ca.crt -H "Authorization: Bearer $(cat ` + sa + `/token)" https://kubernetes.default.svc/api 2>&1`)
		t.Logf("curl --cacert from the pod: %s", got)
		if got != "200" {
			t.Errorf("curl --cacert ca.crt https://kubernetes.default.svc/api: %q, want 200", got)
		}
	}
}

// TestStreamingServerServesOnlyTheAPIServer: the node's streaming server
// (logs, exec, attach, port-forward) answers the API server's client
// certificate and refuses every other, even one the cluster CA signed for
// another component, with the kubelet's 403; without a certificate the
// TLS handshake fails. Logs through the API keep working.
func TestStreamingServerServesOnlyTheAPIServer(t *testing.T) {
	if !netnstest.RunInOwn(t) {
		return
	}
	c := cluster.Start(t, cluster.WithAgent("hwt-stream", "198.18.245.0/24", "198.19.245.0/24"))
	ctx := context.Background()
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "talker"}, Spec: corev1.PodSpec{
		AutomountServiceAccountToken: ptr.To(false),
		Containers:                   []corev1.Container{{Name: "c", Image: "busybox", Command: []string{"sh", "-c", "echo hello from talker; exec sleep 3600"}}},
	}}
	if _, err := c.Client.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 60*time.Second, "the pod's log through the API", func() (bool, error) {
		b, err := c.Client.CoreV1().Pods("default").GetLogs("talker", &corev1.PodLogOptions{}).DoRaw(ctx)
		return err == nil && strings.Contains(string(b), "hello from talker"), nil
	})
	node, err := c.Client.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil || len(node.Items) != 1 {
		t.Fatalf("nodes: %v %v", node, err)
	}
	n := node.Items[0]
	var ip string
	for _, a := range n.Status.Addresses {
		if a.Type == corev1.NodeInternalIP {
			ip = a.Address
		}
	}
	url := fmt.Sprintf("https://%s/containerLogs/default/talker/c", net.JoinHostPort(ip, fmt.Sprint(n.Status.DaemonEndpoints.KubeletEndpoint.Port)))
	getAs := func(user string, groups ...string) (int, string, error) {
		cfg := &tls.Config{RootCAs: x509.NewCertPool(), MinVersion: tls.VersionTLS12}
		cfg.RootCAs.AppendCertsFromPEM(c.Running.PKI.CAPEM)
		if user != "" {
			certPEM, keyPEM, err := c.Running.PKI.IssueClient(user, groups)
			if err != nil {
				t.Fatal(err)
			}
			pair, err := tls.X509KeyPair(certPEM, keyPEM)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Certificates = []tls.Certificate{pair}
		}
		tr := &http.Transport{TLSClientConfig: cfg}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	if code, body, err := getAs("kube-apiserver-kubelet-client", "system:masters"); err != nil || code != http.StatusOK || !strings.Contains(body, "hello from talker") {
		t.Errorf("the API server's certificate: %d %q %v, want 200 with the log", code, body, err)
	}
	for _, u := range []struct {
		name   string
		groups []string
	}{{"system:kube-controller-manager", nil}, {"system:node:other", []string{"system:nodes"}}, {"kubernetes-admin", []string{"system:masters"}}} {
		code, body, err := getAs(u.name, u.groups...)
		want := "Forbidden (user=" + u.name + ", verb=get, resource=nodes, subresource=proxy)"
		if err != nil || code != http.StatusForbidden || strings.TrimSpace(body) != want || strings.Contains(body, "hello") {
			t.Errorf("a CA-signed certificate for %s: %d %q %v, want 403 %q", u.name, code, body, err, want)
		}
	}
	if _, _, err := getAs(""); err == nil {
		t.Error("no client certificate: the request got through, want a failed TLS handshake")
	}
}
