package app

import (
	"context"
	"encoding/json"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/kubernetes"

	"github.com/headway/headway/internal/apiserver"
	"github.com/headway/headway/internal/controller/rootcacert"
	sacontroller "github.com/headway/headway/internal/controller/serviceaccount"
	"github.com/headway/headway/internal/pki"
	"github.com/headway/headway/internal/registry/builtin"
	"github.com/headway/headway/internal/registry/serviceaccount"
	"github.com/headway/headway/internal/satoken"
)

// identity is the service-account side of the API: the token issuer, the
// authenticator of its tokens, TokenRequest and TokenReview, the pods'
// service-account admission and the issuer's OIDC discovery. Objects are
// read straight from the API server's store (srv, set once it is built).
type identity struct {
	issuer    *satoken.Issuer
	audiences []string
	srv       *apiserver.Server
}

func newIdentity(cfg Config, bundle *pki.Bundle) (*identity, error) {
	iss, err := satoken.NewIssuer(satoken.IssuerFor(cfg.ClusterDomain), bundle.ServiceAccountKey)
	if err != nil {
		return nil, fmt.Errorf("the service-account token issuer: %w", err)
	}
	return &identity{issuer: iss, audiences: []string{iss.Issuer()}}, nil
}

var (
	serviceAccountsGVR = corev1.SchemeGroupVersion.WithResource("serviceaccounts")
	podsGVR            = corev1.SchemeGroupVersion.WithResource("pods")
	secretsGVR         = corev1.SchemeGroupVersion.WithResource("secrets")
	nodesGVR           = corev1.SchemeGroupVersion.WithResource("nodes")
)

func getAs[T any](ctx context.Context, srv *apiserver.Server, gvr schema.GroupVersionResource, ns, name string) (T, error) {
	var zero T
	obj, err := srv.Get(ctx, gvr, ns, name)
	if err != nil {
		return zero, err
	}
	t, ok := obj.(T)
	if !ok {
		return zero, fmt.Errorf("%s %s/%s is a %T", gvr.Resource, ns, name, obj)
	}
	return t, nil
}

// ServiceAccount, Pod and Secret are satoken.Lookup.
func (id *identity) ServiceAccount(ctx context.Context, ns, name string) (*corev1.ServiceAccount, error) {
	return getAs[*corev1.ServiceAccount](ctx, id.srv, serviceAccountsGVR, ns, name)
}

func (id *identity) Pod(ctx context.Context, ns, name string) (*corev1.Pod, error) {
	return getAs[*corev1.Pod](ctx, id.srv, podsGVR, ns, name)
}

func (id *identity) Secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	return getAs[*corev1.Secret](ctx, id.srv, secretsGVR, ns, name)
}

func (id *identity) node(ctx context.Context, name string) (*corev1.Node, error) {
	return getAs[*corev1.Node](ctx, id.srv, nodesGVR, "", name)
}

// options are the identity parts of the resource table. Pods are admitted
// (their account must exist) only where the controller that makes each
// namespace's default account runs.
func (id *identity) options(admitPods bool) builtin.Options {
	o := builtin.Options{
		Tokens: &serviceaccount.Tokens{Issuer: id.issuer, Audiences: id.audiences, Pod: id.Pod, Secret: id.Secret, Node: id.node},
		TokenReview: func(ctx context.Context, review *authenticationv1.TokenReview) error {
			return id.srv.ReviewToken(ctx, review)
		},
	}
	if admitPods {
		o.ServiceAccounts = id.ServiceAccount
	}
	return o
}

// authenticator authenticates service-account tokens.
func (id *identity) authenticator() *satoken.Authenticator {
	return satoken.NewAuthenticator(id.issuer, id.audiences, id)
}

// oidc is the issuer's discovery: the key set is published under the
// issuer's own URL, which resolves from pods.
func (id *identity) oidc() (*apiserver.OIDCDiscovery, error) {
	conf, err := json.Marshal(id.issuer.OpenIDConfiguration(id.issuer.Issuer() + apiserver.JWKSPath))
	if err != nil {
		return nil, err
	}
	keys, err := json.Marshal(id.issuer.JWKS())
	if err != nil {
		return nil, err
	}
	return &apiserver.OIDCDiscovery{Configuration: conf, KeySet: keys}, nil
}

// bootstrapIdentity makes the default ServiceAccount and the
// kube-root-ca.crt ConfigMap of the built-in namespaces, as the
// serviceaccount and rootcacert controllers keep them.
func bootstrapIdentity(ctx context.Context, client kubernetes.Interface, caPEM []byte) error {
	opts := metav1.CreateOptions{FieldManager: "headway"}
	var steps []func() error
	for _, ns := range []string{metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic, corev1.NamespaceNodeLease} {
		steps = append(steps, func() error {
			sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: sacontroller.DefaultName}}
			if _, err := client.CoreV1().ServiceAccounts(ns).Create(ctx, sa, opts); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
			return nil
		}, func() error {
			if _, err := client.CoreV1().ConfigMaps(ns).Create(ctx, rootcacert.Want(ns, caPEM), opts); err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
			return nil
		})
	}
	return utilerrors.AggregateGoroutines(steps...)
}
