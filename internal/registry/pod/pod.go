// Package pod is the registry entry of core/v1 Pods: defaults, validation,
// spec immutability, graceful deletion, the binding and eviction
// subresources, and the kubectl table.
package pod

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
)

// Resource returns the pods registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Kind:         "Pod", ListKind: "PodList",
		Plural: "pods", Singular: "pod",
		ShortNames: []string{"po"},
		Categories: []string{"all"},
		Namespaced: true,
		New:        func() runtime.Object { return &corev1.Pod{} },
		NewList:    func() runtime.Object { return &corev1.PodList{} },

		// As in kube-apiserver's strategy for the kind, a PUT without a
		// resourceVersion overwrites the current object.
		AllowUnconditionalUpdate: true,

		HasStatus: true,
		Default:   func(obj runtime.Object) { Default(obj.(*corev1.Pod)) },
		PrepareForCreate: func(_ context.Context, obj runtime.Object) {
			p := obj.(*corev1.Pod)
			p.Status = corev1.PodStatus{Phase: corev1.PodPending, QOSClass: qosClass(&p.Spec)}
			p.Generation = 1
		},
		PrepareForUpdate: func(_ context.Context, obj, old runtime.Object) {
			n, o := obj.(*corev1.Pod), old.(*corev1.Pod)
			if !apiequality.Semantic.DeepEqual(n.Spec, o.Spec) {
				n.Generation = o.Generation + 1
			}
		},
		Validate: func(obj runtime.Object) field.ErrorList { return Validate(obj.(*corev1.Pod)) },
		ValidateUpdate: func(obj, old runtime.Object) field.ErrorList {
			return ValidateUpdate(obj.(*corev1.Pod), old.(*corev1.Pod))
		},
		GracefulDelete: GracefulDelete,
		Bind:           Bind,
		Evict:          true,
		Streams:        true,
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Ready", "string", 0, "The aggregate readiness state of this pod for accepting traffic."),
			registry.Column("Status", "string", 0, "The aggregate status of the containers in this pod."),
			registry.Column("Restarts", "string", 0, "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted."),
			registry.AgeColumn,
			registry.Column("IP", "string", 1, corev1.PodStatus{}.SwaggerDoc()["podIP"]),
			registry.Column("Node", "string", 1, corev1.PodSpec{}.SwaggerDoc()["nodeName"]),
			registry.Column("Nominated Node", "string", 1, corev1.PodStatus{}.SwaggerDoc()["nominatedNodeName"]),
			registry.Column("Readiness Gates", "string", 1, corev1.PodSpec{}.SwaggerDoc()["readinessGates"]),
		},
		Row: func(obj runtime.Object) ([]interface{}, error) { return Row(obj.(*corev1.Pod)), nil },
		Fields: func(obj runtime.Object) fields.Set {
			p := obj.(*corev1.Pod)
			return fields.Set{
				"spec.nodeName":            p.Spec.NodeName,
				"spec.restartPolicy":       string(p.Spec.RestartPolicy),
				"spec.schedulerName":       p.Spec.SchedulerName,
				"spec.serviceAccountName":  p.Spec.ServiceAccountName,
				"spec.hostNetwork":         strconv.FormatBool(p.Spec.HostNetwork),
				"status.phase":             string(p.Status.Phase),
				"status.podIP":             p.Status.PodIP,
				"status.nominatedNodeName": p.Status.NominatedNodeName,
			}
		},
	}
}

