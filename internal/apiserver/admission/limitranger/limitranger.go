// Package limitranger is the LimitRanger admission plugin: the LimitRanges
// of a namespace give new pods' containers their default requests and
// limits, and refuse pods and PersistentVolumeClaims outside their min,
// max and max limit/request ratio, as kube-apiserver's plugin does.
package limitranger

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"

	"github.com/headway/headway/internal/apiserver/admission"
	"github.com/headway/headway/internal/quota"
)

// Annotation records on a pod which defaults LimitRanger set.
const Annotation = "kubernetes.io/limit-ranger"

var limitRanges = corev1.SchemeGroupVersion.WithResource("limitranges")

// Plugin is the LimitRanger step.
type Plugin struct{}

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

// Name implements admission.Plugin.
func (*Plugin) Name() string { return "LimitRanger" }

// handles: new pods (their containers cannot change later), and claims on
// create and update; never a subresource.
func handles(a *admission.Attributes) bool {
	switch {
	case a.Is("", "pods"):
		return a.Operation == admission.Create
	case a.Is("", "persistentvolumeclaims"):
		return a.Operation == admission.Create || a.Operation == admission.Update
	}
	return false
}

func (p *Plugin) ranges(ctx context.Context, a *admission.Attributes, o admission.Objects) ([]*corev1.LimitRange, error) {
	objs, err := o.List(ctx, limitRanges, a.Namespace)
	if err != nil {
		return nil, admission.NewForbidden(a, fmt.Errorf("unable to %s %s at this time because there was an error enforcing limit ranges", a.Operation, a.Resource.Resource))
	}
	out := make([]*corev1.LimitRange, 0, len(objs))
	for _, obj := range objs {
		if lr, ok := obj.(*corev1.LimitRange); ok {
			out = append(out, lr)
		}
	}
	return out, nil
}

// Admit sets the default requests and limits of new pods' containers.
func (p *Plugin) Admit(ctx context.Context, a *admission.Attributes, o admission.Objects) error {
	if !handles(a) {
		return nil
	}
	pod, ok := a.Object.(*corev1.Pod)
	if !ok {
		return nil
	}
	lrs, err := p.ranges(ctx, a, o)
	if err != nil {
		return err
	}
	for _, lr := range lrs {
		SetDefaults(lr, pod)
	}
	return nil
}

// Validate refuses pods and claims outside the namespace's limits (403).
func (p *Plugin) Validate(ctx context.Context, a *admission.Attributes, o admission.Objects) error {
	if !handles(a) {
		return nil
	}
	var check func(*corev1.LimitRange) error
	switch obj := a.Object.(type) {
	case *corev1.Pod:
		check = func(lr *corev1.LimitRange) error { return ValidatePod(lr, obj) }
	case *corev1.PersistentVolumeClaim:
		check = func(lr *corev1.LimitRange) error { return ValidateClaim(lr, obj) }
	default:
		return nil
	}
	lrs, err := p.ranges(ctx, a, o)
	if err != nil {
		return err
	}
	for _, lr := range lrs {
		if err := check(lr); err != nil {
			return admission.NewForbidden(a, err)
		}
	}
	return nil
}

// SetDefaults gives every container of pod the LimitRange's Container
// default limits and default requests it does not state, and records what
// it set in the kubernetes.io/limit-ranger annotation.
func SetDefaults(lr *corev1.LimitRange, pod *corev1.Pod) {
	requests, limits := corev1.ResourceList{}, corev1.ResourceList{}
	for _, l := range lr.Spec.Limits {
		if l.Type != corev1.LimitTypeContainer {
			continue
		}
		for n, q := range l.DefaultRequest {
			requests[n] = q.DeepCopy()
		}
		for n, q := range l.Default {
			limits[n] = q.DeepCopy()
		}
	}
	if len(requests) == 0 && len(limits) == 0 {
		return
	}
	var notes []string
	merge := func(c *corev1.Container, kind string) {
		var setReq, setLim []string
		if c.Resources.Limits == nil {
			c.Resources.Limits = corev1.ResourceList{}
		}
		if c.Resources.Requests == nil {
			c.Resources.Requests = corev1.ResourceList{}
		}
		for n, q := range limits {
			if _, ok := c.Resources.Limits[n]; !ok {
				c.Resources.Limits[n] = q.DeepCopy()
				setLim = append(setLim, string(n))
			}
		}
		for n, q := range requests {
			if _, ok := c.Resources.Requests[n]; !ok {
				c.Resources.Requests[n] = q.DeepCopy()
				setReq = append(setReq, string(n))
			}
		}
		if len(setReq) > 0 {
			sort.Strings(setReq)
			notes = append(notes, fmt.Sprintf("%s request for %s %s", strings.Join(setReq, ", "), kind, c.Name))
		}
		if len(setLim) > 0 {
			sort.Strings(setLim)
			notes = append(notes, fmt.Sprintf("%s limit for %s %s", strings.Join(setLim, ", "), kind, c.Name))
		}
	}
	for i := range pod.Spec.Containers {
		merge(&pod.Spec.Containers[i], "container")
	}
	for i := range pod.Spec.InitContainers {
		merge(&pod.Spec.InitContainers[i], "init container")
	}
	if len(notes) > 0 {
		if pod.Annotations == nil {
			pod.Annotations = map[string]string{}
		}
		pod.Annotations[Annotation] = "LimitRanger plugin set: " + strings.Join(notes, "; ")
	}
}

