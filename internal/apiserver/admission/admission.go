// Package admission is the API server's admission seam: the attributes of
// a write the server asks plugins about, the two kinds of step (mutating,
// then validating) and the access plugins have to the cluster's objects.
//
// The server calls every Mutator of its chain in order, then, after the
// object's own validation, every Validator in order, as kube-apiserver
// runs its admission plugins: on create, update, patch and apply of a
// resource and its status (and finalize) subresource, on delete, and on
// the subresources kube-apiserver admits (scale, eviction). A step that
// returns an error rejects the request; nothing is stored.
//
// Plugins live in sub-packages (limitranger, resourcequota, priority,
// webhook); internal/app chooses the chain.
package admission

import (
	"context"
	"fmt"

	authenticationv1 "k8s.io/api/authentication/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// Operation is what the request does, as admission.k8s.io names it.
type Operation string

// The operations.
const (
	Create  Operation = "CREATE"
	Update  Operation = "UPDATE"
	Delete  Operation = "DELETE"
	Connect Operation = "CONNECT"
)

// Attributes describe one request to the plugins.
type Attributes struct {
	Operation Operation
	// Kind of Object (and OldObject): the resource's kind, or the
	// subresource's (autoscaling/v1 Scale, policy/v1 Eviction).
	Kind schema.GroupVersionKind
	// Resource and Subresource the request addressed.
	Resource    schema.GroupVersionResource
	Subresource string
	Namespace   string
	// Name of the object; empty on a create with generateName.
	Name string
	// Object is the new object (nil on delete). A Mutator may change it in
	// place or replace it with another object of the same type.
	Object runtime.Object
	// OldObject is the stored object (nil on create).
	OldObject runtime.Object
	// Options are the request's *metav1.CreateOptions, UpdateOptions or
	// DeleteOptions.
	Options runtime.Object
	// DryRun: nothing the request does may be stored; plugins with side
	// effects must not have them.
	DryRun bool
	// User is who sent the request.
	User authenticationv1.UserInfo
}

// Plugin is one admission step. A plugin implements Mutator, Validator or
// both.
type Plugin interface {
	// Name names the plugin in logs ("LimitRanger", "ResourceQuota", ...).
	Name() string
}

// Mutator may change a.Object before the object is validated.
type Mutator interface {
	Plugin
	Admit(ctx context.Context, a *Attributes, o Objects) error
}

// Validator accepts or rejects the validated object. It must not change
// a.Object.
type Validator interface {
	Plugin
	Validate(ctx context.Context, a *Attributes, o Objects) error
}

// Objects is the plugins' access to stored objects. Reads are the
// server's current state (not a cache); writes go through the same
// optimistic concurrency as any write, without admission.
type Objects interface {
	// Get reads one object; a missing one is a NotFound API error.
	Get(ctx context.Context, gvr schema.GroupVersionResource, namespace, name string) (runtime.Object, error)
	// List reads the objects of a resource in namespace ("" = all).
	List(ctx context.Context, gvr schema.GroupVersionResource, namespace string) ([]runtime.Object, error)
	// UpdateStatus reads the object, lets fn change its status and stores
	// it if the object was not changed meanwhile; otherwise it reads it
	// again and calls fn again. An error from fn ends it and is returned.
	// With dryRun nothing is stored.
	UpdateStatus(ctx context.Context, gvr schema.GroupVersionResource, namespace, name string, dryRun bool, fn func(obj runtime.Object) error) (runtime.Object, error)
}

// Chain is an ordered list of plugins.
type Chain []Plugin

// Admit runs the chain's mutating steps in order.
func (c Chain) Admit(ctx context.Context, a *Attributes, o Objects) error {
	for _, p := range c {
		if m, ok := p.(Mutator); ok {
			if err := m.Admit(ctx, a, o); err != nil {
				return err
			}
		}
	}
	return nil
}

// Validate runs the chain's validating steps in order.
func (c Chain) Validate(ctx context.Context, a *Attributes, o Objects) error {
	for _, p := range c {
		if v, ok := p.(Validator); ok {
			if err := v.Validate(ctx, a, o); err != nil {
				return err
			}
		}
	}
	return nil
}

// NewForbidden is kube-apiserver's 403 for a request a plugin refuses:
// `<resource> "<name>" is forbidden: <err>`. The name is the object's
// generateName when it has no name yet.
func NewForbidden(a *Attributes, err error) error {
	if apierrors.IsForbidden(err) {
		return err
	}
	name := a.Name
	if name == "" {
		name = "Unknown"
		if a.Object != nil {
			if acc, aerr := meta.Accessor(a.Object); aerr == nil {
				if acc.GetName() != "" {
					name = acc.GetName()
				} else if acc.GetGenerateName() != "" {
					name = acc.GetGenerateName()
				}
			}
		}
	}
	return apierrors.NewForbidden(a.Resource.GroupResource(), name, err)
}

// Is reports whether the request is about the given group and resource
// (any version) with no subresource.
func (a *Attributes) Is(group, resource string) bool {
	return a.Resource.Group == group && a.Resource.Resource == resource && a.Subresource == ""
}

// String names the request in logs: "CREATE pods default/web-0".
func (a *Attributes) String() string {
	r := a.Resource.Resource
	if a.Resource.Group != "" {
		r += "." + a.Resource.Group
	}
	if a.Subresource != "" {
		r += "/" + a.Subresource
	}
	if a.Namespace != "" {
		return fmt.Sprintf("%s %s %s/%s", a.Operation, r, a.Namespace, a.Name)
	}
	return fmt.Sprintf("%s %s %s", a.Operation, r, a.Name)
}
