package rbac

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"k8s.io/client-go/kubernetes"
	"k8s.io/component-helpers/auth/rbac/reconciliation"
)

// Reconcile makes the default roles and bindings exist, as kube-apiserver
// does at every start: missing ones are created, and existing ones get the
// rules, aggregation selectors and subjects they lack (extra ones are
// kept), unless annotated rbac.authorization.kubernetes.io/autoupdate:
// "false". client must be allowed to escalate (system:masters). The objects
// are independent of one another, so several are reconciled at once (each
// is a read and a write: one after another they are most of a server's
// start).
func Reconcile(ctx context.Context, client kubernetes.Interface, log *slog.Logger) error {
	rbac := client.RbacV1()
	var steps []func() error
	for _, r := range ClusterRoles() {
		steps = append(steps, func() error {
			res, err := (&reconciliation.ReconcileRoleOptions{
				Role: reconciliation.ClusterRoleRuleOwner{ClusterRole: r}, Confirm: true,
				Client: reconciliation.ClusterRoleModifier{Client: rbac.ClusterRoles()},
			}).Run()
			if err != nil {
				return fmt.Errorf("reconciling the clusterrole %s: %w", r.Name, err)
			}
			logResult(log, "clusterrole", r.Name, string(res.Operation), res.Protected)
			return nil
		})
	}
	for _, b := range ClusterRoleBindings() {
		steps = append(steps, func() error {
			res, err := (&reconciliation.ReconcileRoleBindingOptions{
				RoleBinding: reconciliation.ClusterRoleBindingAdapter{ClusterRoleBinding: b}, Confirm: true,
				Client: reconciliation.ClusterRoleBindingClientAdapter{Client: rbac.ClusterRoleBindings()},
			}).Run()
			if err != nil {
				return fmt.Errorf("reconciling the clusterrolebinding %s: %w", b.Name, err)
			}
			logResult(log, "clusterrolebinding", b.Name, string(res.Operation), res.Protected)
			return nil
		})
	}
	for _, r := range Roles() {
		steps = append(steps, func() error {
			res, err := (&reconciliation.ReconcileRoleOptions{
				Role: reconciliation.RoleRuleOwner{Role: r}, Confirm: true,
				Client: reconciliation.RoleModifier{Client: rbac, NamespaceClient: client.CoreV1().Namespaces()},
			}).Run()
			if err != nil {
				return fmt.Errorf("reconciling the role %s/%s: %w", r.Namespace, r.Name, err)
			}
			logResult(log, "role", r.Namespace+"/"+r.Name, string(res.Operation), res.Protected)
			return nil
		})
	}
	for _, b := range RoleBindings() {
		steps = append(steps, func() error {
			res, err := (&reconciliation.ReconcileRoleBindingOptions{
				RoleBinding: reconciliation.RoleBindingAdapter{RoleBinding: b}, Confirm: true,
				Client: reconciliation.RoleBindingClientAdapter{Client: rbac, NamespaceClient: client.CoreV1().Namespaces()},
			}).Run()
			if err != nil {
				return fmt.Errorf("reconciling the rolebinding %s/%s: %w", b.Namespace, b.Name, err)
			}
			logResult(log, "rolebinding", b.Namespace+"/"+b.Name, string(res.Operation), res.Protected)
			return nil
		})
	}
	return runAll(ctx, reconcileParallelism, steps)
}

// reconcileParallelism is how many default objects are reconciled at once.
const reconcileParallelism = 8

// runAll runs steps, n at a time, and returns the first failure in steps'
// order (nil if none failed); once one has failed or ctx has ended, the
// steps not started yet are skipped.
func runAll(ctx context.Context, n int, steps []func() error) error {
	errs := make([]error, len(steps))
	sem := make(chan struct{}, n)
	var failed atomic.Bool
	var wg sync.WaitGroup
	for i, step := range steps {
		sem <- struct{}{}
		if failed.Load() {
			break
		}
		if err := ctx.Err(); err != nil {
			errs[i] = err
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if errs[i] = step(); errs[i] != nil {
				failed.Store(true)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
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
