// Package tokenreview is the registry entry of authentication.k8s.io/v1
// TokenReviews: a create-only review that says whom a bearer token
// authenticates as (for webhooks and proxies that check tokens of pods).
package tokenreview

import (
	"context"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/headway/headway/internal/registry"
)

// Reviewer fills a review's status: authenticated, the user, the
// audiences both the token and the review accept, or the error.
type Reviewer func(ctx context.Context, review *authenticationv1.TokenReview) error

// Resource returns the tokenreviews registry entry; review answers them.
func Resource(review Reviewer) *registry.Resource {
	return &registry.Resource{
		GroupVersion: authenticationv1.SchemeGroupVersion,
		Kind:         "TokenReview", ListKind: "TokenReviewList",
		Plural: "tokenreviews", Singular: "tokenreview",
		New:     func() runtime.Object { return &authenticationv1.TokenReview{} },
		NewList: func() runtime.Object { return &metav1.List{} },
		CreateOnly: func(ctx context.Context, obj runtime.Object) (runtime.Object, error) {
			tr := obj.(*authenticationv1.TokenReview).DeepCopy()
			if tr.Spec.Token == "" {
				return nil, apierrors.NewBadRequest("token is required for TokenReview in authentication")
			}
			tr.Status = authenticationv1.TokenReviewStatus{}
			if err := review(ctx, tr); err != nil {
				return nil, err
			}
			tr.SetGroupVersionKind(authenticationv1.SchemeGroupVersion.WithKind("TokenReview"))
			return tr, nil
		},
	}
}
