package statefulset

import (
	"regexp"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// Labels and annotations a StatefulSet's pods carry.
const (
	PodNameLabel  = appsv1.StatefulSetPodNameLabel // statefulset.kubernetes.io/pod-name
	PodIndexLabel = appsv1.PodIndexLabel           // apps.kubernetes.io/pod-index
	RevisionLabel = appsv1.StatefulSetRevisionLabel
	// HashLabel is the label a ControllerRevision carries its hash in.
	HashLabel = appsv1.ControllerRevisionHashLabelKey
)

var controllerKind = appsv1.SchemeGroupVersion.WithKind("StatefulSet")

var nameRE = regexp.MustCompile(`^(.*)-([0-9]+)$`)

// parentAndOrdinal splits a pod name into the set name and the ordinal, or
// returns ok=false when the name has no ordinal.
func parentAndOrdinal(name string) (parent string, ordinal int, ok bool) {
	m := nameRE.FindStringSubmatch(name)
	if m == nil {
		return "", 0, false
	}
	n, err := strconv.Atoi(m[2])
	if err != nil || n < 0 {
		return "", 0, false
	}
	// Reject leading zeros: web-01 is not ordinal 1 of web.
	if strconv.Itoa(n) != m[2] {
		return "", 0, false
	}
	return m[1], n, true
}

// ordinalOf is the ordinal of a pod of the set, or -1.
func ordinalOf(set *appsv1.StatefulSet, pod *corev1.Pod) int {
	parent, ord, ok := parentAndOrdinal(pod.Name)
	if !ok || parent != set.Name {
		return -1
	}
	return ord
}

// PodName is the name of the pod with the ordinal.
func PodName(set *appsv1.StatefulSet, ordinal int) string {
	return set.Name + "-" + strconv.Itoa(ordinal)
}

// ClaimName is the name of the claim of template for the pod with the ordinal.
func ClaimName(set *appsv1.StatefulSet, template *corev1.PersistentVolumeClaim, ordinal int) string {
	return template.Name + "-" + PodName(set, ordinal)
}

func startOrdinal(set *appsv1.StatefulSet) int {
	if set.Spec.Ordinals != nil {
		return int(set.Spec.Ordinals.Start)
	}
	return 0
}

func replicaCount(set *appsv1.StatefulSet) int {
	if set.Spec.Replicas == nil {
		return 1
	}
	return int(*set.Spec.Replicas)
}

// inRange reports whether the ordinal is one the set should run.
func inRange(set *appsv1.StatefulSet, ordinal int) bool {
	start := startOrdinal(set)
	return ordinal >= start && ordinal < start+replicaCount(set)
}

func controllerRef(set *appsv1.StatefulSet) metav1.OwnerReference {
	t := true
	return metav1.OwnerReference{
		APIVersion: controllerKind.GroupVersion().String(), Kind: controllerKind.Kind,
		Name: set.Name, UID: set.UID, Controller: &t, BlockOwnerDeletion: &t,
	}
}

// NewPod builds the pod with the ordinal from the set (whose template is the
// one of the revision) and labels it with the revision.
func NewPod(set *appsv1.StatefulSet, revision string, ordinal int) *corev1.Pod {
	name := PodName(set, ordinal)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:            name,
			Namespace:       set.Namespace,
			Labels:          map[string]string{},
			Annotations:     map[string]string{},
			OwnerReferences: []metav1.OwnerReference{controllerRef(set)},
		},
	}
	for k, v := range set.Spec.Template.Labels {
		pod.Labels[k] = v
	}
	for k, v := range set.Spec.Template.Annotations {
		pod.Annotations[k] = v
	}
	if len(pod.Annotations) == 0 {
		pod.Annotations = nil
	}
	pod.Spec = *set.Spec.Template.Spec.DeepCopy()
	setIdentity(set, pod, ordinal)
	setStorage(set, pod, ordinal)
	pod.Labels[RevisionLabel] = revision
	return pod
}

// setIdentity writes the stable identity: name labels, hostname, subdomain.
func setIdentity(set *appsv1.StatefulSet, pod *corev1.Pod, ordinal int) {
	pod.Labels[PodNameLabel] = pod.Name
	pod.Labels[PodIndexLabel] = strconv.Itoa(ordinal)
	pod.Spec.Hostname = pod.Name
	pod.Spec.Subdomain = set.Spec.ServiceName
}

// identityMatches reports whether the mutable part of the identity (labels)
// is intact.
func identityMatches(pod *corev1.Pod, ordinal int) bool {
	return pod.Labels[PodNameLabel] == pod.Name && pod.Labels[PodIndexLabel] == strconv.Itoa(ordinal)
}

