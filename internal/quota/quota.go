// Package quota is ResourceQuota arithmetic shared by quota admission (in
// the API server) and the quota controller: what an object uses, which
// quotas it counts against, and sums and comparisons of resource lists. It
// is pure: no clients, no storage.
package quota

import (
	"fmt"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/selection"
)

// ObjectCountName is the count/<resource>[.<group>] name of a resource.
func ObjectCountName(gr schema.GroupResource) corev1.ResourceName {
	if gr.Group == "" {
		return corev1.ResourceName("count/" + gr.Resource)
	}
	return corev1.ResourceName("count/" + gr.Resource + "." + gr.Group)
}

// ParseObjectCountName is the resource a count/<resource>[.<group>] name
// counts; ok is false for other names.
func ParseObjectCountName(name corev1.ResourceName) (schema.GroupResource, bool) {
	rest, ok := strings.CutPrefix(string(name), "count/")
	if !ok || rest == "" {
		return schema.GroupResource{}, false
	}
	res, group, _ := strings.Cut(rest, ".")
	return schema.GroupResource{Group: group, Resource: res}, true
}

// legacyCounts are the resources counted under their own name too.
var legacyCounts = map[schema.GroupResource]corev1.ResourceName{
	{Resource: "pods"}:                   corev1.ResourcePods,
	{Resource: "services"}:               corev1.ResourceServices,
	{Resource: "configmaps"}:             corev1.ResourceConfigMaps,
	{Resource: "secrets"}:                corev1.ResourceSecrets,
	{Resource: "persistentvolumeclaims"}: corev1.ResourcePersistentVolumeClaims,
	{Resource: "replicationcontrollers"}: corev1.ResourceReplicationControllers,
	{Resource: "resourcequotas"}:         corev1.ResourceQuotas,
}

// LegacyCountName is the plain name ("configmaps") a resource is also
// counted under, if any.
func LegacyCountName(gr schema.GroupResource) (corev1.ResourceName, bool) {
	n, ok := legacyCounts[gr]
	return n, ok
}

// Usage is what one object of gr uses. Pods, Services and
// PersistentVolumeClaims have their own measures; every other object
// counts once under count/<resource>.<group> (and its plain name for the
// core kinds that have one).
func Usage(gr schema.GroupResource, obj any) corev1.ResourceList {
	switch o := obj.(type) {
	case *corev1.Pod:
		return PodUsage(o)
	case *corev1.Service:
		return ServiceUsage(o)
	case *corev1.PersistentVolumeClaim:
		return ClaimUsage(o)
	}
	out := corev1.ResourceList{ObjectCountName(gr): one()}
	if n, ok := legacyCounts[gr]; ok {
		out[n] = one()
	}
	return out
}

func one() resource.Quantity { return *resource.NewQuantity(1, resource.DecimalSI) }

// PodTerminal: a pod that has finished no longer uses compute quota (it
// still counts in count/pods).
func PodTerminal(p *corev1.Pod) bool {
	return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed
}

// PodUsage is what a pod uses: count/pods always; pods, requests and
// limits (cpu, memory, ephemeral-storage, hugepages-*, extended resources
// as requests.<name>) while it has not finished.
func PodUsage(p *corev1.Pod) corev1.ResourceList {
	out := corev1.ResourceList{"count/pods": one()}
	if PodTerminal(p) {
		return out
	}
	out[corev1.ResourcePods] = one()
	req, lim := PodRequests(p), PodLimits(p)
	for _, n := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory, corev1.ResourceEphemeralStorage} {
		if q, ok := req[n]; ok {
			out[n] = q
			out[corev1.DefaultResourceRequestsPrefix+n] = q
		}
		if q, ok := lim[n]; ok {
			out[corev1.ResourceName("limits.")+n] = q
		}
	}
	for n, q := range req {
		switch {
		case strings.HasPrefix(string(n), corev1.ResourceHugePagesPrefix):
			out[n] = q
			out[corev1.DefaultResourceRequestsPrefix+n] = q
		case strings.Contains(string(n), "/") && !strings.HasPrefix(string(n), "kubernetes.io/"):
			out[corev1.DefaultResourceRequestsPrefix+n] = q
		}
	}
	return out
}

// PodRequests is a pod's effective requests: the sum over its containers
// (and restartable init containers), raised to what any init container
// needs alone, plus the pod overhead.
func PodRequests(p *corev1.Pod) corev1.ResourceList {
	return podResources(p, func(c *corev1.Container) corev1.ResourceList { return c.Resources.Requests })
}

// PodLimits is PodRequests for limits.
func PodLimits(p *corev1.Pod) corev1.ResourceList {
	return podResources(p, func(c *corev1.Container) corev1.ResourceList { return c.Resources.Limits })
}

