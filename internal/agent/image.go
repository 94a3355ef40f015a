package agent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

// imageError keeps a container waiting with the kubelet's reason
// (ErrImagePull, ImagePullBackOff, ErrImageNeverPull).
type imageError struct {
	reason string
	msg    string
}

func (e imageError) Error() string { return e.msg }

// pullNeeded says whether the policy pulls an image that is (or is not)
// present: Always pulls, Never never does, IfNotPresent when missing.
func pullNeeded(policy corev1.PullPolicy, present bool) bool {
	switch policy {
	case corev1.PullAlways:
		return true
	case corev1.PullNever:
		return false
	}
	return !present
}

// ensureImage makes c's image present as its pull policy says and returns
// its ref; failed pulls back off (10s doubling to 5m, as the kubelet).
func (w *worker) ensureImage(ctx context.Context, pod *corev1.Pod, c *ctr, images hwruntime.ImageService) (string, error) {
	image := c.spec.Image
	policy := c.spec.ImagePullPolicy
	if policy == "" {
		policy = corev1.PullIfNotPresent
	}
	ref, present, err := images.ImagePresent(ctx, image)
	if err != nil {
		return "", err
	}
	if !pullNeeded(policy, present) {
		if !present {
			msg := fmt.Sprintf("Container image %q is not present with pull policy of Never", image)
			w.warnOnce(pod, "ErrImageNeverPull", msg)
			return "", imageError{"ErrImageNeverPull", msg}
		}
		if !c.pulledOnce {
			c.pulledOnce = true
			w.event(pod, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Container image %q already present on machine", image))
		}
		return ref, nil
	}
	if now := time.Now(); c.pullRetry.After(now) {
		w.event(pod, corev1.EventTypeNormal, "BackOff", fmt.Sprintf("Back-off pulling image %q", image))
		w.wakeAt(c.pullRetry)
		return "", imageError{"ImagePullBackOff", fmt.Sprintf("Back-off pulling image %q: %s", image, c.pullErr)}
	}
	w.event(pod, corev1.EventTypeNormal, "Pulling", fmt.Sprintf("Pulling image %q", image))
	begun := time.Now()
	pctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	ref, err = images.PullImage(pctx, image, w.pullAuth(ctx, pod), w.sb)
	if err != nil {
		if c.pullBackoff == 0 {
			c.pullBackoff = w.a.cfg.BackoffBase
		} else {
			c.pullBackoff = min(2*c.pullBackoff, w.a.cfg.BackoffMax)
		}
		c.pullRetry = time.Now().Add(c.pullBackoff)
		c.pullErr = err.Error()
		w.wakeAt(c.pullRetry)
		msg := fmt.Sprintf("Failed to pull image %q: %v", image, err)
		w.event(pod, corev1.EventTypeWarning, "Failed", msg)
		w.event(pod, corev1.EventTypeWarning, "Failed", "Error: ErrImagePull")
		w.a.log.Warn("pulling an image failed", append(w.log(), "image", image, "err", err, "retry-in", c.pullBackoff)...)
		return "", imageError{"ErrImagePull", msg}
	}
	c.pullBackoff, c.pullErr, c.pulledOnce = 0, "", true
	w.event(pod, corev1.EventTypeNormal, "Pulled", fmt.Sprintf("Successfully pulled image %q in %s", image, time.Since(begun).Round(time.Millisecond)))
	return ref, nil
}

// pullAuth reads the pod's imagePullSecrets (kubernetes.io/dockerconfigjson
// and kubernetes.io/dockercfg) into credentials.
func (w *worker) pullAuth(ctx context.Context, pod *corev1.Pod) []hwruntime.Auth {
	var out []hwruntime.Auth
	for _, ref := range pod.Spec.ImagePullSecrets {
		s, err := w.a.objects.secret(ctx, pod.Namespace, ref.Name)
		if err != nil {
			w.warnOnce(pod, "FailedToRetrieveImagePullSecret", fmt.Sprintf("Unable to retrieve some image pull secrets (%s); attempting to pull the image may not succeed.", ref.Name))
			continue
		}
		out = append(out, dockerAuths(s)...)
	}
	return out
}

type dockerAuthEntry struct {
	Username      string `json:"username"`
	Password      string `json:"password"`
	Auth          string `json:"auth"`
	IdentityToken string `json:"identitytoken"`
	RegistryToken string `json:"registrytoken"`
}

// dockerAuths turns a docker config secret into credentials, one per
// registry.
func dockerAuths(s *corev1.Secret) []hwruntime.Auth {
	entries := map[string]dockerAuthEntry{}
	switch s.Type {
	case corev1.SecretTypeDockerConfigJson:
		var cfg struct {
			Auths map[string]dockerAuthEntry `json:"auths"`
		}
		if json.Unmarshal(s.Data[corev1.DockerConfigJsonKey], &cfg) == nil {
			entries = cfg.Auths
		}
	case corev1.SecretTypeDockercfg:
		json.Unmarshal(s.Data[corev1.DockerConfigKey], &entries)
	}
	var out []hwruntime.Auth
	for server, e := range entries {
		if e.Username == "" && e.Auth != "" {
			if raw, err := base64.StdEncoding.DecodeString(e.Auth); err == nil {
				e.Username, e.Password, _ = strings.Cut(string(raw), ":")
			}
		}
		server = strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://")
		server, _, _ = strings.Cut(server, "/")
		out = append(out, hwruntime.Auth{Server: server, Username: e.Username, Password: e.Password, Auth: e.Auth,
			IdentityToken: e.IdentityToken, RegistryToken: e.RegistryToken})
	}
	return out
}
