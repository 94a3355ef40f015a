package headwaytest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// FieldManager is the field manager of Apply's server-side applies.
const FieldManager = "headwaytest"

// applier applies manifests through the dynamic client; it is built on
// first use.
type applier struct {
	config *rest.Config

	once    sync.Once
	err     error
	dyn     dynamic.Interface
	mapper  *restmapper.DeferredDiscoveryRESTMapper
	discoMu sync.Mutex
}

func (a *applier) init() error {
	a.once.Do(func() {
		dc, err := discovery.NewDiscoveryClientForConfig(a.config)
		if err != nil {
			a.err = err
			return
		}
		a.mapper = restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(dc))
		a.dyn, a.err = dynamic.NewForConfig(a.config)
	})
	return a.err
}

// mapping finds the resource of gvk, reading discovery again once when the
// kind is unknown (a CustomResourceDefinition applied just before).
func (a *applier) mapping(ctx context.Context, gvk schema.GroupVersionKind) (*meta.RESTMapping, error) {
	a.discoMu.Lock()
	defer a.discoMu.Unlock()
	m, err := a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
	if err == nil || !meta.IsNoMatchError(err) {
		return m, err
	}
	// A CRD's kind is served shortly after the CRD is established.
	deadline := time.Now().Add(10 * time.Second)
	for meta.IsNoMatchError(err) && time.Now().Before(deadline) && ctx.Err() == nil {
		a.mapper.Reset()
		if m, err = a.mapper.RESTMapping(gvk.GroupKind(), gvk.Version); err == nil {
			return m, nil
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
	return nil, err
}

func (a *applier) resource(ctx context.Context, u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvk := u.GroupVersionKind()
	m, err := a.mapping(ctx, gvk)
	if err != nil {
		return nil, fmt.Errorf("%s %q: no resource serves this kind: %w", gvk, u.GetName(), err)
	}
	if m.Scope.Name() == meta.RESTScopeNameNamespace {
		if u.GetNamespace() == "" {
			u.SetNamespace(metav1.NamespaceDefault)
		}
		return a.dyn.Resource(m.Resource).Namespace(u.GetNamespace()), nil
	}
	return a.dyn.Resource(m.Resource), nil
}

// Apply creates or updates the objects of a YAML or JSON manifest (several
// documents separated by ---) in order, by server-side apply with
// FieldManager (forcing conflicts), and returns them as the server stored
// them. Namespaced objects without a namespace go to "default". It fails
// the test on any error (panics outside a test, see StartE).
func (c *Cluster) Apply(manifest string) []*unstructured.Unstructured {
	c.helper()
	objs, err := c.ApplyE(context.Background(), manifest)
	if err != nil {
		c.fatalf("headwaytest: Apply: %v", err)
	}
	return objs
}

// ApplyE is Apply returning its error instead of failing the test.
func (c *Cluster) ApplyE(ctx context.Context, manifest string) ([]*unstructured.Unstructured, error) {
	if err := c.applier.init(); err != nil {
		return nil, err
	}
	dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader([]byte(manifest)), 4096)
	var out []*unstructured.Unstructured
	for i := 1; ; i++ {
		u := &unstructured.Unstructured{}
		if err := dec.Decode(&u.Object); err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, fmt.Errorf("document %d of the manifest: %w", i, err)
		}
		if len(u.Object) == 0 {
			continue // an empty document
		}
		if u.GetKind() == "" || u.GetAPIVersion() == "" || u.GetName() == "" {
			return out, fmt.Errorf("document %d of the manifest: apiVersion, kind and metadata.name are required", i)
		}
		res, err := c.applier.resource(ctx, u)
		if err != nil {
			return out, fmt.Errorf("document %d: %w", i, err)
		}
		data, err := u.MarshalJSON()
		if err != nil {
			return out, err
		}
		force := true
		got, err := res.Patch(ctx, u.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: FieldManager, Force: &force})
		if apierrors.IsUnsupportedMediaType(err) || apierrors.IsMethodNotSupported(err) {
			got, err = res.Create(ctx, u, metav1.CreateOptions{FieldManager: FieldManager})
		}
		if err != nil {
			return out, fmt.Errorf("applying %s %s/%s (document %d): %w", u.GetKind(), u.GetNamespace(), u.GetName(), i, err)
		}
		out = append(out, got)
	}
}