// ValidatePod checks a pod against the LimitRange's Container limits (for
// each container) and Pod limits (for the pod's effective totals).
func ValidatePod(lr *corev1.LimitRange, pod *corev1.Pod) error {
	var errs []error
	for _, l := range lr.Spec.Limits {
		switch l.Type {
		case corev1.LimitTypeContainer:
			for i := range pod.Spec.Containers {
				c := &pod.Spec.Containers[i]
				errs = append(errs, checkItem(l, c.Resources.Requests, c.Resources.Limits)...)
			}
			for i := range pod.Spec.InitContainers {
				c := &pod.Spec.InitContainers[i]
				errs = append(errs, checkItem(l, c.Resources.Requests, c.Resources.Limits)...)
			}
		case corev1.LimitTypePod:
			errs = append(errs, checkItem(l, quota.PodRequests(pod), quota.PodLimits(pod))...)
		}
	}
	return utilerrors.NewAggregate(errs)
}

// ValidateClaim checks a claim's storage request against the LimitRange's
// PersistentVolumeClaim min and max.
func ValidateClaim(lr *corev1.LimitRange, pvc *corev1.PersistentVolumeClaim) error {
	var errs []error
	kind := string(corev1.LimitTypePersistentVolumeClaim)
	for _, l := range lr.Spec.Limits {
		if l.Type != corev1.LimitTypePersistentVolumeClaim {
			continue
		}
		for _, n := range sorted(l.Min) {
			errs = appendErr(errs, minimum(kind, n, l.Min[n], pvc.Spec.Resources.Requests, nil))
		}
		for _, n := range sorted(l.Max) {
			req, ok := pvc.Spec.Resources.Requests[n]
			max := l.Max[n]
			switch {
			case !ok:
				errs = append(errs, fmt.Errorf("maximum %s usage per %s is %s.  No request is specified", n, kind, max.String()))
			case req.Cmp(max) > 0:
				errs = append(errs, fmt.Errorf("maximum %s usage per %s is %s, but request is %s", n, kind, max.String(), req.String()))
			}
		}
	}
	return utilerrors.NewAggregate(errs)
}

func checkItem(l corev1.LimitRangeItem, requests, limits corev1.ResourceList) []error {
	var errs []error
	kind := string(l.Type)
	for _, n := range sorted(l.Min) {
		errs = appendErr(errs, minimum(kind, n, l.Min[n], requests, limits))
	}
	for _, n := range sorted(l.Max) {
		errs = appendErr(errs, maximum(kind, n, l.Max[n], requests, limits))
	}
	for _, n := range sorted(l.MaxLimitRequestRatio) {
		errs = appendErr(errs, ratio(kind, n, l.MaxLimitRequestRatio[n], requests, limits))
	}
	return errs
}

func appendErr(errs []error, err error) []error {
	if err != nil {
		return append(errs, err)
	}
	return errs
}

func sorted(list corev1.ResourceList) []corev1.ResourceName { return quota.Names(list) }

func minimum(kind string, n corev1.ResourceName, min resource.Quantity, requests, limits corev1.ResourceList) error {
	req, reqOK := requests[n]
	lim, limOK := limits[n]
	switch {
	case !reqOK:
		return fmt.Errorf("minimum %s usage per %s is %s.  No request is specified", n, kind, min.String())
	case req.Cmp(min) < 0:
		return fmt.Errorf("minimum %s usage per %s is %s, but request is %s", n, kind, min.String(), req.String())
	case limOK && lim.Cmp(min) < 0:
		return fmt.Errorf("minimum %s usage per %s is %s, but limit is %s", n, kind, min.String(), lim.String())
	}
	return nil
}

func maximum(kind string, n corev1.ResourceName, max resource.Quantity, requests, limits corev1.ResourceList) error {
	req, reqOK := requests[n]
	lim, limOK := limits[n]
	switch {
	case !limOK:
		return fmt.Errorf("maximum %s usage per %s is %s.  No limit is specified", n, kind, max.String())
	case lim.Cmp(max) > 0:
		return fmt.Errorf("maximum %s usage per %s is %s, but limit is %s", n, kind, max.String(), lim.String())
	case reqOK && req.Cmp(max) > 0:
		return fmt.Errorf("maximum %s usage per %s is %s, but request is %s", n, kind, max.String(), req.String())
	}
	return nil
}

func ratio(kind string, n corev1.ResourceName, max resource.Quantity, requests, limits corev1.ResourceList) error {
	req, reqOK := requests[n]
	lim, limOK := limits[n]
	if !reqOK || req.IsZero() {
		return fmt.Errorf("%s max limit to request ratio per %s is %s, but no request is specified or request is 0", n, kind, max.String())
	}
	if !limOK || lim.IsZero() {
		return fmt.Errorf("%s max limit to request ratio per %s is %s, but no limit is specified or limit is 0", n, kind, max.String())
	}
	observed := float64(lim.MilliValue()) / float64(req.MilliValue())
	if observed*1000 > float64(max.MilliValue()) {
		return fmt.Errorf("%s max limit to request ratio per %s is %s, but provided ratio is %f", n, kind, max.String(), observed)
	}
	return nil
}

var (
	_ admission.Mutator   = (*Plugin)(nil)
	_ admission.Validator = (*Plugin)(nil)
)
