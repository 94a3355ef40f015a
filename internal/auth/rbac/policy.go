package rbac

import (
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apiserver/pkg/authentication/serviceaccount"
	"k8s.io/apiserver/pkg/authentication/user"
)

// The users and groups Headway's own components authenticate as (client
// certificates), named as their Kubernetes counterparts.
const (
	// ControllerManagerUser runs the controllers.
	ControllerManagerUser = user.KubeControllerManager
	// SchedulerUser runs the scheduler.
	SchedulerUser = user.KubeScheduler
	// ProxyUser runs the Service proxy.
	ProxyUser = user.KubeProxy
	// DNSUser runs the cluster DNS (CoreDNS's role, under Headway's name).
	DNSUser = "system:headway:dns"
	// NodesGroup holds every node agent; a node is NodeUserPrefix+name.
	NodesGroup     = user.NodesGroup
	NodeUserPrefix = "system:node:"
)

// Labels and annotations of the default policy.
const (
	// AutoUpdateAnnotation, "false" on a default role or binding, keeps
	// Headway from reconciling it at start.
	AutoUpdateAnnotation = "rbac.authorization.kubernetes.io/autoupdate"
	bootstrapLabel       = "kubernetes.io/bootstrapping"
	aggregateToAdmin     = "rbac.authorization.k8s.io/aggregate-to-admin"
	aggregateToEdit      = "rbac.authorization.k8s.io/aggregate-to-edit"
	aggregateToView      = "rbac.authorization.k8s.io/aggregate-to-view"
)

const (
	legacyGroup    = ""
	appsGroup      = "apps"
	autoscaling    = "autoscaling"
	batchGroup     = "batch"
	policyGroup    = "policy"
	networking     = "networking.k8s.io"
	coordination   = "coordination.k8s.io"
	discoveryGroup = "discovery.k8s.io"
	eventsGroup    = "events.k8s.io"
	storageGroup   = "storage.k8s.io"
	authnGroup     = "authentication.k8s.io"
	authzGroup     = "authorization.k8s.io"
)

var (
	readVerbs  = []string{"get", "list", "watch"}
	writeVerbs = []string{"create", "delete", "deletecollection", "patch", "update"}
	allVerbs   = append(append([]string(nil), readVerbs...), writeVerbs...)
)

// rule grants verbs on resources of groups.
func rule(groups, resources []string, verbs ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{APIGroups: groups, Resources: resources, Verbs: verbs}
}

// named grants verbs on the named objects only.
func named(groups, resources, names []string, verbs ...string) rbacv1.PolicyRule {
	r := rule(groups, resources, verbs...)
	r.ResourceNames = names
	return r
}

// urls grants verbs on non-resource paths.
func urls(paths []string, verbs ...string) rbacv1.PolicyRule {
	return rbacv1.PolicyRule{NonResourceURLs: paths, Verbs: verbs}
}

func g(names ...string) []string { return names }

func clusterRole(name string, labels map[string]string, rules ...rbacv1.PolicyRule) *rbacv1.ClusterRole {
	l := map[string]string{bootstrapLabel: "rbac-defaults"}
	for k, v := range labels {
		l[k] = v
	}
	return &rbacv1.ClusterRole{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l, Annotations: map[string]string{AutoUpdateAnnotation: "true"}},
		Rules:      rules,
	}
}

func aggregated(name string, labels map[string]string, selector string) *rbacv1.ClusterRole {
	r := clusterRole(name, labels)
	r.AggregationRule = &rbacv1.AggregationRule{ClusterRoleSelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{selector: "true"}}}}
	return r
}