func podResources(p *corev1.Pod, of func(*corev1.Container) corev1.ResourceList) corev1.ResourceList {
	sum := corev1.ResourceList{}
	for i := range p.Spec.Containers {
		addTo(sum, of(&p.Spec.Containers[i]))
	}
	sidecars := corev1.ResourceList{}
	for i := range p.Spec.InitContainers {
		c := &p.Spec.InitContainers[i]
		if c.RestartPolicy != nil && *c.RestartPolicy == corev1.ContainerRestartPolicyAlways {
			addTo(sum, of(c))
			addTo(sidecars, of(c))
			continue
		}
		// A regular init container runs with the sidecars started before it.
		need := Add(of(c), sidecars)
		for n, q := range need {
			if cur, ok := sum[n]; !ok || q.Cmp(cur) > 0 {
				sum[n] = q.DeepCopy()
			}
		}
	}
	addTo(sum, p.Spec.Overhead)
	return sum
}

func addTo(dst, src corev1.ResourceList) {
	for n, q := range src {
		cur := dst[n]
		cur.Add(q)
		dst[n] = cur
	}
}

// ServiceUsage is what a Service uses: count/services, services, and its
// node ports and load balancers.
func ServiceUsage(s *corev1.Service) corev1.ResourceList {
	out := corev1.ResourceList{"count/services": one(), corev1.ResourceServices: one()}
	ports := int64(len(s.Spec.Ports))
	switch s.Spec.Type {
	case corev1.ServiceTypeNodePort:
		out[corev1.ResourceServicesNodePorts] = *resource.NewQuantity(ports, resource.DecimalSI)
	case corev1.ServiceTypeLoadBalancer:
		out[corev1.ResourceServicesLoadBalancers] = one()
		if s.Spec.AllocateLoadBalancerNodePorts == nil || *s.Spec.AllocateLoadBalancerNodePorts {
			out[corev1.ResourceServicesNodePorts] = *resource.NewQuantity(ports, resource.DecimalSI)
		}
	}
	return out
}

// ClaimUsage is what a PersistentVolumeClaim uses: the count, and its
// storage request, also per storage class.
func ClaimUsage(c *corev1.PersistentVolumeClaim) corev1.ResourceList {
	out := corev1.ResourceList{"count/persistentvolumeclaims": one(), corev1.ResourcePersistentVolumeClaims: one()}
	class := ""
	if c.Spec.StorageClassName != nil {
		class = *c.Spec.StorageClassName
	}
	if class != "" {
		out[corev1.ResourceName(class+".storageclass.storage.k8s.io/persistentvolumeclaims")] = one()
	}
	if q, ok := c.Spec.Resources.Requests[corev1.ResourceStorage]; ok {
		out[corev1.ResourceRequestsStorage] = q
		if class != "" {
			out[corev1.ResourceName(class+".storageclass.storage.k8s.io/requests.storage")] = q
		}
	}
	return out
}

// Matching are the resources of names (a quota's hard) that objects of gr
// use, whatever one object uses: kube-apiserver's evaluators'
// MatchingResources. A quota naming any of them constrains the object.
func Matching(gr schema.GroupResource, names []corev1.ResourceName) []corev1.ResourceName {
	var out []corev1.ResourceName
	for _, n := range names {
		if matches(gr, n) {
			out = append(out, n)
		}
	}
	return out
}

var (
	podNames = map[corev1.ResourceName]bool{
		"count/pods": true, corev1.ResourcePods: true, corev1.ResourceCPU: true, corev1.ResourceMemory: true, corev1.ResourceEphemeralStorage: true,
		corev1.ResourceRequestsCPU: true, corev1.ResourceRequestsMemory: true, corev1.ResourceRequestsEphemeralStorage: true,
		corev1.ResourceLimitsCPU: true, corev1.ResourceLimitsMemory: true, corev1.ResourceLimitsEphemeralStorage: true,
	}
	serviceNames = map[corev1.ResourceName]bool{
		"count/services": true, corev1.ResourceServices: true, corev1.ResourceServicesNodePorts: true, corev1.ResourceServicesLoadBalancers: true,
	}
	claimNames = map[corev1.ResourceName]bool{
		"count/persistentvolumeclaims": true, corev1.ResourcePersistentVolumeClaims: true, corev1.ResourceRequestsStorage: true,
	}
)

