package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
	"github.com/headway/headway/internal/atomicfile"
)

// prepareVolumes makes each pod volume a directory on the host and returns
// their paths by volume name: configMap, secret, downwardAPI and projected
// under the pod's directory (a tmpfs, podsdir.go), emptyDir on the disk
// under <data-dir>/emptydir/<pod uid>; persistentVolumeClaim the PV's local path;
// hostPath the host path, which must exist (nothing is created on the host
// outside the data dir). Claims are bound by the local-path provisioner.
// refresh is when a service-account token in a projected volume is due
// for renewal (zero without one); refreshTokens renews them.
func (a *Agent) prepareVolumes(ctx context.Context, pod *corev1.Pod, sb *hwruntime.Sandbox) (paths map[string]string, refresh time.Time, err error) {
	paths = map[string]string{}
	for _, v := range pod.Spec.Volumes {
		dir := filepath.Join(sb.Dir, "volumes", v.Name)
		var err error
		switch {
		case v.EmptyDir != nil:
			// On the disk, not the pods' tmpfs; a pod of an earlier
			// version keeps its directory in its pod's.
			if _, serr := os.Stat(dir); serr != nil {
				dir = filepath.Join(a.emptyDirDir(string(pod.UID)), v.Name)
			}
			err = os.MkdirAll(dir, 0o777)
			if err == nil {
				err = os.Chmod(dir, 0o777)
			}
		case v.ConfigMap != nil:
			err = a.writeConfigMapVolume(ctx, pod, v.ConfigMap, dir)
		case v.Secret != nil:
			err = a.writeSecretVolume(ctx, pod, v.Secret, dir)
		case v.DownwardAPI != nil:
			err = writeDownwardAPI(pod, v.DownwardAPI, dir)
		case v.Projected != nil:
			var at time.Time
			at, err = a.writeProjected(ctx, pod, v.Projected, dir)
			refresh = earliest(refresh, at)
		case v.PersistentVolumeClaim != nil:
			dir, err = a.claimPath(ctx, pod, v.PersistentVolumeClaim.ClaimName)
		case v.HostPath != nil:
			dir, err = hostPath(v.HostPath)
		default:
			err = errors.New("this volume type is not supported by the process runtime (emptyDir, configMap, secret, downwardAPI, projected, persistentVolumeClaim and hostPath are)")
		}
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		paths[v.Name] = dir
	}
	return paths, refresh, nil
}

// refreshTokens writes anew the projected volumes that hold a
// service-account token (with a new token); it returns when the next is
// due.
func (a *Agent) refreshTokens(ctx context.Context, pod *corev1.Pod, sb *hwruntime.Sandbox) (time.Time, error) {
	var next time.Time
	for _, v := range pod.Spec.Volumes {
		if v.Projected == nil || !hasToken(v.Projected) {
			continue
		}
		at, err := a.writeProjected(ctx, pod, v.Projected, filepath.Join(sb.Dir, "volumes", v.Name))
		if err != nil {
			return time.Time{}, fmt.Errorf("volume %q: %w", v.Name, err)
		}
		next = earliest(next, at)
	}
	return next, nil
}

func hasToken(s *corev1.ProjectedVolumeSource) bool {
	for _, src := range s.Sources {
		if src.ServiceAccountToken != nil {
			return true
		}
	}
	return false
}

// earliest is the earlier of two times, a zero time being none.
func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// Token refresh, as the kubelet's token manager does it: when 80% of a
// token's lifetime has passed, or it is a day old.
const (
	tokenMaxAge    = 24 * time.Hour
	tokenRefreshAt = 0.8
)

