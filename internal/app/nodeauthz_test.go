package app_test

import (
	"context"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/headway/headway/internal/testing/cluster"
)

// TestNodeReadsOnlyWhatItsPodsUse: a node's identity (system:node:<name>,
// as the agent's client certificate says) gets a Secret, ConfigMap, claim
// or ServiceAccount token only when a pod bound to it uses the object, as
// kube-apiserver's Node authorizer allows; list and watch of those kinds
// are refused, and another node gets nothing. Denials are 403 Forbidden.
func TestNodeReadsOnlyWhatItsPodsUse(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := context.Background()
	const ns = "default"
	for _, name := range []string{"used", "env", "unused"} {
		if _, err := c.Client.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Client.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "web"}, Spec: corev1.PodSpec{
		NodeName: "n1",
		Volumes: []corev1.Volume{
			{Name: "s", VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: "used"}}},
			{Name: "c", VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{LocalObjectReference: corev1.LocalObjectReference{Name: "used"}}}},
			{Name: "d", VolumeSource: corev1.VolumeSource{PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: "data"}}},
		},
		Containers: []corev1.Container{{Name: "c", Image: "busybox", Env: []corev1.EnvVar{
			{Name: "A", ValueFrom: &corev1.EnvVarSource{SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "env"}, Key: "k"}}},
			{Name: "B", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "env"}, Key: "k"}}},
		}}},
	}}
	created, err := c.Client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: "data"},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	nodeClient := func(name string) kubernetes.Interface {
		certPEM, keyPEM, err := c.Running.PKI.IssueClient("system:node:"+name, []string{"system:nodes"})
		if err != nil {
			t.Fatal(err)
		}
		cl, err := kubernetes.NewForConfig(&rest.Config{Host: c.URL,
			TLSClientConfig: rest.TLSClientConfig{CAData: c.Running.PKI.CAPEM, CertData: certPEM, KeyData: keyPEM}})
		if err != nil {
			t.Fatal(err)
		}
		return cl
	}
	n1, n2 := nodeClient("n1"), nodeClient("n2")
	token := func(cl kubernetes.Interface) error {
		_, err := cl.CoreV1().ServiceAccounts(ns).CreateToken(ctx, "default", &authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{
			BoundObjectRef: &authenticationv1.BoundObjectReference{APIVersion: "v1", Kind: "Pod", Name: "web", UID: created.UID}}}, metav1.CreateOptions{})
		return err
	}
	for _, tc := range []struct {
		what  string
		do    func() error
		allow bool
	}{
		{"n1 gets the secret its pod mounts", func() error { _, err := n1.CoreV1().Secrets(ns).Get(ctx, "used", metav1.GetOptions{}); return err }, true},
		{"n1 gets the secret its pod's env names", func() error { _, err := n1.CoreV1().Secrets(ns).Get(ctx, "env", metav1.GetOptions{}); return err }, true},
		{"n1 gets the config map its pod mounts", func() error { _, err := n1.CoreV1().ConfigMaps(ns).Get(ctx, "used", metav1.GetOptions{}); return err }, true},
		{"n1 gets the config map its pod's env names", func() error { _, err := n1.CoreV1().ConfigMaps(ns).Get(ctx, "env", metav1.GetOptions{}); return err }, true},
		{"n1 gets its pod's claim", func() error {
			_, err := n1.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
			return err
		}, true},
		{"n1 gets its pod's service account", func() error {
			_, err := n1.CoreV1().ServiceAccounts(ns).Get(ctx, "default", metav1.GetOptions{})
			return err
		}, true},
		{"n1 requests a token for its pod", func() error { return token(n1) }, true},
		{"n1 gets a secret no pod of it uses", func() error { _, err := n1.CoreV1().Secrets(ns).Get(ctx, "unused", metav1.GetOptions{}); return err }, false},
		{"n1 gets a config map no pod of it uses", func() error {
			_, err := n1.CoreV1().ConfigMaps(ns).Get(ctx, "unused", metav1.GetOptions{})
			return err
		}, false},
		{"n1 lists secrets", func() error { _, err := n1.CoreV1().Secrets(ns).List(ctx, metav1.ListOptions{}); return err }, false},
		{"n1 lists config maps everywhere", func() error { _, err := n1.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{}); return err }, false},
		{"n1 writes a secret", func() error {
			_, err := n1.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "mine"}}, metav1.CreateOptions{})
			return err
		}, false},
		{"n2 gets n1's pod's secret", func() error { _, err := n2.CoreV1().Secrets(ns).Get(ctx, "used", metav1.GetOptions{}); return err }, false},
		{"n2 gets n1's pod's claim", func() error {
			_, err := n2.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "data", metav1.GetOptions{})
			return err
		}, false},
		{"n2 requests a token for n1's pod", func() error { return token(n2) }, false},
		// What the system:node role gives every node stays.
		{"n2 lists pods", func() error { _, err := n2.CoreV1().Pods("").List(ctx, metav1.ListOptions{}); return err }, true},
	} {
		err := tc.do()
		switch {
		case tc.allow && err != nil:
			t.Errorf("%s: %v, want allowed", tc.what, err)
		case !tc.allow && !apierrors.IsForbidden(err):
			t.Errorf("%s: %v, want 403 Forbidden", tc.what, err)
		}
	}
}
