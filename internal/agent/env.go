package agent

import (
	"context"
	"fmt"
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Expand replaces $(VAR) in s with VAR's value from vars, as Kubernetes does
// for command, args and env values: an unknown $(VAR) stays as written, and
// $$ is a literal $ (so $$(VAR) is the text $(VAR)).
func Expand(s string, vars map[string]string) string {
	if !strings.Contains(s, "$") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			name := s[i+2 : i+2+end]
			if v, ok := vars[name]; ok {
				b.WriteString(v)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// objectSource reads the ConfigMaps and Secrets env and volumes refer to.
type objectSource interface {
	configMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error)
	secret(ctx context.Context, ns, name string) (*corev1.Secret, error)
}

type clientSource struct{ c kubernetes.Interface }

func (s clientSource) configMap(ctx context.Context, ns, name string) (*corev1.ConfigMap, error) {
	return s.c.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
}

func (s clientSource) secret(ctx context.Context, ns, name string) (*corev1.Secret, error) {
	return s.c.CoreV1().Secrets(ns).Get(ctx, name, metav1.GetOptions{})
}

// FieldValue is the value of a downward-API field path of the pod.
func FieldValue(pod *corev1.Pod, path string) (string, error) {
	switch path {
	case "metadata.name":
		return pod.Name, nil
	case "metadata.namespace":
		return pod.Namespace, nil
	case "metadata.uid":
		return string(pod.UID), nil
	case "spec.nodeName":
		return pod.Spec.NodeName, nil
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName, nil
	case "status.podIP":
		return pod.Status.PodIP, nil
	case "status.hostIP":
		return pod.Status.HostIP, nil
	case "status.podIPs":
		var ips []string
		for _, ip := range pod.Status.PodIPs {
			ips = append(ips, ip.IP)
		}
		return strings.Join(ips, ","), nil
	case "status.hostIPs":
		var ips []string
		for _, ip := range pod.Status.HostIPs {
			ips = append(ips, ip.IP)
		}
		return strings.Join(ips, ","), nil
	case "metadata.labels":
		return formatMap(pod.Labels), nil
	case "metadata.annotations":
		return formatMap(pod.Annotations), nil
	}
	for _, m := range []struct {
		prefix string
		values map[string]string
	}{{"metadata.labels['", pod.Labels}, {"metadata.annotations['", pod.Annotations}} {
		if key, ok := strings.CutPrefix(path, m.prefix); ok && strings.HasSuffix(key, "']") {
			return m.values[strings.TrimSuffix(key, "']")], nil
		}
	}
	return "", fmt.Errorf("unsupported fieldRef %q", path)
}

func formatMap(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%q\n", k, m[k])
	}
	return b.String()
}

// containerEnv resolves a container's environment in order (envFrom, then
// env, later entries able to use earlier ones through $(VAR)), on top of
// the defaults a process needs (PATH, HOSTNAME, HOME) and the pod's Service
// variables (svcEnv, see ServiceEnv), which envFrom and env override.
func containerEnv(ctx context.Context, src objectSource, pod *corev1.Pod, c *corev1.Container, hostname string, svcEnv []corev1.EnvVar) ([]string, map[string]string, error) {
	vars := map[string]string{}
	var order []string
	set := func(k, v string) {
		if _, ok := vars[k]; !ok {
			order = append(order, k)
		}
		vars[k] = v
	}
	set("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	set("HOSTNAME", hostname)
	home := "/root"
	if sc := c.SecurityContext; sc != nil && sc.RunAsUser != nil && *sc.RunAsUser != 0 {
		home = "/"
	} else if psc := pod.Spec.SecurityContext; psc != nil && psc.RunAsUser != nil && *psc.RunAsUser != 0 {
		home = "/"
	}
	set("HOME", home)
	for _, e := range svcEnv {
		set(e.Name, e.Value)
	}
	cms := map[string]*corev1.ConfigMap{}
	secrets := map[string]*corev1.Secret{}
	getCM := func(name string, optional *bool) (*corev1.ConfigMap, error) {
		if cm, ok := cms[name]; ok {
			return cm, nil
		}
		cm, err := src.configMap(ctx, pod.Namespace, name)
		if err != nil {
			if optional != nil && *optional {
				return nil, nil
			}
			return nil, fmt.Errorf("configmap %q: %w", name, err)
		}
		cms[name] = cm
		return cm, nil
	}
	getSecret := func(name string, optional *bool) (*corev1.Secret, error) {
		if s, ok := secrets[name]; ok {
			return s, nil
		}
		s, err := src.secret(ctx, pod.Namespace, name)
		if err != nil {
			if optional != nil && *optional {
				return nil, nil
			}
			return nil, fmt.Errorf("secret %q: %w", name, err)
		}
		secrets[name] = s
		return s, nil
	}
	for _, from := range c.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm, err := getCM(from.ConfigMapRef.Name, from.ConfigMapRef.Optional)
			if err != nil {
				return nil, nil, err
			}
			if cm != nil {
				for k, v := range cm.Data {
					set(from.Prefix+k, v)
				}
			}
		case from.SecretRef != nil:
			s, err := getSecret(from.SecretRef.Name, from.SecretRef.Optional)
			if err != nil {
				return nil, nil, err
			}
			if s != nil {
				for k, v := range s.Data {
					set(from.Prefix+k, string(v))
				}
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			set(e.Name, Expand(e.Value, vars))
			continue
		}
		vf := e.ValueFrom
		switch {
		case vf.FieldRef != nil:
			v, err := FieldValue(pod, vf.FieldRef.FieldPath)
			if err != nil {
				return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			set(e.Name, v)
		case vf.ConfigMapKeyRef != nil:
			ref := vf.ConfigMapKeyRef
			cm, err := getCM(ref.Name, ref.Optional)
			if err != nil {
				return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			if cm == nil {
				continue
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				return nil, nil, fmt.Errorf("env %s: couldn't find key %s in ConfigMap %s/%s", e.Name, ref.Key, pod.Namespace, ref.Name)
			}
			set(e.Name, v)
		case vf.SecretKeyRef != nil:
			ref := vf.SecretKeyRef
			s, err := getSecret(ref.Name, ref.Optional)
			if err != nil {
				return nil, nil, fmt.Errorf("env %s: %w", e.Name, err)
			}
			if s == nil {
				continue
			}
			v, ok := s.Data[ref.Key]
			if !ok {
				if ref.Optional != nil && *ref.Optional {
					continue
				}
				return nil, nil, fmt.Errorf("env %s: couldn't find key %s in Secret %s/%s", e.Name, ref.Key, pod.Namespace, ref.Name)
			}
			set(e.Name, string(v))
		case vf.ResourceFieldRef != nil:
			set(e.Name, resourceValue(c, vf.ResourceFieldRef))
		}
	}
	env := make([]string, 0, len(order))
	for _, k := range order {
		env = append(env, k+"="+vars[k])
	}
	return env, vars, nil
}

// resourceValue is a container's limit (or request) for a resourceFieldRef;
// without one, the node's capacity is what kubelet reports, here "0".
func resourceValue(c *corev1.Container, ref *corev1.ResourceFieldSelector) string {
	name, kind := ref.Resource, c.Resources.Limits
	if n, ok := strings.CutPrefix(name, "requests."); ok {
		name, kind = n, c.Resources.Requests
	} else {
		name = strings.TrimPrefix(name, "limits.")
	}
	q, ok := kind[corev1.ResourceName(name)]
	if !ok {
		return "0"
	}
	if ref.Divisor.IsZero() {
		if name == "cpu" {
			return fmt.Sprint((q.MilliValue() + 999) / 1000)
		}
		return fmt.Sprint(q.Value())
	}
	return fmt.Sprint(q.Value() / ref.Divisor.Value())
}

// expandAll expands $(VAR) in each of in (a container's command or args).
func expandAll(in []string, vars map[string]string) []string {
	var out []string
	for _, s := range in {
		out = append(out, Expand(s, vars))
	}
	return out
}
