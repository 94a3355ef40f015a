package rbac

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/util/retry"
	"k8s.io/component-helpers/auth/rbac/reconciliation"
)

// Reconcile makes the default roles and bindings exist, as kube-apiserver
// does at every start: missing ones are created, and existing ones get the
// rules, aggregation selectors and subjects they lack (extra ones are
// kept), unless annotated rbac.authorization.kubernetes.io/autoupdate:
// "false". client must be allowed to escalate (system:masters).
//
// Each kind is listed once first, and an object's first read comes from
// that list: on a server restarted with its data, where every object is
// there and up to date, the reconcile is four lists and no write (it was a
// read per object, most of a restart). The objects are independent of one
// another, so several are reconciled at once. An update that conflicts
// (the listed copy was stale: another server changed it) is reconciled
// again from a fresh read.
func Reconcile(ctx context.Context, client kubernetes.Interface, log *slog.Logger) error {
	rbac := client.RbacV1()
	listed := listDefaults(ctx, client)
	var steps []func() error
	for _, r := range ClusterRoles() {
		steps = append(steps, func() error {
			res, err := onConflictAgain((&reconciliation.ReconcileRoleOptions{
				Role: reconciliation.ClusterRoleRuleOwner{ClusterRole: r}, Confirm: true,
				Client: firstReadRoles{reconciliation.ClusterRoleModifier{Client: rbac.ClusterRoles()}, listed.clusterRoles},
			}).Run)
			if err != nil {
				return fmt.Errorf("reconciling the clusterrole %s: %w", r.Name, err)
			}
			logResult(log, "clusterrole", r.Name, string(res.Operation), res.Protected)
			return nil
		})
	}
	for _, b := range ClusterRoleBindings() {
		steps = append(steps, func() error {
			res, err := onConflictAgain((&reconciliation.ReconcileRoleBindingOptions{
				RoleBinding: reconciliation.ClusterRoleBindingAdapter{ClusterRoleBinding: b}, Confirm: true,
				Client: firstReadBindings{reconciliation.ClusterRoleBindingClientAdapter{Client: rbac.ClusterRoleBindings()}, listed.clusterRoleBindings},
			}).Run)
			if err != nil {
				return fmt.Errorf("reconciling the clusterrolebinding %s: %w", b.Name, err)
			}
			logResult(log, "clusterrolebinding", b.Name, string(res.Operation), res.Protected)
			return nil
		})
	}
	for _, r := range Roles() {
		steps = append(steps, func() error {
			res, err := onConflictAgain((&reconciliation.ReconcileRoleOptions{
				Role: reconciliation.RoleRuleOwner{Role: r}, Confirm: true,
				Client: firstReadRoles{reconciliation.RoleModifier{Client: rbac, NamespaceClient: client.CoreV1().Namespaces()}, listed.roles},
			}).Run)
			if err != nil {
				return fmt.Errorf("reconciling the role %s/%s: %w", r.Namespace, r.Name, err)
			}
			logResult(log, "role", r.Namespace+"/"+r.Name, string(res.Operation), res.Protected)
			return nil
		})
	}
	for _, b := range RoleBindings() {
		steps = append(steps, func() error {
			res, err := onConflictAgain((&reconciliation.ReconcileRoleBindingOptions{
				RoleBinding: reconciliation.RoleBindingAdapter{RoleBinding: b}, Confirm: true,
				Client: firstReadBindings{reconciliation.RoleBindingClientAdapter{Client: rbac, NamespaceClient: client.CoreV1().Namespaces()}, listed.roleBindings},
			}).Run)
			if err != nil {
				return fmt.Errorf("reconciling the rolebinding %s/%s: %w", b.Namespace, b.Name, err)
			}
			logResult(log, "rolebinding", b.Namespace+"/"+b.Name, string(res.Operation), res.Protected)
			return nil
		})
	}
	return runAll(ctx, reconcileParallelism, steps)
}

// onConflictAgain runs run again while it fails with a conflict (as
// client-go's retry.RetryOnConflict, with its default back-off).
func onConflictAgain[R any](run func() (R, error)) (res R, err error) {
	err = retry.RetryOnConflict(retry.DefaultRetry, func() error {
		res, err = run()
		return err
	})
	return res, err
}

// defaultsListed holds, per kind, the objects listed before a reconcile.
type defaultsListed struct {
	clusterRoles, roles               *firstRead[reconciliation.RuleOwner]
	clusterRoleBindings, roleBindings *firstRead[reconciliation.RoleBinding]
}