// podToken requests a token of the pod's service account bound to the
// pod, for a projected volume; refresh is when to ask for a new one.
func (a *Agent) podToken(ctx context.Context, pod *corev1.Pod, src *corev1.ServiceAccountTokenProjection) (token []byte, refresh time.Time, err error) {
	exp := int64(3600)
	if src.ExpirationSeconds != nil {
		exp = *src.ExpirationSeconds
	}
	req := &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
		ExpirationSeconds: &exp,
		BoundObjectRef:    &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: pod.Name, UID: pod.UID},
	}}
	if src.Audience != "" {
		req.Spec.Audiences = []string{src.Audience}
	}
	sa := pod.Spec.ServiceAccountName
	if sa == "" {
		sa = "default"
	}
	tr, err := a.cfg.Client.CoreV1().ServiceAccounts(pod.Namespace).CreateToken(ctx, sa, req, metav1.CreateOptions{})
	if err != nil {
		return nil, time.Time{}, fmt.Errorf("requesting a token of service account %s/%s: %w", pod.Namespace, sa, err)
	}
	ttl := time.Duration(exp) * time.Second
	if tr.Spec.ExpirationSeconds != nil {
		ttl = time.Duration(*tr.Spec.ExpirationSeconds) * time.Second
	}
	expiry := tr.Status.ExpirationTimestamp.Time
	issued := expiry.Add(-ttl)
	refresh = earliest(issued.Add(time.Duration(float64(ttl)*tokenRefreshAt)), issued.Add(tokenMaxAge))
	return []byte(tr.Status.Token), refresh, nil
}

func hostPath(h *corev1.HostPathVolumeSource) (string, error) {
	st, err := os.Stat(h.Path)
	typ := corev1.HostPathUnset
	if h.Type != nil {
		typ = *h.Type
	}
	if err != nil {
		if typ == corev1.HostPathDirectoryOrCreate || typ == corev1.HostPathFileOrCreate {
			return "", fmt.Errorf("hostPath %s does not exist, and headway does not create anything on the host outside its data dir: create it yourself", h.Path)
		}
		return "", fmt.Errorf("hostPath %s: %w", h.Path, err)
	}
	switch typ {
	case corev1.HostPathDirectory, corev1.HostPathDirectoryOrCreate:
		if !st.IsDir() {
			return "", fmt.Errorf("hostPath %s is not a directory", h.Path)
		}
	case corev1.HostPathFile, corev1.HostPathFileOrCreate:
		if !st.Mode().IsRegular() {
			return "", fmt.Errorf("hostPath %s is not a file", h.Path)
		}
	}
	return h.Path, nil
}

// writeFiles replaces dir's content with files (relative path → data) in
// one step, as the kubelet does: readers see the old set or the new.
func writeFiles(dir string, files map[string][]byte, mode os.FileMode) error {
	return atomicfile.WriteDir(dir, files, mode)
}

func fileMode(item *int32, def *int32, fallback os.FileMode) os.FileMode {
	switch {
	case item != nil:
		return os.FileMode(*item)
	case def != nil:
		return os.FileMode(*def)
	}
	return fallback
}

func keyFiles(data map[string][]byte, items []corev1.KeyToPath, optional bool, what string) (map[string][]byte, error) {
	files := map[string][]byte{}
	if len(items) == 0 {
		for k, v := range data {
			files[k] = v
		}
		return files, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return nil, fmt.Errorf("%s has no key %q", what, it.Key)
		}
		files[it.Path] = v
	}
	return files, nil
}

func (a *Agent) writeConfigMapVolume(ctx context.Context, pod *corev1.Pod, s *corev1.ConfigMapVolumeSource, dir string) error {
	optional := s.Optional != nil && *s.Optional
	files := map[string][]byte{}
	cm, err := a.objects.configMap(ctx, pod.Namespace, s.Name)
	switch {
	case err != nil && !(optional && apierrors.IsNotFound(err)):
		return fmt.Errorf("configmap %q: %w", s.Name, err)
	case err == nil:
		data := map[string][]byte{}
		for k, v := range cm.Data {
			data[k] = []byte(v)
		}
		for k, v := range cm.BinaryData {
			data[k] = v
		}
		if files, err = keyFiles(data, s.Items, optional, "configmap "+s.Name); err != nil {
			return err
		}
	}
	return writeFiles(dir, files, fileMode(nil, s.DefaultMode, 0o644))
}

