package agent

import (
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// status is the pod status from what the worker knows: phase, addresses,
// conditions and container statuses, keeping the transition times of
// conditions that did not change.
func (w *worker) status(pod *corev1.Pod) corev1.PodStatus {
	st := corev1.PodStatus{
		QOSClass:          pod.Status.QOSClass,
		NominatedNodeName: pod.Status.NominatedNodeName,
		StartTime:         &w.startTime,
		HostIP:            w.a.hostIP.String(),
		HostIPs:           []corev1.HostIP{{IP: w.a.hostIP.String()}},
	}
	if w.sb != nil && w.sb.IP.IsValid() {
		st.PodIP = w.sb.IP.String()
		st.PodIPs = []corev1.PodIP{{IP: st.PodIP}}
	} else if pod.Status.PodIP != "" {
		st.PodIP, st.PodIPs = pod.Status.PodIP, pod.Status.PodIPs
	}
	initialized := true
	var notInit, notReady []string
	everStarted, allEnded, anyFailed := false, true, false
	for _, c := range w.ctrs {
		cs := w.containerStatus(pod, c)
		if c.init {
			if !c.done {
				initialized = false
				notInit = append(notInit, c.spec.Name)
			}
			st.InitContainerStatuses = append(st.InitContainerStatuses, cs)
			continue
		}
		if !initialized && cs.State.Running == nil && cs.State.Terminated == nil && !c.blocked {
			cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "PodInitializing"}}
		}
		if !cs.Ready {
			notReady = append(notReady, c.spec.Name)
		}
		if c.starts > 0 {
			everStarted = true
		}
		if cs.State.Terminated == nil {
			allEnded = false
		} else if cs.State.Terminated.ExitCode != 0 {
			anyFailed = true
		}
		st.ContainerStatuses = append(st.ContainerStatuses, cs)
	}
	switch {
	case w.initFailed:
		st.Phase = corev1.PodFailed
	case !initialized || !everStarted:
		st.Phase = corev1.PodPending
	case allEnded && anyFailed:
		st.Phase = corev1.PodFailed
	case allEnded:
		st.Phase = corev1.PodSucceeded
	default:
		st.Phase = corev1.PodRunning
	}
	if w.sandboxMsg != "" && st.Phase == corev1.PodPending {
		st.Message = w.sandboxMsg
	}

	cond := func(t corev1.PodConditionType, ok bool, reason, msg string) corev1.PodCondition {
		c := corev1.PodCondition{Type: t, Status: corev1.ConditionTrue}
		if !ok {
			c.Status, c.Reason, c.Message = corev1.ConditionFalse, reason, msg
		}
		return c
	}
	list := func(names []string) string { return "[" + strings.Join(names, " ") + "]" }
	containersReady := len(notReady) == 0
	readyReason, readyMsg := "ContainersNotReady", "containers with unready status: "+list(notReady)
	if st.Phase == corev1.PodSucceeded || st.Phase == corev1.PodFailed {
		containersReady, readyReason, readyMsg = false, "PodCompleted", ""
	}
	conds := []corev1.PodCondition{
		cond(corev1.PodReadyToStartContainers, w.sb != nil, "", ""),
		cond(corev1.PodInitialized, initialized, "ContainersNotInitialized", "containers with incomplete status: "+list(notInit)),
		cond(corev1.PodReady, containersReady, readyReason, readyMsg),
		cond(corev1.ContainersReady, containersReady, readyReason, readyMsg),
		cond(corev1.PodScheduled, true, "", ""),
	}
	now := ts(time.Now())
	known := map[corev1.PodConditionType]bool{}
	for i := range conds {
		c := &conds[i]
		known[c.Type] = true
		c.LastTransitionTime = now
		for _, o := range pod.Status.Conditions {
			if o.Type == c.Type && o.Status == c.Status {
				c.LastTransitionTime = o.LastTransitionTime
				c.LastProbeTime = o.LastProbeTime
			}
		}
	}
	for _, o := range pod.Status.Conditions {
		if !known[o.Type] {
			conds = append(conds, o)
		}
	}
	st.Conditions = conds
	return st
}

func (w *worker) containerStatus(pod *corev1.Pod, c *ctr) corev1.ContainerStatus {
	w.mu.Lock()
	ready, started := c.ready, c.started
	w.mu.Unlock()
	cs := corev1.ContainerStatus{
		Name:         c.spec.Name,
		Image:        c.spec.Image,
		ImageID:      c.imageRef,
		ContainerID:  c.id,
		RestartCount: max(c.starts-1, 0),
	}
	if c.last != nil {
		cs.LastTerminationState.Terminated = c.last
	}
	switch {
	case c.proc != nil:
		cs.State.Running = &corev1.ContainerStateRunning{StartedAt: ts(c.proc.Started())}
		cs.Ready = ready && !c.init
		cs.Started = &started
	case c.waiting != nil:
		cs.State.Waiting = c.waiting
		f := false
		cs.Started = &f
	case c.term != nil:
		cs.State.Terminated = c.term
		f := false
		cs.Started = &f
		if c.init && c.term.ExitCode == 0 {
			cs.Ready = true
		}
	default:
		reason := "ContainerCreating"
		if c.init {
			reason = "PodInitializing"
		}
		cs.State.Waiting = &corev1.ContainerStateWaiting{Reason: reason}
		f := false
		cs.Started = &f
	}
	if cs.Image == "" {
		cs.Image = "none"
	}
	return cs
}
