package apiserver

// Serving CustomResourceDefinitions: the definitions in the store decide
// which custom resources are served. A write of a definition through this
// server is applied before its answer goes out (so `kubectl get <plural>`
// works right after `kubectl apply`); a watch on the store applies the
// writes of other servers. The server also does the work of kube's
// apiextensions controllers: it accepts names (NamesAccepted, Established)
// and, when a definition is deleted, removes its custom resources before
// the definition itself.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/version"

	"github.com/headway/headway/internal/registry/customresourcedefinition"
	"github.com/headway/headway/internal/storage"
)

// CustomResourceOpenAPI is implemented by an OpenAPI handler (Config.OpenAPI)
// that also publishes the served custom resources; the server tells it the
// definitions it serves whenever they change.
type CustomResourceOpenAPI interface {
	SetCustomResourceDefinitions(crds []*apiextensionsv1.CustomResourceDefinition)
}

// apiIndex is what discovery lists and requests are routed by.
type apiIndex struct {
	// custom are the custom resources by "group/version/plural" (built-in
	// resources are in Server.resources).
	custom   map[string]*resource
	groups   []string // API groups in order, "" first
	versions map[string][]string
	byGV     map[schema.GroupVersion][]*resource
}

// crdServing keeps the served custom resources in step with the stored
// definitions.
type crdServing struct {
	s      *Server
	res    *resource // customresourcedefinitions; nil when not served
	static *apiIndex
	log    *slog.Logger

	// ctx is the server's lifetime; cleanups run in it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	served   map[string]*servedCRD // by definition name
	cleaning map[types.UID]bool
	index    atomic.Pointer[apiIndex]
}

// servedCRD is one definition and the resources serving its versions.
type servedCRD struct {
	crd      *apiextensionsv1.CustomResourceDefinition
	key      string // what the resources were built from
	names    apiextensionsv1.CustomResourceDefinitionNames
	versions []*resource
}

