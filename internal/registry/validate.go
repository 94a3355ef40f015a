package registry

import (
	"reflect"
	"regexp"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// NonNegative is kube-apiserver's check of a count or duration field.
func NonNegative(v int64, path *field.Path) field.ErrorList {
	if v < 0 {
		return field.ErrorList{field.Invalid(path, v, "must be greater than or equal to 0")}
	}
	return nil
}

// NonNegative32 checks an optional int32 field.
func NonNegative32(v *int32, path *field.Path) field.ErrorList {
	if v == nil {
		return nil
	}
	return NonNegative(int64(*v), path)
}

// Immutable reports a change of a field that may not change in an update.
func Immutable(newVal, oldVal interface{}, path *field.Path) field.ErrorList {
	if !apiequality.Semantic.DeepEqual(newVal, oldVal) {
		return field.ErrorList{field.Invalid(path, newVal, "field is immutable")}
	}
	return nil
}

// ResetStatus zeroes an object's Status field, as kube-apiserver's
// strategies do on create for kinds whose status a controller writes.
func ResetStatus(obj runtime.Object) {
	v := reflect.ValueOf(obj).Elem().FieldByName("Status")
	if v.IsValid() && v.CanSet() {
		v.Set(reflect.Zero(v.Type()))
	}
}

// ContainerCells renders the CONTAINERS and IMAGES cells of a pod template
// the way kubectl's -o wide does.
func ContainerCells(containers []corev1.Container) (names, images string) {
	for i, c := range containers {
		if i > 0 {
			names += ","
			images += ","
		}
		names += c.Name
		images += c.Image
	}
	return names, images
}

var percent = regexp.MustCompile(`^[0-9]+%$`)

// IntOrPercent checks a non-negative integer or a percentage ("25%"); with
// atMost100, a percentage above 100% is refused too.
func IntOrPercent(v *intstr.IntOrString, path *field.Path, atMost100 bool) field.ErrorList {
	if v == nil {
		return nil
	}
	if v.Type == intstr.Int {
		return NonNegative(int64(v.IntVal), path)
	}
	if !percent.MatchString(v.StrVal) {
		return field.ErrorList{field.Invalid(path, v.StrVal, "must be an integer or percentage (e.g '5%')")}
	}
	if n, _ := strconv.Atoi(strings.TrimSuffix(v.StrVal, "%")); atMost100 && n > 100 {
		return field.ErrorList{field.Invalid(path, v.StrVal, "must not be greater than 100%")}
	}
	return nil
}

// IsZero reports an integer or percentage that is 0 (or "0%").
func IsZero(v *intstr.IntOrString) bool {
	if v == nil {
		return true
	}
	if v.Type == intstr.Int {
		return v.IntVal == 0
	}
	return strings.TrimLeft(strings.TrimSuffix(v.StrVal, "%"), "0") == ""
}
