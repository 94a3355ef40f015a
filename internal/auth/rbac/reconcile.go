package rbac

import (
	"context"
	"fmt"
	"log/slog"

	"k8s.io/client-go/kubernetes"
	"k8s.io/component-helpers/auth/rbac/reconciliation"
)

// Reconcile makes the default roles and bindings exist, as kube-apiserver
// does at every start: missing ones are created, and existing ones get the
// rules, aggregation selectors and subjects they lack (extra ones are
// kept), unless annotated rbac.authorization.kubernetes.io/autoupdate:
// "false". client must be allowed to escalate (system:masters).
func Reconcile(ctx context.Context, client kubernetes.Interface, log *slog.Logger) error {
	rbac := client.RbacV1()
	for _, r := range ClusterRoles() {
		res, err := (&reconciliation.ReconcileRoleOptions{
			Role: reconciliation.ClusterRoleRuleOwner{ClusterRole: r}, Confirm: true,
			Client: reconciliation.ClusterRoleModifier{Client: rbac.ClusterRoles()},
		}).Run()
		if err != nil {
			return fmt.Errorf("reconciling the clusterrole %s: %w", r.Name, err)
		}
		logResult(log, "clusterrole", r.Name, string(res.Operation), res.Protected)
	}
	for _, b := range ClusterRoleBindings() {
		res, err := (&reconciliation.ReconcileRoleBindingOptions{
			RoleBinding: reconciliation.ClusterRoleBindingAdapter{ClusterRoleBinding: b}, Confirm: true,
			Client: reconciliation.ClusterRoleBindingClientAdapter{Client: rbac.ClusterRoleBindings()},
		}).Run()
		if err != nil {
			return fmt.Errorf("reconciling the clusterrolebinding %s: %w", b.Name, err)
		}
		logResult(log, "clusterrolebinding", b.Name, string(res.Operation), res.Protected)
	}
	for _, r := range Roles() {
		res, err := (&reconciliation.ReconcileRoleOptions{
			Role: reconciliation.RoleRuleOwner{Role: r}, Confirm: true,
			Client: reconciliation.RoleModifier{Client: rbac, NamespaceClient: client.CoreV1().Namespaces()},
		}).Run()
		if err != nil {
			return fmt.Errorf("reconciling the role %s/%s: %w", r.Namespace, r.Name, err)
		}
		logResult(log, "role", r.Namespace+"/"+r.Name, string(res.Operation), res.Protected)
	}
	for _, b := range RoleBindings() {
		res, err := (&reconciliation.ReconcileRoleBindingOptions{
			RoleBinding: reconciliation.RoleBindingAdapter{RoleBinding: b}, Confirm: true,
			Client: reconciliation.RoleBindingClientAdapter{Client: rbac, NamespaceClient: client.CoreV1().Namespaces()},
		}).Run()
		if err != nil {
			return fmt.Errorf("reconciling the rolebinding %s/%s: %w", b.Namespace, b.Name, err)
		}
		logResult(log, "rolebinding", b.Namespace+"/"+b.Name, string(res.Operation), res.Protected)
	}
	return nil
}

func logResult(log *slog.Logger, kind, name, op string, protected bool) {
	switch {
	case protected && op != string(reconciliation.ReconcileNone):
		log.Info("default RBAC object left as it is (autoupdate is false)", "kind", kind, "name", name, "would", op)
	case op != string(reconciliation.ReconcileNone):
		log.Debug("default RBAC object reconciled", "kind", kind, "name", name, "op", op)
	}
}