// WaitReady waits until obj is ready, failing the test after
// Options.WaitTimeout: a Pod Ready; a Deployment, ReplicaSet or
// StatefulSet with every replica updated and ready and its status
// observed for its generation; a DaemonSet with a ready pod on every node
// it wants; a Job Complete; a Namespace Active; a Service once each ready
// pod it selects is a ready endpoint and the cluster DNS answers its name
// (a headless Service's with those pods' addresses); any other object once
// it exists. obj may
// be a typed object (from Client) or one Apply returned.
func (c *Cluster) WaitReady(obj runtime.Object) {
	c.helper()
	timeout := c.opts.WaitTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := c.WaitReadyE(ctx, obj); err != nil {
		c.fatalf("headwaytest: WaitReady: %v", err)
	}
}

// WaitReadyE is WaitReady until ctx ends, returning an error instead of
// failing the test.
func (c *Cluster) WaitReadyE(ctx context.Context, obj runtime.Object) error {
	if err := c.applier.init(); err != nil {
		return err
	}
	u, err := toUnstructured(obj)
	if err != nil {
		return err
	}
	res, err := c.applier.resource(ctx, u)
	if err != nil {
		return err
	}
	what := fmt.Sprintf("%s %s", u.GetKind(), u.GetName())
	if u.GetNamespace() != "" {
		what = fmt.Sprintf("%s %s/%s", u.GetKind(), u.GetNamespace(), u.GetName())
	}
	why := "not read yet"
	for {
		cur, err := res.Get(ctx, u.GetName(), metav1.GetOptions{})
		switch {
		case err == nil:
			var ok bool
			if ok, why, err = c.ready(ctx, cur); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			} else if ok {
				return nil
			}
		case apierrors.IsNotFound(err):
			why = "it does not exist"
		default:
			why = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s is not ready: %s (%w)", what, why, context.Cause(ctx))
		case <-time.After(10 * time.Millisecond): // polling interval
		}
	}
}

// toUnstructured converts a typed object (whose TypeMeta client-go leaves
// empty) or an unstructured one.
func toUnstructured(obj runtime.Object) (*unstructured.Unstructured, error) {
	if u, ok := obj.(*unstructured.Unstructured); ok {
		return u.DeepCopy(), nil
	}
	gvks, _, err := scheme.Scheme.ObjectKinds(obj)
	if err != nil || len(gvks) == 0 {
		return nil, fmt.Errorf("%T is not a kind client-go knows; pass an *unstructured.Unstructured: %v", obj, err)
	}
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	u := &unstructured.Unstructured{Object: m}
	u.SetGroupVersionKind(gvks[0])
	return u, nil
}

// ready says whether cur is ready, and if not why.
func (c *Cluster) ready(ctx context.Context, cur *unstructured.Unstructured) (bool, string, error) {
	num := func(path ...string) int64 {
		v, _, _ := unstructured.NestedInt64(cur.Object, path...)
		return v
	}
	replicas := func() int64 {
		if v, ok, _ := unstructured.NestedInt64(cur.Object, "spec", "replicas"); ok {
			return v
		}
		return 1
	}
	observed := num("status", "observedGeneration") >= cur.GetGeneration()
	switch cur.GroupVersionKind().GroupKind() {
	case schema.GroupKind{Kind: "Pod"}:
		if condition(cur, "Ready") {
			return true, "", nil
		}
		phase, _, _ := unstructured.NestedString(cur.Object, "status", "phase")
		return false, "phase " + phase + ", not Ready", nil
	case schema.GroupKind{Group: "apps", Kind: "Deployment"}:
		want := replicas()
		ok := observed && num("status", "updatedReplicas") == want && num("status", "readyReplicas") == want &&
			num("status", "availableReplicas") == want && num("status", "replicas") == want
		return ok, fmt.Sprintf("%d of %d replicas updated, %d ready, %d available (observed generation %d of %d)",
			num("status", "updatedReplicas"), want, num("status", "readyReplicas"), num("status", "availableReplicas"),
			num("status", "observedGeneration"), cur.GetGeneration()), nil
	case schema.GroupKind{Group: "apps", Kind: "ReplicaSet"}:
		want := replicas()
		ok := observed && num("status", "readyReplicas") == want && num("status", "replicas") == want
		return ok, fmt.Sprintf("%d of %d replicas ready", num("status", "readyReplicas"), want), nil
	case schema.GroupKind{Group: "apps", Kind: "StatefulSet"}:
		want := replicas()
		cr, _, _ := unstructured.NestedString(cur.Object, "status", "currentRevision")
		ur, _, _ := unstructured.NestedString(cur.Object, "status", "updateRevision")
		ok := observed && num("status", "readyReplicas") == want && num("status", "replicas") == want &&
			(num("status", "updatedReplicas") == want || cr == ur)
		return ok, fmt.Sprintf("%d of %d replicas ready, %d updated", num("status", "readyReplicas"), want, num("status", "updatedReplicas")), nil
	case schema.GroupKind{Group: "apps", Kind: "DaemonSet"}:
		want := num("status", "desiredNumberScheduled")
		ok := observed && want > 0 && num("status", "numberReady") == want && num("status", "updatedNumberScheduled") == want
		return ok, fmt.Sprintf("%d of %d pods ready", num("status", "numberReady"), want), nil
	case schema.GroupKind{Group: "batch", Kind: "Job"}:
		if condition(cur, "Failed") {
			return false, "", errors.New("the Job failed")
		}
		return condition(cur, "Complete"), "not Complete", nil
	case schema.GroupKind{Kind: "Namespace"}:
		phase, _, _ := unstructured.NestedString(cur.Object, "status", "phase")
		return phase == "Active", "phase " + phase, nil
	case schema.GroupKind{Kind: "Service"}:
		return c.serviceReady(ctx, cur)
	}
	return true, "", nil
}