// ClusterRoles are the default cluster roles: Kubernetes' user-facing and
// discovery roles, the roles of the components Kubernetes names
// (system:node, system:node-proxier, system:kube-controller-manager, ...),
// and Headway's own for what its in-process components do beyond them.
func ClusterRoles() []*rbacv1.ClusterRole {
	return []*rbacv1.ClusterRole{
		clusterRole("cluster-admin", nil,
			rule(g("*"), g("*"), "*"),
			urls(g("*"), "*")),
		aggregated("admin", nil, aggregateToAdmin),
		aggregated("edit", map[string]string{aggregateToAdmin: "true"}, aggregateToEdit),
		aggregated("view", map[string]string{aggregateToEdit: "true"}, aggregateToView),
		clusterRole("system:aggregate-to-admin", map[string]string{aggregateToAdmin: "true"},
			rule(g(authzGroup), g("localsubjectaccessreviews"), "create"),
			rule(g("rbac.authorization.k8s.io"), g("rolebindings", "roles"), allVerbs...)),
		clusterRole("system:aggregate-to-edit", map[string]string{aggregateToEdit: "true"},
			rule(g(legacyGroup), g("pods/attach", "pods/exec", "pods/portforward", "pods/proxy", "secrets", "services/proxy"), readVerbs...),
			rule(g(legacyGroup), g("serviceaccounts"), "impersonate"),
			rule(g(legacyGroup), g("pods", "pods/attach", "pods/exec", "pods/portforward", "pods/proxy"), writeVerbs...),
			rule(g(legacyGroup), g("pods/eviction"), "create"),
			rule(g(legacyGroup), g("configmaps", "events", "persistentvolumeclaims", "replicationcontrollers",
				"replicationcontrollers/scale", "secrets", "serviceaccounts", "services", "services/proxy"), writeVerbs...),
			rule(g(legacyGroup), g("serviceaccounts/token"), "create"),
			rule(g(appsGroup), g("daemonsets", "deployments", "deployments/rollback", "deployments/scale", "replicasets",
				"replicasets/scale", "statefulsets", "statefulsets/scale"), writeVerbs...),
			rule(g(autoscaling), g("horizontalpodautoscalers"), writeVerbs...),
			rule(g(batchGroup), g("cronjobs", "jobs"), writeVerbs...),
			rule(g(policyGroup), g("poddisruptionbudgets"), writeVerbs...),
			rule(g(networking), g("ingresses", "networkpolicies"), writeVerbs...),
			rule(g(coordination), g("leases"), allVerbs...)),
		clusterRole("system:aggregate-to-view", map[string]string{aggregateToView: "true"},
			rule(g(legacyGroup), g("configmaps", "endpoints", "persistentvolumeclaims", "persistentvolumeclaims/status", "pods",
				"replicationcontrollers", "replicationcontrollers/scale", "serviceaccounts", "services", "services/status"), readVerbs...),
			rule(g(legacyGroup), g("bindings", "events", "limitranges", "namespaces/status", "pods/log", "pods/status",
				"replicationcontrollers/status", "resourcequotas", "resourcequotas/status"), readVerbs...),
			rule(g(legacyGroup), g("namespaces"), readVerbs...),
			rule(g(discoveryGroup), g("endpointslices"), readVerbs...),
			rule(g(appsGroup), g("controllerrevisions", "daemonsets", "daemonsets/status", "deployments", "deployments/scale",
				"deployments/status", "replicasets", "replicasets/scale", "replicasets/status", "statefulsets",
				"statefulsets/scale", "statefulsets/status"), readVerbs...),
			rule(g(autoscaling), g("horizontalpodautoscalers", "horizontalpodautoscalers/status"), readVerbs...),
			rule(g(batchGroup), g("cronjobs", "cronjobs/status", "jobs", "jobs/status"), readVerbs...),
			rule(g(policyGroup), g("poddisruptionbudgets", "poddisruptionbudgets/status"), readVerbs...),
			rule(g(networking), g("ingresses", "ingresses/status", "networkpolicies"), readVerbs...)),
		clusterRole("system:discovery", nil,
			urls(g("/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez", "/openapi", "/openapi/*", "/readyz", "/version", "/version/"), "get")),
		clusterRole("system:basic-user", nil,
			rule(g(authzGroup), g("selfsubjectaccessreviews", "selfsubjectrulesreviews"), "create"),
			rule(g(authnGroup), g("selfsubjectreviews"), "create")),
		clusterRole("system:public-info-viewer", nil,
			urls(g("/healthz", "/livez", "/readyz", "/version", "/version/"), "get")),
		clusterRole("system:service-account-issuer-discovery", nil,
			urls(g("/.well-known/openid-configuration", "/.well-known/openid-configuration/", "/openid/v1/jwks", "/openid/v1/jwks/"), "get")),
		clusterRole("system:monitoring", nil,
			urls(g("/healthz", "/healthz/*", "/livez", "/livez/*", "/readyz", "/readyz/*", "/metrics"), "get")),
		clusterRole("system:auth-delegator", nil,
			rule(g(authnGroup), g("tokenreviews"), "create"),
			rule(g(authzGroup), g("subjectaccessreviews"), "create")),
		clusterRole("system:node", nil,
			rule(g(authnGroup), g("tokenreviews"), "create"),
			rule(g(authzGroup), g("localsubjectaccessreviews", "subjectaccessreviews"), "create"),
			rule(g(legacyGroup), g("services", "endpoints"), readVerbs...),
			rule(g(legacyGroup), g("nodes"), "create", "get", "list", "watch", "patch", "update", "delete"),
			rule(g(legacyGroup), g("nodes/status"), "patch", "update"),
			rule(g(legacyGroup, eventsGroup), g("events"), "create", "patch", "update"),
			rule(g(legacyGroup), g("pods"), "get", "list", "watch", "create", "delete"),
			rule(g(legacyGroup), g("pods/status"), "patch", "update"),
			rule(g(legacyGroup), g("pods/eviction"), "create"),
			rule(g(legacyGroup), g("configmaps", "secrets", "persistentvolumeclaims", "persistentvolumes", "serviceaccounts"), "get", "list", "watch"),
			rule(g(legacyGroup), g("persistentvolumeclaims/status"), "get", "patch", "update"),
			rule(g(legacyGroup), g("serviceaccounts/token"), "create"),
			rule(g(coordination), g("leases"), "create", "delete", "get", "patch", "update"),
			rule(g(storageGroup), g("volumeattachments", "csidrivers", "csinodes"), "get", "list", "watch"),
			rule(g(legacyGroup), g("namespaces"), "get")),
		clusterRole("system:node-proxier", nil,
			rule(g(legacyGroup), g("endpoints", "services"), "list", "watch"),
			rule(g(legacyGroup), g("nodes"), "get", "list", "watch"),
			rule(g(legacyGroup, eventsGroup), g("events"), "create", "patch", "update"),
			rule(g(discoveryGroup), g("endpointslices"), "list", "watch")),
		clusterRole("system:kube-dns", nil,
			rule(g(legacyGroup), g("endpoints", "services"), "list", "watch")),
		// CoreDNS's own role (its kubernetes plugin), for the cluster DNS.
		clusterRole("system:coredns", nil,
			rule(g(legacyGroup), g("endpoints", "services", "pods", "namespaces"), "list", "watch"),
			rule(g(discoveryGroup), g("endpointslices"), "list", "watch")),
		clusterRole("system:kube-scheduler", nil,
			rule(g(legacyGroup, eventsGroup), g("events"), "create", "patch", "update"),
			rule(g(coordination), g("leases"), "create"),
			named(g(coordination), g("leases"), g("kube-scheduler"), "get", "update"),
			rule(g(legacyGroup), g("nodes"), readVerbs...),
			rule(g(legacyGroup), g("pods"), "delete", "get", "list", "watch"),
			rule(g(legacyGroup), g("bindings", "pods/binding"), "create"),
			rule(g(legacyGroup), g("pods/status"), "patch", "update"),
			rule(g(legacyGroup), g("replicationcontrollers", "services"), readVerbs...),
			rule(g(appsGroup), g("replicasets", "statefulsets"), readVerbs...),
			rule(g(policyGroup), g("poddisruptionbudgets"), readVerbs...),
			rule(g(legacyGroup), g("persistentvolumeclaims", "persistentvolumes"), readVerbs...),
			rule(g(authnGroup), g("tokenreviews"), "create"),
			rule(g(authzGroup), g("subjectaccessreviews"), "create"),
			rule(g(storageGroup), g("csinodes", "csidrivers", "csistoragecapacities", "storageclasses"), readVerbs...),
			rule(g(legacyGroup), g("namespaces"), readVerbs...)),
		clusterRole("system:kube-controller-manager", nil,
			rule(g(legacyGroup, eventsGroup), g("events"), "create", "patch", "update"),
			rule(g(coordination), g("leases"), "create"),
			named(g(coordination), g("leases"), g("kube-controller-manager"), "get", "update"),
			rule(g(legacyGroup), g("secrets", "serviceaccounts"), "create"),
			rule(g(legacyGroup), g("secrets"), "delete"),
			rule(g(legacyGroup), g("configmaps", "namespaces", "secrets", "serviceaccounts"), "get"),
			rule(g(legacyGroup), g("secrets", "serviceaccounts"), "update"),
			rule(g(authnGroup), g("tokenreviews"), "create"),
			rule(g(authzGroup), g("subjectaccessreviews"), "create"),
			rule(g("*"), g("*"), "list", "watch"),
			rule(g(legacyGroup), g("serviceaccounts/token"), "create")),
		// What Headway's in-process controllers do beyond
		// system:kube-controller-manager (in Kubernetes each controller has
		// its own service account; here they share one client). The
		// garbage collector and the namespace controller may change and
		// delete anything, as theirs may; creating is limited to the kinds
		// the controllers make.
		clusterRole("system:headway:controller-manager", nil,
			rule(g("*"), g("*"), "get", "list", "watch", "patch", "update", "delete", "deletecollection"),
			rule(g(legacyGroup), g("pods", "pods/binding", "bindings", "pods/eviction", "endpoints", "persistentvolumes",
				"persistentvolumeclaims", "configmaps", "serviceaccounts", "events"), "create"),
			rule(g(appsGroup), g("replicasets", "controllerrevisions"), "create"),
			rule(g(batchGroup), g("jobs"), "create"),
			rule(g(discoveryGroup), g("endpointslices"), "create"),
			rule(g(eventsGroup), g("events"), "create"),
			rule(g(coordination), g("leases"), "create"),
			// The ClusterRole aggregation controller writes rules it does
			// not hold itself.
			rule(g("rbac.authorization.k8s.io"), g("clusterroles"), "escalate")),
		// The cluster DNS keeps kube-system/kube-dns (see the Role below).
	}
}

