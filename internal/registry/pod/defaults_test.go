package pod

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// The defaults kube-apiserver stores (pkg/apis/core/v1 defaults and the
// admission plugins that add to a pod), as `kubectl get -o yaml` shows them.
func TestDefaultsAsKubernetesStoresThem(t *testing.T) {
	port := intstr.FromInt32(8080)
	for _, tc := range []struct {
		name string
		in   func(*corev1.Pod)
		got  func(*corev1.Pod) any
		want any
	}{
		{"liveness probe: timing and httpGet",
			func(p *corev1.Pod) {
				p.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Port: port}}}
			},
			func(p *corev1.Pod) any { return p.Spec.Containers[0].LivenessProbe },
			&corev1.Probe{
				ProbeHandler:   corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: port, Scheme: corev1.URISchemeHTTP}},
				TimeoutSeconds: 1, PeriodSeconds: 10, SuccessThreshold: 1, FailureThreshold: 3,
			}},
		{"readiness probe: given values kept",
			func(p *corev1.Pod) {
				p.Spec.Containers[0].ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: port}},
					PeriodSeconds: 5, FailureThreshold: 6, InitialDelaySeconds: 2}
			},
			func(p *corev1.Pod) any { return p.Spec.Containers[0].ReadinessProbe },
			&corev1.Probe{ProbeHandler: corev1.ProbeHandler{TCPSocket: &corev1.TCPSocketAction{Port: port}},
				InitialDelaySeconds: 2, TimeoutSeconds: 1, PeriodSeconds: 5, SuccessThreshold: 1, FailureThreshold: 6}},
		{"startup probe: grpc service",
			func(p *corev1.Pod) {
				p.Spec.Containers[0].StartupProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{GRPC: &corev1.GRPCAction{Port: 9000}}}
			},
			func(p *corev1.Pod) any { return p.Spec.Containers[0].StartupProbe.GRPC },
			&corev1.GRPCAction{Port: 9000, Service: ptr.To("")}},
		{"https probe keeps its scheme",
			func(p *corev1.Pod) {
				p.Spec.Containers[0].LivenessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: port, Scheme: corev1.URISchemeHTTPS}}}
			},
			func(p *corev1.Pod) any { return p.Spec.Containers[0].LivenessProbe.HTTPGet },
			&corev1.HTTPGetAction{Path: "/healthz", Port: port, Scheme: corev1.URISchemeHTTPS}},
		{"preStop httpGet",
			func(p *corev1.Pod) {
				p.Spec.Containers[0].Lifecycle = &corev1.Lifecycle{PreStop: &corev1.LifecycleHandler{HTTPGet: &corev1.HTTPGetAction{Port: port}}}
			},
			func(p *corev1.Pod) any { return p.Spec.Containers[0].Lifecycle.PreStop.HTTPGet },
			&corev1.HTTPGetAction{Path: "/", Port: port, Scheme: corev1.URISchemeHTTP}},
		{"init container probe-free defaults",
			func(p *corev1.Pod) { p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox:1.36"}} },
			func(p *corev1.Pod) any {
				c := p.Spec.InitContainers[0]
				return []any{c.TerminationMessagePath, c.TerminationMessagePolicy, c.ImagePullPolicy}
			},
			[]any{"/dev/termination-log", corev1.TerminationMessageReadFile, corev1.PullIfNotPresent}},
		{"ephemeral container gets container defaults",
			func(p *corev1.Pod) {
				p.Spec.EphemeralContainers = []corev1.EphemeralContainer{{EphemeralContainerCommon: corev1.EphemeralContainerCommon{Name: "debug", Image: "busybox"}}}
			},
			func(p *corev1.Pod) any {
				c := p.Spec.EphemeralContainers[0]
				return []any{c.TerminationMessagePath, c.TerminationMessagePolicy, c.ImagePullPolicy}
			},
			[]any{"/dev/termination-log", corev1.TerminationMessageReadFile, corev1.PullAlways}},
		{"env fieldRef apiVersion",
			func(p *corev1.Pod) {
				p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: "POD", ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}
			},
			func(p *corev1.Pod) any { return p.Spec.Containers[0].Env[0].ValueFrom.FieldRef },
			&corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.name"}},
		{"container port protocol",
			func(p *corev1.Pod) { p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80}} },
			func(p *corev1.Pod) any { return p.Spec.Containers[0].Ports },
			[]corev1.ContainerPort{{ContainerPort: 80, Protocol: corev1.ProtocolTCP}}},
		{"hostNetwork: host ports from container ports",
			func(p *corev1.Pod) {
				p.Spec.HostNetwork = true
				p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: 80}, {ContainerPort: 443, HostPort: 8443}}
			},
			func(p *corev1.Pod) any { return p.Spec.Containers[0].Ports },
			[]corev1.ContainerPort{{ContainerPort: 80, HostPort: 80, Protocol: corev1.ProtocolTCP}, {ContainerPort: 443, HostPort: 8443, Protocol: corev1.ProtocolTCP}}},
		{"requests from limits",
			func(p *corev1.Pod) {
				p.Spec.Containers[0].Resources = corev1.ResourceRequirements{
					Limits:   corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("500m"), corev1.ResourceMemory: resource.MustParse("128Mi")},
					Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m")},
				}
			},
			func(p *corev1.Pod) any { return p.Spec.Containers[0].Resources.Requests },
			corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("100m"), corev1.ResourceMemory: resource.MustParse("128Mi")}},
		{"resources rounded up to milli",
			func(p *corev1.Pod) {
				p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("0.0001")}
			},
			func(p *corev1.Pod) any { return p.Spec.Containers[0].Resources.Requests.Cpu().String() },
			"1m"},
		{"volume without source is an emptyDir",
			func(p *corev1.Pod) { p.Spec.Volumes = []corev1.Volume{{Name: "scratch"}} },
			func(p *corev1.Pod) any { return p.Spec.Volumes[0].VolumeSource },
			corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
		{"secret, configMap and downwardAPI volumes: mode 0644",
			func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{
					{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "s"}}},
					{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "c"}, DefaultMode: ptr.To[int32](0o600)}}},
					{Name: "d", VolumeSource: corev1.VolumeSource{DownwardAPI: &corev1.DownwardAPIVolumeSource{Items: []corev1.DownwardAPIVolumeFile{{Path: "n", FieldRef: &corev1.ObjectFieldSelector{FieldPath: "metadata.name"}}}}}},
				}
			},
			func(p *corev1.Pod) any {
				v := p.Spec.Volumes
				return []any{*v[0].Secret.DefaultMode, *v[1].ConfigMap.DefaultMode, *v[2].DownwardAPI.DefaultMode, v[2].DownwardAPI.Items[0].FieldRef.APIVersion}
			},
			[]any{int32(420), int32(0o600), int32(420), "v1"}},
		{"projected service account token",
			func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{{Name: "token", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
					Sources: []corev1.VolumeProjection{{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{Path: "token"}}}}}}}
			},
			func(p *corev1.Pod) any {
				pr := p.Spec.Volumes[0].Projected
				return []any{*pr.DefaultMode, *pr.Sources[0].ServiceAccountToken.ExpirationSeconds}
			},
			[]any{int32(420), int64(3600)}},
		{"hostPath type",
			func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{{Name: "h", VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/data"}}}}
			},
			func(p *corev1.Pod) any { return p.Spec.Volumes[0].HostPath },
			&corev1.HostPathVolumeSource{Path: "/data", Type: ptr.To(corev1.HostPathUnset)}},
		{"ephemeral volume claim template",
			func(p *corev1.Pod) {
				p.Spec.Volumes = []corev1.Volume{{Name: "e", VolumeSource: corev1.VolumeSource{Ephemeral: &corev1.EphemeralVolumeSource{
					VolumeClaimTemplate: &corev1.PersistentVolumeClaimTemplate{}}}}}
			},
			func(p *corev1.Pod) any { return p.Spec.Volumes[0].Ephemeral.VolumeClaimTemplate.Spec.VolumeMode },
			ptr.To(corev1.PersistentVolumeFilesystem)},
		{"pod spec defaults",
			func(*corev1.Pod) {},
			func(p *corev1.Pod) any {
				s := p.Spec
				return []any{s.RestartPolicy, s.DNSPolicy, *s.TerminationGracePeriodSeconds, s.SchedulerName, s.SecurityContext,
					*s.EnableServiceLinks, s.ServiceAccountName, s.DeprecatedServiceAccount, *s.Priority, *s.PreemptionPolicy}
			},
			[]any{corev1.RestartPolicyAlways, corev1.DNSClusterFirst, int64(30), "default-scheduler", &corev1.PodSecurityContext{},
				true, "default", "default", int32(0), corev1.PreemptLowerPriority}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPod()
			tc.in(p)
			Default(p)
			if got := tc.got(p); !apiequality.Semantic.DeepEqual(got, tc.want) {
				t.Errorf("got  %#v\nwant %#v", got, tc.want)
			}
			again := p.DeepCopy()
			Default(again)
			if !apiequality.Semantic.DeepEqual(again, p) {
				t.Errorf("defaulting twice changed the pod: %#v", again.Spec)
			}
		})
	}
}

