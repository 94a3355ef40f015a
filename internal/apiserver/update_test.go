package apiserver_test

import (
	"errors"
	"testing"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/testing/cluster"
)

// helmReleaseSecret is the Secret Helm v3's secrets storage driver writes
// for revision 1 of release x: a new object each time, built from the
// release, never read back first (so it has no resourceVersion).
func helmReleaseSecret(status string, extra map[string]string) *corev1.Secret {
	labels := map[string]string{"name": "x", "owner": "helm", "status": status, "version": "1"}
	for k, v := range extra {
		labels[k] = v
	}
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "sh.helm.release.v1.x.v1", Labels: labels},
		Type:       "helm.sh/release.v1",
		Data:       map[string][]byte{"release": []byte("H4sIAAAAAAAA/" + status)},
	}
}

// TestUpdateWithoutResourceVersion is the sequence Helm v3 runs for every
// install: create the release Secret (pending-install), update it without a
// resourceVersion (deployed), then find it by label. kube-apiserver takes
// the update as an unconditional one for every kind whose strategy allows
// it; Headway answered 422 and left releases pending-install.
func TestUpdateWithoutResourceVersion(t *testing.T) {
	c := cluster.Start(t, cluster.WithoutDNS())
	ctx := ctxT(t)
	secrets := c.Client.CoreV1().Secrets("default")

	created, err := secrets.Create(ctx, helmReleaseSecret("pending-install", map[string]string{"createdAt": "1700000000"}), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	updated, err := secrets.Update(ctx, helmReleaseSecret("deployed", map[string]string{"modifiedAt": "1700000001"}), metav1.UpdateOptions{})
	if err != nil {
		t.Fatalf("update without resourceVersion (Helm's release update): %v", err)
	}
	if updated.ResourceVersion == "" || updated.ResourceVersion == created.ResourceVersion {
		t.Errorf("resourceVersion after the update = %q, want a new one (was %q)", updated.ResourceVersion, created.ResourceVersion)
	}
	if updated.UID != created.UID || !updated.CreationTimestamp.Equal(&created.CreationTimestamp) {
		t.Errorf("the update replaced the object's identity: uid %s→%s, created %v→%v", created.UID, updated.UID, created.CreationTimestamp, updated.CreationTimestamp)
	}
	if _, ok := updated.Labels["createdAt"]; ok {
		t.Errorf("labels = %v: an update replaces the object, it does not merge", updated.Labels)
	}

	list, err := secrets.List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=x,status=deployed"})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Items) != 1 || list.Items[0].Name != "sh.helm.release.v1.x.v1" || string(list.Items[0].Data["release"]) != "H4sIAAAAAAAA/deployed" {
		t.Fatalf("deployed release by label: got %d items %v, want the updated release Secret", len(list.Items), list.Items)
	}
	if pending, err := secrets.List(ctx, metav1.ListOptions{LabelSelector: "owner=helm,name=x,status=pending-install"}); err != nil || len(pending.Items) != 0 {
		t.Fatalf("pending-install release by label: %v, %d items; want none", err, len(pending.Items))
	}

	// A stale resourceVersion is still a precondition: 409, nothing changes.
	stale := helmReleaseSecret("superseded", nil)
	stale.ResourceVersion = created.ResourceVersion
	if _, err := secrets.Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
		t.Fatalf("update with the stale resourceVersion %s: got %v, want 409 Conflict", created.ResourceVersion, err)
	}
	if got, err := secrets.Get(ctx, stale.Name, metav1.GetOptions{}); err != nil || got.ResourceVersion != updated.ResourceVersion || got.Labels["status"] != "deployed" {
		t.Fatalf("after the refused update: %v, %v; want the deployed release unchanged", err, got)
	}

	// The status subresource follows the kind's rule: a pod's status may be
	// written without a resourceVersion.
	pods := c.Client.CoreV1().Pods("default")
	pod, err := pods.Create(ctx, racePod("unconditional"), metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pod.ResourceVersion = ""
	pod.Status.Message = "written without a resourceVersion"
	if got, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{}); err != nil || got.Status.Message != pod.Status.Message {
		t.Fatalf("pod status update without resourceVersion: %v, %v", err, got)
	}

	// Leases are the kind whose strategy refuses it: 422, with the field.
	leases := c.Client.CoordinationV1().Leases("default")
	lease := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: "holder"},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: ptr.To("a"), LeaseDurationSeconds: ptr.To[int32](10)},
	}
	if _, err := leases.Create(ctx, lease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lease.Spec.HolderIdentity = ptr.To("b")
	_, err = leases.Update(ctx, lease, metav1.UpdateOptions{})
	if !apierrors.IsInvalid(err) {
		t.Fatalf("lease update without resourceVersion: got %v, want 422 Invalid", err)
	}
	var se *apierrors.StatusError
	if !errors.As(err, &se) || se.ErrStatus.Details == nil || len(se.ErrStatus.Details.Causes) != 1 ||
		se.ErrStatus.Details.Causes[0].Field != "metadata.resourceVersion" {
		t.Fatalf("lease update without resourceVersion: causes %v, want one on metadata.resourceVersion", err)
	}
	if got, err := leases.Get(ctx, "holder", metav1.GetOptions{}); err != nil || *got.Spec.HolderIdentity != "a" {
		t.Fatalf("after the refused lease update: %v, %v; want holder a", err, got)
	}
}
