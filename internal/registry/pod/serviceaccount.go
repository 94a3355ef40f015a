package pod

import (
	"context"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilrand "k8s.io/apimachinery/pkg/util/rand"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/registry"
)

// Service-account admission, as kube-apiserver's ServiceAccount admission
// plugin does it on pod create.
const (
	// DefaultServiceAccount is the account of a pod that names none.
	DefaultServiceAccount = "default"
	// TokenMountPath is where containers find the account's token,
	// ca.crt and namespace.
	TokenMountPath = "/var/run/secrets/kubernetes.io/serviceaccount"
	// TokenVolumePrefix starts the name of the projected volume
	// (kube-api-access-<5 random characters>).
	TokenVolumePrefix = "kube-api-access-"
	// TokenExpirationSeconds is the lifetime of the volume's token: an
	// hour and seven seconds, kube's marker of an automatic token.
	TokenExpirationSeconds = 3607
	// RootCAConfigMap is the ConfigMap with the cluster CA (ca.crt).
	RootCAConfigMap = "kube-root-ca.crt"
	// mirrorAnnotation marks a static pod's mirror, which is left alone.
	mirrorAnnotation = "kubernetes.io/config.mirror"
)

// ServiceAccountLookup reads a ServiceAccount (a NotFound API error when
// it does not exist).
type ServiceAccountLookup func(ctx context.Context, ns, name string) (*corev1.ServiceAccount, error)

// DefaultAccountWait is how long a pod create waits for the default
// account of a new namespace, which a controller makes (kube: 10 tries).
var DefaultAccountWait = 2 * time.Second

// AdmitServiceAccount gives a new pod its service account: the default
// one when it names none; 403 Forbidden when the account does not exist;
// and, unless the pod or the account turns automountServiceAccountToken
// off, the projected token volume mounted read-only at TokenMountPath in
// every container and init container that has nothing mounted there.
func AdmitServiceAccount(ctx context.Context, p *corev1.Pod, lookup ServiceAccountLookup) error {
	if _, mirror := p.Annotations[mirrorAnnotation]; mirror {
		return nil
	}
	if p.Spec.ServiceAccountName == "" {
		p.Spec.ServiceAccountName = DefaultServiceAccount
	}
	name := p.Spec.ServiceAccountName
	sa, err := lookup(ctx, p.Namespace, name)
	if apierrors.IsNotFound(err) && name == DefaultServiceAccount {
		// The namespace may be new: its default account is on its way.
		deadline := time.Now().Add(DefaultAccountWait)
		for apierrors.IsNotFound(err) && time.Now().Before(deadline) && ctx.Err() == nil {
			t := time.NewTimer(100 * time.Millisecond)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			sa, err = lookup(ctx, p.Namespace, name)
		}
	}
	if err != nil {
		if apierrors.IsNotFound(err) {
			err = apierrors.NewNotFound(schema.GroupResource{Resource: "serviceaccount"}, name)
		}
		return apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, p.Name,
			fmt.Errorf("error looking up service account %s/%s: %w", p.Namespace, name, err))
	}
	automount := true
	switch {
	case p.Spec.AutomountServiceAccountToken != nil:
		automount = *p.Spec.AutomountServiceAccountToken
	case sa.AutomountServiceAccountToken != nil:
		automount = *sa.AutomountServiceAccountToken
	}
	if automount {
		mountToken(p)
	}
	return nil
}

// mountToken adds the token volume (or reuses one the pod already has)
// and mounts it where a container has nothing at TokenMountPath.
func mountToken(p *corev1.Pod) {
	volume := ""
	for _, v := range p.Spec.Volumes {
		if strings.HasPrefix(v.Name, TokenVolumePrefix) {
			volume = v.Name
			break
		}
	}
	have := volume != ""
	if !have {
		taken := map[string]bool{}
		for _, v := range p.Spec.Volumes {
			taken[v.Name] = true
		}
		for volume == "" || taken[volume] {
			volume = TokenVolumePrefix + utilrand.String(5)
		}
	}
	needed := false
	mount := func(cs []corev1.Container) {
		for i := range cs {
			mounted := false
			for _, m := range cs[i].VolumeMounts {
				if m.MountPath == TokenMountPath {
					mounted = true
					break
				}
			}
			if !mounted {
				cs[i].VolumeMounts = append(cs[i].VolumeMounts, corev1.VolumeMount{Name: volume, ReadOnly: true, MountPath: TokenMountPath})
				needed = true
			}
		}
	}
	mount(p.Spec.InitContainers)
	mount(p.Spec.Containers)
	if needed && !have {
		p.Spec.Volumes = append(p.Spec.Volumes, TokenVolume(volume))
	}
}

// TokenVolume is the projected volume of a pod's service-account token,
// the cluster CA and the pod's namespace.
func TokenVolume(name string) corev1.Volume {
	return corev1.Volume{Name: name, VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr.To(corev1.ProjectedVolumeSourceDefaultMode),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: ptr.To(int64(TokenExpirationSeconds)), Path: "token"}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: RootCAConfigMap},
				Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		},
	}}}
}

// ResourceWithServiceAccounts is Resource with service-account admission
// on create, accounts read through lookup.
func ResourceWithServiceAccounts(lookup ServiceAccountLookup) *registry.Resource {
	r := Resource()
	if lookup != nil {
		r.Hooks.BeforeCreate = func(ctx context.Context, obj runtime.Object) error {
			return AdmitServiceAccount(ctx, obj.(*corev1.Pod), lookup)
		}
	}
	return r
}
