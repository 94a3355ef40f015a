package apiserver

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/headway/headway/internal/registry/builtin"
	"github.com/headway/headway/internal/storage/memory"
)

// recordingAuthorizer allows what allow says and remembers what it was asked.
type recordingAuthorizer struct {
	asked []authorizer.Attributes
	allow func(authorizer.Attributes) bool
}

func (a *recordingAuthorizer) Authorize(_ context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	a.asked = append(a.asked, attrs)
	if a.allow(attrs) {
		return authorizer.DecisionAllow, "", nil
	}
	return authorizer.DecisionNoOpinion, "", nil
}

func TestAuthenticationAndAuthorizationSeam(t *testing.T) {
	authz := &recordingAuthorizer{allow: func(a authorizer.Attributes) bool {
		return a.GetUser().GetName() == AdminUser.Name || (a.GetVerb() == "list" && a.GetResource() == "configmaps")
	}}
	robot := AuthenticatorFunc(func(r *http.Request) (user.Info, bool, error) {
		if tok, ok := bearerToken(r); ok && tok == "robot-token" {
			return &user.DefaultInfo{Name: "robot", Groups: []string{user.AllAuthenticated}}, true, nil
		}
		return nil, false, nil
	})
	srv, err := New(Config{
		Store: memory.New(), Scheme: builtin.Scheme(), Resources: builtin.Resources(builtin.Options{}),
		Token: "admin-token", Authenticators: []Authenticator{robot}, Authorizer: authz,
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	do := func(token, method, path string) (int, metav1.Status) {
		t.Helper()
		req, _ := http.NewRequest(method, ts.URL+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var st metav1.Status
		json.NewDecoder(resp.Body).Decode(&st)
		return resp.StatusCode, st
	}

	if code, _ := do("admin-token", "GET", "/api/v1/namespaces/default/pods"); code != 200 {
		t.Fatalf("admin list pods: %d", code)
	}
	if code, _ := do("robot-token", "GET", "/api/v1/namespaces/default/configmaps"); code != 200 {
		t.Fatalf("robot list configmaps (allowed): %d", code)
	}
	code, st := do("robot-token", "GET", "/api/v1/namespaces/default/pods")
	want := `pods is forbidden: User "robot" cannot list resource "pods" in API group "" in the namespace "default"`
	if code != 403 || st.Reason != metav1.StatusReasonForbidden || st.Message != want {
		t.Fatalf("robot list pods: %d %q, want 403 %q", code, st.Message, want)
	}
	code, st = do("robot-token", "DELETE", "/apis/apps/v1/namespaces/ns1/statefulsets/web")
	want = `statefulsets.apps "web" is forbidden: User "robot" cannot delete resource "statefulsets" in API group "apps" in the namespace "ns1"`
	if code != 403 || st.Message != want {
		t.Fatalf("robot delete sts: %d %q, want %q", code, st.Message, want)
	}
	code, st = do("robot-token", "GET", "/api/v1/nodes/n1/status")
	want = `nodes "n1" is forbidden: User "robot" cannot get resource "nodes/status" in API group "" at the cluster scope`
	if code != 403 || st.Message != want {
		t.Fatalf("robot get node status: %d %q, want %q", code, st.Message, want)
	}
	code, st = do("robot-token", "GET", "/apis")
	if code != 403 || !strings.Contains(st.Message, `User "robot" cannot get path "/apis"`) {
		t.Fatalf("robot discovery: %d %q", code, st.Message)
	}
	if code, _ := do("wrong-token", "GET", "/api/v1/namespaces/default/configmaps"); code != 401 {
		t.Fatalf("unknown token: %d, want 401", code)
	}
	// The authorizer sees the namespace object's name, and the namespace
	// itself as the request's namespace, as kube-apiserver's request info
	// has it (so a RoleBinding in a namespace can grant reading it).
	authz.asked = nil
	do("robot-token", "GET", "/api/v1/namespaces/kube-system")
	if len(authz.asked) != 1 || authz.asked[0].GetName() != "kube-system" || authz.asked[0].GetNamespace() != "kube-system" || authz.asked[0].GetResource() != "namespaces" {
		t.Fatalf("namespace attributes: %+v", authz.asked)
	}
	// Health paths stay readable without credentials; the authorizer decides
	// for system:anonymous.
	authz.allow = func(a authorizer.Attributes) bool {
		return a.GetUser().GetName() == user.Anonymous && a.GetPath() == "/readyz"
	}
	srv.SetReady(true)
	if code, _ := do("", "GET", "/readyz"); code != 200 {
		t.Fatalf("anonymous readyz: %d", code)
	}
	if code, _ := do("", "GET", "/api/v1/pods"); code != 401 {
		t.Fatalf("anonymous list: %d, want 401", code)
	}
}
