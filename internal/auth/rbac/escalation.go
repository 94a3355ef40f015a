package rbac

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/component-helpers/auth/rbac/validation"
)

// Escalation prevention, as kube-apiserver's RBAC storage does it: a user
// may write a Role or ClusterRole only with rules it holds itself (or with
// the escalate verb on it), and a binding only to a role whose rules it
// holds (or with the bind verb on that role). system:masters passes.

// fullAuthority is what setting an aggregationRule needs: it can gather
// anything.
var fullAuthority = []rbacv1.PolicyRule{
	{Verbs: []string{"*"}, APIGroups: []string{"*"}, Resources: []string{"*"}},
	{Verbs: []string{"*"}, NonResourceURLs: []string{"*"}},
}

func forbidden(resource, name string, err error) error {
	return apierrors.NewForbidden(rbacv1.Resource(resource), name, err)
}

// privileged reports whether the user may escalate anything (system:masters).
func privileged(u user.Info) bool {
	return slices.Contains(u.GetGroups(), user.SystemPrivilegedGroup)
}

// AdmitRole guards writes of Roles (old is nil on create).
func (a *Authorizer) AdmitRole(ctx context.Context, obj, old runtime.Object) error {
	role := obj.(*rbacv1.Role)
	return a.admitRole(ctx, "roles", role.Namespace, role.Name, obj, old, func(u user.Info) error {
		return a.confirmNoEscalation(u, "roles", role.Namespace, role.Name, role.Rules)
	})
}

// AdmitClusterRole guards writes of ClusterRoles. Setting or keeping an
// aggregationRule needs every right ("*" on "*.*").
func (a *Authorizer) AdmitClusterRole(ctx context.Context, obj, old runtime.Object) error {
	role := obj.(*rbacv1.ClusterRole)
	return a.admitRole(ctx, "clusterroles", "", role.Name, obj, old, func(u user.Info) error {
		if err := a.confirmNoEscalation(u, "clusterroles", "", role.Name, role.Rules); err != nil {
			return err
		}
		oldRole, _ := old.(*rbacv1.ClusterRole)
		if hasAggregationRule(role) || hasAggregationRule(oldRole) {
			if err := a.covered(u, "", fullAuthority); err != nil {
				return forbidden("clusterroles", role.Name, errors.New("must have cluster-admin privileges to use the aggregationRule"))
			}
		}
		return nil
	})
}

func hasAggregationRule(r *rbacv1.ClusterRole) bool {
	return r != nil && r.AggregationRule != nil && len(r.AggregationRule.ClusterRoleSelectors) > 0
}

func (a *Authorizer) admitRole(ctx context.Context, resource, namespace, name string, obj, old runtime.Object, check func(user.Info) error) error {
	u, ok := request.UserFrom(ctx)
	if !ok || privileged(u) {
		return nil
	}
	if old != nil && onlyGCFieldsChanged(obj, old) {
		return nil
	}
	// The escalate verb on the role lets a user write any rules into it
	// (the name is the URL's: none on create).
	attrs := authorizer.AttributesRecord{User: u, Verb: "escalate", APIGroup: rbacv1.GroupName, APIVersion: "*",
		Resource: resource, Namespace: namespace, ResourceRequest: true}
	if old != nil {
		attrs.Name = name
	}
	if d, _, _ := a.Authorize(ctx, attrs); d == authorizer.DecisionAllow {
		return nil
	}
	return check(u)
}

// AdmitRoleBinding guards writes of RoleBindings.
func (a *Authorizer) AdmitRoleBinding(ctx context.Context, obj, old runtime.Object) error {
	b := obj.(*rbacv1.RoleBinding)
	return a.admitBinding(ctx, "rolebindings", b.Namespace, b.Name, b.RoleRef, obj, old)
}

// AdmitClusterRoleBinding guards writes of ClusterRoleBindings.
func (a *Authorizer) AdmitClusterRoleBinding(ctx context.Context, obj, old runtime.Object) error {
	b := obj.(*rbacv1.ClusterRoleBinding)
	return a.admitBinding(ctx, "clusterrolebindings", "", b.Name, b.RoleRef, obj, old)
}

func (a *Authorizer) admitBinding(ctx context.Context, resource, namespace, name string, ref rbacv1.RoleRef, obj, old runtime.Object) error {
	u, ok := request.UserFrom(ctx)
	if !ok || privileged(u) {
		return nil
	}
	if old != nil && onlyGCFieldsChanged(obj, old) {
		return nil
	}
	// The bind verb on the referenced role, checked in the binding's
	// namespace, lets a user bind it whatever it holds.
	attrs := authorizer.AttributesRecord{User: u, Verb: "bind", APIGroup: ref.APIGroup, Name: ref.Name,
		Namespace: namespace, ResourceRequest: true}
	switch ref.Kind {
	case "ClusterRole":
		attrs.Resource = "clusterroles"
	case "Role":
		attrs.Resource = "roles"
	}
	if attrs.Resource != "" {
		if d, _, _ := a.Authorize(ctx, attrs); d == authorizer.DecisionAllow {
			return nil
		}
	}
	rules, err := a.RoleRefRules(ref, namespace)
	if err != nil {
		// kube-apiserver answers with the resolution error itself (404
		// for a role that does not exist).
		return err
	}
	return a.confirmNoEscalation(u, resource, namespace, name, rules)
}

// confirmNoEscalation answers 403 with kube-apiserver's message unless the
// user's rules in namespace cover rules.
func (a *Authorizer) confirmNoEscalation(u user.Info, resource, namespace, name string, rules []rbacv1.PolicyRule) error {
	if err := a.covered(u, namespace, rules); err != nil {
		return forbidden(resource, name, err)
	}
	return nil
}

func (a *Authorizer) covered(u user.Info, namespace string, rules []rbacv1.PolicyRule) error {
	owner, resolveErr := a.Rules(u, namespace)
	ok, missing := validation.Covers(owner, rules)
	if ok {
		return nil
	}
	seen := map[string]bool{}
	var descs []string
	for _, r := range compactRules(missing) {
		if d := compactString(r); !seen[d] {
			seen[d] = true
			descs = append(descs, d)
		}
	}
	sort.Strings(descs)
	msg := fmt.Sprintf("user %q (groups=%q) is attempting to grant RBAC permissions not currently held:\n%s",
		u.GetName(), u.GetGroups(), strings.Join(descs, "\n"))
	if resolveErr != nil {
		msg += fmt.Sprintf("; resolution errors: %v", []error{resolveErr})
	}
	return errors.New(msg)
}

// onlyGCFieldsChanged reports whether an update changes nothing but owner
// references, finalizers and managed fields: what the garbage collector
// needs to remove an object, which needs no rights over its rules.
func onlyGCFieldsChanged(obj, old runtime.Object) bool {
	c := obj.DeepCopyObject()
	cm, err1 := meta.Accessor(c)
	om, err2 := meta.Accessor(old)
	if err1 != nil || err2 != nil {
		return false
	}
	cm.SetOwnerReferences(om.GetOwnerReferences())
	cm.SetFinalizers(om.GetFinalizers())
	cm.SetManagedFields(om.GetManagedFields())
	cm.SetResourceVersion(om.GetResourceVersion())
	c.GetObjectKind().SetGroupVersionKind(old.GetObjectKind().GroupVersionKind())
	return equality.Semantic.DeepEqual(c, old)
}
