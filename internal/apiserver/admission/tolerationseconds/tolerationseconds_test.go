package tolerationseconds

import (
	"context"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/apiserver/admission"
)

var pods = schema.GroupVersionResource{Version: "v1", Resource: "pods"}

func admit(t *testing.T, p *Plugin, op admission.Operation, sub string, tols []corev1.Toleration) []corev1.Toleration {
	t.Helper()
	pod := &corev1.Pod{Spec: corev1.PodSpec{Tolerations: tols}}
	a := &admission.Attributes{Operation: op, Resource: pods, Subresource: sub, Object: pod}
	if err := p.Admit(context.Background(), a, nil); err != nil {
		t.Fatal(err)
	}
	return pod.Spec.Tolerations
}

func TestDefaultTolerationSeconds(t *testing.T) {
	notReady := func(s int64) corev1.Toleration {
		return corev1.Toleration{Key: corev1.TaintNodeNotReady, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To(s)}
	}
	unreachable := func(s int64) corev1.Toleration {
		return corev1.Toleration{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoExecute, TolerationSeconds: ptr.To(s)}
	}
	dedicated := corev1.Toleration{Key: "dedicated", Operator: corev1.TolerationOpEqual, Value: "db", Effect: corev1.TaintEffectNoSchedule}
	for _, tc := range []struct {
		name   string
		plugin *Plugin
		op     admission.Operation
		sub    string
		in     []corev1.Toleration
		want   []corev1.Toleration
	}{
		{"both added, kube-apiserver's defaults", New(Default, Default), admission.Create, "", nil,
			[]corev1.Toleration{notReady(300), unreachable(300)}},
		{"both added, the flags' values", New(20, 7), admission.Create, "", nil,
			[]corev1.Toleration{notReady(20), unreachable(7)}},
		{"next to the pod's own, which are kept", New(Default, 7), admission.Create, "", []corev1.Toleration{dedicated, notReady(10)},
			[]corev1.Toleration{dedicated, notReady(10), unreachable(7)}},
		{"a toleration of every taint covers both", New(1, 1), admission.Create, "", []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			[]corev1.Toleration{{Operator: corev1.TolerationOpExists}}},
		{"an unreachable toleration without seconds stays forever", New(1, 1), admission.Create, "",
			[]corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists}},
			[]corev1.Toleration{{Key: corev1.TaintNodeUnreachable, Operator: corev1.TolerationOpExists}, notReady(1)}},
		{"updates are left alone", New(1, 1), admission.Update, "", nil, nil},
		{"subresources are left alone", New(1, 1), admission.Create, "binding", nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := admit(t, tc.plugin, tc.op, tc.sub, tc.in)
			if !apiequality.Semantic.DeepEqual(got, tc.want) {
				t.Errorf("got  %v\nwant %v", got, tc.want)
			}
			if tc.op == admission.Create && tc.sub == "" {
				if again := admit(t, tc.plugin, tc.op, tc.sub, got); !apiequality.Semantic.DeepEqual(again, got) {
					t.Errorf("admitting twice changed the tolerations: %v", again)
				}
			}
		})
	}
}
