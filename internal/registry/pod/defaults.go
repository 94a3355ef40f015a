package pod

import (
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/persistentvolumeclaim"
)

// Default sets what kube-apiserver stores for a Pod where the client left
// fields out: the pod spec defaults (DefaultPodSpec, shared with pod
// templates), the ones only Pods get (requests from limits, service links,
// host ports under hostNetwork), and what kube-apiserver's admission
// plugins add (service account, priority; the not-ready and unreachable
// tolerations are the tolerationseconds admission plugin's).
func Default(p *corev1.Pod) {
	DefaultPodSpec(&p.Spec)
	requestsFromLimits(p.Spec.InitContainers)
	requestsFromLimits(p.Spec.Containers)
	if p.Spec.EnableServiceLinks == nil {
		p.Spec.EnableServiceLinks = ptr.To(corev1.DefaultEnableServiceLinks)
	}
	if p.Spec.HostNetwork {
		hostPortsFromContainerPorts(p.Spec.InitContainers)
		hostPortsFromContainerPorts(p.Spec.Containers)
	}
	if p.Spec.ServiceAccountName == "" {
		p.Spec.ServiceAccountName = "default"
	}
	if p.Spec.DeprecatedServiceAccount == "" {
		p.Spec.DeprecatedServiceAccount = p.Spec.ServiceAccountName
	}
	// A pod naming a PriorityClass gets its priority and preemption policy
	// from the class, in admission (which refuses others stated here).
	if p.Spec.Priority == nil && p.Spec.PriorityClassName == "" {
		p.Spec.Priority = ptr.To[int32](0)
	}
	if p.Spec.PreemptionPolicy == nil && p.Spec.PriorityClassName == "" {
		p.Spec.PreemptionPolicy = ptr.To(corev1.PreemptLowerPriority)
	}
}

// requestsFromLimits makes a limit without a request also the request.
func requestsFromLimits(cs []corev1.Container) {
	for i := range cs {
		r := &cs[i].Resources
		for name, lim := range r.Limits {
			if _, ok := r.Requests[name]; ok {
				continue
			}
			if r.Requests == nil {
				r.Requests = corev1.ResourceList{}
			}
			r.Requests[name] = lim.DeepCopy()
		}
	}
}

func hostPortsFromContainerPorts(cs []corev1.Container) {
	for i := range cs {
		for j := range cs[i].Ports {
			if p := &cs[i].Ports[j]; p.HostPort == 0 {
				p.HostPort = p.ContainerPort
			}
		}
	}
}

// DefaultPodSpec sets the defaults kube-apiserver gives every pod spec, a
// Pod's and a pod template's: policies, security context, grace period,
// scheduler, and the defaults of its containers and volumes.
func DefaultPodSpec(p *corev1.PodSpec) {
	if p.RestartPolicy == "" {
		p.RestartPolicy = corev1.RestartPolicyAlways
	}
	if p.DNSPolicy == "" {
		p.DNSPolicy = corev1.DNSClusterFirst
	}
	if p.TerminationGracePeriodSeconds == nil {
		p.TerminationGracePeriodSeconds = ptr.To[int64](corev1.DefaultTerminationGracePeriodSeconds)
	}
	if p.SchedulerName == "" {
		p.SchedulerName = corev1.DefaultSchedulerName
	}
	if p.SecurityContext == nil {
		p.SecurityContext = &corev1.PodSecurityContext{}
	}
	for i := range p.Volumes {
		defaultVolume(&p.Volumes[i])
	}
	for i := range p.InitContainers {
		defaultContainer(&p.InitContainers[i])
	}
	for i := range p.Containers {
		defaultContainer(&p.Containers[i])
	}
	for i := range p.EphemeralContainers {
		defaultContainer((*corev1.Container)(&p.EphemeralContainers[i].EphemeralContainerCommon))
	}
	registry.RoundResources(p.Overhead)
	if p.Resources != nil {
		registry.RoundResources(p.Resources.Limits)
		registry.RoundResources(p.Resources.Requests)
	}
}

