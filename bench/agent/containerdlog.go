package main

import (
	"bufio"
	"os"
	"regexp"
	"time"
)

// A breakdown splits create → Ready of CRI pods into the steps containerd's
// log times (RunPodSandbox, CreateContainer, StartContainer: a line when
// each call arrives and one when it returns) and the gaps between them,
// which are Headway's (API, scheduler, agent; after StartContainer the
// readiness probe, the status write and the watch).
type breakdown struct {
	pods  int
	steps []step
}

type step struct {
	name string
	took []time.Duration
}

var (
	clTime         = regexp.MustCompile(`^time="([^"]+)"`)
	clSandboxStart = regexp.MustCompile(`msg="RunPodSandbox for &PodSandboxMetadata\{Name:([^,]+),[^}]*Attempt:0,\}"$`)
	clSandboxDone  = regexp.MustCompile(`msg="RunPodSandbox for &PodSandboxMetadata\{Name:([^,]+),[^}]*Attempt:0,\} returns sandbox id \\"([0-9a-f]+)\\""`)
	clCreateStart  = regexp.MustCompile(`msg="CreateContainer within sandbox \\"([0-9a-f]+)\\" for container &ContainerMetadata\{Name:[^,]+,Attempt:0,\}"`)
	clCreateDone   = regexp.MustCompile(`msg="CreateContainer within sandbox \\"([0-9a-f]+)\\" for &ContainerMetadata\{Name:[^,]+,Attempt:0,\} returns container id \\"([0-9a-f]+)\\""`)
	clStartStart   = regexp.MustCompile(`msg="StartContainer for \\"([0-9a-f]+)\\""$`)
	clStartDone    = regexp.MustCompile(`msg="StartContainer for \\"([0-9a-f]+)\\" returns successfully"`)
)

// podSteps are one pod's timestamps, in order.
type podSteps struct {
	sandboxStart, sandboxDone, createStart, createDone, startStart, startDone time.Time
}

// parseContainerdLog reads containerd's log for the pods in times (name →
// [create, Ready seen]) and breaks their create → Ready into steps. Pods
// whose lines are missing are left out; nil when none is found.
func parseContainerdLog(path string, times map[string][2]time.Time) *breakdown {
	if len(times) == 0 {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	pods := map[string]*podSteps{}      // pod name →
	bySandbox := map[string]*podSteps{} // sandbox id →
	byContainer := map[string]*podSteps{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		m := clTime.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, m[1])
		if err != nil {
			continue
		}
		switch {
		case clSandboxStart.MatchString(line):
			name := clSandboxStart.FindStringSubmatch(line)[1]
			if _, ok := times[name]; ok && pods[name] == nil {
				pods[name] = &podSteps{sandboxStart: t}
			}
		case clSandboxDone.MatchString(line):
			m := clSandboxDone.FindStringSubmatch(line)
			if p := pods[m[1]]; p != nil && p.sandboxDone.IsZero() {
				p.sandboxDone = t
				bySandbox[m[2]] = p
			}
		case clCreateStart.MatchString(line):
			if p := bySandbox[clCreateStart.FindStringSubmatch(line)[1]]; p != nil && p.createStart.IsZero() {
				p.createStart = t
			}
		case clCreateDone.MatchString(line):
			m := clCreateDone.FindStringSubmatch(line)
			if p := bySandbox[m[1]]; p != nil && p.createDone.IsZero() {
				p.createDone = t
				byContainer[m[2]] = p
			}
		case clStartStart.MatchString(line):
			if p := byContainer[clStartStart.FindStringSubmatch(line)[1]]; p != nil && p.startStart.IsZero() {
				p.startStart = t
			}
		case clStartDone.MatchString(line):
			if p := byContainer[clStartDone.FindStringSubmatch(line)[1]]; p != nil && p.startDone.IsZero() {
				p.startDone = t
			}
		}
	}
	b := &breakdown{steps: []step{
		{name: "create → RunPodSandbox called (API, scheduler, agent)"},
		{name: "RunPodSandbox (netns, CNI ADD, shim and pause started)"},
		{name: "sandbox returned → CreateContainer called (agent)"},
		{name: "CreateContainer"},
		{name: "CreateContainer returned → StartContainer called (agent)"},
		{name: "StartContainer (the OCI runtime's create + start)"},
		{name: "StartContainer returned → Ready seen by the watch (probe, status write, watch)"},
	}}
	for name, p := range pods {
		if p.startDone.IsZero() || p.startStart.IsZero() || p.createStart.IsZero() {
			continue
		}
		tt := times[name]
		points := []time.Time{tt[0], p.sandboxStart, p.sandboxDone, p.createStart, p.createDone, p.startStart, p.startDone, tt[1]}
		for i := range b.steps {
			b.steps[i].took = append(b.steps[i].took, points[i+1].Sub(points[i]))
		}
		b.pods++
	}
	if b.pods == 0 {
		return nil
	}
	return b
}
