// Package node is the registry entry of core/v1 Nodes.
package node

import (
	"sort"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/headway/headway/internal/registry"
)

// Resource returns the nodes registry entry.
func Resource() *registry.Resource {
	return &registry.Resource{
		GroupVersion: corev1.SchemeGroupVersion,
		Kind:         "Node", ListKind: "NodeList",
		Plural: "nodes", Singular: "node",
		ShortNames: []string{"no"},
		New:        func() runtime.Object { return &corev1.Node{} },
		NewList:    func() runtime.Object { return &corev1.NodeList{} },

		// As in kube-apiserver's strategy for the kind, a PUT without a
		// resourceVersion overwrites the current object.
		AllowUnconditionalUpdate: true,

		HasStatus: true,
		Columns: []metav1.TableColumnDefinition{
			registry.NameColumn,
			registry.Column("Status", "string", 0, "The status of the node"),
			registry.Column("Roles", "string", 0, "The roles of the node"),
			registry.AgeColumn,
			registry.Column("Version", "string", 0, corev1.NodeSystemInfo{}.SwaggerDoc()["kubeletVersion"]),
			registry.Column("Internal-IP", "string", 1, corev1.NodeStatus{}.SwaggerDoc()["addresses"]),
			registry.Column("External-IP", "string", 1, corev1.NodeStatus{}.SwaggerDoc()["addresses"]),
			registry.Column("OS-Image", "string", 1, corev1.NodeSystemInfo{}.SwaggerDoc()["osImage"]),
			registry.Column("Kernel-Version", "string", 1, corev1.NodeSystemInfo{}.SwaggerDoc()["kernelVersion"]),
			registry.Column("Container-Runtime", "string", 1, corev1.NodeSystemInfo{}.SwaggerDoc()["containerRuntimeVersion"]),
		},
		Row: func(obj runtime.Object) ([]interface{}, error) {
			n := obj.(*corev1.Node)
			return []interface{}{n.Name, status(n), roles(n), registry.Age(n.CreationTimestamp), n.Status.NodeInfo.KubeletVersion,
				address(n, corev1.NodeInternalIP), address(n, corev1.NodeExternalIP),
				n.Status.NodeInfo.OSImage, n.Status.NodeInfo.KernelVersion, n.Status.NodeInfo.ContainerRuntimeVersion}, nil
		},
		Fields: func(obj runtime.Object) fields.Set {
			return fields.Set{"spec.unschedulable": boolString(obj.(*corev1.Node).Spec.Unschedulable)}
		},
	}
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func status(n *corev1.Node) string {
	var out []string
	ready := "Unknown"
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			switch c.Status {
			case corev1.ConditionTrue:
				ready = "Ready"
			case corev1.ConditionFalse:
				ready = "NotReady"
			}
		}
	}
	out = append(out, ready)
	if n.Spec.Unschedulable {
		out = append(out, "SchedulingDisabled")
	}
	return strings.Join(out, ",")
}

func roles(n *corev1.Node) string {
	var rs []string
	for k, v := range n.Labels {
		switch {
		case strings.HasPrefix(k, "node-role.kubernetes.io/"):
			if r := strings.TrimPrefix(k, "node-role.kubernetes.io/"); r != "" {
				rs = append(rs, r)
			}
		case k == "kubernetes.io/role" && v != "":
			rs = append(rs, v)
		}
	}
	sort.Strings(rs)
	return registry.Join(rs)
}

func address(n *corev1.Node, t corev1.NodeAddressType) string {
	for _, a := range n.Status.Addresses {
		if a.Type == t {
			return a.Address
		}
	}
	return "<none>"
}
