package registry

import corev1 "k8s.io/api/core/v1"

// RoundResources rounds every quantity of a resource list up to milli
// precision, as kube-apiserver defaults resource lists ("0.0001" CPU is
// stored as "1m").
func RoundResources(list corev1.ResourceList) {
	for name, q := range list {
		q.RoundUp(-3)
		list[name] = q
	}
}