func matches(gr schema.GroupResource, n corev1.ResourceName) bool {
	s := string(n)
	switch gr {
	case schema.GroupResource{Resource: "pods"}:
		return podNames[n] || strings.HasPrefix(s, corev1.ResourceHugePagesPrefix) ||
			strings.HasPrefix(s, corev1.DefaultResourceRequestsPrefix+corev1.ResourceHugePagesPrefix) ||
			(strings.HasPrefix(s, corev1.DefaultResourceRequestsPrefix) && strings.Contains(s, "/") && !strings.Contains(s, ".storageclass.storage.k8s.io/"))
	case schema.GroupResource{Resource: "services"}:
		return serviceNames[n]
	case schema.GroupResource{Resource: "persistentvolumeclaims"}:
		return claimNames[n] || strings.Contains(s, ".storageclass.storage.k8s.io/")
	}
	if n == ObjectCountName(gr) {
		return true
	}
	legacy, ok := legacyCounts[gr]
	return ok && legacy == n
}

// Scoped reports whether the quota has scopes (which only pods can match).
func Scoped(q *corev1.ResourceQuota) bool {
	return len(q.Spec.Scopes) > 0 || (q.Spec.ScopeSelector != nil && len(q.Spec.ScopeSelector.MatchExpressions) > 0)
}

// Matches reports whether obj counts against the quota: a pod must match
// every scope of it; other objects count against unscoped quotas only.
func Matches(q *corev1.ResourceQuota, obj any) bool {
	if !Scoped(q) {
		return true
	}
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return false
	}
	for _, s := range q.Spec.Scopes {
		if !podMatchesScope(p, corev1.ScopedResourceSelectorRequirement{ScopeName: s, Operator: corev1.ScopeSelectorOpExists}) {
			return false
		}
	}
	if q.Spec.ScopeSelector != nil {
		for _, e := range q.Spec.ScopeSelector.MatchExpressions {
			if !podMatchesScope(p, e) {
				return false
			}
		}
	}
	return true
}

func podMatchesScope(p *corev1.Pod, s corev1.ScopedResourceSelectorRequirement) bool {
	switch s.ScopeName {
	case corev1.ResourceQuotaScopeTerminating:
		return terminating(p)
	case corev1.ResourceQuotaScopeNotTerminating:
		return !terminating(p)
	case corev1.ResourceQuotaScopeBestEffort:
		return bestEffort(p)
	case corev1.ResourceQuotaScopeNotBestEffort:
		return !bestEffort(p)
	case corev1.ResourceQuotaScopePriorityClass:
		var op selection.Operator
		switch s.Operator {
		case corev1.ScopeSelectorOpExists:
			return p.Spec.PriorityClassName != ""
		case corev1.ScopeSelectorOpDoesNotExist:
			return p.Spec.PriorityClassName == ""
		case corev1.ScopeSelectorOpIn:
			op = selection.In
		case corev1.ScopeSelectorOpNotIn:
			op = selection.NotIn
		default:
			return false
		}
		req, err := labels.NewRequirement(string(s.ScopeName), op, s.Values)
		if err != nil {
			return false
		}
		set := labels.Set{}
		if p.Spec.PriorityClassName != "" {
			set[string(s.ScopeName)] = p.Spec.PriorityClassName
		}
		return labels.NewSelector().Add(*req).Matches(set)
	case corev1.ResourceQuotaScopeCrossNamespacePodAffinity:
		return crossNamespaceAffinity(p)
	}
	return false
}

func terminating(p *corev1.Pod) bool {
	return p.Spec.ActiveDeadlineSeconds != nil && *p.Spec.ActiveDeadlineSeconds >= 0
}

func bestEffort(p *corev1.Pod) bool {
	for _, list := range []corev1.ResourceList{PodRequests(p), PodLimits(p)} {
		for n := range list {
			if n == corev1.ResourceCPU || n == corev1.ResourceMemory {
				return false
			}
		}
	}
	return true
}

func crossNamespaceAffinity(p *corev1.Pod) bool {
	a := p.Spec.Affinity
	if a == nil {
		return false
	}
	cross := func(t corev1.PodAffinityTerm) bool { return len(t.Namespaces) > 0 || t.NamespaceSelector != nil }
	var terms []corev1.PodAffinityTerm
	if a.PodAffinity != nil {
		terms = append(terms, a.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution...)
		for _, w := range a.PodAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			terms = append(terms, w.PodAffinityTerm)
		}
	}
	if a.PodAntiAffinity != nil {
		terms = append(terms, a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution...)
		for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			terms = append(terms, w.PodAffinityTerm)
		}
	}
	for _, t := range terms {
		if cross(t) {
			return true
		}
	}
	return false
}

// computeNames are the resources a pod quota makes every container state.
var computeNames = map[corev1.ResourceName]bool{
	corev1.ResourceCPU: true, corev1.ResourceMemory: true,
	corev1.ResourceRequestsCPU: true, corev1.ResourceRequestsMemory: true,
	corev1.ResourceLimitsCPU: true, corev1.ResourceLimitsMemory: true,
}

