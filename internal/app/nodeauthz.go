package app

import (
	"context"
	"errors"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"

	nodeauthz "github.com/headway/headway/internal/auth/node"
)

// podsByNode is the pod informer's index of pods by spec.nodeName.
const podsByNode = "spec.nodeName"

// cachedPods finds a node's pods in the pod informer.
type cachedPods struct{ idx cache.Indexer }

func (c cachedPods) OnNode(_ context.Context, nodeName, namespace string) ([]*corev1.Pod, error) {
	objs, err := c.idx.ByIndex(podsByNode, nodeName)
	if err != nil {
		return nil, err
	}
	var out []*corev1.Pod
	for _, o := range objs {
		if p, ok := o.(*corev1.Pod); ok && (namespace == "" || p.Namespace == namespace) {
			out = append(out, p)
		}
	}
	return out, nil
}

// livePods lists a node's pods through the API (the server's own client).
type livePods struct{ client kubernetes.Interface }

func (l livePods) OnNode(ctx context.Context, nodeName, namespace string) ([]*corev1.Pod, error) {
	list, err := l.client.CoreV1().Pods(namespace).List(ctx, metav1.ListOptions{
		FieldSelector: fields.OneTermEqualSelector("spec.nodeName", nodeName).String()})
	if err != nil {
		return nil, err
	}
	out := make([]*corev1.Pod, len(list.Items))
	for i := range list.Items {
		out[i] = &list.Items[i]
	}
	return out, nil
}

type cachedClaims struct {
	l corelisters.PersistentVolumeClaimLister
}

func (c cachedClaims) Claim(_ context.Context, ns, name string) (*corev1.PersistentVolumeClaim, error) {
	return c.l.PersistentVolumeClaims(ns).Get(name)
}

// newNodeAuthorizer is the Node authorizer over informers of factory (which
// the caller starts), falling back to client for pods bound a moment ago.
func newNodeAuthorizer(factory informers.SharedInformerFactory, client kubernetes.Interface) (*nodeauthz.Authorizer, error) {
	pods := factory.Core().V1().Pods().Informer()
	if err := pods.AddIndexers(cache.Indexers{podsByNode: func(obj any) ([]string, error) {
		if p, ok := obj.(*corev1.Pod); ok && p.Spec.NodeName != "" {
			return []string{p.Spec.NodeName}, nil
		}
		return nil, nil
	}}); err != nil {
		return nil, fmt.Errorf("indexing pods by node: %w", err)
	}
	claims := factory.Core().V1().PersistentVolumeClaims().Lister()
	return nodeauthz.New(cachedPods{pods.GetIndexer()}, livePods{client}, cachedClaims{claims}), nil
}

// authorizers asks each in turn until one allows or denies, as
// kube-apiserver's --authorization-mode=Node,RBAC does.
type authorizers []authorizer.UnconditionalAuthorizer

func (as authorizers) Authorize(ctx context.Context, attrs authorizer.Attributes) (authorizer.Decision, string, error) {
	var reasons []string
	var errs []error
	for _, a := range as {
		d, reason, err := a.Authorize(ctx, attrs)
		if d != authorizer.DecisionNoOpinion {
			return d, reason, err
		}
		if reason != "" {
			reasons = append(reasons, reason)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	reason := strings.Join(reasons, "; ")
	if len(errs) > 0 {
		return authorizer.DecisionNoOpinion, reason, errors.Join(errs...)
	}
	return authorizer.DecisionNoOpinion, reason, nil
}
