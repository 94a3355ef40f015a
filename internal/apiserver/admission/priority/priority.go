// Package priority is the Priority admission plugin: a new pod's
// spec.priorityClassName (or the global default PriorityClass) resolves
// its spec.priority and spec.preemptionPolicy, an unknown class is refused,
// and only one PriorityClass may be the global default, as kube-apiserver's
// plugin does.
package priority

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/headway/headway/internal/apiserver/admission"
)

var classes = schedulingv1.SchemeGroupVersion.WithResource("priorityclasses")

// Plugin is the Priority step.
type Plugin struct{}

// New returns the plugin.
func New() *Plugin { return &Plugin{} }

// Name implements admission.Plugin.
func (*Plugin) Name() string { return "Priority" }

// Admit resolves a new pod's priority from its class.
//
// The pod registry defaults spec.priority to 0 and spec.preemptionPolicy to
// PreemptLowerPriority only for pods without a class name, so a pod naming
// a class still says here whether its author set them. A pod without one
// that the global default class then covers can have been given those
// defaults: they are taken as unset.
func (p *Plugin) Admit(ctx context.Context, a *admission.Attributes, o admission.Objects) error {
	if !a.Is("", "pods") || a.Operation != admission.Create {
		return nil
	}
	pod, ok := a.Object.(*corev1.Pod)
	if !ok {
		return nil
	}
	var value int32
	policy := corev1.PreemptLowerPriority
	if pod.Spec.PriorityClassName == "" {
		def, err := defaultClass(ctx, o)
		if err != nil {
			return err
		}
		if def == nil {
			return check(a, pod, value, policy)
		}
		if pod.Spec.Priority != nil && *pod.Spec.Priority == 0 {
			pod.Spec.Priority = nil
		}
		if pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy == corev1.PreemptLowerPriority {
			pod.Spec.PreemptionPolicy = nil
		}
		pod.Spec.PriorityClassName = def.Name
		value = def.Value
		if def.PreemptionPolicy != nil {
			policy = *def.PreemptionPolicy
		}
		return check(a, pod, value, policy)
	}
	obj, err := o.Get(ctx, classes, "", pod.Spec.PriorityClassName)
	if apierrors.IsNotFound(err) {
		return admission.NewForbidden(a, fmt.Errorf("no PriorityClass with name %v was found", pod.Spec.PriorityClassName))
	}
	if err != nil {
		return fmt.Errorf("failed to get PriorityClass with name %s: %w", pod.Spec.PriorityClassName, err)
	}
	pc := obj.(*schedulingv1.PriorityClass)
	value = pc.Value
	if pc.PreemptionPolicy != nil {
		policy = *pc.PreemptionPolicy
	}
	return check(a, pod, value, policy)
}

// check refuses a pod that states a priority or preemption policy other
// than its class's, and sets them.
func check(a *admission.Attributes, pod *corev1.Pod, value int32, policy corev1.PreemptionPolicy) error {
	if pod.Spec.Priority != nil && *pod.Spec.Priority != value {
		return admission.NewForbidden(a, fmt.Errorf("the integer value of priority (%d) must not be provided in pod spec; priority admission controller computed %d from the given PriorityClass name", *pod.Spec.Priority, value))
	}
	if pod.Spec.PreemptionPolicy != nil && *pod.Spec.PreemptionPolicy != policy {
		return admission.NewForbidden(a, fmt.Errorf("the string value of PreemptionPolicy (%s) must not be provided in pod spec; priority admission controller computed %s from the given PriorityClass name", *pod.Spec.PreemptionPolicy, policy))
	}
	pod.Spec.Priority = &value
	pod.Spec.PreemptionPolicy = &policy
	return nil
}

// defaultClass is the global default PriorityClass (the lowest valued one
// should several claim it), or nil.
func defaultClass(ctx context.Context, o admission.Objects) (*schedulingv1.PriorityClass, error) {
	objs, err := o.List(ctx, classes, "")
	if err != nil {
		return nil, fmt.Errorf("failed to get default priority class: %w", err)
	}
	var def *schedulingv1.PriorityClass
	for _, obj := range objs {
		pc, ok := obj.(*schedulingv1.PriorityClass)
		if ok && pc.GlobalDefault && (def == nil || pc.Value < def.Value) {
			def = pc
		}
	}
	return def, nil
}

// Validate lets only one PriorityClass be the global default.
func (p *Plugin) Validate(ctx context.Context, a *admission.Attributes, o admission.Objects) error {
	if !a.Is("scheduling.k8s.io", "priorityclasses") || (a.Operation != admission.Create && a.Operation != admission.Update) {
		return nil
	}
	pc, ok := a.Object.(*schedulingv1.PriorityClass)
	if !ok || !pc.GlobalDefault {
		return nil
	}
	def, err := defaultClass(ctx, o)
	if err != nil {
		return err
	}
	if def != nil && (a.Operation == admission.Create || def.Name != pc.Name) {
		return admission.NewForbidden(a, fmt.Errorf("PriorityClass %v is already marked as default. Only one default can exist", def.Name))
	}
	return nil
}

var (
	_ admission.Mutator   = (*Plugin)(nil)
	_ admission.Validator = (*Plugin)(nil)
)
