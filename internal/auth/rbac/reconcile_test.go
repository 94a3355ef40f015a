package rbac

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

// TestRunAll: every step runs, at most n at once; the first failure in the
// steps' order is returned, and steps not started when one failed are
// skipped.
func TestRunAll(t *testing.T) {
	var running, most, ran atomic.Int32
	// The first four steps each wait until all four run: they finish only
	// if four run at once.
	var four sync.WaitGroup
	four.Add(4)
	allFour := make(chan struct{})
	go func() { four.Wait(); close(allFour) }()
	steps := make([]func() error, 20)
	for i := range steps {
		steps[i] = func() error {
			now := running.Add(1)
			for {
				m := most.Load()
				if now <= m || most.CompareAndSwap(m, now) {
					break
				}
			}
			defer running.Add(-1)
			ran.Add(1)
			if i < 4 {
				four.Done()
				select {
				case <-allFour:
				case <-time.After(10 * time.Second):
					return fmt.Errorf("step %d: the first four steps did not run at once", i)
				}
			}
			return nil
		}
	}
	if err := runAll(context.Background(), 4, steps); err != nil {
		t.Fatal(err)
	}
	if ran.Load() != 20 || most.Load() != 4 {
		t.Fatalf("%d steps ran, at most %d at once; want 20, 4", ran.Load(), most.Load())
	}

	ran.Store(0)
	failing := make([]func() error, 50)
	for i := range failing {
		failing[i] = func() error {
			ran.Add(1)
			if i == 1 || i == 2 {
				return fmt.Errorf("step %d", i)
			}
			return nil
		}
	}
	err := runAll(context.Background(), 1, failing)
	if err == nil || err.Error() != "step 1" {
		t.Fatalf("err %v, want step 1's", err)
	}
	if ran.Load() != 2 {
		t.Errorf("%d steps ran one at a time with step 1 failing; want 2 (none after it)", ran.Load())
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := runAll(ctx, 2, steps); !errors.Is(err, context.Canceled) {
		t.Errorf("with an ended context: %v, want context.Canceled", err)
	}
}

// TestReconcileReadsEachKindOnce: on a cluster that has every default
// object, a reconcile is one list per kind and nothing else; a missing
// object is created without a read of its own; an update that conflicts
// (the listed copy was stale) is reconciled again from a fresh read.
func TestReconcileReadsEachKindOnce(t *testing.T) {
	ctx := context.Background()
	client := fake.NewClientset()
	log := slog.New(slog.DiscardHandler)
	if err := Reconcile(ctx, client, log); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions() {
		if a.GetVerb() == "get" && a.GetResource().Group == rbacv1.GroupName {
			t.Errorf("first reconcile: %s %s: a read of its own for a missing object", a.GetVerb(), a.GetResource().Resource)
		}
	}
	want := len(ClusterRoles()) + len(ClusterRoleBindings()) + len(Roles()) + len(RoleBindings())
	if got := count(client.Actions(), "create", rbacv1.GroupName); got != want {
		t.Fatalf("first reconcile created %d objects, want %d", got, want)
	}

	client.ClearActions()
	if err := Reconcile(ctx, client, log); err != nil {
		t.Fatal(err)
	}
	var verbs []string
	for _, a := range client.Actions() {
		verbs = append(verbs, a.GetVerb()+" "+a.GetResource().Resource)
	}
	if len(verbs) != 4 || count(client.Actions(), "list", rbacv1.GroupName) != 4 {
		t.Fatalf("reconcile of an up-to-date cluster: %v, want one list of each of the four kinds", verbs)
	}

	// A default role lost a rule; its first update conflicts.
	name := ClusterRoles()[0].Name
	cr, err := client.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cr.Rules = nil
	if _, err := client.RbacV1().ClusterRoles().Update(ctx, cr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var conflicts atomic.Int32
	client.PrependReactor("update", "clusterroles", func(a k8stesting.Action) (bool, runtime.Object, error) {
		if a.(k8stesting.UpdateAction).GetObject().(*rbacv1.ClusterRole).Name == name && conflicts.Add(1) == 1 {
			return true, nil, apierrors.NewConflict(rbacv1.Resource("clusterroles"), name, errors.New("stale"))
		}
		return false, nil, nil
	})
	client.ClearActions()
	if err := Reconcile(ctx, client, log); err != nil {
		t.Fatal(err)
	}
	if conflicts.Load() != 2 {
		t.Fatalf("%d updates of %s, want 2 (a conflict, then the update from a fresh read)", conflicts.Load(), name)
	}
	gets := 0
	for _, a := range client.Actions() {
		if a.GetVerb() == "get" && a.GetResource().Resource == "clusterroles" {
			gets++
		}
	}
	if gets != 1 {
		t.Fatalf("%d reads of clusterroles after the conflict, want 1", gets)
	}
	cr, err = client.RbacV1().ClusterRoles().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if len(cr.Rules) != len(ClusterRoles()[0].Rules) {
		t.Fatalf("%s has %d rules after the reconcile, want %d", name, len(cr.Rules), len(ClusterRoles()[0].Rules))
	}
}

func count(actions []k8stesting.Action, verb, group string) int {
	n := 0
	for _, a := range actions {
		if a.GetVerb() == verb && a.GetResource().Group == group {
			n++
		}
	}
	return n
}