// Validate checks a new Pod.
func Validate(p *corev1.Pod) field.ErrorList {
	errs := ValidatePodSpec(&p.Spec, field.NewPath("spec"))
	spec := field.NewPath("spec")
	switch p.Spec.RestartPolicy {
	case corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
	default:
		errs = append(errs, field.NotSupported(spec.Child("restartPolicy"), p.Spec.RestartPolicy, []string{"Always", "OnFailure", "Never"}))
	}
	switch p.Spec.DNSPolicy {
	case corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault:
	case corev1.DNSNone:
		if p.Spec.DNSConfig == nil {
			errs = append(errs, field.Required(spec.Child("dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None"))
		} else if len(p.Spec.DNSConfig.Nameservers) == 0 {
			errs = append(errs, field.Required(spec.Child("dnsConfig", "nameservers"), "must provide at least one DNS nameserver when `dnsPolicy` is None"))
		}
	default:
		errs = append(errs, field.NotSupported(spec.Child("dnsPolicy"), p.Spec.DNSPolicy, []string{"ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"}))
	}
	if p.Spec.DNSConfig != nil && len(p.Spec.DNSConfig.Nameservers) > 3 {
		errs = append(errs, field.Invalid(spec.Child("dnsConfig", "nameservers"), p.Spec.DNSConfig.Nameservers, "must not have more than 3 nameservers"))
	}
	if g := p.Spec.TerminationGracePeriodSeconds; g != nil && *g < 0 {
		errs = append(errs, field.Invalid(spec.Child("terminationGracePeriodSeconds"), *g, "must be greater than or equal to 0"))
	}
	return errs
}

// ValidateUpdate enforces pod spec immutability: only container images,
// activeDeadlineSeconds, added tolerations and terminationGracePeriodSeconds
// (with a deletion) may change, and nodeName once set stays.
func ValidateUpdate(n, o *corev1.Pod) field.ErrorList {
	errs := Validate(n)
	mutable := n.Spec.DeepCopy()
	for i := range mutable.Containers {
		if i < len(o.Spec.Containers) {
			mutable.Containers[i].Image = o.Spec.Containers[i].Image
		}
	}
	for i := range mutable.InitContainers {
		if i < len(o.Spec.InitContainers) {
			mutable.InitContainers[i].Image = o.Spec.InitContainers[i].Image
		}
	}
	mutable.ActiveDeadlineSeconds = o.Spec.ActiveDeadlineSeconds
	if len(mutable.Tolerations) >= len(o.Spec.Tolerations) {
		mutable.Tolerations = o.Spec.Tolerations
	}
	mutable.TerminationGracePeriodSeconds = o.Spec.TerminationGracePeriodSeconds
	if o.Spec.NodeName == "" {
		mutable.NodeName = ""
	}
	if !apiequality.Semantic.DeepEqual(*mutable, o.Spec) {
		errs = append(errs, field.Forbidden(field.NewPath("spec"), "pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)"))
	}
	if o.Spec.NodeName != "" && n.Spec.NodeName != o.Spec.NodeName {
		errs = append(errs, field.Invalid(field.NewPath("spec", "nodeName"), n.Spec.NodeName, "field is immutable"))
	}
	return errs
}

// GracefulDelete decides how a delete proceeds: a pod bound to a node that
// is still running is marked with a deletion grace period and left for the
// node agent to stop and remove; an unscheduled or finished pod, or a delete
// with grace period 0, goes at once.
func GracefulDelete(obj runtime.Object, opts *metav1.DeleteOptions) (graceful bool, grace int64) {
	p := obj.(*corev1.Pod)
	grace = corev1.DefaultTerminationGracePeriodSeconds
	if p.Spec.TerminationGracePeriodSeconds != nil {
		grace = *p.Spec.TerminationGracePeriodSeconds
	}
	if opts.GracePeriodSeconds != nil {
		grace = *opts.GracePeriodSeconds
	}
	if p.Spec.NodeName == "" || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed || grace <= 0 {
		return false, 0
	}
	return true, grace
}

// Row renders a pod the way kubectl get pods does.
func Row(p *corev1.Pod) []interface{} {
	ready, total, restarts := 0, len(p.Spec.Containers), 0
	reason := string(p.Status.Phase)
	if p.Status.Reason != "" {
		reason = p.Status.Reason
	}
	initializing := false
	for i, c := range p.Status.InitContainerStatuses {
		restarts += int(c.RestartCount)
		switch {
		case c.State.Terminated != nil && c.State.Terminated.ExitCode == 0:
			continue
		case c.State.Terminated != nil:
			reason = "Init:" + c.State.Terminated.Reason
			if c.State.Terminated.Reason == "" {
				reason = "Init:ExitCode:" + strconv.Itoa(int(c.State.Terminated.ExitCode))
			}
			initializing = true
		case c.State.Waiting != nil && c.State.Waiting.Reason != "" && c.State.Waiting.Reason != "PodInitializing":
			reason = "Init:" + c.State.Waiting.Reason
			initializing = true
		default:
			reason = fmt.Sprintf("Init:%d/%d", i, len(p.Spec.InitContainers))
			initializing = true
		}
		break
	}
	if !initializing {
		restarts = 0
		hasRunning := false
		for i := len(p.Status.ContainerStatuses) - 1; i >= 0; i-- {
			c := p.Status.ContainerStatuses[i]
			restarts += int(c.RestartCount)
			switch {
			case c.State.Waiting != nil && c.State.Waiting.Reason != "":
				reason = c.State.Waiting.Reason
			case c.State.Terminated != nil && c.State.Terminated.Reason != "":
				reason = c.State.Terminated.Reason
			case c.State.Terminated != nil && c.State.Terminated.Signal != 0:
				reason = "Signal:" + strconv.Itoa(int(c.State.Terminated.Signal))
			case c.State.Terminated != nil:
				reason = "ExitCode:" + strconv.Itoa(int(c.State.Terminated.ExitCode))
			case c.Ready && c.State.Running != nil:
				hasRunning = true
				ready++
			}
		}
		if reason == "Completed" && hasRunning {
			reason = "NotReady"
			for _, cond := range p.Status.Conditions {
				if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
					reason = "Running"
				}
			}
		}
	}
	if p.DeletionTimestamp != nil {
		if p.Status.Reason == "NodeLost" {
			reason = "Unknown"
		} else {
			reason = "Terminating"
		}
	}
	gates := "<none>"
	if n := len(p.Spec.ReadinessGates); n > 0 {
		trueGates := 0
		for _, g := range p.Spec.ReadinessGates {
			for _, c := range p.Status.Conditions {
				if c.Type == g.ConditionType && c.Status == corev1.ConditionTrue {
					trueGates++
				}
			}
		}
		gates = fmt.Sprintf("%d/%d", trueGates, n)
	}
	return []interface{}{
		p.Name,
		fmt.Sprintf("%d/%d", ready, total),
		reason,
		int64(restarts),
		registry.Age(p.CreationTimestamp),
		registry.NoneIfEmpty(p.Status.PodIP),
		registry.NoneIfEmpty(p.Spec.NodeName),
		registry.NoneIfEmpty(p.Status.NominatedNodeName),
		gates,
	}
}

