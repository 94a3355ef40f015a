// Package registry describes the resources the API server serves: their
// names, types, defaults, validation, table columns and subresources. Each
// resource kind has its own package under internal/registry; the builtin
// package is the one table that lists them all.
package registry

import (
	"context"
	"reflect"

	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Resource is everything the generic REST machinery needs to serve one kind.
type Resource struct {
	// GroupVersion of the resource, e.g. {Group: "apps", Version: "v1"}.
	GroupVersion schema.GroupVersion
	// Kind and ListKind, e.g. "Service", "ServiceList".
	Kind, ListKind string
	// Plural and Singular resource names, e.g. "services", "service".
	Plural, Singular string
	ShortNames       []string
	Categories       []string
	Namespaced       bool

	// New and NewList return empty objects of the kind.
	New     func() runtime.Object
	NewList func() runtime.Object

	// Default fills defaults in place (on create, update, patch and apply).
	Default func(obj runtime.Object)
	// PrepareForCreate runs before validation on create (e.g. clears status).
	PrepareForCreate func(ctx context.Context, obj runtime.Object)
	// PrepareForUpdate runs before validation on update of the main resource.
	// The generic machinery already keeps status when HasStatus is set.
	PrepareForUpdate func(ctx context.Context, obj, old runtime.Object)
	// Validate checks a new object; ValidateUpdate an update. Object meta is
	// validated generically; these check the rest.
	Validate       func(obj runtime.Object) field.ErrorList
	ValidateUpdate func(obj, old runtime.Object) field.ErrorList
	// ValidateStatusUpdate checks a write to the status subresource.
	ValidateStatusUpdate func(obj, old runtime.Object) field.ErrorList

	// Admit, when set, is asked after validation whether the request's user
	// (in ctx) may write obj; old is nil on create. An error refuses the
	// write, dry runs included. The RBAC kinds use it to prevent privilege
	// escalation; internal/app sets it.
	Admit func(ctx context.Context, obj, old runtime.Object) error

	// CreateOnly, when set, makes the kind a create-only one that is never
	// stored (the review APIs, TokenReview): a POST decodes the object and answers what
	// CreateOnly returns with 201 Created; the kind has no other verb.
	CreateOnly func(ctx context.Context, obj runtime.Object) (runtime.Object, error)

	// Hooks is for resources whose writes hold something outside the object
	// (an allocated IP or port). Nil for most.
	Hooks Hooks

	// Columns are the server-side printing columns (Priority 1 = -o wide).
	Columns []metav1.TableColumnDefinition
	// Row returns the cells for one object, one per column. Nil Columns/Row
	// mean the default NAME, CREATED AT table.
	Row func(obj runtime.Object) ([]interface{}, error)

	// Fields returns the selectable fields beyond metadata.name and
	// metadata.namespace (which the machinery adds).
	Fields func(obj runtime.Object) fields.Set

	// AllowUnconditionalUpdate, as the kind's AllowUnconditionalUpdate() in
	// kube-apiserver's strategy: an update whose object has no
	// metadata.resourceVersion overwrites the current object (a stale one is
	// still 409 Conflict). Without it such an update is 422 Invalid ("must
	// be specified for an update"). Writes to the status and finalize
	// subresources follow the same rule (their strategies embed the main
	// one); scale and binding always act on the current object.
	AllowUnconditionalUpdate bool

	// HasStatus enables the status subresource: writes to the main resource
	// keep the stored status and writes to /status change only status.
	HasStatus bool
	// Scale enables the scale subresource.
	Scale *ScaleSubresource
	// Generation: metadata.generation starts at 1 and increases when the
	// object changes outside metadata and status.
	Generation bool

	// NameValidation checks metadata.name (and generateName prefixes);
	// defaults to DNS-1123 subdomain.
	NameValidation func(name string, prefix bool) []string

	// PrepareForDelete runs when a delete leaves the object in place
	// (finalizers pending): e.g. a namespace turns Terminating.
	PrepareForDelete func(obj runtime.Object)
	// Finalizing reports that resource-specific finalizers (beyond
	// metadata.finalizers) still hold a deleted object, e.g. a namespace's
	// spec.finalizers.
	Finalizing func(obj runtime.Object) bool
	// Finalize, when set, serves the "finalize" subresource: it copies what
	// the subresource may change from obj onto a copy of old.
	Finalize func(obj, old runtime.Object) runtime.Object

	// GracefulDelete, when set, decides whether a delete leaves the object
	// in place for a grace period (pods on a node), and how long.
	GracefulDelete func(obj runtime.Object, opts *metav1.DeleteOptions) (graceful bool, gracePeriodSeconds int64)
	// Bind, when set, serves the "binding" subresource (pods): it returns obj
	// bound to the node target, or an error (409 when already bound).
	Bind func(obj runtime.Object, target string) (runtime.Object, error)
	// Evict enables the "eviction" subresource (a delete through policy/v1 Eviction).
	Evict bool

	// Token, when set, serves the "token" subresource (serviceaccounts): a
	// create of an authentication.k8s.io/v1 TokenRequest for obj, the
	// stored object, answered with the request and its token.
	Token func(ctx context.Context, obj runtime.Object, req *authenticationv1.TokenRequest) (*authenticationv1.TokenRequest, error)

	// Streams enables the log, exec, attach and portforward subresources,
	// proxied to the node agent that runs the object (pods).
	Streams bool

	// SharedStorage, when set, stores the objects as another resource's
	// (events.k8s.io/v1 Events are core/v1 Events), converting both ways.
	SharedStorage *SharedStorage

	// Restore, when set, is called at server start for every stored object,
	// so that state held outside objects (allocated IPs and ports) is rebuilt;
	// an error stops the start.
	Restore func(ctx context.Context, obj runtime.Object) error
}

// ScaleSubresource maps an object's replica fields to autoscaling/v1 Scale.
type ScaleSubresource struct {
	// Get returns spec replicas, status replicas and the label selector string.
	Get func(obj runtime.Object) (specReplicas, statusReplicas int32, selector string)
	// Set writes spec replicas.
	Set func(obj runtime.Object, replicas int32)
}

// Hooks let a resource hold and release things outside the object.
type Hooks struct {
	// BeforeCreate runs after validation, before the object is stored. It may
	// allocate (and set fields). Returning an error aborts the create.
	BeforeCreate func(ctx context.Context, obj runtime.Object) error
	// AfterCreateFailed undoes BeforeCreate when the store rejects the object.
	AfterCreateFailed func(ctx context.Context, obj runtime.Object)
	// BeforeUpdate runs after validation of an update.
	BeforeUpdate func(ctx context.Context, obj, old runtime.Object) error
	// AfterUpdate runs after an update is stored (old is the previous object)
	// or failed (stored=false).
	AfterUpdate func(ctx context.Context, obj, old runtime.Object, stored bool)
	// AfterDelete runs after an object is removed from the store.
	AfterDelete func(ctx context.Context, obj runtime.Object)
}

// GroupResource of the resource.
func (r *Resource) GroupResource() schema.GroupResource {
	return schema.GroupResource{Group: r.GroupVersion.Group, Resource: r.Plural}
}

// GroupVersionKind of the resource's objects.
func (r *Resource) GroupVersionKind() schema.GroupVersionKind {
	return r.GroupVersion.WithKind(r.Kind)
}

// GroupVersionResource of the resource.
func (r *Resource) GroupVersionResource() schema.GroupVersionResource {
	return r.GroupVersion.WithResource(r.Plural)
}

// ObjectType is the Go struct type of the resource's objects.
func (r *Resource) ObjectType() reflect.Type {
	return reflect.TypeOf(r.New()).Elem()
}

// ListType is the Go struct type of the resource's lists.
func (r *Resource) ListType() reflect.Type {
	return reflect.TypeOf(r.NewList()).Elem()
}

// SharedStorage maps a resource onto another resource's stored objects.
type SharedStorage struct {
	// Group and Plural of the resource that owns the storage ("" and "events").
	Group, Plural string
	// GroupVersionKind of the stored objects.
	StoredKind schema.GroupVersionKind
	// NewStored returns an empty stored object.
	NewStored func() runtime.Object
	// ToStored and FromStored convert between the two types.
	ToStored   func(obj runtime.Object) runtime.Object
	FromStored func(stored runtime.Object) runtime.Object
}
