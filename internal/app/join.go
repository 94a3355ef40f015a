package app

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/kubernetes"

	"github.com/headway/headway/internal/apiserver"
	"github.com/headway/headway/internal/auth/rbac"
	"github.com/headway/headway/internal/pki"
)

// Joining a node on another machine. A join token is a bootstrap token as
// kubeadm makes them: a Secret kube-system/bootstrap-token-<id> of type
// bootstrap.kubernetes.io/token with token-id, token-secret,
// usage-bootstrap-authentication "true" and an optional expiration
// (RFC 3339). "<id>.<secret>" as a bearer token authenticates as
// system:bootstrap:<id> in the group system:bootstrappers, which may do
// one thing: POST JoinPath, over TLS the agent verified with the cluster
// CA (--ca-file). The answer holds the node's credentials (client
// certificates of system:node:<name> in system:nodes, for the agent, and of
// the proxy's and the cluster DNS's identities, as k3s hands its agents;
// a serving certificate for the agent's streaming server) and the
// cluster's ranges. From then on the agent is an ordinary node: the Node
// authorizer and RBAC decide what it may do.
const (
	// JoinPath is the node-join endpoint.
	JoinPath = "/headway/v1/join"
	// BootstrapTokenType is the Secret type of join tokens.
	BootstrapTokenType corev1.SecretType = "bootstrap.kubernetes.io/token"
	// BootstrappersGroup is the group of bootstrap-token users.
	BootstrappersGroup = "system:bootstrappers"
	// bootstrapUserPrefix prefixes a bootstrap token's user name.
	bootstrapUserPrefix   = "system:bootstrap:"
	bootstrapSecretPrefix = "bootstrap-token-"
)

// bootstrapTokenRE is a bootstrap token: a 6-character id, a dot, a
// 16-character secret.
var bootstrapTokenRE = regexp.MustCompile(`^([a-z0-9]{6})\.([a-z0-9]{16})$`)

// JoinRequest is what an agent posts to JoinPath.
type JoinRequest struct {
	NodeName string `json:"nodeName"`
	// NodeIP is the node's InternalIP (its serving certificate covers it).
	NodeIP string `json:"nodeIP"`
}

// Credential is a PEM certificate and key.
type Credential struct {
	Cert []byte `json:"cert"`
	Key  []byte `json:"key"`
}

// JoinResponse is the server's answer: the node's credentials and the
// cluster's ranges.
type JoinResponse struct {
	CA            []byte     `json:"ca"`
	ClusterCIDR   string     `json:"clusterCIDR"`
	ServiceCIDR   string     `json:"serviceCIDR"`
	ClusterDomain string     `json:"clusterDomain"`
	DNSServiceIP  string     `json:"dnsServiceIP,omitempty"`
	Node          Credential `json:"node"`
	Proxy         Credential `json:"proxy"`
	DNS           Credential `json:"dns"`
	Serving       Credential `json:"serving"`
}

// authenticateBootstrapToken authenticates a bearer token shaped like a
// bootstrap token against its Secret; other tokens are not its business.
func (id *identity) authenticateBootstrapToken(r *http.Request) (user.Info, bool, error) {
	token, ok := bearer(r)
	if !ok {
		return nil, false, nil
	}
	m := bootstrapTokenRE.FindStringSubmatch(token)
	if m == nil {
		return nil, false, nil
	}
	tokenID, secret := m[1], m[2]
	s, err := getAs[*corev1.Secret](r.Context(), id.srv, secretsGVR, metav1.NamespaceSystem, bootstrapSecretPrefix+tokenID)
	if err != nil {
		return nil, false, fmt.Errorf("bootstrap token %s: %w", tokenID, err)
	}
	if s.Type != BootstrapTokenType || s.DeletionTimestamp != nil ||
		string(s.Data["token-id"]) != tokenID || string(s.Data["usage-bootstrap-authentication"]) != "true" ||
		subtle.ConstantTimeCompare(s.Data["token-secret"], []byte(secret)) != 1 {
		return nil, false, fmt.Errorf("bootstrap token %s: invalid", tokenID)
	}
	if exp := string(s.Data["expiration"]); exp != "" {
		t, err := time.Parse(time.RFC3339, exp)
		if err != nil || time.Now().After(t) {
			return nil, false, fmt.Errorf("bootstrap token %s: expired (%s)", tokenID, exp)
		}
	}
	groups := []string{BootstrappersGroup}
	for _, g := range strings.Split(string(s.Data["auth-extra-groups"]), ",") {
		if g = strings.TrimSpace(g); strings.HasPrefix(g, BootstrappersGroup+":") {
			groups = append(groups, g)
		}
	}
	return &user.DefaultInfo{Name: bootstrapUserPrefix + tokenID, Groups: append(groups, user.AllAuthenticated)}, true, nil
}

func bearer(r *http.Request) (string, bool) {
	auth := r.Header.Get("Authorization")
	const prefix = "Bearer "
	if len(auth) <= len(prefix) || !strings.EqualFold(auth[:len(prefix)], prefix) {
		return "", false
	}
	t := strings.TrimSpace(auth[len(prefix):])
	return t, t != ""
}

// joinAuthorizer lets bootstrap-token users post to JoinPath, as
// kube-apiserver's built-in authorizers decide before RBAC; it has no
// opinion on anything else.
type joinAuthorizer struct{}