func newCRDServing(s *Server) *crdServing {
	c := &crdServing{
		s:        s,
		res:      s.resources[apiextensionsv1.GroupName+"/v1/customresourcedefinitions"],
		log:      s.log.With("part", "customresourcedefinitions"),
		served:   map[string]*servedCRD{},
		cleaning: map[types.UID]bool{},
		static: &apiIndex{
			custom: map[string]*resource{}, groups: s.groups, versions: s.versions, byGV: s.byGV,
		},
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.index.Store(c.static)
	return c
}

// index is the current routing and discovery index.
func (s *Server) index() *apiIndex { return s.crds.index.Load() }

// lookup finds the resource a request names, built-in or custom.
func (s *Server) lookup(group, version, plural string) *resource {
	key := group + "/" + version + "/" + plural
	if res := s.resources[key]; res != nil {
		return res
	}
	return s.index().custom[key]
}

// serveResource serves a resource request. Custom resources are JSON and
// YAML only, and cannot be created while their definition is being
// deleted; a definition write is applied before its answer goes out.
func (s *Server) serveResource(res *resource, w http.ResponseWriter, r *http.Request, info requestInfo) {
	if cr := res.custom; cr != nil {
		acceptOnlyJSON(r)
		if info.Verb == "create" && info.Subresource == "" && cr.terminating.Load() {
			s.writeError(w, r, &apierrors.StatusError{ErrStatus: metav1.Status{
				Status: metav1.StatusFailure, Code: http.StatusMethodNotAllowed, Reason: metav1.StatusReasonMethodNotAllowed,
				Message: fmt.Sprintf("create not allowed while custom resource definition %s is terminating", cr.crd.Name),
			}})
			return
		}
	}
	if res != s.crds.res || s.crds.res == nil {
		res.serve(w, r, info)
		return
	}
	switch info.Verb {
	case "create", "update", "patch", "delete", "deletecollection":
	default:
		res.serve(w, r, info)
		return
	}
	buf := &bufferedResponse{header: http.Header{}, code: http.StatusOK}
	res.serve(buf, r, info)
	if buf.code < 300 {
		if err := s.crds.sync(r.Context()); err != nil {
			s.log.Error("applying custom resource definitions failed", "err", err)
		}
	}
	buf.writeTo(w)
}

// bufferedResponse holds an answer until the write it reports is applied.
type bufferedResponse struct {
	header http.Header
	code   int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header         { return b.header }
func (b *bufferedResponse) Write(p []byte) (int, error) { return b.body.Write(p) }
func (b *bufferedResponse) WriteHeader(code int)        { b.code = code }

func (b *bufferedResponse) writeTo(w http.ResponseWriter) {
	for k, v := range b.header {
		w.Header()[k] = v
	}
	w.WriteHeader(b.code)
	_, _ = w.Write(b.body.Bytes())
}

// sync applies every stored definition; it returns the store revision it
// read at.
func (c *crdServing) sync(ctx context.Context) error {
	_, err := c.syncAt(ctx)
	return err
}

func (c *crdServing) syncAt(ctx context.Context) (int64, error) {
	if c.res == nil {
		return 0, nil
	}
	var crds []*apiextensionsv1.CustomResourceDefinition
	start := ""
	var rev int64
	for {
		page, err := c.s.store.List(ctx, c.res.prefix, storage.ListOptions{Limit: 500, StartKey: start, Revision: rev})
		if err != nil {
			return 0, err
		}
		rev = page.Revision
		for _, kv := range page.Items {
			obj, err := c.res.decode(kv)
			if err != nil {
				return 0, err
			}
			crds = append(crds, obj.(*apiextensionsv1.CustomResourceDefinition))
		}
		if !page.More || len(page.Items) == 0 {
			break
		}
		start = page.Items[len(page.Items)-1].Key + "\x00"
	}
	// The oldest definition keeps names two of them claim.
	sort.SliceStable(crds, func(i, j int) bool {
		return crds[i].CreationTimestamp.Before(&crds[j].CreationTimestamp)
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	present := map[string]bool{}
	changed := false
	for _, crd := range crds {
		present[crd.Name] = true
		if c.apply(ctx, crd) {
			changed = true
		}
	}
	for name, sc := range c.served {
		if !present[name] {
			c.stopServing(sc)
			delete(c.served, name)
			c.log.Info("custom resources no longer served", "crd", name)
			changed = true
		}
	}
	if changed {
		c.publish()
	}
	return rev, nil
}

// run applies the definitions other writers change, until ctx ends.
func (c *crdServing) run(ctx context.Context) {
	defer func() {
		c.cancel()
		c.wg.Wait()
	}()
	if c.res == nil {
		return
	}
	stop := context.AfterFunc(ctx, c.cancel)
	defer stop()
	ctx = c.ctx
	for ctx.Err() == nil {
		rev, err := c.syncAt(ctx)
		if err != nil {
			c.log.Error("listing custom resource definitions failed; retrying", "err", err)
			if !sleepCtx(ctx, time.Second) {
				return
			}
			continue
		}
		events, err := c.s.store.Watch(ctx, c.res.prefix, rev)
		if err != nil {
			continue
		}
		for range events {
			// Whatever changed, apply the stored state (definitions are few);
			// drain what is queued first.
			for drained := false; !drained; {
				select {
				case _, ok := <-events:
					if !ok {
						drained = true
					}
				default:
					drained = true
				}
			}
			if err := c.sync(ctx); err != nil && ctx.Err() == nil {
				c.log.Error("applying custom resource definitions failed", "err", err)
			}
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// apply serves one definition as it is stored (c.mu held), writes its
// name conditions, and starts removing its custom resources once it is
// deleted. It reports whether what is served changed.
func (c *crdServing) apply(ctx context.Context, crd *apiextensionsv1.CustomResourceDefinition) bool {
	prev := c.served[crd.Name]
	names, accepted, conflict := c.acceptNames(crd)
	if !accepted && prev != nil && prev.crd.UID == crd.UID {
		names = prev.names // keep serving the names accepted before
	}
	terminating := crd.DeletionTimestamp != nil
	changed := false
	if accepted || (prev != nil && prev.crd.UID == crd.UID) {
		key := fmt.Sprintf("%s/%d/%v", crd.UID, crd.Generation, names)
		if prev == nil || prev.key != key {
			sc, err := c.build(crd, names, key)
			if err != nil {
				c.log.Error("cannot serve custom resources", "crd", crd.Name, "err", err)
				if prev != nil {
					c.stopServing(prev)
					delete(c.served, crd.Name)
					changed = true
				}
			} else {
				if prev != nil {
					c.stopServing(prev)
				}
				c.served[crd.Name] = sc
				changed = true
				c.log.Info("serving custom resources", "crd", crd.Name, "generation", crd.Generation)
			}
		} else {
			prev.crd = crd
		}
		if sc := c.served[crd.Name]; sc != nil {
			for _, res := range sc.versions {
				res.custom.terminating.Store(terminating)
			}
		}
	}
	if !terminating {
		c.writeConditions(ctx, crd, names, accepted, conflict)
	} else if slices.Contains(crd.Finalizers, customresourcedefinition.CleanupFinalizer) && !c.cleaning[crd.UID] {
		c.cleaning[crd.UID] = true
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.cleanup(crd)
		}()
	}
	return changed
}

// build makes the resources of a definition's served versions.
func (c *crdServing) build(crd *apiextensionsv1.CustomResourceDefinition, names apiextensionsv1.CustomResourceDefinitionNames, key string) (*servedCRD, error) {
	sc := &servedCRD{crd: crd, key: key, names: names}
	tc, err := crTypeConverter(crd)
	if err != nil {
		return nil, fmt.Errorf("building the apply schema: %w", err)
	}
	for _, v := range crd.Spec.Versions {
		if !v.Served {
			continue
		}
		res, err := c.s.newCustomResource(crd, v, names, tc)
		if err != nil {
			c.stopServing(sc)
			return nil, err
		}
		sc.versions = append(sc.versions, res)
	}
	return sc, nil
}

func (c *crdServing) stopServing(sc *servedCRD) {
	for _, res := range sc.versions {
		res.custom.stop()
	}
}

// acceptNames decides whether a definition's names are free in its group:
// not used by another served definition, nor by a built-in resource.
func (c *crdServing) acceptNames(crd *apiextensionsv1.CustomResourceDefinition) (apiextensionsv1.CustomResourceDefinitionNames, bool, string) {
	want := crd.Spec.Names
	taken := func(format string, args ...any) (apiextensionsv1.CustomResourceDefinitionNames, bool, string) {
		return want, false, fmt.Sprintf(format, args...)
	}
	for name, other := range c.served {
		if name == crd.Name || other.crd.Spec.Group != crd.Spec.Group {
			continue
		}
		on := other.names
		resourceNames := []string{on.Plural, on.Singular}
		switch {
		case slices.Contains(resourceNames, want.Plural):
			return taken("%q is already in use", want.Plural)
		case want.Singular != "" && slices.Contains(resourceNames, want.Singular):
			return taken("%q is already in use", want.Singular)
		case want.Kind == on.Kind:
			return taken("%q is already in use", want.Kind)
		case want.ListKind == on.ListKind:
			return taken("%q is already in use", want.ListKind)
		}
		for _, sn := range want.ShortNames {
			if slices.Contains(on.ShortNames, sn) {
				return taken("%q is already in use", sn)
			}
		}
	}
	for gv, ress := range c.static.byGV {
		if gv.Group != crd.Spec.Group {
			continue
		}
		for _, res := range ress {
			if res.reg.Plural == want.Plural || res.reg.Kind == want.Kind {
				return taken("%q is already in use by a built-in resource", want.Plural)
			}
		}
	}
	return want, true, ""
}

// writeConditions records NamesAccepted, Established and the accepted
// names in the definition's status when they are not there yet.
func (c *crdServing) writeConditions(ctx context.Context, crd *apiextensionsv1.CustomResourceDefinition,
	names apiextensionsv1.CustomResourceDefinitionNames, accepted bool, conflict string) {
	want := []apiextensionsv1.CustomResourceDefinitionCondition{{
		Type: apiextensionsv1.NamesAccepted, Status: apiextensionsv1.ConditionTrue,
		Reason: "NoConflicts", Message: "no conflicts found",
	}}
	if !accepted {
		want[0] = apiextensionsv1.CustomResourceDefinitionCondition{
			Type: apiextensionsv1.NamesAccepted, Status: apiextensionsv1.ConditionFalse,
			Reason: "NameConflict", Message: conflict,
		}
	}
	if _, served := c.served[crd.Name]; served {
		want = append(want, apiextensionsv1.CustomResourceDefinitionCondition{
			Type: apiextensionsv1.Established, Status: apiextensionsv1.ConditionTrue,
			Reason: "InitialNamesAccepted", Message: "the initial names have been accepted",
		})
	}
	upToDate := func(obj *apiextensionsv1.CustomResourceDefinition) bool {
		if _, served := c.served[crd.Name]; served && !equality.Semantic.DeepEqual(obj.Status.AcceptedNames, names) {
			return false
		}
		for _, w := range want {
			have := apihelpers.FindCRDCondition(obj, w.Type)
			if have == nil || have.Status != w.Status || have.Reason != w.Reason || have.Message != w.Message {
				return false
			}
		}
		return true
	}
	if upToDate(crd) {
		return
	}
	_, _, err := c.res.updateObject(ctx, "", crd.Name, modeStatus, writeOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		obj := cur.(*apiextensionsv1.CustomResourceDefinition)
		if obj.UID != crd.UID || upToDate(obj) {
			return obj, nil
		}
		if _, served := c.served[crd.Name]; served {
			obj.Status.AcceptedNames = names
		}
		for _, w := range want {
			apihelpers.SetCRDCondition(obj, w)
		}
		return obj, nil
	}, nil)
	if err != nil && !apierrors.IsNotFound(err) {
		c.log.Error("writing the conditions of a custom resource definition failed", "crd", crd.Name, "err", err)
	}
}

// cleanup deletes the custom resources of a deleted definition (waiting
// for their own finalizers), then removes the definition's finalizer so it
// goes too.
func (c *crdServing) cleanup(crd *apiextensionsv1.CustomResourceDefinition) {
	ctx := c.ctx
	defer func() {
		c.mu.Lock()
		delete(c.cleaning, crd.UID)
		c.mu.Unlock()
	}()
	res, err := c.cleanupResource(crd)
	if err != nil {
		c.log.Error("cannot remove the custom resources of a deleted definition", "crd", crd.Name, "err", err)
		return
	}
	defer res.custom.stop()
	for wait := 100 * time.Millisecond; ctx.Err() == nil; wait = min(2*wait, 5*time.Second) {
		left, err := c.deleteAll(ctx, res)
		if err == nil && left == 0 {
			break
		}
		if err != nil {
			c.log.Warn("removing the custom resources of a deleted definition", "crd", crd.Name, "err", err)
		}
		if !sleepCtx(ctx, wait) {
			return
		}
	}
	_, _, err = c.res.updateObject(ctx, "", crd.Name, modeMain, writeOptions{}, func(cur runtime.Object) (runtime.Object, error) {
		obj := cur.(*apiextensionsv1.CustomResourceDefinition)
		if obj.UID != crd.UID {
			return nil, apierrors.NewNotFound(c.res.reg.GroupResource(), crd.Name)
		}
		obj.Finalizers = slices.DeleteFunc(obj.Finalizers, func(f string) bool { return f == customresourcedefinition.CleanupFinalizer })
		return obj, nil
	}, nil)
	if err != nil && !apierrors.IsNotFound(err) {
		c.log.Error("removing the cleanup finalizer failed", "crd", crd.Name, "err", err)
		return
	}
	c.log.Info("custom resources removed with their definition", "crd", crd.Name)
	if err := c.sync(ctx); err != nil && ctx.Err() == nil {
		c.log.Error("applying custom resource definitions failed", "err", err)
	}
}

// cleanupResource is a resource over the definition's stored objects.
func (c *crdServing) cleanupResource(crd *apiextensionsv1.CustomResourceDefinition) (*resource, error) {
	storageVersion, err := apihelpers.GetCRDStorageVersion(crd)
	if err != nil {
		return nil, err
	}
	for _, v := range crd.Spec.Versions {
		if v.Name != storageVersion {
			continue
		}
		tc, err := crTypeConverter(crd)
		if err != nil {
			return nil, err
		}
		return c.s.newCustomResource(crd, v, crd.Spec.Names, tc)
	}
	return nil, errors.New("the definition has no storage version")
}

// deleteAll deletes every object of res and returns how many were found.
func (c *crdServing) deleteAll(ctx context.Context, res *resource) (int, error) {
	sel, _ := res.parseSelection(map[string][]string{})
	list, err := res.list(ctx, "", map[string][]string{}, sel)
	if err != nil {
		return 0, err
	}
	for _, obj := range list.items {
		acc, _ := meta.Accessor(obj)
		if acc.GetDeletionTimestamp() != nil {
			continue
		}
		if _, _, err := res.deleteObject(ctx, acc.GetNamespace(), acc.GetName(), metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return 0, err
		}
	}
	return len(list.items), nil
}

// publish rebuilds the index (c.mu held) and tells the OpenAPI handler.
func (c *crdServing) publish() {
	idx := &apiIndex{
		custom:   map[string]*resource{},
		groups:   slices.Clone(c.static.groups),
		versions: map[string][]string{},
		byGV:     map[schema.GroupVersion][]*resource{},
	}
	for g, vs := range c.static.versions {
		idx.versions[g] = slices.Clone(vs)
	}
	for gv, rs := range c.static.byGV {
		idx.byGV[gv] = slices.Clone(rs)
	}
	names := make([]string, 0, len(c.served))
	for name := range c.served {
		names = append(names, name)
	}
	sort.Strings(names)
	var crds []*apiextensionsv1.CustomResourceDefinition
	newVersions := map[string][]string{}
	for _, name := range names {
		sc := c.served[name]
		if len(sc.versions) > 0 {
			crd := sc.crd.DeepCopy()
			crd.Spec.Names = sc.names
			crds = append(crds, crd)
		}
		for _, res := range sc.versions {
			gv := res.reg.GroupVersion
			key := gv.Group + "/" + gv.Version + "/" + res.reg.Plural
			if c.s.resources[key] != nil {
				continue // a built-in resource keeps its path
			}
			idx.custom[key] = res
			if _, ok := idx.byGV[gv]; !ok {
				newVersions[gv.Group] = append(newVersions[gv.Group], gv.Version)
			}
			idx.byGV[gv] = append(idx.byGV[gv], res)
		}
	}
	var newGroups []string
	for g, vs := range newVersions {
		vs = slices.Compact(slices.Sorted(slices.Values(vs)))
		sort.SliceStable(vs, func(i, j int) bool { return version.CompareKubeAwareVersionStrings(vs[i], vs[j]) > 0 })
		if _, ok := idx.versions[g]; !ok {
			newGroups = append(newGroups, g)
		}
		idx.versions[g] = append(idx.versions[g], vs...)
	}
	sort.Strings(newGroups)
	idx.groups = append(idx.groups, newGroups...)
	for gv, rs := range idx.byGV {
		if len(c.static.byGV[gv]) == 0 {
			sort.Slice(rs, func(i, j int) bool { return rs[i].reg.Plural < rs[j].reg.Plural })
		}
	}
	c.index.Store(idx)
	if o, ok := c.s.cfg.OpenAPI.(CustomResourceOpenAPI); ok {
		o.SetCustomResourceDefinitions(crds)
	}
}