// listDefaults lists the four kinds at once. A kind whose list fails is
// read object by object, as without the lists.
func listDefaults(ctx context.Context, client kubernetes.Interface) defaultsListed {
	rbac := client.RbacV1()
	l := defaultsListed{
		clusterRoles:        &firstRead[reconciliation.RuleOwner]{resource: rbacv1.Resource("clusterroles")},
		roles:               &firstRead[reconciliation.RuleOwner]{resource: rbacv1.Resource("roles")},
		clusterRoleBindings: &firstRead[reconciliation.RoleBinding]{resource: rbacv1.Resource("clusterrolebindings")},
		roleBindings:        &firstRead[reconciliation.RoleBinding]{resource: rbacv1.Resource("rolebindings")},
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		if list, err := rbac.ClusterRoles().List(ctx, metav1.ListOptions{}); err == nil {
			fill(l.clusterRoles, list.Items, func(r *rbacv1.ClusterRole) reconciliation.RuleOwner {
				return reconciliation.ClusterRoleRuleOwner{ClusterRole: r}
			})
		}
	})
	wg.Go(func() {
		if list, err := rbac.Roles(metav1.NamespaceAll).List(ctx, metav1.ListOptions{}); err == nil {
			fill(l.roles, list.Items, func(r *rbacv1.Role) reconciliation.RuleOwner {
				return reconciliation.RoleRuleOwner{Role: r}
			})
		}
	})
	wg.Go(func() {
		if list, err := rbac.ClusterRoleBindings().List(ctx, metav1.ListOptions{}); err == nil {
			fill(l.clusterRoleBindings, list.Items, func(b *rbacv1.ClusterRoleBinding) reconciliation.RoleBinding {
				return reconciliation.ClusterRoleBindingAdapter{ClusterRoleBinding: b}
			})
		}
	})
	wg.Go(func() {
		if list, err := rbac.RoleBindings(metav1.NamespaceAll).List(ctx, metav1.ListOptions{}); err == nil {
			fill(l.roleBindings, list.Items, func(b *rbacv1.RoleBinding) reconciliation.RoleBinding {
				return reconciliation.RoleBindingAdapter{RoleBinding: b}
			})
		}
	})
	wg.Wait()
	return l
}

// firstRead answers the first read of each object from a list: the
// object, or NotFound when the list did not have it. Later reads of the
// same object (a reconcile run again after a conflict) go to the server.
type firstRead[T any] struct {
	resource schema.GroupResource
	mu       sync.Mutex
	objs     map[string]T    // by namespace/name; nil: not listed
	read     map[string]bool // the names answered already
}

// fill makes f answer from items, as wrap makes them the reconciler's.
func fill[O any, P interface {
	*O
	metav1.Object
}, T any](f *firstRead[T], items []O, wrap func(P) T) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.objs = make(map[string]T, len(items))
	f.read = make(map[string]bool, len(items))
	for i := range items {
		o := P(&items[i])
		f.objs[o.GetNamespace()+"/"+o.GetName()] = wrap(o)
	}
}

// take is the listed answer for namespace/name, or served false when the
// read must go to the server.
func (f *firstRead[T]) take(namespace, name string) (obj T, served bool, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := namespace + "/" + name
	if f.objs == nil || f.read[k] {
		return obj, false, nil
	}
	f.read[k] = true
	obj, ok := f.objs[k]
	if !ok {
		return obj, true, apierrors.NewNotFound(f.resource, name)
	}
	return obj, true, nil
}

type firstReadRoles struct {
	reconciliation.RuleOwnerModifier
	first *firstRead[reconciliation.RuleOwner]
}

func (m firstReadRoles) Get(namespace, name string) (reconciliation.RuleOwner, error) {
	if obj, ok, err := m.first.take(namespace, name); ok {
		return obj, err
	}
	return m.RuleOwnerModifier.Get(namespace, name)
}

type firstReadBindings struct {
	reconciliation.RoleBindingModifier
	first *firstRead[reconciliation.RoleBinding]
}

func (m firstReadBindings) Get(namespace, name string) (reconciliation.RoleBinding, error) {
	if obj, ok, err := m.first.take(namespace, name); ok {
		return obj, err
	}
	return m.RoleBindingModifier.Get(namespace, name)
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
