// Package resourcequota is the ResourceQuota admission plugin: a create
// (and a Service's or claim's growth) is refused with 403 when it would
// take a namespace's usage past a quota's hard limits, and otherwise the
// quota's status.used is charged before the object is stored, with
// optimistic concurrency on the quota, so that concurrent requests cannot
// together exceed it. The quota controller recomputes status.used from
// the objects that exist (replenishing what deletions free).
package resourcequota

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/headway/headway/internal/apiserver/admission"
	"github.com/headway/headway/internal/quota"
)

var quotas = corev1.SchemeGroupVersion.WithResource("resourcequotas")

// Plugin is the ResourceQuota step.
type Plugin struct{}

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

// Name implements admission.Plugin.
func (*Plugin) Name() string { return "ResourceQuota" }

// charge is what a request adds to one quota.
type charge struct {
	name  string
	delta corev1.ResourceList
}

// Validate refuses a request that would exceed a quota and charges the
// quotas it counts against.
func (p *Plugin) Validate(ctx context.Context, a *admission.Attributes, o admission.Objects) error {
	if !counted(a) {
		return nil
	}
	objs, err := o.List(ctx, quotas, a.Namespace)
	if err != nil {
		return err
	}
	if len(objs) == 0 {
		return nil // most namespaces: no usage to compute
	}
	usage, old, _ := requestUsage(a)
	list := make([]*corev1.ResourceQuota, 0, len(objs))
	for _, obj := range objs {
		if q, ok := obj.(*corev1.ResourceQuota); ok {
			list = append(list, q)
		}
	}
	sort.Slice(list, func(i, j int) bool { return list[i].Name < list[j].Name })
	charges, err := Plan(a, list, usage, old)
	if err != nil {
		return err
	}
	// Charge each quota in turn; the status write fails and is retried
	// with the newer quota when another request charged it meanwhile, so
	// the check always sees every earlier charge.
	var done []charge
	for _, c := range charges {
		_, err := o.UpdateStatus(ctx, quotas, a.Namespace, c.name, a.DryRun, func(obj runtime.Object) error {
			q := obj.(*corev1.ResourceQuota)
			used, err := Charge(a, q, c.delta)
			if err != nil {
				return err
			}
			q.Status.Used = used
			return nil
		})
		if apierrors.IsNotFound(err) {
			continue // the quota went away meanwhile
		}
		if err != nil {
			if !a.DryRun {
				p.refund(ctx, a, o, done)
			}
			return err
		}
		done = append(done, c)
	}
	return nil
}

// refund takes back the charges of a request a later quota refused.
func (p *Plugin) refund(ctx context.Context, a *admission.Attributes, o admission.Objects, done []charge) {
	for _, c := range done {
		o.UpdateStatus(ctx, quotas, a.Namespace, c.name, false, func(obj runtime.Object) error {
			q := obj.(*corev1.ResourceQuota)
			q.Status.Used = quota.SubtractNonNegative(q.Status.Used, c.delta)
			return nil
		})
	}
}

// requestUsage is what the request's object uses, and for an update what
// the stored one used; ok is false for requests quota does not count:
// subresources, deletes, and updates of anything but Services and claims
// (whose node ports, load balancers and storage may grow).
func requestUsage(a *admission.Attributes) (usage, old corev1.ResourceList, ok bool) {
	if !counted(a) {
		return nil, nil, false
	}
	gr := a.Resource.GroupResource()
	if a.Operation == admission.Update {
		return quota.Usage(gr, a.Object), quota.Usage(gr, a.OldObject), true
	}
	return quota.Usage(gr, a.Object), nil, true
}

// counted says whether quota counts the request (requestUsage).
func counted(a *admission.Attributes) bool {
	if a.Subresource != "" || a.Object == nil {
		return false
	}
	gr := a.Resource.GroupResource()
	switch a.Operation {
	case admission.Create:
		return true
	case admission.Update:
		return gr.Group == "" && (gr.Resource == "services" || gr.Resource == "persistentvolumeclaims") && a.OldObject != nil
	}
	return false
}

// Plan decides which quotas (sorted by name) a request counts against and
// what it adds to each, or refuses it (403): when a pod does not state the
// requests or limits a quota limits, or a quota has not been counted yet.
// The limits themselves are checked by Charge, against the quota as it is
// when charged.
func Plan(a *admission.Attributes, list []*corev1.ResourceQuota, usage, old corev1.ResourceList) ([]charge, error) {
	var out []charge
	for _, q := range list {
		if !quota.Matches(q, a.Object) {
			continue
		}
		restricted := quota.Matching(a.Resource.GroupResource(), quota.Names(q.Status.Hard))
		if len(restricted) == 0 {
			continue
		}
		if pod, ok := a.Object.(*corev1.Pod); ok {
			if err := quota.PodConstraints(q.Status.Hard, pod); err != nil {
				return nil, admission.NewForbidden(a, fmt.Errorf("failed quota: %s: %v", q.Name, err))
			}
		}
		var unknown []string
		for _, n := range restricted {
			if _, ok := q.Status.Used[n]; !ok {
				unknown = append(unknown, string(n))
			}
		}
		if len(unknown) > 0 {
			return nil, admission.NewForbidden(a, fmt.Errorf("status unknown for quota: %s, resources: %s", q.Name, strings.Join(unknown, ",")))
		}
		delta := usage
		if old != nil && quota.Matches(q, a.OldObject) {
			delta = quota.SubtractNonNegative(usage, old)
		}
		delta = quota.RemoveZeros(quota.Mask(delta, restricted))
		if len(delta) == 0 {
			continue
		}
		out = append(out, charge{name: q.Name, delta: delta})
	}
	return out, nil
}

// Charge returns the quota's used plus delta, or kube-apiserver's 403
// "exceeded quota: <name>, requested: ..., used: ..., limited: ..." when
// that would pass its hard limits.
func Charge(a *admission.Attributes, q *corev1.ResourceQuota, delta corev1.ResourceList) (corev1.ResourceList, error) {
	requested := quota.Mask(delta, quota.Names(q.Status.Hard))
	used := quota.Add(q.Status.Used, requested)
	if ok, exceeded := quota.LessThanOrEqual(quota.Mask(used, quota.Names(requested)), q.Status.Hard); !ok {
		return nil, admission.NewForbidden(a, fmt.Errorf("exceeded quota: %s, requested: %s, used: %s, limited: %s",
			q.Name, quota.String(quota.Mask(requested, exceeded)), quota.String(withZeros(quota.Mask(q.Status.Used, exceeded), exceeded)),
			quota.String(quota.Mask(q.Status.Hard, exceeded))))
	}
	return used, nil
}

// withZeros names every resource of names, zero where list has none.
func withZeros(list corev1.ResourceList, names []corev1.ResourceName) corev1.ResourceList {
	out := quota.Zero(names)
	for n, q := range list {
		out[n] = q
	}
	return out
}

var _ admission.Validator = (*Plugin)(nil)