func (a *Agent) writeSecretVolume(ctx context.Context, pod *corev1.Pod, s *corev1.SecretVolumeSource, dir string) error {
	optional := s.Optional != nil && *s.Optional
	files := map[string][]byte{}
	sec, err := a.objects.secret(ctx, pod.Namespace, s.SecretName)
	switch {
	case err != nil && !(optional && apierrors.IsNotFound(err)):
		return fmt.Errorf("secret %q: %w", s.SecretName, err)
	case err == nil:
		if files, err = keyFiles(sec.Data, s.Items, optional, "secret "+s.SecretName); err != nil {
			return err
		}
	}
	return writeFiles(dir, files, fileMode(nil, s.DefaultMode, 0o644))
}

func downwardFiles(pod *corev1.Pod, items []corev1.DownwardAPIVolumeFile) (map[string][]byte, error) {
	files := map[string][]byte{}
	for _, it := range items {
		switch {
		case it.FieldRef != nil:
			v, err := FieldValue(pod, it.FieldRef.FieldPath)
			if err != nil {
				return nil, err
			}
			files[it.Path] = []byte(v)
		case it.ResourceFieldRef != nil:
			var c *corev1.Container
			for i := range pod.Spec.Containers {
				if pod.Spec.Containers[i].Name == it.ResourceFieldRef.ContainerName || c == nil {
					c = &pod.Spec.Containers[i]
				}
			}
			if c != nil {
				files[it.Path] = []byte(resourceValue(c, it.ResourceFieldRef))
			}
		}
	}
	return files, nil
}

func writeDownwardAPI(pod *corev1.Pod, s *corev1.DownwardAPIVolumeSource, dir string) error {
	files, err := downwardFiles(pod, s.Items)
	if err != nil {
		return err
	}
	return writeFiles(dir, files, fileMode(nil, s.DefaultMode, 0o644))
}

// writeProjected writes a projected volume: configMap, secret,
// downwardAPI and serviceAccountToken sources. refresh is when its token
// is due for renewal (zero without a token).
func (a *Agent) writeProjected(ctx context.Context, pod *corev1.Pod, s *corev1.ProjectedVolumeSource, dir string) (refresh time.Time, err error) {
	files := map[string][]byte{}
	for _, src := range s.Sources {
		var add map[string][]byte
		var err error
		switch {
		case src.ServiceAccountToken != nil:
			token, at, terr := a.podToken(ctx, pod, src.ServiceAccountToken)
			if terr != nil {
				return time.Time{}, terr
			}
			refresh = earliest(refresh, at)
			add = map[string][]byte{src.ServiceAccountToken.Path: token}
		case src.ConfigMap != nil:
			optional := src.ConfigMap.Optional != nil && *src.ConfigMap.Optional
			cm, gerr := a.objects.configMap(ctx, pod.Namespace, src.ConfigMap.Name)
			if gerr != nil {
				if optional && apierrors.IsNotFound(gerr) {
					continue
				}
				return time.Time{}, fmt.Errorf("configmap %q: %w", src.ConfigMap.Name, gerr)
			}
			data := map[string][]byte{}
			for k, v := range cm.Data {
				data[k] = []byte(v)
			}
			for k, v := range cm.BinaryData {
				data[k] = v
			}
			add, err = keyFiles(data, src.ConfigMap.Items, optional, "configmap "+src.ConfigMap.Name)
		case src.Secret != nil:
			optional := src.Secret.Optional != nil && *src.Secret.Optional
			sec, gerr := a.objects.secret(ctx, pod.Namespace, src.Secret.Name)
			if gerr != nil {
				if optional && apierrors.IsNotFound(gerr) {
					continue
				}
				return time.Time{}, fmt.Errorf("secret %q: %w", src.Secret.Name, gerr)
			}
			add, err = keyFiles(sec.Data, src.Secret.Items, optional, "secret "+src.Secret.Name)
		case src.DownwardAPI != nil:
			add, err = downwardFiles(pod, src.DownwardAPI.Items)
		}
		if err != nil {
			return time.Time{}, err
		}
		for k, v := range add {
			files[k] = v
		}
	}
	return refresh, writeFiles(dir, files, fileMode(nil, s.DefaultMode, 0o644))
}

