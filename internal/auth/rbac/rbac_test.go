package rbac

import (
	"context"
	"strings"
	"testing"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/request"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"
)

func res(verb, group, resource, sub, ns, name string) authorizer.AttributesRecord {
	return authorizer.AttributesRecord{Verb: verb, APIGroup: group, Resource: resource, Subresource: sub,
		Namespace: ns, Name: name, ResourceRequest: true}
}

func path(verb, p string) authorizer.AttributesRecord {
	return authorizer.AttributesRecord{Verb: verb, Path: p}
}

func TestRuleAllows(t *testing.T) {
	for _, tc := range []struct {
		name  string
		rule  rbacv1.PolicyRule
		attrs authorizer.AttributesRecord
		want  bool
	}{
		{"exact", rule(g(""), g("pods"), "get"), res("get", "", "pods", "", "default", "p"), true},
		{"other verb", rule(g(""), g("pods"), "get"), res("list", "", "pods", "", "default", ""), false},
		{"verb star", rule(g(""), g("pods"), "*"), res("deletecollection", "", "pods", "", "default", ""), true},
		{"other group", rule(g(""), g("deployments"), "get"), res("get", "apps", "deployments", "", "default", "d"), false},
		{"group star", rule(g("*"), g("deployments"), "get"), res("get", "apps", "deployments", "", "default", "d"), true},
		{"resource star covers subresources", rule(g(""), g("*"), "get"), res("get", "", "pods", "log", "default", "p"), true},
		{"resource does not cover its subresource", rule(g(""), g("pods"), "get"), res("get", "", "pods", "log", "default", "p"), false},
		{"resource/subresource", rule(g(""), g("pods/log"), "get"), res("get", "", "pods", "log", "default", "p"), true},
		{"subresource does not cover the resource", rule(g(""), g("pods/log"), "get"), res("get", "", "pods", "", "default", "p"), false},
		{"*/subresource", rule(g("*"), g("*/scale"), "update"), res("update", "apps", "deployments", "scale", "default", "d"), true},
		{"*/subresource other sub", rule(g("*"), g("*/scale"), "update"), res("update", "apps", "deployments", "status", "default", "d"), false},
		{"resource name", named(g(""), g("configmaps"), g("a"), "get"), res("get", "", "configmaps", "", "default", "a"), true},
		{"other name", named(g(""), g("configmaps"), g("a"), "get"), res("get", "", "configmaps", "", "default", "b"), false},
		{"names never cover a list", named(g(""), g("configmaps"), g("a"), "list"), res("list", "", "configmaps", "", "default", ""), false},
		{"url exact", urls(g("/healthz"), "get"), path("get", "/healthz"), true},
		{"url other", urls(g("/healthz"), "get"), path("get", "/livez"), false},
		{"url prefix star", urls(g("/apis/*"), "get"), path("get", "/apis/apps/v1"), true},
		{"url prefix star needs the prefix", urls(g("/apis/*"), "get"), path("get", "/apis"), false},
		{"url star", urls(g("*"), "get"), path("get", "/anything"), true},
		{"url rule does not cover resources", urls(g("*"), "*"), res("get", "", "pods", "", "default", "p"), false},
		{"resource rule does not cover urls", rule(g("*"), g("*"), "*"), path("get", "/healthz"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := RuleAllows(tc.attrs, &tc.rule); got != tc.want {
				t.Errorf("RuleAllows(%+v, %s) = %v, want %v", tc.attrs, compactString(tc.rule), got, tc.want)
			}
		})
	}
}

// fixture is an authorizer over fixed objects.
type fixture struct {
	roles, rbs, crs, crbs cache.Indexer
}

func newFixture(objs ...any) (*Authorizer, *fixture) {
	f := &fixture{
		roles: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}),
		rbs:   cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc}),
		crs:   cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		crbs:  cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
	}
	for _, o := range objs {
		switch o := o.(type) {
		case *rbacv1.Role:
			f.roles.Add(o)
		case *rbacv1.RoleBinding:
			f.rbs.Add(o)
		case *rbacv1.ClusterRole:
			f.crs.Add(o)
		case *rbacv1.ClusterRoleBinding:
			f.crbs.Add(o)
		}
	}
	return New(Listers{
		Roles: rbaclisters.NewRoleLister(f.roles), RoleBindings: rbaclisters.NewRoleBindingLister(f.rbs),
		ClusterRoles: rbaclisters.NewClusterRoleLister(f.crs), ClusterRoleBindings: rbaclisters.NewClusterRoleBindingLister(f.crbs),
	}, nil), f
}

func roleBinding(ns, name, kind, role string, subjects ...rbacv1.Subject) *rbacv1.RoleBinding {
	return &rbacv1.RoleBinding{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		RoleRef: rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: kind, Name: role}, Subjects: subjects}
}