func defaultContainer(c *corev1.Container) {
	if c.TerminationMessagePath == "" {
		c.TerminationMessagePath = corev1.TerminationMessagePathDefault
	}
	if c.TerminationMessagePolicy == "" {
		c.TerminationMessagePolicy = corev1.TerminationMessageReadFile
	}
	if c.ImagePullPolicy == "" {
		c.ImagePullPolicy = pullPolicy(c.Image)
	}
	for i := range c.Ports {
		if c.Ports[i].Protocol == "" {
			c.Ports[i].Protocol = corev1.ProtocolTCP
		}
	}
	for i := range c.Env {
		if vf := c.Env[i].ValueFrom; vf != nil {
			defaultFieldRef(vf.FieldRef)
		}
	}
	defaultProbe(c.LivenessProbe)
	defaultProbe(c.ReadinessProbe)
	defaultProbe(c.StartupProbe)
	if lc := c.Lifecycle; lc != nil {
		if lc.PostStart != nil {
			defaultHTTPGet(lc.PostStart.HTTPGet)
		}
		if lc.PreStop != nil {
			defaultHTTPGet(lc.PreStop.HTTPGet)
		}
	}
	registry.RoundResources(c.Resources.Limits)
	registry.RoundResources(c.Resources.Requests)
}

// pullPolicy is the default image pull policy: Always for the latest tag
// (which an image without tag or digest means), IfNotPresent otherwise.
func pullPolicy(image string) corev1.PullPolicy {
	if imageTag(image) == "latest" {
		return corev1.PullAlways
	}
	return corev1.PullIfNotPresent
}

// imageTag returns an image reference's tag: "latest" when it has neither a
// tag nor a digest, "" when it has only a digest.
func imageTag(image string) string {
	name, digest, _ := strings.Cut(image, "@")
	slash := strings.LastIndex(name, "/")
	if i := strings.LastIndex(name, ":"); i > slash {
		return name[i+1:]
	}
	if digest != "" {
		return ""
	}
	return "latest"
}

// defaultProbe sets a probe's timing (timeout 1s, period 10s, success 1,
// failure 3) and its handler's defaults.
func defaultProbe(p *corev1.Probe) {
	if p == nil {
		return
	}
	if p.TimeoutSeconds == 0 {
		p.TimeoutSeconds = 1
	}
	if p.PeriodSeconds == 0 {
		p.PeriodSeconds = 10
	}
	if p.SuccessThreshold == 0 {
		p.SuccessThreshold = 1
	}
	if p.FailureThreshold == 0 {
		p.FailureThreshold = 3
	}
	defaultHTTPGet(p.HTTPGet)
	if p.GRPC != nil && p.GRPC.Service == nil {
		p.GRPC.Service = ptr.To("")
	}
}

func defaultHTTPGet(h *corev1.HTTPGetAction) {
	if h == nil {
		return
	}
	if h.Path == "" {
		h.Path = "/"
	}
	if h.Scheme == "" {
		h.Scheme = corev1.URISchemeHTTP
	}
}

func defaultFieldRef(f *corev1.ObjectFieldSelector) {
	if f != nil && f.APIVersion == "" {
		f.APIVersion = "v1"
	}
}

// fileMode0644 is the default mode of files in secret, configMap,
// downwardAPI and projected volumes (420 in JSON).
const fileMode0644 int32 = 0o644