// claimPath returns the directory of the PVC's volume, provisioning a
// local-path volume (a directory under <data-dir>/volumes) for an unbound
// claim of a class this node serves.
func (a *Agent) claimPath(ctx context.Context, pod *corev1.Pod, claim string) (string, error) {
	pvcs := a.cfg.Client.CoreV1().PersistentVolumeClaims(pod.Namespace)
	pvc, err := pvcs.Get(ctx, claim, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("persistentvolumeclaim %q: %w", claim, err)
	}
	if pvc.Spec.VolumeName == "" {
		// The local-path provisioner (a controller) binds it; try again.
		return "", fmt.Errorf("persistentvolumeclaim %q is not bound to a volume yet", claim)
	}
	pv, err := a.cfg.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	if err != nil {
		return "", fmt.Errorf("persistentvolume %q of claim %q: %w", pvc.Spec.VolumeName, claim, err)
	}
	switch {
	case pv.Spec.Local != nil:
		return pv.Spec.Local.Path, os.MkdirAll(localPathChecked(a, pv.Spec.Local.Path), 0o777)
	case pv.Spec.HostPath != nil:
		return hostPath(pv.Spec.HostPath)
	}
	return "", fmt.Errorf("persistentvolume %q is neither local nor hostPath; the process runtime cannot mount it", pv.Name)
}

// localPathChecked returns p if it is under the data dir's volumes (which
// may be created), else a path that exists (so nothing is created).
func localPathChecked(a *Agent, p string) string {
	if strings.HasPrefix(filepath.Clean(p)+"/", a.volumesDir()+"/") {
		return p
	}
	return "/"
}

func (a *Agent) volumesDir() string { return filepath.Join(a.cfg.DataDir, "volumes") }

// containerMounts turns volumeMounts into runtime mounts.
func containerMounts(c *corev1.Container, paths map[string]string, pod *corev1.Pod, dataDir string) ([]hwruntime.Mount, error) {
	readOnlyVolume := map[string]bool{}
	for _, v := range pod.Spec.Volumes {
		if v.ConfigMap != nil || v.Secret != nil || v.DownwardAPI != nil || v.Projected != nil ||
			(v.PersistentVolumeClaim != nil && v.PersistentVolumeClaim.ReadOnly) {
			readOnlyVolume[v.Name] = true
		}
	}
	var out []hwruntime.Mount
	for _, m := range c.VolumeMounts {
		src, ok := paths[m.Name]
		if !ok {
			return nil, fmt.Errorf("volumeMount %q: no volume of that name", m.Name)
		}
		if m.SubPath != "" {
			sub := filepath.Clean(m.SubPath)
			if filepath.IsAbs(sub) || sub == ".." || strings.HasPrefix(sub, "../") {
				return nil, fmt.Errorf("volumeMount %q: subPath %q leaves the volume", m.Name, m.SubPath)
			}
			src = filepath.Join(src, sub)
			if _, err := os.Stat(src); err != nil {
				if !strings.HasPrefix(src, filepath.Clean(dataDir)+"/") {
					return nil, fmt.Errorf("volumeMount %q: subPath %s does not exist, and headway does not create anything on the host outside its data dir", m.Name, src)
				}
				if err := os.MkdirAll(src, 0o777); err != nil {
					return nil, err
				}
			}
		}
		out = append(out, hwruntime.Mount{Source: src, Target: m.MountPath, ReadOnly: m.ReadOnly || readOnlyVolume[m.Name]})
	}
	return out, nil
}