func binding(name, role string, subjects ...rbacv1.Subject) *rbacv1.ClusterRoleBinding {
	return &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{bootstrapLabel: "rbac-defaults"},
			Annotations: map[string]string{AutoUpdateAnnotation: "true"}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role},
		Subjects: subjects,
	}
}

func groupSubject(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: name}
}

func userSubject(name string) rbacv1.Subject {
	return rbacv1.Subject{Kind: rbacv1.UserKind, APIGroup: rbacv1.GroupName, Name: name}
}

// ClusterRoleBindings are the default cluster role bindings.
func ClusterRoleBindings() []*rbacv1.ClusterRoleBinding {
	return []*rbacv1.ClusterRoleBinding{
		binding("cluster-admin", "cluster-admin", groupSubject(user.SystemPrivilegedGroup)),
		binding("system:discovery", "system:discovery", groupSubject(user.AllAuthenticated)),
		binding("system:basic-user", "system:basic-user", groupSubject(user.AllAuthenticated)),
		binding("system:public-info-viewer", "system:public-info-viewer", groupSubject(user.AllAuthenticated), groupSubject(user.AllUnauthenticated)),
		binding("system:service-account-issuer-discovery", "system:service-account-issuer-discovery", groupSubject(serviceaccount.AllServiceAccountsGroup)),
		binding("system:monitoring", "system:monitoring", groupSubject(user.MonitoringGroup)),
		binding("system:node", "system:node", groupSubject(NodesGroup)),
		binding("system:node-proxier", "system:node-proxier", userSubject(ProxyUser)),
		binding("system:kube-dns", "system:kube-dns", rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Name: "kube-dns", Namespace: metav1.NamespaceSystem}),
		binding("system:headway:dns", "system:coredns", userSubject(DNSUser)),
		binding("system:kube-scheduler", "system:kube-scheduler", userSubject(SchedulerUser)),
		binding("system:kube-controller-manager", "system:kube-controller-manager", userSubject(ControllerManagerUser)),
		binding("system:headway:controller-manager", "system:headway:controller-manager", userSubject(ControllerManagerUser)),
	}
}

// Roles are the default namespaced roles: the cluster DNS may create and
// read the kube-system/kube-dns Service it keeps, nothing else there.
func Roles() []*rbacv1.Role {
	return []*rbacv1.Role{{
		ObjectMeta: metav1.ObjectMeta{Name: "system:headway:dns", Namespace: metav1.NamespaceSystem,
			Labels: map[string]string{bootstrapLabel: "rbac-defaults"}, Annotations: map[string]string{AutoUpdateAnnotation: "true"}},
		Rules: []rbacv1.PolicyRule{
			rule(g(legacyGroup), g("services"), "create"),
			named(g(legacyGroup), g("services"), g("kube-dns"), "get"),
		},
	}}
}

// RoleBindings bind Roles.
func RoleBindings() []*rbacv1.RoleBinding {
	return []*rbacv1.RoleBinding{{
		ObjectMeta: metav1.ObjectMeta{Name: "system:headway:dns", Namespace: metav1.NamespaceSystem,
			Labels: map[string]string{bootstrapLabel: "rbac-defaults"}, Annotations: map[string]string{AutoUpdateAnnotation: "true"}},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "Role", Name: "system:headway:dns"},
		Subjects: []rbacv1.Subject{userSubject(DNSUser)},
	}}
}