func TestImagePullPolicy(t *testing.T) {
	for image, want := range map[string]corev1.PullPolicy{
		"nginx":                          corev1.PullAlways,
		"nginx:latest":                   corev1.PullAlways,
		"nginx:1.27":                     corev1.PullIfNotPresent,
		"nginx@sha256:abc":               corev1.PullIfNotPresent,
		"nginx:latest@sha256:abc":        corev1.PullAlways,
		"localhost:5000/app":             corev1.PullAlways,
		"localhost:5000/app:v1":          corev1.PullIfNotPresent,
		"registry.example/team/app:v1.2": corev1.PullIfNotPresent,
	} {
		if got := pullPolicy(image); got != want {
			t.Errorf("%s: %s, want %s", image, got, want)
		}
	}
	p := newPod()
	p.Spec.Containers[0].ImagePullPolicy = corev1.PullNever
	Default(p)
	if p.Spec.Containers[0].ImagePullPolicy != corev1.PullNever {
		t.Errorf("a given pull policy was replaced: %s", p.Spec.Containers[0].ImagePullPolicy)
	}
}

// The pod template of a workload gets the pod spec defaults, not the ones
// only Pods get (as in kube-apiserver, where SetDefaults_Pod is Pod-only).
func TestPodSpecDefaultsAreNotPodDefaults(t *testing.T) {
	spec := newPod().Spec
	spec.Containers[0].Resources.Limits = corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("1")}
	DefaultPodSpec(&spec)
	if spec.EnableServiceLinks != nil || spec.ServiceAccountName != "" || spec.Tolerations != nil || spec.Priority != nil || spec.Containers[0].Resources.Requests != nil {
		t.Errorf("pod-only defaults on a pod spec: %#v", spec)
	}
}

