package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/headway/headway/internal/apiserver/admission"
)

// maxDisruptedPods bounds status.disruptedPods: evictions the disruption
// controller has not confirmed yet (kube-apiserver's MaxDisruptedPodSize).
const maxDisruptedPods = 2000

// handleEviction serves POST pods/<name>/eviction: a delete with the
// Eviction's options that the pod's PodDisruptionBudget may refuse (429),
// as kube-apiserver's eviction subresource.
func (res *resource) handleEviction(w http.ResponseWriter, r *http.Request, info requestInfo) error {
	f, opts, body, err := writeRequest(r, false)
	if err != nil {
		return err
	}
	ev := &policyv1.Eviction{}
	if _, err := res.decodeBody(r, body, opts, ev, policyv1.SchemeGroupVersion.WithKind("Eviction")); err != nil {
		return err
	}
	if _, err := res.admitSubresource(r.Context(), res.s.admissionFor(r, info), admission.Create, policyv1.SchemeGroupVersion.WithKind("Eviction"), info.Namespace, info.Name, ev, nil, opts); err != nil {
		return err
	}
	var del metav1.DeleteOptions
	if ev.DeleteOptions != nil {
		del = *ev.DeleteOptions
	}
	if opts.dryRun {
		del.DryRun = []string{metav1.DryRunAll}
	}
	ctx := r.Context()
	if err := res.evict(ctx, info.Namespace, info.Name, del); err != nil {
		return err
	}
	res.s.writeObject(w, f, http.StatusCreated, &metav1.Status{Status: metav1.StatusSuccess, Code: http.StatusCreated})
	return nil
}

// evict deletes the pod as an eviction: a pod that already caused its
// disruption (terminal, pending, being deleted) goes at once; any other is
// checked against its budget first. Each evicted pod is marked with the
// DisruptionTarget condition just before its delete, as kube-apiserver does.
func (res *resource) evict(ctx context.Context, ns, name string, del metav1.DeleteOptions) error {
	clientVersion := del.Preconditions != nil && del.Preconditions.ResourceVersion != nil
	obj, err := res.get(ctx, ns, name)
	if err != nil {
		return err
	}
	pod, ok := obj.(*corev1.Pod)
	if !ok {
		_, _, err := res.deleteObject(ctx, ns, name, del)
		return err
	}
	if canIgnorePDB(pod) {
		return res.markAndDelete(ctx, pod, del)
	}
	opts := del
	pdbName, unready, err := res.checkDisruptionBudget(ctx, pod, len(del.DryRun) > 0)
	if err != nil {
		return err
	}
	if unready {
		// The unready pod took no disruption: it must still be the pod
		// read (not become Ready since).
		opts = withResourceVersion(del, pod.ResourceVersion)
	}
	err = res.markAndDelete(ctx, pod, opts)
	if apierrors.IsConflict(err) && unready && !clientVersion {
		// The pod changed since: the client retries (429), as on kube.
		return tooManyRequests(fmt.Sprintf("The disruption budget %s is still being processed by the server.", pdbName))
	}
	return err
}

// withResourceVersion is del with a resourceVersion precondition.
func withResourceVersion(del metav1.DeleteOptions, rv string) metav1.DeleteOptions {
	out := *del.DeepCopy()
	if out.Preconditions == nil {
		out.Preconditions = &metav1.Preconditions{}
	}
	out.Preconditions.ResourceVersion = &rv
	return out
}

// markAndDelete adds the DisruptionTarget condition (reason
// EvictionByEvictionAPI) to the current pod through its status, checking
// del's preconditions against it, then deletes the pod. A dry run only
// checks the delete.
func (res *resource) markAndDelete(ctx context.Context, pod *corev1.Pod, del metav1.DeleteOptions) error {
	if len(del.DryRun) == 0 {
		out, _, err := res.updateObject(ctx, pod.Namespace, pod.Name, modeStatus, writeOptions{}, func(cur runtime.Object) (runtime.Object, error) {
			p := cur.(*corev1.Pod)
			if pre := del.Preconditions; pre != nil {
				if pre.UID != nil && *pre.UID != "" && *pre.UID != p.UID {
					return nil, apierrors.NewConflict(corev1.Resource("pods"), p.Name, fmt.Errorf("the UID in the precondition (%s) does not match the UID in record (%s). The object might have been deleted and then recreated", *pre.UID, p.UID))
				}
				if pre.ResourceVersion != nil && *pre.ResourceVersion != "" && *pre.ResourceVersion != p.ResourceVersion {
					return nil, apierrors.NewConflict(corev1.Resource("pods"), p.Name, fmt.Errorf("the ResourceVersion in the precondition (%s) does not match the ResourceVersion in record (%s). The object might have been modified", *pre.ResourceVersion, p.ResourceVersion))
				}
			}
			setDisruptionTarget(p, metav1.Now())
			return p, nil
		}, nil)
		if err != nil {
			return err
		}
		if del.Preconditions != nil && del.Preconditions.ResourceVersion != nil {
			// The condition is this eviction's own write.
			acc, _ := meta.Accessor(out)
			del = withResourceVersion(del, acc.GetResourceVersion())
		}
	}
	_, _, err := res.deleteObject(ctx, pod.Namespace, pod.Name, del)
	return err
}

// setDisruptionTarget sets the pod's DisruptionTarget condition to True
// with the eviction API's reason, moving lastTransitionTime only when the
// status changes.
func setDisruptionTarget(pod *corev1.Pod, now metav1.Time) {
	want := corev1.PodCondition{
		Type: corev1.DisruptionTarget, Status: corev1.ConditionTrue,
		Reason: "EvictionByEvictionAPI", Message: "Eviction API: evicting",
		LastTransitionTime: now,
	}
	for i := range pod.Status.Conditions {
		c := &pod.Status.Conditions[i]
		if c.Type != corev1.DisruptionTarget {
			continue
		}
		if c.Status == want.Status {
			want.LastTransitionTime = c.LastTransitionTime
		}
		want.LastProbeTime = c.LastProbeTime
		*c = want
		return
	}
	pod.Status.Conditions = append(pod.Status.Conditions, want)
}