// PodConstraints is kube-apiserver's check that, when a quota limits cpu
// or memory requests or limits, every container states them: nil, or
// "must specify limits.cpu for: c1; requests.memory for: c1,c2".
func PodConstraints(hard corev1.ResourceList, p *corev1.Pod) error {
	required := []corev1.ResourceName{}
	for n := range hard {
		if computeNames[n] {
			required = append(required, n)
		}
	}
	if len(required) == 0 {
		return nil
	}
	missing := map[corev1.ResourceName][]string{}
	check := func(c *corev1.Container) {
		have := PodUsage(&corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Resources: c.Resources}}}})
		for _, n := range required {
			if _, ok := have[n]; !ok {
				missing[n] = append(missing[n], c.Name)
			}
		}
	}
	for i := range p.Spec.Containers {
		check(&p.Spec.Containers[i])
	}
	for i := range p.Spec.InitContainers {
		check(&p.Spec.InitContainers[i])
	}
	if len(missing) == 0 {
		return nil
	}
	names := make([]string, 0, len(missing))
	for n := range missing {
		names = append(names, string(n))
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, n := range names {
		cs := missing[corev1.ResourceName(n)]
		sort.Strings(cs)
		parts = append(parts, fmt.Sprintf("%s for: %s", n, strings.Join(uniq(cs), ",")))
	}
	return fmt.Errorf("must specify %s", strings.Join(parts, "; "))
}

func uniq(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// Add returns a + b.
func Add(a, b corev1.ResourceList) corev1.ResourceList {
	out := corev1.ResourceList{}
	addTo(out, a)
	addTo(out, b)
	return out
}

// SubtractNonNegative returns a - b, never below zero per resource.
func SubtractNonNegative(a, b corev1.ResourceList) corev1.ResourceList {
	out := corev1.ResourceList{}
	for n, q := range a {
		d := q.DeepCopy()
		if s, ok := b[n]; ok {
			d.Sub(s)
		}
		if d.Sign() < 0 {
			d = resource.MustParse("0")
		}
		out[n] = d
	}
	return out
}

// Mask keeps the resources of list that are named in names.
func Mask(list corev1.ResourceList, names []corev1.ResourceName) corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, n := range names {
		if q, ok := list[n]; ok {
			out[n] = q.DeepCopy()
		}
	}
	return out
}

// Names of a resource list, sorted.
func Names(list corev1.ResourceList) []corev1.ResourceName {
	out := make([]corev1.ResourceName, 0, len(list))
	for n := range list {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// RemoveZeros drops zero quantities.
func RemoveZeros(list corev1.ResourceList) corev1.ResourceList {
	out := corev1.ResourceList{}
	for n, q := range list {
		if !q.IsZero() {
			out[n] = q
		}
	}
	return out
}

// LessThanOrEqual reports whether every resource of a is within b (a
// resource b does not name is not limited); exceeded names those that are
// not, sorted.
func LessThanOrEqual(a, b corev1.ResourceList) (bool, []corev1.ResourceName) {
	var exceeded []corev1.ResourceName
	for _, n := range Names(a) {
		limit, ok := b[n]
		if !ok {
			continue
		}
		if q := a[n]; q.Cmp(limit) > 0 {
			exceeded = append(exceeded, n)
		}
	}
	return len(exceeded) == 0, exceeded
}

// Equal reports whether two lists name the same resources with equal
// quantities.
func Equal(a, b corev1.ResourceList) bool {
	if len(a) != len(b) {
		return false
	}
	for n, q := range a {
		o, ok := b[n]
		if !ok || q.Cmp(o) != 0 {
			return false
		}
	}
	return true
}

// String prints a list as kube-apiserver's quota messages do:
// "pods=1,requests.cpu=500m", sorted by name.
func String(list corev1.ResourceList) string {
	parts := make([]string, 0, len(list))
	for _, n := range Names(list) {
		q := list[n]
		parts = append(parts, string(n)+"="+q.String())
	}
	return strings.Join(parts, ",")
}

// Zero returns a list with a zero quantity for each name.
func Zero(names []corev1.ResourceName) corev1.ResourceList {
	out := corev1.ResourceList{}
	for _, n := range names {
		out[n] = resource.MustParse("0")
	}
	return out
}

// PodUsageAt is PodUsage for a pod observed at now: a pod stuck
// terminating past its grace period (a lost node) no longer uses compute
// quota, as in kube's quota.
func PodUsageAt(p *corev1.Pod, now time.Time) corev1.ResourceList {
	if p.DeletionTimestamp != nil && p.DeletionGracePeriodSeconds != nil &&
		now.After(p.DeletionTimestamp.Add(time.Duration(*p.DeletionGracePeriodSeconds)*time.Second)) {
		return corev1.ResourceList{"count/pods": one()}
	}
	return PodUsage(p)
}
