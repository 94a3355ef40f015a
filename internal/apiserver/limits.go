package apiserver

// Limits on what one request may make the server do: the growth a JSON
// patch may cause, the size of a stored object, the form of a
// resourceVersion, and the namespaces that may not be deleted.

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

const (
	// MaxObjectBytes is the largest encoded object the store takes: etcd's
	// default request limit (--max-request-bytes, 1.5 MiB), which bounds
	// every object of an etcd-backed Kubernetes.
	MaxObjectBytes = 1536 * 1024

	// JSONPatchMaxCopyBytes bounds how much a JSON patch's "copy"
	// operations may add to a document: kube-apiserver's default (twice
	// the etcd limit, as a JSON body may be twice its protobuf form).
	JSONPatchMaxCopyBytes = 3 * 1024 * 1024

	// maxJSONPatchOperations is kube-apiserver's limit on the operations of
	// one JSON patch.
	maxJSONPatchOperations = 10000
)

var armJSONPatch sync.Once

// limitJSONPatchCopies sets the patch library's copy limit, a process-wide
// setting, as kube-apiserver does when it builds its server: only ever
// lowered, never raised above what someone else set.
func limitJSONPatchCopies() {
	armJSONPatch.Do(func() {
		for {
			cur := atomic.LoadInt64(&jsonpatch.AccumulatedCopySizeLimit)
			if cur > 0 && cur <= JSONPatchMaxCopyBytes {
				return
			}
			if atomic.CompareAndSwapInt64(&jsonpatch.AccumulatedCopySizeLimit, cur, JSONPatchMaxCopyBytes) {
				return
			}
		}
	})
}

// checkJSONPatchLength refuses a JSON patch of too many operations with
// kube-apiserver's 413.
func checkJSONPatchLength(p jsonpatch.Patch) error {
	if len(p) > maxJSONPatchOperations {
		return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf(
			"The allowed maximum operations in a JSON patch is %d, got %d", maxJSONPatchOperations, len(p)))
	}
	return nil
}

// encodeForStore encodes obj for the store under key and refuses it with
// 413 RequestEntityTooLarge when etcd would (an object over
// MaxObjectBytes). As kube-apiserver does when etcd says "request is too
// large", a write that is not a server-side apply is tried once more
// without its managedFields, which may be what made it large.
func (res *resource) encodeForStore(key string, obj runtime.Object, opts writeOptions) ([]byte, error) {
	data, err := res.encode(obj)
	if err != nil || opts.dryRun || len(key)+len(data) <= MaxObjectBytes {
		return data, err
	}
	acc, aerr := meta.Accessor(obj)
	if aerr == nil && !opts.managedFieldsDone && len(acc.GetManagedFields()) > 0 {
		acc.SetManagedFields(nil)
		if data, err = res.encode(obj); err != nil || len(key)+len(data) <= MaxObjectBytes {
			return data, err
		}
	}
	name := ""
	if aerr == nil {
		name = acc.GetName()
	}
	return nil, res.tooLargeObject(name, len(key)+len(data))
}

func (res *resource) tooLargeObject(name string, size int) error {
	err := apierrors.NewRequestEntityTooLargeError(fmt.Sprintf(
		"%s %q is too large to store: %d bytes encoded, the limit is %d (etcdserver: request is too large); make it smaller, e.g. move data out of labels, annotations or large fields",
		res.reg.GroupResource(), name, size, MaxObjectBytes))
	err.ErrStatus.Details = &metav1.StatusDetails{Name: name, Group: res.reg.GroupVersion.Group, Kind: res.reg.Plural}
	return err
}

// checkResourceVersion refuses a resourceVersion that is not one this
// server hands out (a decimal revision) with 400 BadRequest, the message
// kube-apiserver's storage gives. where is "resourceVersion" for the query
// parameter, "metadata.resourceVersion" for an object's.
//
// kube-apiserver itself answers such a GET or PUT with 500 (the storage
// error is not mapped; kubernetes/kubernetes#139485): this is the 400 its
// pending fix gives.
func checkResourceVersion(where, rv string) error {
	if rv == "" {
		return nil
	}
	if _, err := strconv.ParseUint(rv, 10, 64); err != nil {
		return badRequest("%s: Invalid value: %q: %v", where, rv, err)
	}
	return nil
}

// immortalNamespaces may not be deleted, as kube-apiserver's
// NamespaceLifecycle admission has it.
var immortalNamespaces = map[string]bool{
	metav1.NamespaceDefault: true,
	metav1.NamespaceSystem:  true,
	metav1.NamespacePublic:  true,
}

// checkDeletable refuses the deletion of an immortal namespace with 403.
func (res *resource) checkDeletable(name string) error {
	if res.reg.GroupVersion.Group == "" && res.reg.Plural == "namespaces" && immortalNamespaces[name] {
		return apierrors.NewForbidden(schema.GroupResource{Resource: "namespaces"}, name,
			errors.New("this namespace may not be deleted"))
	}
	return nil
}