// setStorage points the pod's volumes named after claim templates at the
// pod's claims.
func setStorage(set *appsv1.StatefulSet, pod *corev1.Pod, ordinal int) {
	if len(set.Spec.VolumeClaimTemplates) == 0 {
		return
	}
	claims := map[string]string{}
	var vols []corev1.Volume
	for i := range set.Spec.VolumeClaimTemplates {
		t := &set.Spec.VolumeClaimTemplates[i]
		claims[t.Name] = ClaimName(set, t, ordinal)
	}
	for _, v := range pod.Spec.Volumes {
		if _, ok := claims[v.Name]; !ok {
			vols = append(vols, v)
		}
	}
	for i := range set.Spec.VolumeClaimTemplates {
		t := &set.Spec.VolumeClaimTemplates[i]
		vols = append(vols, corev1.Volume{Name: t.Name, VolumeSource: corev1.VolumeSource{
			PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: claims[t.Name]},
		}})
	}
	pod.Spec.Volumes = vols
}

// NewClaim builds the claim of template for the ordinal. Owner references
// for the retention policy are added separately (claimOwners).
func NewClaim(set *appsv1.StatefulSet, template *corev1.PersistentVolumeClaim, ordinal int) *corev1.PersistentVolumeClaim {
	c := &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{
			Name:        ClaimName(set, template, ordinal),
			Namespace:   set.Namespace,
			Labels:      map[string]string{},
			Annotations: template.Annotations,
		},
		Spec: *template.Spec.DeepCopy(),
	}
	for k, v := range template.Labels {
		c.Labels[k] = v
	}
	if set.Spec.Selector != nil {
		for k, v := range set.Spec.Selector.MatchLabels {
			c.Labels[k] = v
		}
	}
	return c
}

// retention returns the set's claim retention policy with defaults.
func retention(set *appsv1.StatefulSet) (whenDeleted, whenScaled appsv1.PersistentVolumeClaimRetentionPolicyType) {
	whenDeleted, whenScaled = appsv1.RetainPersistentVolumeClaimRetentionPolicyType, appsv1.RetainPersistentVolumeClaimRetentionPolicyType
	if p := set.Spec.PersistentVolumeClaimRetentionPolicy; p != nil {
		if p.WhenDeleted != "" {
			whenDeleted = p.WhenDeleted
		}
		if p.WhenScaled != "" {
			whenScaled = p.WhenScaled
		}
	}
	return
}

// claimOwners returns the owner references the claim should carry under
// the retention policy: the set when whenDeleted=Delete; the pod when
// whenScaled=Delete and the pod's ordinal is being scaled away. References
// to other owners are kept. pod may be nil.
func claimOwners(set *appsv1.StatefulSet, claim *corev1.PersistentVolumeClaim, pod *corev1.Pod, ordinal int) []metav1.OwnerReference {
	whenDeleted, whenScaled := retention(set)
	podName := PodName(set, ordinal)
	var out []metav1.OwnerReference
	for _, r := range claim.OwnerReferences {
		if r.Kind == "StatefulSet" && r.UID == set.UID {
			continue
		}
		if r.Kind == "Pod" && r.APIVersion == "v1" && r.Name == podName {
			continue
		}
		out = append(out, r)
	}
	if whenDeleted == appsv1.DeletePersistentVolumeClaimRetentionPolicyType {
		out = append(out, metav1.OwnerReference{APIVersion: controllerKind.GroupVersion().String(), Kind: controllerKind.Kind, Name: set.Name, UID: set.UID})
	}
	if whenScaled == appsv1.DeletePersistentVolumeClaimRetentionPolicyType && pod != nil && !inRange(set, ordinal) {
		out = append(out, metav1.OwnerReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID})
	}
	return out
}

func sameOwners(a, b []metav1.OwnerReference) bool {
	if len(a) != len(b) {
		return false
	}
	key := func(r metav1.OwnerReference) string {
		return r.APIVersion + "/" + r.Kind + "/" + r.Name + "/" + string(r.UID)
	}
	seen := map[string]int{}
	for _, r := range a {
		seen[key(r)]++
	}
	for _, r := range b {
		seen[key(r)]--
	}
	for _, n := range seen {
		if n != 0 {
			return false
		}
	}
	return true
}

// isControlledBy reports whether obj's controller reference points at uid.
func isControlledBy(obj metav1.Object, uid types.UID) bool {
	ref := metav1.GetControllerOf(obj)
	return ref != nil && ref.UID == uid
}
