package agent

import (
	"encoding/base64"
	"sort"
	"testing"

	corev1 "k8s.io/api/core/v1"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

func TestDockerAuths(t *testing.T) {
	b64 := base64.StdEncoding.EncodeToString([]byte("bob:s3cret"))
	for _, tc := range []struct {
		name   string
		secret *corev1.Secret
		want   []hwruntime.Auth
	}{{
		name: "dockerconfigjson with auth only",
		secret: &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{
			corev1.DockerConfigJsonKey: []byte(`{"auths":{"https://registry.example:5000/v1/":{"auth":"` + b64 + `"}}}`)}},
		want: []hwruntime.Auth{{Server: "registry.example:5000", Username: "bob", Password: "s3cret", Auth: b64}},
	}, {
		name: "dockercfg with user and password",
		secret: &corev1.Secret{Type: corev1.SecretTypeDockercfg, Data: map[string][]byte{
			corev1.DockerConfigKey: []byte(`{"quay.io":{"username":"al","password":"pw"},"docker.io":{"identitytoken":"tok"}}`)}},
		want: []hwruntime.Auth{{Server: "docker.io", IdentityToken: "tok"}, {Server: "quay.io", Username: "al", Password: "pw"}},
	}, {
		name:   "opaque secret gives nothing",
		secret: &corev1.Secret{Type: corev1.SecretTypeOpaque, Data: map[string][]byte{"x": []byte("y")}},
	}, {
		name: "malformed json gives nothing",
		secret: &corev1.Secret{Type: corev1.SecretTypeDockerConfigJson, Data: map[string][]byte{
			corev1.DockerConfigJsonKey: []byte(`{"auths":`)}},
	}} {
		got := dockerAuths(tc.secret)
		sort.Slice(got, func(i, j int) bool { return got[i].Server < got[j].Server })
		if len(got) != len(tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("%s: [%d] got %+v, want %+v", tc.name, i, got[i], tc.want[i])
			}
		}
	}
}

func TestPullNeeded(t *testing.T) {
	for _, tc := range []struct {
		policy  corev1.PullPolicy
		present bool
		want    bool
	}{
		{corev1.PullAlways, true, true}, {corev1.PullAlways, false, true},
		{corev1.PullNever, true, false}, {corev1.PullNever, false, false},
		{corev1.PullIfNotPresent, true, false}, {corev1.PullIfNotPresent, false, true},
		{"", false, true},
	} {
		if got := pullNeeded(tc.policy, tc.present); got != tc.want {
			t.Errorf("pullNeeded(%q, present=%v) = %v, want %v", tc.policy, tc.present, got, tc.want)
		}
	}
}
