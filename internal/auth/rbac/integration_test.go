package rbac_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"

	"github.com/headway/headway/internal/testing/cluster"
)

// TestMain doubles as the embedded kubectl: the tests run this binary with
// HEADWAY_TEST_KUBECTL=1 to get `headway kubectl`'s code in its own process
// (kubectl exits the process, with 1 for `auth can-i` answering no).
func TestMain(m *testing.M) {
	if os.Getenv("HEADWAY_TEST_KUBECTL") == "1" {
		os.Args = append([]string{"kubectl"}, os.Args[1:]...)
		if err := cli.RunNoErrOutput(kubectlcmd.NewDefaultKubectlCommand()); err != nil {
			cmdutil.CheckErr(err)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// kubectl runs the embedded kubectl against c and returns its output and
// exit code.
func kubectl(t *testing.T, c *cluster.Cluster, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"--kubeconfig", c.Kubeconfig, "--cache-dir", filepath.Join(c.DataDir, "kubectl-cache")}, args...)...)
	cmd.Env = append(os.Environ(), "HEADWAY_TEST_KUBECTL=1")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return out.String(), 0
	case errors.As(err, &exit):
		return out.String(), exit.ExitCode()
	}
	t.Fatalf("kubectl %s: %v", strings.Join(args, " "), err)
	return "", -1
}

// certClient is a client authenticating with a client certificate for
// user in groups.
func certClient(t *testing.T, c *cluster.Cluster, user string, groups ...string) (kubernetes.Interface, *rest.Config) {
	t.Helper()
	certPEM, keyPEM, err := c.Running.PKI.IssueClient(user, groups)
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{Host: c.URL, TLSClientConfig: rest.TLSClientConfig{CAData: c.Running.PKI.CAPEM, CertData: certPEM, KeyData: keyPEM}}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return client, cfg
}

func TestKubectlAuth(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())

	// whoami: the admin kubeconfig is kubernetes-admin in system:masters.
	out, code := kubectl(t, c, "auth", "whoami")
	if code != 0 || !strings.Contains(out, "kubernetes-admin") || !strings.Contains(out, "system:masters") {
		t.Fatalf("auth whoami: exit %d\n%s", code, out)
	}
	out, code = kubectl(t, c, "auth", "whoami", "--as=system:serviceaccount:default:default", "-o", "json")
	if code != 0 || !strings.Contains(out, `"username": "system:serviceaccount:default:default"`) || !strings.Contains(out, `"system:serviceaccounts:default"`) {
		t.Fatalf("auth whoami --as: exit %d\n%s", code, out)
	}

	// The admin may do anything.
	if out, code := kubectl(t, c, "auth", "can-i", "delete", "nodes"); code != 0 || answer(out) != "yes" {
		t.Fatalf("admin can-i delete nodes: exit %d %q", code, out)
	}
	// The default service account may not create pods ...
	as := "--as=system:serviceaccount:default:default"
	if out, code := kubectl(t, c, "auth", "can-i", "create", "pods", as); code != 1 || answer(out) != "no" {
		t.Fatalf("can-i create pods as the default service account: exit %d %q, want no", code, out)
	}
	// ... until bound to edit (whose rules the aggregation controller gathers).
	if out, code := kubectl(t, c, "create", "rolebinding", "sa-edit", "--clusterrole=edit", "--serviceaccount=default:default"); code != 0 {
		t.Fatalf("create rolebinding: exit %d\n%s", code, out)
	}
	cluster.WaitFor(t, 20*time.Second, "can-i create pods to answer yes", func() (bool, error) {
		out, code := kubectl(t, c, "auth", "can-i", "create", "pods", as)
		return code == 0 && answer(out) == "yes", nil
	})
	// In default only.
	if out, code := kubectl(t, c, "auth", "can-i", "create", "pods", as, "-n", "kube-system"); code != 1 || answer(out) != "no" {
		t.Fatalf("can-i in kube-system: exit %d %q, want no", code, out)
	}
	// --list answers from SelfSubjectRulesReview.
	out, code = kubectl(t, c, "auth", "can-i", "--list", as)
	if code != 0 || !strings.Contains(out, "pods ") || !strings.Contains(out, "selfsubjectaccessreviews.authorization.k8s.io") {
		t.Fatalf("can-i --list: exit %d\n%s", code, out)
	}
}

func TestServiceAccountForbiddenThenViewer(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := context.Background()
	// A service-account identity (a client certificate until tokens exist).
	sa, _ := certClient(t, c, "system:serviceaccount:default:default", "system:serviceaccounts", "system:serviceaccounts:default")
	_, err := sa.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
	want := `pods is forbidden: User "system:serviceaccount:default:default" cannot list resource "pods" in API group "" in the namespace "default"`
	if !apierrors.IsForbidden(err) || err.Error() != want {
		t.Fatalf("list pods before any binding: %v\nwant 403 %q", err, want)
	}
	rb := &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "sa-view", Namespace: "default"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "view"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "default", Namespace: "default"}}}
	if _, err := c.Client.RbacV1().RoleBindings("default").Create(ctx, rb, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 20*time.Second, "the service account to list pods", func() (bool, error) {
		_, err := sa.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		return err == nil, err
	})
	// view reads, it does not write, and not in other namespaces.
	if _, err := sa.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("create with view: %v, want 403", err)
	}
	if _, err := sa.CoreV1().Pods("kube-system").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("list in kube-system: %v, want 403", err)
	}
	// Removing the binding takes the right away again.
	if err := c.Client.RbacV1().RoleBindings("default").Delete(ctx, "sa-view", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	cluster.WaitFor(t, 20*time.Second, "the service account to be refused again", func() (bool, error) {
		_, err := sa.CoreV1().Pods("default").List(ctx, metav1.ListOptions{})
		return apierrors.IsForbidden(err), nil
	})
	// Every authenticated user may discover the API and review itself.
	if _, err := sa.Discovery().ServerGroups(); err != nil {
		t.Errorf("discovery: %v", err)
	}
}

