package openapi

import (
	"os"
	"testing"

	corev1 "k8s.io/api/core/v1"
	appsv1 "k8s.io/api/apps/v1"
	explainv2 "k8s.io/kubectl/pkg/explain/v2"
	"k8s.io/kubectl/pkg/explain"
	kubectlopenapi "k8s.io/kubectl/pkg/util/openapi"
)

func TestZZShow(t *testing.T) {
	_, dc := served(t)
	explainv2.PrintModelDescription([]string{"spec", "clusterIP"}, os.Stdout, dc.OpenAPIV3(), corev1.SchemeGroupVersion.WithResource("services"), false, 0, "plaintext")
	explainv2.PrintModelDescription([]string{"spec", "template", "spec", "containers", "ports"}, os.Stdout, dc.OpenAPIV3(), appsv1.SchemeGroupVersion.WithResource("statefulsets"), false, 0, "plaintext")
	explainv2.PrintModelDescription([]string{"spec"}, os.Stdout, dc.OpenAPIV3(), appsv1.SchemeGroupVersion.WithResource("statefulsets"), false, 0, "plaintext")
	doc, _ := dc.OpenAPISchema()
	r, _ := kubectlopenapi.NewOpenAPIData(doc)
	gvk := corev1.SchemeGroupVersion.WithKind("Service")
	explain.PrintModelDescription([]string{"spec"}, os.Stdout, r.LookupResource(gvk), gvk, false, 0)
}