// Bind assigns a pod to a node, as the scheduler does through pods/binding.
func Bind(obj runtime.Object, target string) (runtime.Object, error) {
	p := obj.(*corev1.Pod)
	if p.Spec.NodeName != "" {
		return nil, fmt.Errorf("pod %s is already assigned to node %q", p.Name, p.Spec.NodeName)
	}
	if p.DeletionTimestamp != nil {
		return nil, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", p.Name)
	}
	p.Spec.NodeName = target
	now := metav1.Now()
	cond := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now}
	replaced := false
	for i := range p.Status.Conditions {
		if p.Status.Conditions[i].Type == corev1.PodScheduled {
			p.Status.Conditions[i] = cond
			replaced = true
		}
	}
	if !replaced {
		p.Status.Conditions = append(p.Status.Conditions, cond)
	}
	return p, nil
}

// ValidatePodSpec checks the containers of a pod spec.
func ValidatePodSpec(p *corev1.PodSpec, path *field.Path) field.ErrorList {
	var errs field.ErrorList
	if len(p.Containers) == 0 {
		errs = append(errs, field.Required(path.Child("containers"), ""))
	}
	names := map[string]bool{}
	check := func(list []corev1.Container, child string) {
		for i, c := range list {
			cp := path.Child(child).Index(i)
			if c.Name == "" {
				errs = append(errs, field.Required(cp.Child("name"), ""))
			} else {
				for _, msg := range validation.IsDNS1123Label(c.Name) {
					errs = append(errs, field.Invalid(cp.Child("name"), c.Name, msg))
				}
				if names[c.Name] {
					errs = append(errs, field.Duplicate(cp.Child("name"), c.Name))
				}
				names[c.Name] = true
			}
			if strings.TrimSpace(c.Image) == "" {
				errs = append(errs, field.Required(cp.Child("image"), ""))
			}
			for j, port := range c.Ports {
				pp := cp.Child("ports").Index(j)
				for _, msg := range validation.IsValidPortNum(int(port.ContainerPort)) {
					errs = append(errs, field.Invalid(pp.Child("containerPort"), port.ContainerPort, msg))
				}
				if port.Name != "" {
					for _, msg := range validation.IsValidPortName(port.Name) {
						errs = append(errs, field.Invalid(pp.Child("name"), port.Name, msg))
					}
				}
			}
		}
	}
	check(p.InitContainers, "initContainers")
	check(p.Containers, "containers")
	if p.Hostname != "" {
		for _, msg := range validation.IsDNS1123Label(p.Hostname) {
			errs = append(errs, field.Invalid(path.Child("hostname"), p.Hostname, msg))
		}
	}
	if p.Subdomain != "" {
		for _, msg := range validation.IsDNS1123Label(p.Subdomain) {
			errs = append(errs, field.Invalid(path.Child("subdomain"), p.Subdomain, msg))
		}
	}
	return errs
}
