package resourcequota

import (
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/headway/headway/internal/quota"
)

// Input is what a quota's status is computed from: the quota and the
// namespace's objects.
type Input struct {
	Quota    *corev1.ResourceQuota
	Pods     []*corev1.Pod
	Services []*corev1.Service
	Claims   []*corev1.PersistentVolumeClaim
	// Counts are the numbers of objects of the other resources the quota
	// counts (see Counted); a resource missing here is not known yet and
	// its usage is left out of the status.
	Counts map[schema.GroupResource]int64
	Now    time.Time
}

var (
	podsGR     = schema.GroupResource{Resource: "pods"}
	servicesGR = schema.GroupResource{Resource: "services"}
	claimsGR   = schema.GroupResource{Resource: "persistentvolumeclaims"}
)

// typed are the resources whose usage is measured from the objects
// themselves rather than counted.
var typed = map[schema.GroupResource]bool{podsGR: true, servicesGR: true, claimsGR: true}

// Counted are the resources, besides pods, Services and claims, whose
// objects the quota counts (count/<resource>.<group> and the plain
// configmaps, secrets, replicationcontrollers and resourcequotas).
func Counted(q *corev1.ResourceQuota) []schema.GroupResource {
	var out []schema.GroupResource
	seen := map[schema.GroupResource]bool{}
	for _, n := range quota.Names(q.Spec.Hard) {
		gr, ok := countedBy(n)
		if ok && !typed[gr] && !seen[gr] {
			seen[gr] = true
			out = append(out, gr)
		}
	}
	return out
}

// countedBy is the resource whose objects a quota resource name counts.
func countedBy(n corev1.ResourceName) (schema.GroupResource, bool) {
	if gr, ok := quota.ParseObjectCountName(n); ok {
		return gr, true
	}
	for _, gr := range []schema.GroupResource{{Resource: "configmaps"}, {Resource: "secrets"}, {Resource: "replicationcontrollers"}, {Resource: "resourcequotas"}} {
		if legacy, _ := quota.LegacyCountName(gr); legacy == n {
			return gr, true
		}
	}
	return schema.GroupResource{}, false
}

// Status is the quota's status: hard is spec.hard, used is the usage of
// the namespace's objects for each resource hard names (zero when
// nothing uses it; left out while a count is not known).
func Status(in Input) corev1.ResourceQuotaStatus {
	q := in.Quota
	total := corev1.ResourceList{}
	add := func(u corev1.ResourceList) { total = quota.Add(total, u) }
	for _, p := range in.Pods {
		if quota.Matches(q, p) {
			add(quota.PodUsageAt(p, in.Now))
		}
	}
	if !quota.Scoped(q) {
		for _, s := range in.Services {
			add(quota.ServiceUsage(s))
		}
		for _, c := range in.Claims {
			add(quota.ClaimUsage(c))
		}
	}
	st := corev1.ResourceQuotaStatus{Hard: corev1.ResourceList{}, Used: corev1.ResourceList{}}
	for n, h := range q.Spec.Hard {
		st.Hard[n] = h.DeepCopy()
		if gr, ok := countedBy(n); ok && !typed[gr] {
			count, known := in.Counts[gr]
			if !known {
				continue
			}
			if quota.Scoped(q) {
				count = 0
			}
			st.Used[n] = *resource.NewQuantity(count, resource.DecimalSI)
			continue
		}
		if u, ok := total[n]; ok {
			st.Used[n] = u
		} else {
			st.Used[n] = resource.MustParse("0")
		}
	}
	return st
}

// Equal reports whether two statuses say the same.
func Equal(a, b corev1.ResourceQuotaStatus) bool {
	return quota.Equal(a.Hard, b.Hard) && quota.Equal(a.Used, b.Used)
}
