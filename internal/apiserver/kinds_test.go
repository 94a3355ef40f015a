package apiserver_test

import (
	"context"
	"encoding/json"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	apidiscoveryv2 "k8s.io/api/apidiscovery/v2"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/app"
	"github.com/headway/headway/internal/testing/cluster"
)

func podTemplate(app string, restart corev1.RestartPolicy) corev1.PodTemplateSpec {
	return corev1.PodTemplateSpec{
		ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": app}},
		Spec:       corev1.PodSpec{RestartPolicy: restart, Containers: []corev1.Container{{Name: "c", Image: "busybox:1.36"}}},
	}
}

// kindCase creates one object of a kind and lists the kind.
type kindCase struct {
	name   string
	create func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error)
	list   func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error)
}

func servedKinds() []kindCase {
	ns := "default"
	sel := &metav1.LabelSelector{MatchLabels: map[string]string{"app": "web"}}
	none := admissionregistrationv1.SideEffectClassNone
	prefix := networkingv1.PathTypePrefix
	one := intstr.FromInt32(1)
	lo := metav1.ListOptions{}
	co := metav1.CreateOptions{}
	om := func(name string) metav1.ObjectMeta { return metav1.ObjectMeta{Name: name} }
	hook := admissionregistrationv1.WebhookClientConfig{URL: ptr.To("https://hook.example.com/x")}
	rules := []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{"CREATE"},
		Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}}
	return []kindCase{
		{"deployments", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.AppsV1().Deployments(ns).Create(ctx, &appsv1.Deployment{ObjectMeta: om("web"),
				Spec: appsv1.DeploymentSpec{Selector: sel, Template: podTemplate("web", "")}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.AppsV1().Deployments(ns).List(ctx, lo)
		}},
		{"replicasets", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.AppsV1().ReplicaSets(ns).Create(ctx, &appsv1.ReplicaSet{ObjectMeta: om("web-1"),
				Spec: appsv1.ReplicaSetSpec{Selector: sel, Template: podTemplate("web", "")}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.AppsV1().ReplicaSets(ns).List(ctx, lo)
		}},
		{"daemonsets", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.AppsV1().DaemonSets(ns).Create(ctx, &appsv1.DaemonSet{ObjectMeta: om("agent"),
				Spec: appsv1.DaemonSetSpec{Selector: sel, Template: podTemplate("web", "")}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.AppsV1().DaemonSets(ns).List(ctx, lo)
		}},
		{"jobs", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.BatchV1().Jobs(ns).Create(ctx, &batchv1.Job{ObjectMeta: om("once"),
				Spec: batchv1.JobSpec{Template: podTemplate("once", corev1.RestartPolicyNever)}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.BatchV1().Jobs(ns).List(ctx, lo)
		}},
		{"cronjobs", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.BatchV1().CronJobs(ns).Create(ctx, &batchv1.CronJob{ObjectMeta: om("nightly"), Spec: batchv1.CronJobSpec{Schedule: "0 3 * * *",
				JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{Template: podTemplate("nightly", corev1.RestartPolicyOnFailure)}}}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.BatchV1().CronJobs(ns).List(ctx, lo)
		}},
		{"replicationcontrollers", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			t := podTemplate("legacy", "")
			return cs.CoreV1().ReplicationControllers(ns).Create(ctx, &corev1.ReplicationController{ObjectMeta: om("legacy"),
				Spec: corev1.ReplicationControllerSpec{Template: &t}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.CoreV1().ReplicationControllers(ns).List(ctx, lo)
		}},
		{"podtemplates", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.CoreV1().PodTemplates(ns).Create(ctx, &corev1.PodTemplate{ObjectMeta: om("tmpl"), Template: podTemplate("t", "")}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.CoreV1().PodTemplates(ns).List(ctx, lo)
		}},
		{"resourcequotas", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.CoreV1().ResourceQuotas(ns).Create(ctx, &corev1.ResourceQuota{ObjectMeta: om("quota"),
				Spec: corev1.ResourceQuotaSpec{Hard: corev1.ResourceList{"pods": resource.MustParse("10")}}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.CoreV1().ResourceQuotas(ns).List(ctx, lo)
		}},
		{"limitranges", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.CoreV1().LimitRanges(ns).Create(ctx, &corev1.LimitRange{ObjectMeta: om("limits"), Spec: corev1.LimitRangeSpec{
				Limits: []corev1.LimitRangeItem{{Type: corev1.LimitTypeContainer, Max: corev1.ResourceList{"cpu": resource.MustParse("1")}}}}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.CoreV1().LimitRanges(ns).List(ctx, lo)
		}},
		{"poddisruptionbudgets", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, &policyv1.PodDisruptionBudget{ObjectMeta: om("web"),
				Spec: policyv1.PodDisruptionBudgetSpec{Selector: sel, MinAvailable: &one}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.PolicyV1().PodDisruptionBudgets(ns).List(ctx, lo)
		}},
		{"networkpolicies", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.NetworkingV1().NetworkPolicies(ns).Create(ctx, &networkingv1.NetworkPolicy{ObjectMeta: om("deny"),
				Spec: networkingv1.NetworkPolicySpec{PodSelector: *sel}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.NetworkingV1().NetworkPolicies(ns).List(ctx, lo)
		}},
		{"ingresses", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.NetworkingV1().Ingresses(ns).Create(ctx, &networkingv1.Ingress{ObjectMeta: om("web"), Spec: networkingv1.IngressSpec{
				Rules: []networkingv1.IngressRule{{Host: "web.example.com", IngressRuleValue: networkingv1.IngressRuleValue{HTTP: &networkingv1.HTTPIngressRuleValue{
					Paths: []networkingv1.HTTPIngressPath{{Path: "/", PathType: &prefix, Backend: networkingv1.IngressBackend{
						Service: &networkingv1.IngressServiceBackend{Name: "web", Port: networkingv1.ServiceBackendPort{Number: 80}}}}}}}}}}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.NetworkingV1().Ingresses(ns).List(ctx, lo)
		}},
		{"ingressclasses", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.NetworkingV1().IngressClasses().Create(ctx, &networkingv1.IngressClass{ObjectMeta: om("nginx"),
				Spec: networkingv1.IngressClassSpec{Controller: "k8s.io/ingress-nginx"}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.NetworkingV1().IngressClasses().List(ctx, lo)
		}},
		{"priorityclasses", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.SchedulingV1().PriorityClasses().Create(ctx, &schedulingv1.PriorityClass{ObjectMeta: om("high"), Value: 1000}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			// The system classes exist from the start, as on Kubernetes.
			return cs.SchedulingV1().PriorityClasses().List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=high"})
		}},
		{"horizontalpodautoscalers", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.AutoscalingV2().HorizontalPodAutoscalers(ns).Create(ctx, &autoscalingv2.HorizontalPodAutoscaler{ObjectMeta: om("web"),
				Spec: autoscalingv2.HorizontalPodAutoscalerSpec{MaxReplicas: 3,
					ScaleTargetRef: autoscalingv2.CrossVersionObjectReference{APIVersion: "apps/v1", Kind: "Deployment", Name: "web"}}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.AutoscalingV2().HorizontalPodAutoscalers(ns).List(ctx, lo)
		}},
		{"validatingwebhookconfigurations", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{
				ObjectMeta: om("check"), Webhooks: []admissionregistrationv1.ValidatingWebhook{{Name: "check.example.com",
					AdmissionReviewVersions: []string{"v1"}, SideEffects: &none, ClientConfig: hook, Rules: rules}}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.AdmissionregistrationV1().ValidatingWebhookConfigurations().List(ctx, lo)
		}},
		{"mutatingwebhookconfigurations", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.AdmissionregistrationV1().MutatingWebhookConfigurations().Create(ctx, &admissionregistrationv1.MutatingWebhookConfiguration{
				ObjectMeta: om("inject"), Webhooks: []admissionregistrationv1.MutatingWebhook{{Name: "inject.example.com",
					AdmissionReviewVersions: []string{"v1"}, SideEffects: &none, ClientConfig: hook, Rules: rules}}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.AdmissionregistrationV1().MutatingWebhookConfigurations().List(ctx, lo)
		}},
		{"roles", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.RbacV1().Roles(ns).Create(ctx, &rbacv1.Role{ObjectMeta: om("reader"),
				Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, APIGroups: []string{""}, Resources: []string{"pods"}}}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.RbacV1().Roles(ns).List(ctx, lo)
		}},
		{"rolebindings", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.RbacV1().RoleBindings(ns).Create(ctx, &rbacv1.RoleBinding{ObjectMeta: om("reader"),
				RoleRef: rbacv1.RoleRef{Kind: "Role", Name: "reader"}, Subjects: []rbacv1.Subject{{Kind: "User", Name: "alice"}}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.RbacV1().RoleBindings(ns).List(ctx, lo)
		}},
		{"clusterroles", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: om("system:health"),
				Rules: []rbacv1.PolicyRule{{Verbs: []string{"get"}, NonResourceURLs: []string{"/healthz"}}}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.RbacV1().ClusterRoles().List(ctx, lo)
		}},
		{"clusterrolebindings", func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: om("system:health"),
				RoleRef:  rbacv1.RoleRef{Kind: "ClusterRole", Name: "system:health"},
				Subjects: []rbacv1.Subject{{Kind: "Group", Name: "system:authenticated"}}}, co)
		}, func(ctx context.Context, cs kubernetes.Interface) (runtime.Object, error) {
			return cs.RbacV1().ClusterRoleBindings().List(ctx, lo)
		}},
	}
}

// TestServedKindsCreateAndList creates one object of every kind with
// client-go (JSON) and lists it back (protobuf). The controllers stay off:
// the test writes status and spec itself and checks what the API keeps.
func TestServedKindsCreateAndList(t *testing.T) {
	// AlwaysAllow: without the default RBAC policy, every cluster-scoped
	// kind starts empty, so each list holds just the object created here.
	c := cluster.Start(t, cluster.WithoutDNS(), func(o *app.Options) {
		o.NoControllers = true
		o.AuthorizationMode = app.AuthorizationAlwaysAllow
	})
	ctx := ctxT(t)
	pb := protobufClient(t, c)
	for _, k := range servedKinds() {
		obj, err := k.create(ctx, c.Client)
		if err != nil {
			t.Errorf("%s: create: %v", k.name, err)
			continue
		}
		created, _ := meta.Accessor(obj)
		if created.GetUID() == "" || created.GetResourceVersion() == "" {
			t.Errorf("%s: created object lacks uid or resourceVersion: %+v", k.name, obj)
		}
		list, err := k.list(ctx, pb)
		if err != nil {
			t.Errorf("%s: list: %v", k.name, err)
			continue
		}
		items, err := meta.ExtractList(list)
		if err != nil || len(items) != 1 {
			t.Errorf("%s: list has %d items (%v), want 1", k.name, len(items), err)
			continue
		}
		if got, _ := meta.Accessor(items[0]); got.GetName() != created.GetName() {
			t.Errorf("%s: listed %q, created %q", k.name, got.GetName(), created.GetName())
		}
	}

	// What the server filled in, as kube-apiserver would.
	job, err := c.Client.BatchV1().Jobs("default").Get(ctx, "once", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if job.Spec.Selector.MatchLabels["batch.kubernetes.io/controller-uid"] != string(job.UID) ||
		job.Spec.Template.Labels["job-name"] != "once" || *job.Spec.BackoffLimit != 6 || job.Generation != 1 {
		t.Errorf("job spec %+v", job.Spec)
	}
	dep, _ := c.Client.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
	if dep.Spec.Strategy.RollingUpdate.MaxSurge.String() != "25%" || dep.Spec.Template.Spec.TerminationGracePeriodSeconds == nil {
		t.Errorf("deployment spec %+v", dep.Spec)
	}
	rb, _ := c.Client.RbacV1().RoleBindings("default").Get(ctx, "reader", metav1.GetOptions{})
	if rb.RoleRef.APIGroup != rbacv1.GroupName || rb.Subjects[0].APIGroup != rbacv1.GroupName {
		t.Errorf("rolebinding %+v", rb)
	}

	// The deployment scales through its scale subresource.
	sc, err := pb.AppsV1().Deployments("default").GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil || sc.Spec.Replicas != 1 || sc.Status.Selector != "app=web" {
		t.Fatalf("scale %+v %v", sc, err)
	}
	sc.Spec.Replicas = 3
	if _, err := pb.AppsV1().Deployments("default").UpdateScale(ctx, "web", sc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Writes to the main resource keep the status; /status writes it.
	dep, _ = c.Client.AppsV1().Deployments("default").Get(ctx, "web", metav1.GetOptions{})
	dep.Status.Replicas = 3
	if dep, err = c.Client.AppsV1().Deployments("default").UpdateStatus(ctx, dep, metav1.UpdateOptions{}); err != nil || dep.Status.Replicas != 3 {
		t.Fatalf("status update: %+v %v", dep.Status, err)
	}
	dep.Status.Replicas = 0
	dep.Spec.Paused = true
	if dep, err = c.Client.AppsV1().Deployments("default").Update(ctx, dep, metav1.UpdateOptions{}); err != nil ||
		dep.Status.Replicas != 3 || dep.Generation != 3 {
		t.Fatalf("spec update: generation %d status %+v %v", dep.Generation, dep.Status, err)
	}

	// The same autoscaler through autoscaling/v1.
	h1, err := c.Client.AutoscalingV1().HorizontalPodAutoscalers("default").Get(ctx, "web", metav1.GetOptions{})
	if err != nil || *h1.Spec.TargetCPUUtilizationPercentage != 80 || *h1.Spec.MinReplicas != 1 {
		t.Fatalf("autoscaling/v1 view: %+v %v", h1, err)
	}
	h1.Spec.TargetCPUUtilizationPercentage = ptr.To[int32](50)
	if _, err := c.Client.AutoscalingV1().HorizontalPodAutoscalers("default").Update(ctx, h1, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	h2, _ := c.Client.AutoscalingV2().HorizontalPodAutoscalers("default").Get(ctx, "web", metav1.GetOptions{})
	if u := h2.Spec.Metrics[0].Resource.Target.AverageUtilization; *u != 50 {
		t.Errorf("v2 utilization %d after a v1 update", *u)
	}
	if _, err := c.Client.AutoscalingV1().HorizontalPodAutoscalers("default").Create(ctx, &autoscalingv1.HorizontalPodAutoscaler{
		ObjectMeta: metav1.ObjectMeta{Name: "v1"}, Spec: autoscalingv1.HorizontalPodAutoscalerSpec{MaxReplicas: 2,
			ScaleTargetRef: autoscalingv1.CrossVersionObjectReference{Kind: "Deployment", Name: "web"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if l, _ := c.Client.AutoscalingV2().HorizontalPodAutoscalers("default").List(ctx, metav1.ListOptions{}); len(l.Items) != 2 {
		t.Errorf("v2 lists %d autoscalers, want 2", len(l.Items))
	}

	// Bad input is answered as kube-apiserver answers it.
	_, err = c.Client.BatchV1().CronJobs("default").Create(ctx, &batchv1.CronJob{ObjectMeta: metav1.ObjectMeta{Name: "bad"},
		Spec: batchv1.CronJobSpec{Schedule: "every day", JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
			Template: podTemplate("x", corev1.RestartPolicyNever)}}}}, metav1.CreateOptions{})
	if st, ok := err.(apierrors.APIStatus); !ok || st.Status().Code != 422 || len(st.Status().Details.Causes) != 1 ||
		st.Status().Details.Causes[0].Field != "spec.schedule" {
		t.Errorf("bad schedule: %v", err)
	}
	// The Deployment controller writes the object too: change the newest
	// version, and again when it moved on in between.
	for i := 0; ; i++ {
		cur, err := c.Client.AppsV1().Deployments("default").Get(ctx, dep.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		cur.Spec.Selector = &metav1.LabelSelector{MatchLabels: map[string]string{"app": "other"}}
		cur.Spec.Template.Labels = map[string]string{"app": "other"}
		_, err = c.Client.AppsV1().Deployments("default").Update(ctx, cur, metav1.UpdateOptions{})
		if apierrors.IsConflict(err) && i < 20 {
			continue
		}
		if !apierrors.IsInvalid(err) {
			t.Errorf("selector change: %v", err)
		}
		break
	}
}

// TestDiscoveryListsServedKinds checks legacy and aggregated discovery and
// the OpenAPI documents for the groups and kinds served.
func TestDiscoveryListsServedKinds(t *testing.T) {
	c := cluster.Start(t)
	ctx := ctxT(t)
	want := map[string][]string{
		"v1":                              {"replicationcontrollers", "replicationcontrollers/scale", "replicationcontrollers/status", "podtemplates", "resourcequotas", "resourcequotas/status", "limitranges"},
		"apps/v1":                         {"deployments", "deployments/scale", "deployments/status", "replicasets", "replicasets/scale", "daemonsets", "daemonsets/status"},
		"batch/v1":                        {"jobs", "jobs/status", "cronjobs", "cronjobs/status"},
		"autoscaling/v2":                  {"horizontalpodautoscalers", "horizontalpodautoscalers/status"},
		"autoscaling/v1":                  {"horizontalpodautoscalers"},
		"policy/v1":                       {"poddisruptionbudgets", "poddisruptionbudgets/status"},
		"networking.k8s.io/v1":            {"networkpolicies", "ingresses", "ingresses/status", "ingressclasses"},
		"scheduling.k8s.io/v1":            {"priorityclasses"},
		"admissionregistration.k8s.io/v1": {"validatingwebhookconfigurations", "mutatingwebhookconfigurations"},
		"rbac.authorization.k8s.io/v1":    {"roles", "rolebindings", "clusterroles", "clusterrolebindings"},
	}
	_, lists, err := c.Client.Discovery().ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]metav1.APIResource{}
	for _, l := range lists {
		for _, r := range l.APIResources {
			found[l.GroupVersion+"/"+r.Name] = r
		}
	}
	for gv, names := range want {
		for _, n := range names {
			if _, ok := found[gv+"/"+n]; !ok {
				t.Errorf("discovery lacks %s/%s", gv, n)
			}
		}
	}
	for key, short := range map[string]string{"apps/v1/deployments": "deploy", "batch/v1/cronjobs": "cj", "policy/v1/poddisruptionbudgets": "pdb",
		"v1/resourcequotas": "quota", "scheduling.k8s.io/v1/priorityclasses": "pc", "networking.k8s.io/v1/networkpolicies": "netpol"} {
		if r := found[key]; len(r.ShortNames) != 1 || r.ShortNames[0] != short {
			t.Errorf("%s short names %v, want %s", key, r.ShortNames, short)
		}
	}
	for _, key := range []string{"apps/v1/deployments", "apps/v1/daemonsets", "batch/v1/jobs", "batch/v1/cronjobs", "v1/replicationcontrollers", "autoscaling/v2/horizontalpodautoscalers"} {
		if r := found[key]; len(r.Categories) != 1 || r.Categories[0] != "all" {
			t.Errorf("%s categories %v, want [all]", key, r.Categories)
		}
	}

	// /apis lists each group once, autoscaling preferring v2.
	body, err := c.Client.Discovery().RESTClient().Get().AbsPath("/apis").SetHeader("Accept", "application/json").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var groups metav1.APIGroupList
	if err := json.Unmarshal(body, &groups); err != nil {
		t.Fatal(err)
	}
	preferred := map[string]string{}
	for _, g := range groups.Groups {
		preferred[g.Name] = g.PreferredVersion.Version
	}
	for g, v := range map[string]string{"batch": "v1", "autoscaling": "v2", "policy": "v1", "networking.k8s.io": "v1",
		"scheduling.k8s.io": "v1", "admissionregistration.k8s.io": "v1", "rbac.authorization.k8s.io": "v1"} {
		if preferred[g] != v {
			t.Errorf("/apis: group %s preferred %q, want %s", g, preferred[g], v)
		}
	}

	// Aggregated discovery.
	body, err = c.Client.Discovery().RESTClient().Get().AbsPath("/apis").
		SetHeader("Accept", "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var agg apidiscoveryv2.APIGroupDiscoveryList
	if err := json.Unmarshal(body, &agg); err != nil {
		t.Fatal(err)
	}
	aggFound := map[string]bool{}
	for _, g := range agg.Items {
		for _, v := range g.Versions {
			for _, r := range v.Resources {
				aggFound[g.Name+"/"+v.Version+"/"+r.Resource] = true
				for _, s := range r.Subresources {
					aggFound[g.Name+"/"+v.Version+"/"+r.Resource+"/"+s.Subresource] = true
				}
			}
		}
	}
	for gv, names := range want {
		if gv == "v1" {
			continue
		}
		for _, n := range names {
			if !aggFound[gv+"/"+n] {
				t.Errorf("aggregated discovery lacks %s/%s", gv, n)
			}
		}
	}

	// OpenAPI v3 has a document per group-version; v2 has the definitions.
	body, err = c.Client.Discovery().RESTClient().Get().AbsPath("/openapi/v3").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var v3 struct {
		Paths map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(body, &v3); err != nil {
		t.Fatal(err)
	}
	for gv := range want {
		p := "apis/" + gv
		if gv == "v1" {
			p = "api/v1"
		}
		if _, ok := v3.Paths[p]; !ok {
			t.Errorf("/openapi/v3 lacks %s", p)
		}
	}
	body, err = c.Client.Discovery().RESTClient().Get().AbsPath("/openapi/v2").SetHeader("Accept", "application/json").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var v2 struct {
		Definitions map[string]json.RawMessage `json:"definitions"`
	}
	if err := json.Unmarshal(body, &v2); err != nil {
		t.Fatal(err)
	}
	for _, def := range []string{"io.k8s.api.apps.v1.Deployment", "io.k8s.api.batch.v1.CronJob", "io.k8s.api.policy.v1.PodDisruptionBudget",
		"io.k8s.api.networking.v1.Ingress", "io.k8s.api.autoscaling.v2.HorizontalPodAutoscaler", "io.k8s.api.autoscaling.v1.HorizontalPodAutoscaler",
		"io.k8s.api.rbac.v1.ClusterRoleBinding", "io.k8s.api.admissionregistration.v1.MutatingWebhookConfiguration",
		"io.k8s.api.scheduling.v1.PriorityClass", "io.k8s.api.core.v1.LimitRange"} {
		if _, ok := v2.Definitions[def]; !ok {
			t.Errorf("/openapi/v2 lacks %s", def)
		}
	}
}
