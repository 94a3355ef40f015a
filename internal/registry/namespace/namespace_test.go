package namespace

import (
	"context"
	"slices"
	"testing"

	"github.com/headway/headway/internal/registry/registrytest"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ns(name string, finalizers ...corev1.FinalizerName) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.NamespaceSpec{Finalizers: finalizers}}
}

func TestDefault(t *testing.T) {
	r := Resource()
	n := ns("team-a")
	r.Default(n)
	if n.Labels[NameLabel] != "team-a" {
		t.Errorf("labels %v, want %s=team-a", n.Labels, NameLabel)
	}
	// The label cannot be set to another name.
	n = ns("team-a")
	n.Labels = map[string]string{NameLabel: "other", "env": "prod"}
	r.Default(n)
	if n.Labels[NameLabel] != "team-a" || n.Labels["env"] != "prod" {
		t.Errorf("labels %v, want the name label corrected and others kept", n.Labels)
	}
	// generateName: no name yet, no label yet.
	n = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: "tmp-"}}
	r.Default(n)
	if _, ok := n.Labels[NameLabel]; ok {
		t.Errorf("labels %v for a namespace without a name", n.Labels)
	}
}

func TestPrepareForCreate(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name string
		in   *corev1.Namespace
		want []corev1.FinalizerName
	}{
		{"kubernetes finalizer added", ns("a"), []corev1.FinalizerName{corev1.FinalizerKubernetes}},
		{"others kept", ns("a", "example.com/x"), []corev1.FinalizerName{"example.com/x", corev1.FinalizerKubernetes}},
		{"not doubled", ns("a", corev1.FinalizerKubernetes), []corev1.FinalizerName{corev1.FinalizerKubernetes}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Status.Phase = corev1.NamespaceTerminating
			r.PrepareForCreate(context.Background(), tc.in)
			if !slices.Equal(tc.in.Spec.Finalizers, tc.want) || tc.in.Status.Phase != corev1.NamespaceActive {
				t.Fatalf("finalizers %v phase %s, want %v Active", tc.in.Spec.Finalizers, tc.in.Status.Phase, tc.want)
			}
		})
	}
}

func TestFinalizersChangeOnlyThroughFinalize(t *testing.T) {
	r := Resource()
	old := ns("a", corev1.FinalizerKubernetes)
	up := ns("a")
	r.PrepareForUpdate(context.Background(), up, old)
	if !slices.Equal(up.Spec.Finalizers, old.Spec.Finalizers) {
		t.Fatalf("an update changed spec.finalizers to %v", up.Spec.Finalizers)
	}
	old.Labels = map[string]string{"a": "b"}
	out := r.Finalize(ns("a", "example.com/x"), old).(*corev1.Namespace)
	if !slices.Equal(out.Spec.Finalizers, []corev1.FinalizerName{"example.com/x"}) || out.Labels["a"] != "b" {
		t.Fatalf("finalize gave %v %v, want the new finalizers on the old object", out.Spec.Finalizers, out.Labels)
	}
	if !slices.Equal(old.Spec.Finalizers, []corev1.FinalizerName{corev1.FinalizerKubernetes}) {
		t.Fatal("finalize modified the stored object")
	}
	if !r.Finalizing(ns("a", "x")) || r.Finalizing(ns("a")) {
		t.Fatal("Finalizing does not follow spec.finalizers")
	}
	d := ns("a")
	r.PrepareForDelete(d)
	if d.Status.Phase != corev1.NamespaceTerminating {
		t.Fatalf("phase %s after delete, want Terminating", d.Status.Phase)
	}
}

func TestValidate(t *testing.T) {
	r := Resource()
	for _, tc := range []struct {
		name string
		obj  *corev1.Namespace
		want []string
	}{
		{"no finalizers", ns("a"), nil},
		{"finalizers", ns("a", corev1.FinalizerKubernetes, "example.com/x"), nil},
		{"empty finalizer", ns("a", corev1.FinalizerKubernetes, ""), []string{"spec.finalizers[1]: Required value"}},
	} {
		t.Run(tc.name, func(t *testing.T) { registrytest.Errors(t, r.Validate(tc.obj), tc.want...) })
	}
	for _, tc := range []struct {
		name string
		ok   bool
	}{{"team-a", true}, {"a", true}, {"Team", false}, {"a.b", false}, {"-a", false}, {"", false}} {
		if msgs := r.NameValidation(tc.name, false); (len(msgs) == 0) != tc.ok {
			t.Errorf("name %q: %v, want valid %v", tc.name, msgs, tc.ok)
		}
	}
}

func TestFieldsAndRow(t *testing.T) {
	r := Resource()
	n := ns("a")
	n.Status.Phase = corev1.NamespaceTerminating
	if f := r.Fields(n); f["status.phase"] != "Terminating" {
		t.Errorf("fields %v", f)
	}
	if row, err := r.Row(n); err != nil || row[0] != "a" || row[1] != "Terminating" {
		t.Errorf("row %v (%v)", row, err)
	}
}