var (
	alice   = &user.DefaultInfo{Name: "alice", Groups: []string{"devs", user.AllAuthenticated}}
	bob     = &user.DefaultInfo{Name: "bob", Groups: []string{user.AllAuthenticated}}
	saDef   = &user.DefaultInfo{Name: "system:serviceaccount:default:default", Groups: []string{"system:serviceaccounts", "system:serviceaccounts:default", user.AllAuthenticated}}
	masters = &user.DefaultInfo{Name: "root", Groups: []string{user.SystemPrivilegedGroup}}
)

func TestAuthorize(t *testing.T) {
	view := clusterRole("view", nil, rule(g(""), g("pods", "configmaps"), readVerbs...))
	podsRole := &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "pods"}, Rules: []rbacv1.PolicyRule{rule(g(""), g("pods"), "create")}}
	a, _ := newFixture(view, podsRole,
		binding("devs-discovery", "system:discovery", groupSubject("devs")),
		clusterRole("system:discovery", nil, urls(g("/api", "/api/*"), "get")),
		roleBinding("team", "alice-view", "ClusterRole", "view", userSubject("alice")),
		roleBinding("team", "alice-pods", "Role", "pods", userSubject("alice")),
		roleBinding("default", "sa-view", "ClusterRole", "view", rbacv1.Subject{Kind: "ServiceAccount", Name: "default"}),
		roleBinding("team", "bob-missing", "ClusterRole", "missing", userSubject("bob")),
	)
	for _, tc := range []struct {
		name   string
		u      user.Info
		attrs  authorizer.AttributesRecord
		want   authorizer.Decision
		reason string
	}{
		{"masters always", masters, res("delete", "", "nodes", "", "", "n"), authorizer.DecisionAllow, ""},
		{"rolebinding to clusterrole in its namespace", alice, res("list", "", "pods", "", "team", ""), authorizer.DecisionAllow,
			`RBAC: allowed by RoleBinding "alice-view/team" of ClusterRole "view" to User "alice"`},
		{"not in another namespace", alice, res("list", "", "pods", "", "other", ""), authorizer.DecisionNoOpinion, ""},
		{"not cluster-wide", alice, res("list", "", "pods", "", "", ""), authorizer.DecisionNoOpinion, ""},
		{"role in its namespace", alice, res("create", "", "pods", "", "team", ""), authorizer.DecisionAllow, ""},
		{"group subject", alice, path("get", "/api/v1"), authorizer.DecisionAllow, ""},
		{"group not held", bob, path("get", "/api/v1"), authorizer.DecisionNoOpinion, ""},
		{"service account, namespace from the binding", saDef, res("get", "", "configmaps", "", "default", "c"), authorizer.DecisionAllow, ""},
		{"service account may not write", saDef, res("create", "", "pods", "", "default", ""), authorizer.DecisionNoOpinion, ""},
		{"missing role is the reason", bob, res("get", "", "pods", "", "team", "p"), authorizer.DecisionNoOpinion,
			`RBAC: clusterrole.rbac.authorization.k8s.io "missing" not found`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.attrs.User = tc.u
			d, reason, err := a.Authorize(context.Background(), tc.attrs)
			if err != nil {
				t.Fatal(err)
			}
			if d != tc.want {
				t.Errorf("decision %v, want %v (reason %q)", d, tc.want, reason)
			}
			if tc.reason != "" && reason != tc.reason {
				t.Errorf("reason %q, want %q", reason, tc.reason)
			}
		})
	}
}

func TestNotSyncedAllowsOnlyMasters(t *testing.T) {
	a, _ := newFixture(binding("all", "cluster-admin", groupSubject(user.AllAuthenticated)),
		clusterRole("cluster-admin", nil, rule(g("*"), g("*"), "*")))
	a.synced = func() bool { return false }
	attrs := res("get", "", "pods", "", "default", "p")
	attrs.User = alice
	if d, _, _ := a.Authorize(context.Background(), attrs); d == authorizer.DecisionAllow {
		t.Error("allowed before the caches synced")
	}
	attrs.User = masters
	if d, _, _ := a.Authorize(context.Background(), attrs); d != authorizer.DecisionAllow {
		t.Error("system:masters refused before the caches synced")
	}
}