// condition says whether status.conditions has type t with status True.
func condition(u *unstructured.Unstructured, t string) bool {
	conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	for _, c := range conds {
		m, _ := c.(map[string]any)
		if m["type"] == t && m["status"] == "True" {
			return true
		}
	}
	return false
}

// serviceReady says whether every ready pod a Service selects is a ready
// endpoint in its EndpointSlices (Services without a selector: at once).
func (c *Cluster) serviceReady(ctx context.Context, svc *unstructured.Unstructured) (bool, string, error) {
	sel, ok, _ := unstructured.NestedStringMap(svc.Object, "spec", "selector")
	if !ok || len(sel) == 0 {
		return true, "", nil
	}
	pods, err := c.Client.CoreV1().Pods(svc.GetNamespace()).List(ctx, metav1.ListOptions{LabelSelector: labels.SelectorFromSet(sel).String()})
	if err != nil {
		return false, err.Error(), nil
	}
	want := map[string]bool{}
	for _, p := range pods.Items {
		if p.DeletionTimestamp != nil || p.Status.PodIP == "" {
			continue
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				want[p.Status.PodIP] = true
			}
		}
	}
	slices, err := c.Client.DiscoveryV1().EndpointSlices(svc.GetNamespace()).List(ctx, metav1.ListOptions{
		LabelSelector: labels.SelectorFromSet(labels.Set{discoveryv1.LabelServiceName: svc.GetName()}).String()})
	if err != nil {
		return false, err.Error(), nil
	}
	have := 0
	for _, s := range slices.Items {
		for _, e := range s.Endpoints {
			if len(e.Addresses) > 0 && want[e.Addresses[0]] && (e.Conditions.Ready == nil || *e.Conditions.Ready) {
				have++
			}
		}
	}
	if have < len(want) {
		return false, fmt.Sprintf("%d of %d ready pods are ready endpoints", have, len(want)), nil
	}
	return c.serviceInDNS(ctx, svc, want)
}

// serviceInDNS says whether the cluster DNS answers for the Service: with
// the addresses of ready (a headless Service's ready pods), or with its
// cluster IP. The DNS follows the API through informers of its own, so it
// may trail the EndpointSlices by a moment.
func (c *Cluster) serviceInDNS(ctx context.Context, svc *unstructured.Unstructured, ready map[string]bool) (bool, string, error) {
	if c.Resolver == nil {
		return true, "", nil
	}
	name := svc.GetName() + "." + svc.GetNamespace() + ".svc." + c.ClusterDomain + "."
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ips, err := c.Resolver.LookupNetIP(qctx, "ip", name)
	clusterIP, _, _ := unstructured.NestedString(svc.Object, "spec", "clusterIP")
	if clusterIP != corev1.ClusterIPNone {
		if err != nil {
			return false, "the DNS does not answer " + name + ": " + err.Error(), nil
		}
		return true, "", nil
	}
	if len(ready) == 0 {
		return true, "", nil
	}
	got := map[string]bool{}
	for _, ip := range ips {
		got[ip.Unmap().String()] = true
	}
	for ip := range ready {
		if !got[ip] {
			return false, fmt.Sprintf("the DNS answers %s with %v, without %s yet", name, ips, ip), nil
		}
	}
	return true, "", nil
}
