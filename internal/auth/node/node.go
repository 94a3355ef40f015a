// Package node is the Node authorizer: a node agent (user
// system:node:<name> in group system:nodes) may read a Secret, ConfigMap,
// PersistentVolumeClaim, PersistentVolume or ServiceAccount, and request a
// ServiceAccount's token, only when a pod bound to that node uses it, as
// kube-apiserver's Node authorization mode allows. A node's other requests
// are left to RBAC (the system:node ClusterRole).
package node

import (
	"context"
	"fmt"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
)

// UserPrefix is the user name of a node's agent, before the node's name.
const UserPrefix = "system:node:"

// Pods finds the pods bound to a node.
type Pods interface {
	// OnNode returns the pods of namespace bound to node.
	OnNode(ctx context.Context, node, namespace string) ([]*corev1.Pod, error)
}

// Claims reads PersistentVolumeClaims.
type Claims interface {
	Claim(ctx context.Context, namespace, name string) (*corev1.PersistentVolumeClaim, error)
}

// Authorizer decides the requests of node agents for the objects pods use.
type Authorizer struct {
	pods, fresh Pods
	claims      Claims
}

// New returns the authorizer over pods (a cache) and claims. fresh, when
// not nil, is asked when the cache finds no relationship: a pod bound a
// moment ago may not be in the cache yet when its node reads its secrets.
func New(pods, fresh Pods, claims Claims) *Authorizer {
	return &Authorizer{pods: pods, fresh: fresh, claims: claims}
}

// NodeName is the node a user is the agent of, when it is one.
func NodeName(u user.Info) (string, bool) {
	if u == nil || !slices.Contains(u.GetGroups(), user.NodesGroup) {
		return "", false
	}
	name, ok := strings.CutPrefix(u.GetName(), UserPrefix)
	return name, ok && name != ""
}

// Authorize allows a node to get a Secret, ConfigMap, PVC, PV or
// ServiceAccount, or create a token of a ServiceAccount, when a pod bound
// to it uses the object; it denies the node any other access to those
// kinds (list and watch included: a node reads them one by one). It has no
// opinion on anything else, nor on other users.
func (a *Authorizer) Authorize(ctx context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	node, ok := NodeName(attrs.GetUser())
	if !ok || !attrs.IsResourceRequest() || attrs.GetAPIGroup() != corev1.GroupName {
		return authorizer.DecisionNoOpinion, "", nil
	}
	kind, sub, verb := attrs.GetResource(), attrs.GetSubresource(), attrs.GetVerb()
	var uses func(*corev1.Pod, string) bool
	switch {
	case kind == "secrets" && sub == "":
		uses = usesSecret
	case kind == "configmaps" && sub == "":
		uses = usesConfigMap
	case kind == "persistentvolumeclaims" && sub == "":
		uses = usesClaim
	case kind == "persistentvolumes" && sub == "":
		// Reached through a claim; handled below.
	case kind == "serviceaccounts" && sub == "":
		uses = usesServiceAccount
	case kind == "serviceaccounts" && sub == "token":
		if verb != "create" {
			return authorizer.DecisionDeny, fmt.Sprintf("node %q can only create tokens of service accounts", node), nil
		}
		uses = usesServiceAccount
	default:
		return authorizer.DecisionNoOpinion, "", nil
	}
	if sub == "" && verb != "get" {
		return authorizer.DecisionDeny, fmt.Sprintf("node %q can only get individual %s (of pods bound to it)", node, kind), nil
	}
	name, ns := attrs.GetName(), attrs.GetNamespace()
	if name == "" {
		return authorizer.DecisionDeny, fmt.Sprintf("node %q can only get individual %s", node, kind), nil
	}
	if kind == "persistentvolumes" {
		// The pods name claims; the claim names its volume.
		ns, uses = "", func(p *corev1.Pod, pv string) bool {
			for _, claim := range claimNames(p) {
				pvc, err := a.claims.Claim(ctx, p.Namespace, claim)
				if err == nil && pvc.Spec.VolumeName == pv {
					return true
				}
			}
			return false
		}
	}
	for _, src := range []Pods{a.pods, a.fresh} {
		if src == nil {
			continue
		}
		pods, err := src.OnNode(ctx, node, ns)
		if err != nil {
			return authorizer.DecisionNoOpinion, "", fmt.Errorf("finding the pods of node %s: %w", node, err)
		}
		for _, p := range pods {
			if uses(p, name) {
				return authorizer.DecisionAllow, "", nil
			}
		}
	}
	return authorizer.DecisionDeny, fmt.Sprintf("no relationship found between node '%s' and this object", node), nil
}

// containers are every container of the pod, init and ephemeral ones too.
func containers(p *corev1.Pod) []corev1.Container {
	all := slices.Concat(p.Spec.InitContainers, p.Spec.Containers)
	for _, e := range p.Spec.EphemeralContainers {
		all = append(all, corev1.Container(e.EphemeralContainerCommon))
	}
	return all
}

func usesSecret(p *corev1.Pod, name string) bool {
	for _, s := range p.Spec.ImagePullSecrets {
		if s.Name == name {
			return true
		}
	}
	for _, v := range p.Spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == name {
			return true
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.Secret != nil && s.Secret.Name == name {
					return true
				}
			}
		}
	}
	for _, c := range containers(p) {
		for _, e := range c.EnvFrom {
			if e.SecretRef != nil && e.SecretRef.Name == name {
				return true
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == name {
				return true
			}
		}
	}
	return false
}

func usesConfigMap(p *corev1.Pod, name string) bool {
	for _, v := range p.Spec.Volumes {
		if v.ConfigMap != nil && v.ConfigMap.Name == name {
			return true
		}
		if v.Projected != nil {
			for _, s := range v.Projected.Sources {
				if s.ConfigMap != nil && s.ConfigMap.Name == name {
					return true
				}
			}
		}
	}
	for _, c := range containers(p) {
		for _, e := range c.EnvFrom {
			if e.ConfigMapRef != nil && e.ConfigMapRef.Name == name {
				return true
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom != nil && e.ValueFrom.ConfigMapKeyRef != nil && e.ValueFrom.ConfigMapKeyRef.Name == name {
				return true
			}
		}
	}
	return false
}

// claimNames are the PVCs the pod uses: named ones and those of its
// generic ephemeral volumes (<pod>-<volume>).
func claimNames(p *corev1.Pod) []string {
	var names []string
	for _, v := range p.Spec.Volumes {
		switch {
		case v.PersistentVolumeClaim != nil:
			names = append(names, v.PersistentVolumeClaim.ClaimName)
		case v.Ephemeral != nil:
			names = append(names, p.Name+"-"+v.Name)
		}
	}
	return names
}

func usesClaim(p *corev1.Pod, name string) bool { return slices.Contains(claimNames(p), name) }

func usesServiceAccount(p *corev1.Pod, name string) bool {
	sa := p.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	return sa == name
}
