package builtin

import "testing"

// TestUnconditionalUpdate checks each kind against its strategy's
// AllowUnconditionalUpdate() in kube-apiserver (pkg/registry/*/strategy.go):
// every kind Headway serves allows an update without resourceVersion except
// coordination.k8s.io Leases, PodDisruptionBudgets and the webhook
// configurations.
func TestUnconditionalUpdate(t *testing.T) {
	want := map[string]bool{
		"namespaces": true, "pods": true, "services": true, "endpoints": true, "nodes": true,
		"configmaps": true, "secrets": true, "serviceaccounts": true, "events": true,
		"persistentvolumeclaims": true, "persistentvolumes": true,
		"apps/statefulsets": true, "apps/controllerrevisions": true,
		"discovery.k8s.io/endpointslices": true,
		"coordination.k8s.io/leases":      false,
		"storage.k8s.io/storageclasses":   true,
		"events.k8s.io/events":            true,
		"apps/deployments":                true, "apps/replicasets": true, "apps/daemonsets": true,
		"batch/jobs": true, "batch/cronjobs": true,
		"replicationcontrollers": true, "podtemplates": true, "resourcequotas": true, "limitranges": true,
		"networking.k8s.io/networkpolicies": true, "networking.k8s.io/ingresses": true, "networking.k8s.io/ingressclasses": true,
		"scheduling.k8s.io/priorityclasses":    true,
		"autoscaling/horizontalpodautoscalers": true,
		"rbac.authorization.k8s.io/roles":      true, "rbac.authorization.k8s.io/rolebindings": true,
		"rbac.authorization.k8s.io/clusterroles": true, "rbac.authorization.k8s.io/clusterrolebindings": true,
		"policy/poddisruptionbudgets":                                  false,
		"admissionregistration.k8s.io/validatingwebhookconfigurations": false,
		"admissionregistration.k8s.io/mutatingwebhookconfigurations":   false,
		"apiextensions.k8s.io/customresourcedefinitions":               false,
	}
	seen := map[string]bool{}
	for _, r := range Resources(Options{}) {
		key := r.Plural
		if g := r.GroupVersion.Group; g != "" {
			key = g + "/" + key
		}
		seen[key] = true
		w, ok := want[key]
		if !ok {
			t.Errorf("%s: not in the table; look up its strategy's AllowUnconditionalUpdate() and add it", key)
			continue
		}
		if r.AllowUnconditionalUpdate != w {
			t.Errorf("%s: AllowUnconditionalUpdate = %v, kube-apiserver's strategy says %v", key, r.AllowUnconditionalUpdate, w)
		}
	}
	for key := range want {
		if !seen[key] {
			t.Errorf("%s: in the table but not served", key)
		}
	}
}
