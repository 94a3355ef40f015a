// Package builtin is the one table of the resources Headway serves, and the
// scheme that knows their types. Later resources are added here.
package builtin

import (
	"sync"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	eventsv1 "k8s.io/api/events/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"

	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/clusterrole"
	"github.com/headway/headway/internal/registry/clusterrolebinding"
	"github.com/headway/headway/internal/registry/configmap"
	"github.com/headway/headway/internal/registry/controllerrevision"
	"github.com/headway/headway/internal/registry/cronjob"
	"github.com/headway/headway/internal/registry/customresourcedefinition"
	"github.com/headway/headway/internal/registry/daemonset"
	"github.com/headway/headway/internal/registry/deployment"
	"github.com/headway/headway/internal/registry/endpoints"
	"github.com/headway/headway/internal/registry/endpointslice"
	"github.com/headway/headway/internal/registry/event"
	eventsregistry "github.com/headway/headway/internal/registry/eventsv1"
	"github.com/headway/headway/internal/registry/horizontalpodautoscaler"
	"github.com/headway/headway/internal/registry/ingress"
	"github.com/headway/headway/internal/registry/ingressclass"
	"github.com/headway/headway/internal/registry/job"
	"github.com/headway/headway/internal/registry/lease"
	"github.com/headway/headway/internal/registry/limitrange"
	"github.com/headway/headway/internal/registry/mutatingwebhookconfiguration"
	"github.com/headway/headway/internal/registry/namespace"
	"github.com/headway/headway/internal/registry/networkpolicy"
	"github.com/headway/headway/internal/registry/node"
	"github.com/headway/headway/internal/registry/persistentvolume"
	"github.com/headway/headway/internal/registry/persistentvolumeclaim"
	"github.com/headway/headway/internal/registry/pod"
	"github.com/headway/headway/internal/registry/poddisruptionbudget"
	"github.com/headway/headway/internal/registry/podtemplate"
	"github.com/headway/headway/internal/registry/priorityclass"
	"github.com/headway/headway/internal/registry/replicaset"
	"github.com/headway/headway/internal/registry/replicationcontroller"
	"github.com/headway/headway/internal/registry/resourcequota"
	"github.com/headway/headway/internal/registry/role"
	"github.com/headway/headway/internal/registry/rolebinding"
	"github.com/headway/headway/internal/registry/secret"
	"github.com/headway/headway/internal/registry/service"
	"github.com/headway/headway/internal/registry/serviceaccount"
	"github.com/headway/headway/internal/registry/statefulset"
	"github.com/headway/headway/internal/registry/storageclass"
	"github.com/headway/headway/internal/registry/tokenreview"
	"github.com/headway/headway/internal/registry/validatingwebhookconfiguration"
)

// Scheme returns the scheme with every type the server encodes. It is
// built once per process and shared (servers, event recorders, the clusters
// of pkg/headwaytest): read it, never add to it.
func Scheme() *runtime.Scheme { return sharedScheme() }

var sharedScheme = sync.OnceValue(newScheme)

func newScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		corev1.AddToScheme, appsv1.AddToScheme, autoscalingv1.AddToScheme, discoveryv1.AddToScheme,
		coordinationv1.AddToScheme, eventsv1.AddToScheme, storagev1.AddToScheme, apidiscoveryv2.AddToScheme, policyv1.AddToScheme,
		autoscalingv2.AddToScheme, batchv1.AddToScheme, networkingv1.AddToScheme, schedulingv1.AddToScheme,
		admissionregistrationv1.AddToScheme, rbacv1.AddToScheme, apiextensionsv1.AddToScheme, authenticationv1.AddToScheme, authorizationv1.AddToScheme,
		metav1.AddMetaToScheme,
	} {
		utilruntime.Must(add(s))
	}
	metav1.AddToGroupVersion(s, metav1.SchemeGroupVersion)
	metav1.AddToGroupVersion(s, corev1.SchemeGroupVersion)
	return s
}

// Options configure the resources (address ranges and the like).
type Options struct {
	// Services holds the cluster IP and node port allocators.
	Services service.Allocators
	// ServiceAccounts, when set, admits pods as kube's ServiceAccount
	// admission does (the account must exist; the token volume is added).
	ServiceAccounts pod.ServiceAccountLookup
	// Tokens, when set, serves serviceaccounts/token (TokenRequest).
	Tokens *serviceaccount.Tokens
	// TokenReview, when set, serves authentication.k8s.io/v1 TokenReviews.
	TokenReview tokenreview.Reviewer
}

// Resources returns the resource table, in discovery order.
func Resources(o Options) []*registry.Resource {
	resources := []*registry.Resource{
		// core/v1
		namespace.Resource(),
		pod.ResourceWithServiceAccounts(o.ServiceAccounts),
		service.Resource(o.Services),
		endpoints.Resource(),
		node.Resource(),
		configmap.Resource(),
		secret.Resource(),
		serviceaccount.ResourceWithTokens(o.Tokens),
		event.Resource(),
		persistentvolumeclaim.Resource(),
		persistentvolume.Resource(),
		replicationcontroller.Resource(),
		podtemplate.Resource(),
		resourcequota.Resource(),
		limitrange.Resource(),
		// apps/v1
		statefulset.Resource(),
		controllerrevision.Resource(),
		deployment.Resource(),
		replicaset.Resource(),
		daemonset.Resource(),
		// batch/v1
		job.Resource(),
		cronjob.Resource(),
		// autoscaling: v2 first, the preferred version; v1 serves the same objects
		horizontalpodautoscaler.Resource(),
		horizontalpodautoscaler.ResourceV1(),
		// policy/v1
		poddisruptionbudget.Resource(),
		// networking.k8s.io/v1
		networkpolicy.Resource(),
		ingress.Resource(),
		ingressclass.Resource(),
		// rbac.authorization.k8s.io/v1
		role.Resource(),
		rolebinding.Resource(),
		clusterrole.Resource(),
		clusterrolebinding.Resource(),
		// scheduling.k8s.io/v1
		priorityclass.Resource(),
		// admissionregistration.k8s.io/v1
		validatingwebhookconfiguration.Resource(),
		mutatingwebhookconfiguration.Resource(),
		// discovery.k8s.io/v1
		endpointslice.Resource(),
		// coordination.k8s.io/v1
		lease.Resource(),
		// storage.k8s.io/v1
		storageclass.Resource(),
		// events.k8s.io/v1 (the same objects as core/v1 events)
		eventsregistry.Resource(),
		// apiextensions.k8s.io/v1 (the resources they define are served as they are created)
		customresourcedefinition.Resource(),
	}
	if o.TokenReview != nil {
		// authentication.k8s.io/v1
		resources = append(resources, tokenreview.Resource(o.TokenReview))
	}
	return resources
}