func defaultVolume(v *corev1.Volume) {
	if ptr.AllPtrFieldsNil(&v.VolumeSource) {
		v.EmptyDir = &corev1.EmptyDirVolumeSource{}
	}
	switch {
	case v.Secret != nil:
		if v.Secret.DefaultMode == nil {
			v.Secret.DefaultMode = ptr.To(fileMode0644)
		}
	case v.ConfigMap != nil:
		if v.ConfigMap.DefaultMode == nil {
			v.ConfigMap.DefaultMode = ptr.To(fileMode0644)
		}
	case v.DownwardAPI != nil:
		if v.DownwardAPI.DefaultMode == nil {
			v.DownwardAPI.DefaultMode = ptr.To(fileMode0644)
		}
		for i := range v.DownwardAPI.Items {
			defaultFieldRef(v.DownwardAPI.Items[i].FieldRef)
		}
	case v.Projected != nil:
		if v.Projected.DefaultMode == nil {
			v.Projected.DefaultMode = ptr.To(fileMode0644)
		}
		for _, src := range v.Projected.Sources {
			if src.DownwardAPI != nil {
				for i := range src.DownwardAPI.Items {
					defaultFieldRef(src.DownwardAPI.Items[i].FieldRef)
				}
			}
			if t := src.ServiceAccountToken; t != nil && t.ExpirationSeconds == nil {
				t.ExpirationSeconds = ptr.To[int64](3600)
			}
		}
	case v.HostPath != nil:
		if v.HostPath.Type == nil {
			v.HostPath.Type = ptr.To(corev1.HostPathUnset)
		}
	case v.ISCSI != nil:
		if v.ISCSI.ISCSIInterface == "" {
			v.ISCSI.ISCSIInterface = "default"
		}
	case v.RBD != nil:
		if v.RBD.RBDPool == "" {
			v.RBD.RBDPool = "rbd"
		}
		if v.RBD.RadosUser == "" {
			v.RBD.RadosUser = "admin"
		}
		if v.RBD.Keyring == "" {
			v.RBD.Keyring = "/etc/ceph/keyring"
		}
	case v.AzureDisk != nil:
		d := v.AzureDisk
		if d.CachingMode == nil {
			d.CachingMode = ptr.To(corev1.AzureDataDiskCachingReadWrite)
		}
		if d.FSType == nil {
			d.FSType = ptr.To("ext4")
		}
		if d.ReadOnly == nil {
			d.ReadOnly = ptr.To(false)
		}
		if d.Kind == nil {
			d.Kind = ptr.To(corev1.AzureSharedBlobDisk)
		}
	case v.ScaleIO != nil:
		if v.ScaleIO.StorageMode == "" {
			v.ScaleIO.StorageMode = "ThinProvisioned"
		}
		if v.ScaleIO.FSType == "" {
			v.ScaleIO.FSType = "xfs"
		}
	case v.Ephemeral != nil:
		if t := v.Ephemeral.VolumeClaimTemplate; t != nil {
			persistentvolumeclaim.DefaultSpec(&t.Spec)
		}
	}
}

// qosClass is the pod's quality of service class as kube-apiserver
// records it at creation: from the pod-level resources when the pod has
// them, else Guaranteed when every container's CPU and memory requests
// equal its (non-zero) limits, BestEffort when no container has any,
// Burstable otherwise.
func qosClass(spec *corev1.PodSpec) corev1.PodQOSClass {
	if spec.Resources != nil {
		return resourcesQOS(spec.Resources)
	}
	var pod corev1.PodQOSClass
	for _, list := range [][]corev1.Container{spec.InitContainers, spec.Containers} {
		for i := range list {
			q := resourcesQOS(&list[i].Resources)
			switch {
			case q == corev1.PodQOSBurstable:
				return q
			case pod == "":
				pod = q
			case pod != q:
				return corev1.PodQOSBurstable
			}
		}
	}
	if pod == "" {
		return corev1.PodQOSBestEffort
	}
	return pod
}

func resourcesQOS(r *corev1.ResourceRequirements) corev1.PodQOSClass {
	if len(r.Requests) == 0 && len(r.Limits) == 0 {
		return corev1.PodQOSBestEffort
	}
	var class corev1.PodQOSClass
	for _, name := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, lim := r.Requests[name], r.Limits[name]
		if !req.Equal(lim) {
			return corev1.PodQOSBurstable
		}
		this := corev1.PodQOSGuaranteed
		if req.IsZero() {
			this = corev1.PodQOSBestEffort
		}
		if class != "" && class != this {
			return corev1.PodQOSBurstable
		}
		class = this
	}
	return class
}