func TestEscalationAndImpersonation(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := context.Background()
	for _, ns := range []string{"team"} {
		if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// alice is admin of team.
	if _, err := c.Client.RbacV1().RoleBindings("team").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "alice-admin"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: "admin"},
		Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: "alice"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	alice, aliceCfg := certClient(t, c, "alice", "devs")
	cluster.WaitFor(t, 20*time.Second, "admin to aggregate edit and view", func() (bool, error) {
		// admin's rules come from aggregation (view into edit into
		// admin): wait for the end of the chain.
		if _, err := alice.CoreV1().Pods("team").List(ctx, metav1.ListOptions{}); err != nil {
			return false, err
		}
		_, err := alice.RbacV1().RoleBindings("team").List(ctx, metav1.ListOptions{})
		return err == nil, err
	})

	bind := func(name, role string) error {
		_, err := alice.RbacV1().RoleBindings("team").Create(ctx, &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Name: name},
			RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
			Subjects: []rbacv1.Subject{{Kind: "User", APIGroup: rbacv1.GroupName, Name: "bob"}}}, metav1.CreateOptions{})
		return err
	}
	// A binding to a role alice holds: allowed.
	if err := bind("bob-view", "view"); err != nil {
		t.Errorf("binding view: %v", err)
	}
	// To cluster-admin: refused as kube-apiserver refuses it.
	err := bind("bob-root", "cluster-admin")
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(),
		`rolebindings.rbac.authorization.k8s.io "bob-root" is forbidden: user "alice" (groups=["devs" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:`) {
		t.Errorf("binding cluster-admin: %v, want 403 escalation", err)
	}
	// A Role with rights she lacks (nodes are cluster-scoped, not hers).
	_, err = alice.RbacV1().Roles("team").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "nodes"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"nodes"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `{APIGroups:[""], Resources:["nodes"], Verbs:["get"]}`) {
		t.Errorf("escalating role: %v, want 403", err)
	}
	// One within her rights: allowed, dry run included.
	_, err = alice.RbacV1().Roles("team").Create(ctx, &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Name: "pods"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"pods"}, Verbs: []string{"get"}}}}, metav1.CreateOptions{})
	if err != nil {
		t.Errorf("covered role: %v", err)
	}

	// Impersonation needs the impersonate verb: alice has none on users.
	cfg := rest.CopyConfig(aliceCfg)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "bob"}
	asBob, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, err = asBob.CoreV1().Pods("team").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope`) {
		t.Errorf("alice as bob: %v, want 403", err)
	}
	// admin (through edit) may impersonate service accounts of team.
	cfg.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:team:default"}
	asSA, _ := kubernetes.NewForConfig(cfg)
	_, err = asSA.CoreV1().Pods("team").List(ctx, metav1.ListOptions{})
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `User "system:serviceaccount:team:default" cannot list resource "pods"`) {
		t.Errorf("alice as team's default service account: %v, want the service account's own 403", err)
	}
	// Groups without a user: kube-apiserver's internal error.
	req, _ := http.NewRequest("GET", c.URL+"/api/v1/namespaces", nil)
	req.Header.Set("Authorization", "Bearer "+c.Config.BearerToken)
	req.Header.Set("Impersonate-Group", "x")
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: c.Running.PKI.CAPool}}}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusInternalServerError {
		t.Errorf("Impersonate-Group alone: %d, want 500", resp.StatusCode)
	}
}

// TestDefaultPolicyReconciled: the default roles exist, aggregation fills
// admin, edit and view, a role marked autoupdate=false is left alone after
// a restart, and a missing rule of a default role comes back.
func TestDefaultPolicyReconciled(t *testing.T) {
	dir := t.TempDir()
	c, err := cluster.StartE(dir, cluster.WithBolt(dir), cluster.WithoutDNS())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cluster.WaitFor(t, 20*time.Second, "view to gather the aggregate-to-view rules", func() (bool, error) {
		v, err := c.Client.RbacV1().ClusterRoles().Get(ctx, "view", metav1.GetOptions{})
		return err == nil && len(v.Rules) > 0, err
	})
	// Protect one default role, break another.
	disc, err := c.Client.RbacV1().ClusterRoles().Get(ctx, "system:discovery", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	disc.Annotations["rbac.authorization.kubernetes.io/autoupdate"] = "false"
	disc.Rules = disc.Rules[:0:0]
	if _, err := c.Client.RbacV1().ClusterRoles().Update(ctx, disc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	basic, err := c.Client.RbacV1().ClusterRoles().Get(ctx, "system:basic-user", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	basic.Rules = basic.Rules[:1]
	if _, err := c.Client.RbacV1().ClusterRoles().Update(ctx, basic, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Stop(); err != nil {
		t.Fatal(err)
	}
	c, err = cluster.StartE(dir, cluster.WithBolt(dir), cluster.WithoutDNS())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	disc, err = c.Client.RbacV1().ClusterRoles().Get(ctx, "system:discovery", metav1.GetOptions{})
	if err != nil || len(disc.Rules) != 0 {
		t.Errorf("protected role after restart: %v rules %v, want left empty", err, disc.Rules)
	}
	basic, err = c.Client.RbacV1().ClusterRoles().Get(ctx, "system:basic-user", metav1.GetOptions{})
	if err != nil || len(basic.Rules) != 2 {
		t.Errorf("system:basic-user after restart: %v %s, want its two rules back", err, js(basic.Rules))
	}
}

// answer is the last line kubectl printed (after any warning).
func answer(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return fmt.Sprint(string(b))
}
