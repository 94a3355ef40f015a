package serviceaccount

import (
	"context"
	"fmt"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/satoken"
)

// Token lifetimes of a TokenRequest, as kube-apiserver bounds them.
const (
	// DefaultExpirationSeconds is a request's lifetime when it names none.
	DefaultExpirationSeconds = 3600
	// MinExpirationSeconds is the shortest lifetime one may ask for.
	MinExpirationSeconds = 600
	// MaxExpirationSeconds is the longest (2^32 seconds).
	MaxExpirationSeconds = 1 << 32
)

var tokenRequestKind = schema.GroupKind{Group: authenticationv1.GroupName, Kind: "TokenRequest"}

// Tokens serves the token subresource: it issues bound tokens for
// ServiceAccounts.
type Tokens struct {
	Issuer *satoken.Issuer
	// Audiences are the API's: those of a request that names none.
	Audiences []string
	// Pod, Secret and Node read the objects a token may be bound to (a
	// NotFound API error when missing). Node may be nil.
	Pod    func(ctx context.Context, ns, name string) (*corev1.Pod, error)
	Secret func(ctx context.Context, ns, name string) (*corev1.Secret, error)
	Node   func(ctx context.Context, name string) (*corev1.Node, error)
	// Now is the clock (tests); time.Now when nil.
	Now func() time.Time
}

// ResourceWithTokens is Resource with the token subresource served by t.
func ResourceWithTokens(t *Tokens) *registry.Resource {
	r := Resource()
	if t != nil {
		r.Token = t.Request
	}
	return r
}

// Request answers a TokenRequest for the ServiceAccount obj, as
// kube-apiserver does: defaults (the API's audiences, 3600 seconds), the
// lifetime at least 10 minutes, a pod or secret binding checked (it must
// exist, run as this account, and have the UID given).
func (t *Tokens) Request(ctx context.Context, obj runtime.Object, req *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error) {
	sa := obj.(*corev1.ServiceAccount)
	var errs field.ErrorList
	if req.Name != "" && req.Name != sa.Name {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "name"), req.Name, "must match the service account name if specified"))
	}
	if req.Namespace != "" && req.Namespace != sa.Namespace {
		errs = append(errs, field.Invalid(field.NewPath("metadata", "namespace"), req.Namespace, "must match the service account namespace if specified"))
	}
	out := req.DeepCopy()
	out.Name, out.Namespace = sa.Name, sa.Namespace
	if out.Spec.ExpirationSeconds == nil {
		v := int64(DefaultExpirationSeconds)
		out.Spec.ExpirationSeconds = &v
	}
	if len(out.Spec.Audiences) == 0 {
		out.Spec.Audiences = append([]string(nil), t.Audiences...)
	}
	exp := *out.Spec.ExpirationSeconds
	expPath := field.NewPath("spec", "expirationSeconds")
	switch {
	case exp < MinExpirationSeconds:
		errs = append(errs, field.Invalid(expPath, exp, "may not specify a duration less than 10 minutes"))
	case exp > MaxExpirationSeconds:
		errs = append(errs, field.Invalid(expPath, exp, "may not specify a duration larger than 2^32 seconds"))
	}
	if len(errs) > 0 {
		return nil, apierrors.NewInvalid(tokenRequestKind, "", errs)
	}
	issue := satoken.Request{
		Namespace:      sa.Namespace,
		ServiceAccount: satoken.Ref{Name: sa.Name, UID: string(sa.UID)},
		Audiences:      out.Spec.Audiences,
		Expiration:     time.Duration(exp) * time.Second,
	}
	if ref := out.Spec.BoundObjectRef; ref != nil {
		gv, err := schema.ParseGroupVersion(ref.APIVersion)
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("boundObjectRef.apiVersion %q: %v", ref.APIVersion, err))
		}
		var uid string
		switch {
		case gv.Group == "" && ref.Kind == "Pod":
			pod, err := t.Pod(ctx, sa.Namespace, ref.Name)
			if err != nil {
				return nil, err
			}
			if pod.Spec.ServiceAccountName != sa.Name {
				return nil, apierrors.NewBadRequest(fmt.Sprintf("cannot bind token for serviceaccount %q to pod running with different serviceaccount name.", sa.Name))
			}
			uid = string(pod.UID)
			issue.Pod = &satoken.Ref{Name: pod.Name, UID: uid}
			if node := pod.Spec.NodeName; node != "" {
				issue.Node = &satoken.Ref{Name: node}
				if t.Node != nil {
					if n, err := t.Node(ctx, node); err == nil {
						issue.Node.UID = string(n.UID)
					}
				}
			}
		case gv.Group == "" && ref.Kind == "Secret":
			sec, err := t.Secret(ctx, sa.Namespace, ref.Name)
			if err != nil {
				return nil, err
			}
			uid = string(sec.UID)
			issue.Secret = &satoken.Ref{Name: sec.Name, UID: uid}
		default:
			return nil, apierrors.NewBadRequest(fmt.Sprintf("cannot bind token to object of type %s", gv.WithKind(ref.Kind)))
		}
		if ref.UID != "" && string(ref.UID) != uid {
			return nil, apierrors.NewConflict(schema.GroupResource{Group: gv.Group, Resource: ref.Kind}, ref.Name,
				fmt.Errorf("the UID in the bound object reference (%s) does not match the UID in record. The object might have been deleted and then recreated", ref.UID))
		}
	}
	now := time.Now
	if t.Now != nil {
		now = t.Now
	}
	out.CreationTimestamp = metav1.NewTime(now())
	token, expiry, err := t.Issuer.Issue(issue)
	if err != nil {
		return nil, err
	}
	out.Status = authenticationv1.TokenRequestStatus{Token: token, ExpirationTimestamp: metav1.NewTime(expiry)}
	out.SetGroupVersionKind(authenticationv1.SchemeGroupVersion.WithKind("TokenRequest"))
	return out, nil
}