func TestQOSClass(t *testing.T) {
	cpu, mem := corev1.ResourceCPU, corev1.ResourceMemory
	q := resource.MustParse
	for _, tc := range []struct {
		name string
		in   func(*corev1.Pod)
		want corev1.PodQOSClass
	}{
		{"nothing", func(*corev1.Pod) {}, corev1.PodQOSBestEffort},
		{"limits only (requests follow)", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{cpu: q("1"), mem: q("1Gi")}
		}, corev1.PodQOSGuaranteed},
		{"requests below limits", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources = corev1.ResourceRequirements{Limits: corev1.ResourceList{cpu: q("1"), mem: q("1Gi")}, Requests: corev1.ResourceList{cpu: q("500m")}}
		}, corev1.PodQOSBurstable},
		{"cpu limit only", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{cpu: q("1")}
		}, corev1.PodQOSBurstable},
		{"requests only", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{mem: q("64Mi")}
		}, corev1.PodQOSBurstable},
		{"ephemeral storage only", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Requests = corev1.ResourceList{corev1.ResourceEphemeralStorage: q("1Gi")}
		}, corev1.PodQOSBestEffort},
		{"one guaranteed, one best effort", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{cpu: q("1"), mem: q("1Gi")}
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "side", Image: "busybox:1.36"})
		}, corev1.PodQOSBurstable},
		{"guaranteed init container too", func(p *corev1.Pod) {
			p.Spec.Containers[0].Resources.Limits = corev1.ResourceList{cpu: q("1"), mem: q("1Gi")}
			p.Spec.InitContainers = []corev1.Container{{Name: "init", Image: "busybox:1.36", Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{cpu: q("100m"), mem: q("64Mi")}}}}
		}, corev1.PodQOSGuaranteed},
		{"pod-level resources decide", func(p *corev1.Pod) {
			p.Spec.Resources = &corev1.ResourceRequirements{Limits: corev1.ResourceList{cpu: q("2"), mem: q("2Gi")}, Requests: corev1.ResourceList{cpu: q("2"), mem: q("2Gi")}}
		}, corev1.PodQOSGuaranteed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPod()
			tc.in(p)
			Default(p)
			if got := qosClass(&p.Spec); got != tc.want {
				t.Errorf("QoS class %s, want %s", got, tc.want)
			}
		})
	}
}