func (joinAuthorizer) Authorize(_ context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	if !attrs.IsResourceRequest() && attrs.GetPath() == JoinPath && attrs.GetVerb() == "post" &&
		attrs.GetUser() != nil && slices.Contains(attrs.GetUser().GetGroups(), BootstrappersGroup) {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

// joinHandler serves JoinPath.
func joinHandler(cfg Config, bundle *pki.Bundle, log *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			writeStatus(w, apierrors.NewMethodNotSupported(corev1.Resource("join"), r.Method))
			return
		}
		u, _ := apiserver.UserFrom(r.Context())
		if u == nil || !(slices.Contains(u.GetGroups(), BootstrappersGroup) || slices.Contains(u.GetGroups(), user.SystemPrivilegedGroup)) {
			writeStatus(w, apierrors.NewForbidden(corev1.Resource("join"), "", fmt.Errorf("only bootstrap tokens (group %s) join nodes", BootstrappersGroup)))
			return
		}
		var req JoinRequest
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
			writeStatus(w, apierrors.NewBadRequest("the join request is not JSON {nodeName, nodeIP}: "+err.Error()))
			return
		}
		if !cfg.AllocateNodeCIDRs {
			writeStatus(w, apierrors.NewConflict(corev1.Resource("nodes"), req.NodeName,
				fmt.Errorf("this server's own node uses all of --cluster-cidr %s: restart it with --allocate-node-cidrs so that each node gets a /%d", cfg.ClusterCIDR, NodeCIDRBits)))
			return
		}
		ip, ipErr := netip.ParseAddr(req.NodeIP)
		if msgs := validation.IsDNS1123Subdomain(req.NodeName); len(msgs) > 0 || ipErr != nil || !ip.Is4() {
			why := strings.Join(msgs, "; ")
			if ipErr != nil || !ip.Is4() {
				why = strings.TrimPrefix(why+"; nodeIP "+req.NodeIP+" is not an IPv4 address", "; ")
			}
			writeStatus(w, apierrors.NewBadRequest(fmt.Sprintf("node %q: %s", req.NodeName, why)))
			return
		}
		resp, err := issueJoin(cfg, bundle, req.NodeName, ip)
		if err != nil {
			writeStatus(w, apierrors.NewInternalError(err))
			return
		}
		log.Info("node joined", "node", req.NodeName, "node-ip", ip, "token-user", u.GetName())
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(resp)
	})
}

// issueJoin makes a joining node's credentials.
func issueJoin(cfg Config, bundle *pki.Bundle, node string, ip netip.Addr) (*JoinResponse, error) {
	resp := &JoinResponse{CA: bundle.CAPEM, ClusterCIDR: cfg.ClusterCIDR.String(), ServiceCIDR: cfg.ServiceCIDR.String(), ClusterDomain: cfg.ClusterDomain}
	if !cfg.NoDNS && cfg.DNSServiceIP.IsValid() {
		resp.DNSServiceIP = cfg.DNSServiceIP.String()
	}
	for _, c := range []struct {
		to     *Credential
		user   string
		groups []string
	}{
		{&resp.Node, rbac.NodeUserPrefix + node, []string{rbac.NodesGroup}},
		{&resp.Proxy, rbac.ProxyUser, nil},
		{&resp.DNS, rbac.DNSUser, nil},
	} {
		var err error
		if c.to.Cert, c.to.Key, err = bundle.IssueClient(c.user, c.groups); err != nil {
			return nil, fmt.Errorf("issuing %s's certificate: %w", c.user, err)
		}
	}
	var err error
	resp.Serving.Cert, resp.Serving.Key, err = bundle.Issue("headway-agent", nil, []string{ip.String(), "127.0.0.1", "localhost"}, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, fmt.Errorf("issuing node %s's serving certificate: %w", node, err)
	}
	return resp, nil
}

// writeStatus answers err as kube-apiserver would: a metav1.Status.
func writeStatus(w http.ResponseWriter, err *apierrors.StatusError) {
	st := err.ErrStatus
	st.Kind, st.APIVersion = "Status", "v1"
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(int(st.Code))
	json.NewEncoder(w).Encode(st)
}

// CreateBootstrapToken makes a join token valid for ttl (0: until the
// Secret is deleted) and returns it ("<id>.<secret>").
func CreateBootstrapToken(ctx context.Context, client kubernetes.Interface, ttl time.Duration, description string) (string, error) {
	id, secret := randomToken(6), randomToken(16)
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: bootstrapSecretPrefix + id, Namespace: metav1.NamespaceSystem},
		Type:       BootstrapTokenType,
		StringData: map[string]string{
			"token-id": id, "token-secret": secret, "usage-bootstrap-authentication": "true",
			"description": description,
		},
	}
	if ttl > 0 {
		s.StringData["expiration"] = time.Now().Add(ttl).UTC().Format(time.RFC3339)
	}
	if _, err := client.CoreV1().Secrets(metav1.NamespaceSystem).Create(ctx, s, metav1.CreateOptions{FieldManager: "headway"}); err != nil {
		return "", fmt.Errorf("creating the join token's Secret kube-system/%s: %w", s.Name, err)
	}
	return id + "." + secret, nil
}

// randomToken is n characters of [a-z0-9].
func randomToken(n int) string {
	const chars = "abcdefghijklmnopqrstuvwxyz0123456789"
	out := make([]byte, 0, n)
	b := make([]byte, 1)
	for len(out) < n {
		rand.Read(b)
		if b[0] < 252 { // 7*36: no bias
			out = append(out, chars[int(b[0])%len(chars)])
		}
	}
	return string(out)
}
