package app_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	certutil "k8s.io/client-go/util/cert"

	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/testing/cluster"
)

// postJoin posts a join request with token over TLS verified by the
// cluster CA and returns the status code and body.
func postJoin(t *testing.T, c *cluster.Cluster, token string, req any) (int, []byte) {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(c.Running.PKI.CAPEM)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	body, _ := json.Marshal(req)
	r, _ := http.NewRequest(http.MethodPost, c.URL+app.JoinPath, bytes.NewReader(body))
	r.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

func statusOf(t *testing.T, body []byte) metav1.Status {
	t.Helper()
	var st metav1.Status
	if err := json.Unmarshal(body, &st); err != nil || st.Kind != "Status" {
		t.Fatalf("not a Status: %s", body)
	}
	return st
}

// TestJoinWithBootstrapToken: a join token made by CreateBootstrapToken
// gets a node its credentials; a wrong, unknown or expired token is 401,
// bad input 400; the token itself may do nothing else on the API; the
// node's certificate is system:node:<name>, which registers its Node, and
// the node IPAM controller gives the Node a /24.
func TestJoinWithBootstrapToken(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS(), func(o *app.Options) { o.AllocateNodeCIDRs = true })
	ctx := context.Background()
	token, err := app.CreateBootstrapToken(ctx, c.Client, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	expired, err := app.CreateBootstrapToken(ctx, c.Client, time.Hour, "test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.Client.CoreV1().Secrets("kube-system").Get(ctx, "bootstrap-token-"+expired[:6], metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	s.Data["expiration"] = []byte(time.Now().Add(-time.Minute).UTC().Format(time.RFC3339))
	if _, err := c.Client.CoreV1().Secrets("kube-system").Update(ctx, s, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	req := app.JoinRequest{NodeName: "n1", NodeIP: "198.18.250.9"}
	for name, bad := range map[string]string{
		"wrong secret": token[:7] + "0000000000000000",
		"unknown id":   "zzzzzz" + token[6:],
		"expired":      expired,
	} {
		code, body := postJoin(t, c, bad, req)
		if code != http.StatusUnauthorized || statusOf(t, body).Reason != metav1.StatusReasonUnauthorized {
			t.Errorf("%s token: %d %s; want 401 Unauthorized", name, code, body)
		}
	}
	if code, body := postJoin(t, c, token, app.JoinRequest{NodeName: "Bad_Name", NodeIP: "x"}); code != http.StatusBadRequest {
		t.Errorf("a bad node name and address: %d %s; want 400", code, body)
	}

	// The token is no credential for the API itself.
	tokenClient := kubernetes.NewForConfigOrDie(&rest.Config{Host: c.URL, BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{CAData: c.Running.PKI.CAPEM}})
	if _, err := tokenClient.CoreV1().Nodes().List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("listing nodes with the join token: %v; want 403 Forbidden", err)
	}

	code, body := postJoin(t, c, token, req)
	if code != http.StatusOK {
		t.Fatalf("join: %d %s", code, body)
	}
	var j app.JoinResponse
	if err := json.Unmarshal(body, &j); err != nil {
		t.Fatal(err)
	}
	certs, err := certutil.ParseCertsPEM(j.Node.Cert)
	if err != nil || certs[0].Subject.CommonName != "system:node:n1" || len(certs[0].Subject.Organization) != 1 || certs[0].Subject.Organization[0] != "system:nodes" {
		t.Fatalf("the node certificate: %v %v", certs, err)
	}
	if serving, err := certutil.ParseCertsPEM(j.Serving.Cert); err != nil || len(serving[0].IPAddresses) == 0 || serving[0].IPAddresses[0].String() != "198.18.250.9" {
		t.Fatalf("the serving certificate does not name the node address: %v", err)
	}
	if j.ClusterCIDR != "198.18.0.0/16" || j.ServiceCIDR != "198.19.0.0/16" || j.ClusterDomain != "cluster.local" {
		t.Fatalf("cluster ranges %s %s %s", j.ClusterCIDR, j.ServiceCIDR, j.ClusterDomain)
	}
	nodeClient := kubernetes.NewForConfigOrDie(&rest.Config{Host: c.URL,
		TLSClientConfig: rest.TLSClientConfig{CAData: j.CA, CertData: j.Node.Cert, KeyData: j.Node.Key}})
	if _, err := nodeClient.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{}); err != nil {
		t.Fatalf("the joined node registering itself: %v", err)
	}
	var got string
	cluster.WaitFor(t, 10*time.Second, "node n1's pod range", func() (bool, error) {
		n, err := nodeClient.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		got = n.Spec.PodCIDR
		return got != "", nil
	})
	if got != "198.18.0.0/24" {
		t.Fatalf("node n1 got pod range %s; want 198.18.0.0/24", got)
	}
}

// TestJoinRefusedWithoutNodeRanges: a server whose own node holds all of
// --cluster-cidr answers a join 409 Conflict and says which flag to set.
func TestJoinRefusedWithoutNodeRanges(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS(), cluster.WithoutControllers())
	token, err := app.CreateBootstrapToken(context.Background(), c.Client, 0, "test")
	if err != nil {
		t.Fatal(err)
	}
	code, body := postJoin(t, c, token, app.JoinRequest{NodeName: "n1", NodeIP: "198.18.250.9"})
	if st := statusOf(t, body); code != http.StatusConflict || !bytes.Contains(body, []byte("--allocate-node-cidrs")) {
		t.Fatalf("join: %d %+v; want 409 naming --allocate-node-cidrs", code, st)
	}
}
