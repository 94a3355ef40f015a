package agent

import (
	"context"
	"fmt"
	"io"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

type execTarget struct {
	proc hwruntime.Process
	spec *hwruntime.ContainerSpec
}

func (w *worker) setExecTarget(name string, t *execTarget) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.targets == nil {
		w.targets = map[string]*execTarget{}
	}
	if t == nil {
		delete(w.targets, name)
	} else {
		w.targets[name] = t
	}
}

// target finds the running container (the first one when container is "").
func (a *Agent) target(namespace, pod, container string) (*execTarget, error) {
	if a.pods == nil {
		return nil, fmt.Errorf("the agent is not running")
	}
	p, err := a.pods.Pods(namespace).Get(pod)
	if err != nil {
		return nil, err
	}
	w := a.worker(string(p.UID))
	if w == nil {
		return nil, fmt.Errorf("pod %s/%s is not running on node %s", namespace, pod, a.cfg.NodeName)
	}
	if container == "" && len(p.Spec.Containers) > 0 {
		container = p.Spec.Containers[0].Name
	}
	w.mu.Lock()
	t := w.targets[container]
	w.mu.Unlock()
	if t == nil {
		return nil, fmt.Errorf("container %s of pod %s/%s is not running", container, namespace, pod)
	}
	return t, nil
}

// Exec runs argv in a running container of a pod on this node (its
// namespaces, root, user and environment) and returns its exit code and
// combined output. It is what `kubectl exec` will use, and the tests' way
// into a pod.
func (a *Agent) Exec(ctx context.Context, namespace, pod, container string, argv []string) (hwruntime.ExecResult, error) {
	t, err := a.target(namespace, pod, container)
	if err != nil {
		return hwruntime.ExecResult{}, err
	}
	return a.rt.Exec(ctx, t.proc, t.spec, argv)
}

// StartExec starts argv in a running container with the given streams and
// returns the command to wait on (runtimes that exec in-process; a CRI
// runtime streams through its own server instead).
func (a *Agent) StartExec(namespace, pod, container string, argv []string, stdin io.Reader, stdout, stderr io.Writer, tty bool) (hwruntime.Waiter, error) {
	t, err := a.target(namespace, pod, container)
	if err != nil {
		return nil, err
	}
	p, ok := a.rt.(hwruntime.InteractiveExec)
	if !ok {
		return nil, fmt.Errorf("runtime %s cannot exec with streams here", a.runtimeName())
	}
	return p.StartExec(t.proc, t.spec, argv, stdin, stdout, stderr, tty)
}
