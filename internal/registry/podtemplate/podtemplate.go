// Package podtemplate is the registry entry of core/v1 PodTemplates, and
// the validation every workload kind applies to its pod template.
package podtemplate

import (
	corev1 "k8s.io/api/core/v1"
	apivalidation "k8s.io/apimachinery/pkg/api/validation"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	metav1validation "k8s.io/apimachinery/pkg/apis/meta/v1/validation"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/pod"
)

// Resource returns the podtemplates registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Kind:         "PodTemplate", ListKind: "PodTemplateList",
		AllowUnconditionalUpdate: true,
		Plural:                   "podtemplates", Singular: "podtemplate",
		Namespaced: true,
		New:        func() runtime.Object { return &corev1.PodTemplate{} },
		NewList:    func() runtime.Object { return &corev1.PodTemplateList{} },
		Default:    func(obj runtime.Object) { pod.DefaultPodSpec(&obj.(*corev1.PodTemplate).Template.Spec) },
		// The template is the object's spec: a change is a new generation.
		Generation: true,
		Validate: func(obj runtime.Object) field.ErrorList {
			return ValidateTemplate(&obj.(*corev1.PodTemplate).Template, field.NewPath("template"))
		},
		ValidateUpdate: func(obj, _ runtime.Object) field.ErrorList {
			return ValidateTemplate(&obj.(*corev1.PodTemplate).Template, field.NewPath("template"))
		},
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Containers", "string", 0, "Names of each container in the template."),
			registry.Column("Images", "string", 0, "Images referenced by each container in the template."),
			registry.Column("Pod Labels", "string", 0, "The labels for the pod template."),
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			t := obj.(*corev1.PodTemplate)
			names, images := registry.ContainerCells(t.Template.Spec.Containers)
			return []interface{}{t.Name, names, images, labels.FormatLabels(t.Template.Labels)}, nil
		},
	}
}

// ValidateTemplate checks a pod template: its labels and annotations, its
// pod spec, and the restart and DNS policies.
func ValidateTemplate(t *corev1.PodTemplateSpec, path *field.Path) field.ErrorList {
	meta := path.Child("metadata")
	errs := metav1validation.ValidateLabels(t.Labels, meta.Child("labels"))
	errs = append(errs, apivalidation.ValidateAnnotations(t.Annotations, meta.Child("annotations"))...)
	spec := path.Child("spec")
	errs = append(errs, pod.ValidatePodSpec(&t.Spec, spec)...)
	switch t.Spec.RestartPolicy {
	case corev1.RestartPolicyAlways, corev1.RestartPolicyOnFailure, corev1.RestartPolicyNever:
	case "":
		errs = append(errs, field.Required(spec.Child("restartPolicy"), ""))
	default:
		errs = append(errs, field.NotSupported(spec.Child("restartPolicy"), t.Spec.RestartPolicy, []string{"Always", "OnFailure", "Never"}))
	}
	switch t.Spec.DNSPolicy {
	case corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet, corev1.DNSDefault:
	case corev1.DNSNone:
		if t.Spec.DNSConfig == nil {
			errs = append(errs, field.Required(spec.Child("dnsConfig"), "must provide `dnsConfig` when `dnsPolicy` is None"))
		}
	default:
		errs = append(errs, field.NotSupported(spec.Child("dnsPolicy"), t.Spec.DNSPolicy, []string{"ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"}))
	}
	if g := t.Spec.TerminationGracePeriodSeconds; g != nil && *g < 0 {
		errs = append(errs, field.Invalid(spec.Child("terminationGracePeriodSeconds"), *g, "must be greater than or equal to 0"))
	}
	return errs
}

// ValidateSelector checks a workload's required, non-empty label selector.
func ValidateSelector(sel *metav1.LabelSelector, path *field.Path, kind string) field.ErrorList {
	if sel == nil {
		return field.ErrorList{field.Required(path, "")}
	}
	errs := metav1validation.ValidateLabelSelector(sel, metav1validation.LabelSelectorValidationOptions{}, path)
	if len(sel.MatchLabels)+len(sel.MatchExpressions) == 0 {
		errs = append(errs, field.Invalid(path, sel, "empty selector is invalid for "+kind))
	}
	return errs
}

// MatchesTemplate reports a selector that does not select its template's
// labels (the pods the workload creates).
func MatchesTemplate(sel *metav1.LabelSelector, t *corev1.PodTemplateSpec, path *field.Path) field.ErrorList {
	if sel == nil {
		return nil
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil || s.Empty() || s.Matches(labels.Set(t.Labels)) {
		return nil
	}
	return field.ErrorList{field.Invalid(path.Child("metadata", "labels"), t.Labels, "`selector` does not match template `labels`")}
}

// ValidateReplicatedTemplate checks the template of a kind that keeps its
// pods running (ReplicaSet, Deployment, DaemonSet, ReplicationController):
// the template is valid, selected, restarts always and has no deadline.
func ValidateReplicatedTemplate(sel *metav1.LabelSelector, t *corev1.PodTemplateSpec, path *field.Path) field.ErrorList {
	errs := MatchesTemplate(sel, t, path)
	errs = append(errs, ValidateTemplate(t, path)...)
	if t.Spec.RestartPolicy != corev1.RestartPolicyAlways {
		errs = append(errs, field.NotSupported(path.Child("spec", "restartPolicy"), t.Spec.RestartPolicy, []string{string(corev1.RestartPolicyAlways)}))
	}
	if t.Spec.ActiveDeadlineSeconds != nil {
		errs = append(errs, field.Forbidden(path.Child("spec", "activeDeadlineSeconds"), "activeDeadlineSeconds in ReplicaSet is not Supported"))
	}
	return errs
}