// canIgnorePDB: pods that are not running, or already being deleted, are
// evicted whatever their budget says.
func canIgnorePDB(pod *corev1.Pod) bool {
	switch pod.Status.Phase {
	case corev1.PodSucceeded, corev1.PodFailed, corev1.PodPending:
		return true
	}
	return pod.DeletionTimestamp != nil
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// checkDisruptionBudget lets the eviction of pod go ahead, taking one
// disruption from its budget (status.disruptionsAllowed, recorded in
// status.disruptedPods), or refuses it. It returns the budget's name, and
// unready when the pod is evicted without taking a disruption (it is not
// Ready): then its delete must be conditional on the version read.
func (res *resource) checkDisruptionBudget(ctx context.Context, pod *corev1.Pod, dryRun bool) (pdbName string, unready bool, err error) {
	pdbRes := res.s.resources["policy/v1/poddisruptionbudgets"]
	if pdbRes == nil {
		return "", false, nil
	}
	list, err := pdbRes.list(ctx, pod.Namespace, nil, selection{labels: labels.Everything(), fields: fields.Everything()})
	if err != nil {
		return "", false, err
	}
	var pdbs []*policyv1.PodDisruptionBudget
	for _, o := range list.items {
		pdb, ok := o.(*policyv1.PodDisruptionBudget)
		if !ok {
			continue
		}
		// policy/v1: an empty selector matches every pod, a missing one none.
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || !sel.Matches(labels.Set(pod.Labels)) {
			continue
		}
		pdbs = append(pdbs, pdb)
	}
	switch {
	case len(pdbs) > 1:
		return "", false, apierrors.NewInternalError(fmt.Errorf("This pod has more than one PodDisruptionBudget, which the eviction subresource does not support."))
	case len(pdbs) == 0:
		return "", false, nil
	}
	pdb := pdbs[0]
	if !podReady(pod) {
		// An unhealthy pod does not count as healthy: evicting it takes no
		// disruption when the policy says so or the budget is met anyway.
		alwaysAllow := pdb.Spec.UnhealthyPodEvictionPolicy != nil && *pdb.Spec.UnhealthyPodEvictionPolicy == policyv1.AlwaysAllow
		if alwaysAllow || (pdb.Status.CurrentHealthy >= pdb.Status.DesiredHealthy && pdb.Status.DesiredHealthy > 0) {
			return pdb.Name, true, nil
		}
	}
	_, _, err = pdbRes.updateObject(ctx, pdb.Namespace, pdb.Name, modeStatus, writeOptions{dryRun: dryRun}, func(cur runtime.Object) (runtime.Object, error) {
		p := cur.(*policyv1.PodDisruptionBudget)
		if err := disruptionAllowed(p); err != nil {
			return nil, err
		}
		p.Status.DisruptionsAllowed--
		if p.Status.DisruptionsAllowed == 0 {
			for i := range p.Status.Conditions {
				c := &p.Status.Conditions[i]
				if c.Type == policyv1.DisruptionAllowedCondition && c.Status != metav1.ConditionFalse {
					c.Status, c.Reason, c.Message = metav1.ConditionFalse, policyv1.InsufficientPodsReason, ""
					c.LastTransitionTime = metav1.Now()
					c.ObservedGeneration = p.Status.ObservedGeneration
				}
			}
		}
		if p.Status.DisruptedPods == nil {
			p.Status.DisruptedPods = map[string]metav1.Time{}
		}
		p.Status.DisruptedPods[pod.Name] = metav1.NewTime(time.Now())
		return p, nil
	}, nil)
	if apierrors.IsNotFound(err) {
		return pdb.Name, false, nil // the budget went away meanwhile
	}
	return pdb.Name, false, err
}

// disruptionAllowed is kube-apiserver's check of a budget before an
// eviction takes one of its disruptions.
func disruptionAllowed(pdb *policyv1.PodDisruptionBudget) error {
	if pdb.Status.ObservedGeneration < pdb.Generation {
		return tooManyRequests(fmt.Sprintf("The disruption budget %s is still being processed by the server.", pdb.Name))
	}
	if pdb.Status.DisruptionsAllowed < 0 {
		return apierrors.NewForbidden(policyv1.Resource("poddisruptionbudget"), pdb.Name, fmt.Errorf("pdb disruptions allowed is negative"))
	}
	if len(pdb.Status.DisruptedPods) > maxDisruptedPods {
		return apierrors.NewForbidden(policyv1.Resource("poddisruptionbudget"), pdb.Name, fmt.Errorf("DisruptedPods map too big - too many evictions not confirmed by PDB controller"))
	}
	if pdb.Status.DisruptionsAllowed == 0 {
		return tooManyRequests(fmt.Sprintf("The disruption budget %s needs %d healthy pods and has %d currently", pdb.Name, pdb.Status.DesiredHealthy, pdb.Status.CurrentHealthy))
	}
	return nil
}

// tooManyRequests is the 429 refusing an eviction, with the budget's
// reason as a DisruptionBudget cause.
func tooManyRequests(cause string) error {
	err := apierrors.NewTooManyRequests("Cannot evict pod as it would violate the pod's disruption budget.", 0)
	err.ErrStatus.Details.Causes = append(err.ErrStatus.Details.Causes, metav1.StatusCause{Type: policyv1.DisruptionBudgetCause, Message: cause})
	return err
}
