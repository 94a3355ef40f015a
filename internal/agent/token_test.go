package agent

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8sruntime "k8s.io/apimachinery/pkg/runtime"
	k8sfake "k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/agent/runtime/fake"
)

// TestWorkerWritesAndRenewsTheServiceAccountToken: the projected volume
// kube's admission adds gets a token bound to the pod (TokenRequest), the
// CA and the namespace; the token is renewed once 80% of its life has
// passed, in place (the container's mount sees the new one).
func TestWorkerWritesAndRenewsTheServiceAccountToken(t *testing.T) {
	rt := fake.New(fake.Options{Dir: t.TempDir()})
	pod := workerPod("web", workerSleeper("c"))
	pod.Spec.ServiceAccountName = "builder"
	pod.Spec.Volumes = []corev1.Volume{{Name: "kube-api-access-abcde", VolumeSource: corev1.VolumeSource{Projected: &corev1.ProjectedVolumeSource{
		DefaultMode: ptr.To[int32](0o644),
		Sources: []corev1.VolumeProjection{
			{ServiceAccountToken: &corev1.ServiceAccountTokenProjection{ExpirationSeconds: ptr.To[int64](2), Path: "token"}},
			{ConfigMap: &corev1.ConfigMapProjection{LocalObjectReference: corev1.LocalObjectReference{Name: "kube-root-ca.crt"},
				Items: []corev1.KeyToPath{{Key: "ca.crt", Path: "ca.crt"}}}},
			{DownwardAPI: &corev1.DownwardAPIProjection{Items: []corev1.DownwardAPIVolumeFile{
				{Path: "namespace", FieldRef: &corev1.ObjectFieldSelector{APIVersion: "v1", FieldPath: "metadata.namespace"}}}}},
		},
	}}}}
	pod.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "kube-api-access-abcde", ReadOnly: true, MountPath: "/var/run/secrets/kubernetes.io/serviceaccount"}}
	ca := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "kube-root-ca.crt"}, Data: map[string]string{"ca.crt": "CA PEM"}}

	var mu sync.Mutex
	var requests []*authenticationv1.TokenRequest
	var accounts []string
	env := startWorkerEnv(t, rt, func(c *Config) {
		cs := c.Client.(*k8sfake.Clientset)
		cs.Tracker().Add(ca)
		cs.PrependReactor("create", "serviceaccounts", func(a k8stesting.Action) (bool, k8sruntime.Object, error) {
			ca, ok := a.(k8stesting.CreateActionImpl)
			if !ok || ca.GetSubresource() != "token" {
				return false, nil, nil
			}
			req := ca.GetObject().(*authenticationv1.TokenRequest).DeepCopy()
			mu.Lock()
			requests = append(requests, req)
			accounts = append(accounts, a.GetNamespace()+"/"+ca.Name)
			n := len(requests)
			mu.Unlock()
			// What the API answers: the token and when it expires.
			req.Status = authenticationv1.TokenRequestStatus{Token: fmt.Sprintf("token-%d", n),
				ExpirationTimestamp: metav1.NewTime(time.Now().Add(time.Duration(*req.Spec.ExpirationSeconds) * time.Second))}
			return true, req, nil
		})
	}, pod)
	proc := env.process("c", 1)
	var src string
	for _, m := range proc.Spec.Mounts {
		if m.Target == "/var/run/secrets/kubernetes.io/serviceaccount" {
			src = m.Source
			if !m.ReadOnly {
				t.Error("the token volume is mounted writable")
			}
		}
	}
	if src == "" {
		t.Fatalf("no mount of the token volume in %+v", proc.Spec.Mounts)
	}
	read := func(name string) string {
		data, _ := os.ReadFile(filepath.Join(src, name))
		return string(data)
	}
	if got := read("token"); got != "token-1" {
		t.Errorf("token %q, want token-1", got)
	}
	if read("ca.crt") != "CA PEM" || read("namespace") != "default" {
		t.Errorf("ca.crt %q namespace %q", read("ca.crt"), read("namespace"))
	}
	env.eventually("the token renewed after 80% of its two seconds", func() bool { return read("token") == "token-2" })
	mu.Lock()
	defer mu.Unlock()
	r := requests[0]
	if r.Spec.BoundObjectRef == nil || r.Spec.BoundObjectRef.Kind != "Pod" || r.Spec.BoundObjectRef.Name != "web" || r.Spec.BoundObjectRef.UID != pod.UID ||
		*r.Spec.ExpirationSeconds != 2 || len(r.Spec.Audiences) != 0 {
		t.Errorf("token request %+v, want bound to the pod for 2s, the API's audience", r.Spec)
	}
	if accounts[0] != "default/builder" {
		t.Errorf("token of %s, want the pod's account default/builder", accounts[0])
	}
}
