// Package tolerationseconds is the DefaultTolerationSeconds admission
// plugin: a new pod that does not tolerate the node.kubernetes.io/not-ready
// or node.kubernetes.io/unreachable NoExecute taints gets a toleration of
// each for a set time (300 s unless the server's
// --default-not-ready-toleration-seconds and
// --default-unreachable-toleration-seconds say otherwise), as
// kube-apiserver's plugin of that name does. That time is how long its
// pods stay bound to a node that stopped reporting before the node
// lifecycle controller evicts them.
package tolerationseconds

import (
	"context"

	corev1 "k8s.io/api/core/v1"

	"github.com/headway/headway/internal/apiserver/admission"
)

// Default is kube-apiserver's default for both flags.
const Default = 300

// Plugin is the DefaultTolerationSeconds step.
type Plugin struct {
	notReady, unreachable int64
}

// New returns the plugin with the two tolerations' seconds.
func New(notReadySeconds, unreachableSeconds int64) *Plugin {
	return &Plugin{notReady: notReadySeconds, unreachable: unreachableSeconds}
}

// Name implements admission.Plugin.
func (*Plugin) Name() string { return "DefaultTolerationSeconds" }

// Admit adds the tolerations a new pod lacks. A toleration already covers
// a taint when its key is the taint's or empty (with operator Exists) and
// its effect is NoExecute or empty.
func (p *Plugin) Admit(_ context.Context, a *admission.Attributes, _ admission.Objects) error {
	if !a.Is("", "pods") || a.Operation != admission.Create {
		return nil
	}
	pod, ok := a.Object.(*corev1.Pod)
	if !ok {
		return nil
	}
	pod.Spec.Tolerations = p.with(pod.Spec.Tolerations)
	return nil
}

func (p *Plugin) with(tols []corev1.Toleration) []corev1.Toleration {
	covers := func(key string) bool {
		for _, t := range tols {
			if (t.Key == key || (t.Key == "" && t.Operator == corev1.TolerationOpExists)) &&
				(t.Effect == corev1.TaintEffectNoExecute || t.Effect == "") {
				return true
			}
		}
		return false
	}
	var add []corev1.Toleration
	for _, d := range []struct {
		key     string
		seconds int64
	}{{corev1.TaintNodeNotReady, p.notReady}, {corev1.TaintNodeUnreachable, p.unreachable}} {
		if !covers(d.key) {
			secs := d.seconds
			add = append(add, corev1.Toleration{Key: d.key, Operator: corev1.TolerationOpExists,
				Effect: corev1.TaintEffectNoExecute, TolerationSeconds: &secs})
		}
	}
	return append(tols, add...)
}