func TestEscalation(t *testing.T) {
	edit := clusterRole("edit", nil, rule(g(""), g("pods", "configmaps"), "get", "list", "create"))
	admin := clusterRole("admin", nil, rule(g("*"), g("*"), "*"))
	a, _ := newFixture(edit, admin,
		roleBinding("team", "alice-edit", "ClusterRole", "edit", userSubject("alice")),
		binding("bob-bind", "binder", userSubject("bob")),
		clusterRole("binder", nil, named(g(rbacv1.GroupName), g("clusterroles"), g("admin"), "bind"),
			rule(g(rbacv1.GroupName), g("roles"), "escalate")),
	)
	ctx := func(u user.Info) context.Context { return request.WithUser(context.Background(), u) }
	role := func(rules ...rbacv1.PolicyRule) *rbacv1.Role {
		return &rbacv1.Role{ObjectMeta: metav1.ObjectMeta{Namespace: "team", Name: "r"}, Rules: rules}
	}

	// A role within what alice holds in team: allowed.
	if err := a.AdmitRole(ctx(alice), role(rule(g(""), g("pods"), "get")), nil); err != nil {
		t.Errorf("a covered role: %v", err)
	}
	// More than she holds: 403 with kube's message.
	err := a.AdmitRole(ctx(alice), role(rule(g(""), g("pods"), "get", "delete"), rule(g("apps"), g("deployments"), "create")), nil)
	if !apierrors.IsForbidden(err) {
		t.Fatalf("escalating role: %v, want 403", err)
	}
	want := `roles.rbac.authorization.k8s.io "r" is forbidden: user "alice" (groups=["devs" "system:authenticated"]) is attempting to grant RBAC permissions not currently held:
{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}
{APIGroups:["apps"], Resources:["deployments"], Verbs:["create"]}`
	if err.Error() != want {
		t.Errorf("message\n%s\nwant\n%s", err, want)
	}
	// Not in another namespace.
	other := role(rule(g(""), g("pods"), "get"))
	other.Namespace = "other"
	if err := a.AdmitRole(ctx(alice), other, nil); !apierrors.IsForbidden(err) {
		t.Errorf("role in a namespace she has nothing in: %v, want 403", err)
	}
	// bob holds escalate on roles: anything goes.
	if err := a.AdmitRole(ctx(bob), role(rule(g("*"), g("*"), "*")), nil); err != nil {
		t.Errorf("escalate verb: %v", err)
	}
	// masters pass.
	if err := a.AdmitClusterRole(ctx(masters), clusterRole("x", nil, rule(g("*"), g("*"), "*")), nil); err != nil {
		t.Errorf("system:masters: %v", err)
	}

	// Bindings: alice may bind edit (she holds it in team), not admin.
	if err := a.AdmitRoleBinding(ctx(alice), roleBinding("team", "b", "ClusterRole", "edit", userSubject("carol")), nil); err != nil {
		t.Errorf("binding a held role: %v", err)
	}
	err = a.AdmitRoleBinding(ctx(alice), roleBinding("team", "b", "ClusterRole", "admin", userSubject("carol")), nil)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `rolebindings.rbac.authorization.k8s.io "b" is forbidden: user "alice"`) {
		t.Errorf("binding admin: %v, want 403", err)
	}
	// bob has bind on admin.
	if err := a.AdmitClusterRoleBinding(ctx(bob), binding("b", "admin", userSubject("carol")), nil); err != nil {
		t.Errorf("bind verb: %v", err)
	}
	// A binding to a role that does not exist: 404 as kube answers.
	if err := a.AdmitRoleBinding(ctx(alice), roleBinding("team", "b", "ClusterRole", "nope"), nil); !apierrors.IsNotFound(err) {
		t.Errorf("binding a missing role: %v, want 404", err)
	}
	// An aggregationRule needs every right.
	agg := aggregated("agg", nil, "x")
	if err := a.AdmitClusterRole(ctx(alice), agg, nil); !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "must have cluster-admin privileges to use the aggregationRule") {
		t.Errorf("aggregationRule: %v", err)
	}
	// Changing only finalizers of a role one could not create is allowed.
	old := role(rule(g("*"), g("*"), "*"))
	upd := old.DeepCopy()
	upd.Finalizers = []string{"x"}
	if err := a.AdmitRole(ctx(alice), upd, old); err != nil {
		t.Errorf("GC-only update: %v", err)
	}
}

func TestDefaultPolicyIsValid(t *testing.T) {
	names := map[string]bool{}
	for _, r := range ClusterRoles() {
		if names[r.Name] {
			t.Errorf("clusterrole %s twice", r.Name)
		}
		names[r.Name] = true
		if r.Annotations[AutoUpdateAnnotation] != "true" {
			t.Errorf("clusterrole %s lacks the autoupdate annotation", r.Name)
		}
	}
	for _, b := range ClusterRoleBindings() {
		if !names[b.RoleRef.Name] {
			t.Errorf("clusterrolebinding %s refers to the unknown clusterrole %s", b.Name, b.RoleRef.Name)
		}
	}
}
