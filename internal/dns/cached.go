package dns

import (
	"time"
	"unique"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// cached is all the informers keep of an object: its key and resource
// version (what an informer reads of the objects it caches) and the
// model's record of it, converted once, when the object arrives. The model
// keeps the same record (no one modifies it), so the DNS server holds one
// small copy of each object rather than a decoded Kubernetes object and
// the model's record beside it.
type cached struct {
	objectKey
	svc   *svcInfo   // a Service
	slice *sliceInfo // an EndpointSlice
	pod   *podInfo   // a Pod that has addresses and is not being deleted
	// trigger is an EndpointSlice's last-change-trigger-time annotation
	// (Unix nanoseconds; 0: none or not a time).
	trigger int64
}

// toCached is the informers' transform: a Service, EndpointSlice,
// Namespace or Pod becomes its cached record; a record stays itself (the
// informers transform again what their initial watch list already did);
// anything else is returned as it is.
func toCached(obj any) (any, error) {
	switch o := obj.(type) {
	case *cached:
		return o, nil
	case *corev1.Service:
		c := &cached{objectKey: keyOf(&o.ObjectMeta), svc: toSvcInfo(o)}
		c.svc.namespace = c.namespace
		return c, nil
	case *discoveryv1.EndpointSlice:
		c := &cached{objectKey: keyOf(&o.ObjectMeta), slice: toSliceInfo(o)}
		if v := o.Annotations[corev1.EndpointsLastChangeTriggerTime]; v != "" {
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				c.trigger = t.UnixNano()
			}
		}
		return c, nil
	case *corev1.Namespace:
		return &cached{objectKey: keyOf(&o.ObjectMeta)}, nil
	case *corev1.Pod:
		c := &cached{objectKey: keyOf(&o.ObjectMeta)}
		if o.DeletionTimestamp == nil {
			if pi := toPodInfo(o); len(pi.addrs) > 0 {
				pi.namespace = c.namespace
				c.pod = &pi
			}
		}
		return c, nil
	}
	return obj, nil
}

// objectKey is an object's namespace, name and resource version. It is a
// metav1.Object for the informers: the other fields read as empty and
// setting them does nothing.
type objectKey struct {
	namespace, name, resourceVersion string
}

// keyOf keeps an object's key; the namespace strings of all objects are
// shared.
func keyOf(m *metav1.ObjectMeta) objectKey {
	return objectKey{namespace: unique.Make(m.Namespace).Value(), name: m.Name, resourceVersion: m.ResourceVersion}
}

var _ metav1.Object = &objectKey{}

func (k *objectKey) GetNamespace() string                          { return k.namespace }
func (k *objectKey) SetNamespace(namespace string)                 { k.namespace = namespace }
func (k *objectKey) GetName() string                               { return k.name }
func (k *objectKey) SetName(name string)                           { k.name = name }
func (k *objectKey) GetResourceVersion() string                    { return k.resourceVersion }
func (k *objectKey) SetResourceVersion(version string)             { k.resourceVersion = version }
func (k *objectKey) GetGenerateName() string                       { return "" }
func (k *objectKey) SetGenerateName(string)                        {}
func (k *objectKey) GetUID() types.UID                             { return "" }
func (k *objectKey) SetUID(types.UID)                              {}
func (k *objectKey) GetGeneration() int64                          { return 0 }
func (k *objectKey) SetGeneration(int64)                           {}
func (k *objectKey) GetSelfLink() string                           { return "" }
func (k *objectKey) SetSelfLink(string)                            {}
func (k *objectKey) GetCreationTimestamp() metav1.Time             { return metav1.Time{} }
func (k *objectKey) SetCreationTimestamp(metav1.Time)              {}
func (k *objectKey) GetDeletionTimestamp() *metav1.Time            { return nil }
func (k *objectKey) SetDeletionTimestamp(*metav1.Time)             {}
func (k *objectKey) GetDeletionGracePeriodSeconds() *int64         { return nil }
func (k *objectKey) SetDeletionGracePeriodSeconds(*int64)          {}
func (k *objectKey) GetLabels() map[string]string                  { return nil }
func (k *objectKey) SetLabels(map[string]string)                   {}
func (k *objectKey) GetAnnotations() map[string]string             { return nil }
func (k *objectKey) SetAnnotations(map[string]string)              {}
func (k *objectKey) GetFinalizers() []string                       { return nil }
func (k *objectKey) SetFinalizers([]string)                        {}
func (k *objectKey) GetOwnerReferences() []metav1.OwnerReference   { return nil }
func (k *objectKey) SetOwnerReferences([]metav1.OwnerReference)    {}
func (k *objectKey) GetManagedFields() []metav1.ManagedFieldsEntry { return nil }
func (k *objectKey) SetManagedFields([]metav1.ManagedFieldsEntry)  {}
