package limitranger

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/headway/headway/internal/registry/limitrange"
)

func list(kv ...string) corev1.ResourceList {
	out := corev1.ResourceList{}
	for i := 0; i < len(kv); i += 2 {
		out[corev1.ResourceName(kv[i])] = resource.MustParse(kv[i+1])
	}
	return out
}

func container(name string, req, lim corev1.ResourceList) corev1.Container {
	return corev1.Container{Name: name, Resources: corev1.ResourceRequirements{Requests: req, Limits: lim}}
}

func podOf(cs ...corev1.Container) *corev1.Pod {
	return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"}, Spec: corev1.PodSpec{Containers: cs}}
}

// lr is a LimitRange defaulted as the registry stores it.
func lr(items ...corev1.LimitRangeItem) *corev1.LimitRange {
	l := &corev1.LimitRange{ObjectMeta: metav1.ObjectMeta{Name: "limits"}, Spec: corev1.LimitRangeSpec{Limits: items}}
	limitrange.Default(l)
	return l
}

func TestSetDefaults(t *testing.T) {
	ranges := lr(corev1.LimitRangeItem{Type: corev1.LimitTypeContainer,
		Default: list("cpu", "500m", "memory", "256Mi"), DefaultRequest: list("cpu", "100m")})
	pod := podOf(container("a", nil, nil), container("b", list("cpu", "200m"), list("memory", "1Gi")))
	SetDefaults(ranges, pod)
	a, b := pod.Spec.Containers[0].Resources, pod.Spec.Containers[1].Resources
	for _, tc := range []struct {
		what string
		got  resource.Quantity
		want string
	}{
		{"a cpu request", a.Requests["cpu"], "100m"},
		// The registry defaults defaultRequest.memory from default.memory.
		{"a memory request", a.Requests["memory"], "256Mi"},
		{"a cpu limit", a.Limits["cpu"], "500m"},
		{"b cpu request (stated)", b.Requests["cpu"], "200m"},
		{"b memory limit (stated)", b.Limits["memory"], "1Gi"},
		{"b cpu limit", b.Limits["cpu"], "500m"},
	} {
		if tc.got.Cmp(resource.MustParse(tc.want)) != 0 {
			t.Errorf("%s = %s, want %s", tc.what, tc.got.String(), tc.want)
		}
	}
	want := "LimitRanger plugin set: cpu, memory request for container a; cpu, memory limit for container a; memory request for container b; cpu limit for container b"
	if got := pod.Annotations[Annotation]; got != want {
		t.Errorf("annotation\n got %q\nwant %q", got, want)
	}
}

func TestValidatePod(t *testing.T) {
	for _, tc := range []struct {
		name  string
		item  corev1.LimitRangeItem
		pod   *corev1.Pod
		want  string
		admit bool
	}{
		{"within max", corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Max: list("cpu", "1")},
			podOf(container("c", list("cpu", "500m"), list("cpu", "1"))), "", true},
		{"limit over max", corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Max: list("cpu", "500m")},
			podOf(container("c", nil, list("cpu", "1"))), "maximum cpu usage per Container is 500m, but limit is 1", false},
		{"no limit under a max", corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Max: list("memory", "1Gi")},
			podOf(container("c", nil, nil)), "maximum memory usage per Container is 1Gi.  No limit is specified", false},
		{"request under min", corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Min: list("cpu", "100m")},
			podOf(container("c", list("cpu", "50m"), nil)), "minimum cpu usage per Container is 100m, but request is 50m", false},
		{"pod total over max", corev1.LimitRangeItem{Type: corev1.LimitTypePod, Max: list("cpu", "1")},
			podOf(container("a", nil, list("cpu", "600m")), container("b", nil, list("cpu", "600m"))),
			"maximum cpu usage per Pod is 1, but limit is 1200m", false},
		{"ratio", corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, MaxLimitRequestRatio: list("cpu", "2")},
			podOf(container("c", list("cpu", "100m"), list("cpu", "500m"))),
			"cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000", false},
		{"two errors", corev1.LimitRangeItem{Type: corev1.LimitTypeContainer, Max: list("cpu", "500m", "memory", "1Gi")},
			podOf(container("c", nil, list("cpu", "1", "memory", "2Gi"))),
			"[maximum cpu usage per Container is 500m, but limit is 1, maximum memory usage per Container is 1Gi, but limit is 2Gi]", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidatePod(&corev1.LimitRange{Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{tc.item}}}, tc.pod)
			if tc.admit {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestValidateClaim(t *testing.T) {
	ranges := &corev1.LimitRange{Spec: corev1.LimitRangeSpec{Limits: []corev1.LimitRangeItem{{
		Type: corev1.LimitTypePersistentVolumeClaim, Min: list("storage", "1Gi"), Max: list("storage", "10Gi")}}}}
	claim := func(size string) *corev1.PersistentVolumeClaim {
		return &corev1.PersistentVolumeClaim{Spec: corev1.PersistentVolumeClaimSpec{Resources: corev1.VolumeResourceRequirements{Requests: list("storage", size)}}}
	}
	if err := ValidateClaim(ranges, claim("5Gi")); err != nil {
		t.Fatal(err)
	}
	if err := ValidateClaim(ranges, claim("20Gi")); err == nil || err.Error() != "maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi" {
		t.Fatalf("over max: %v", err)
	}
	if err := ValidateClaim(ranges, claim("500Mi")); err == nil || err.Error() != "minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi" {
		t.Fatalf("under min: %v", err)
	}
}
