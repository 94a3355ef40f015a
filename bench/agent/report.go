package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// report writes the markdown figures.
func report(o options, rs []*result, failed []error, skipped []string) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	load, _ := os.ReadFile("/proc/loadavg")
	w("Command: `go run ./bench/agent%s` (with `-bin %s`), %s.\n\n", strings.Join(append([]string{""}, os.Args[1:]...), " "), o.bin,
		time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	w("Machine: %s.\n\n", machine(o.bin))
	w("The real binary, `headway server --runtime R --cleanup` (bolt store) in a temporary data dir, "+
		"one runtime after the other, on bridges and ranges of their own (process: hwbench0, 198.18.240.0/22; cri: hwbench1, 198.18.244.0/22). "+
		"Every pod is the same: image `%s`, `busybox httpd -f -p 80 -h /etc`, a tcpSocket readiness probe on port 80 (defaults: the agent retries a "+
		"probe that has not yet passed from 2 ms, doubling to at most 100 ms, during its first period, and a just started container's status waits up to 100 ms for that first pass), terminationGracePeriodSeconds 0. The process runtime runs the host's busybox for that image; "+
		"CRI runs the image through the managed containerd, pulled once from a registry on 127.0.0.1 (built from the host's Debian packages). "+
		"Times are from outside the server: create → the pod's Ready condition seen by a watch. Load average at the end: %s.\n\n",
		busyboxImage, strings.Join(strings.Fields(string(load))[:3], " "))

	w("| runtime | single pod create → Ready, median / p99 | 3-replica OrderedReady: `kubectl apply` + `kubectl rollout status` | %d-replica Parallel + headless Service: `kubectl apply` → all Ready | the same → all in the cluster DNS | memory per pod | first pull (first pod, create → Ready) |\n", o.replicas)
	w("| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range rs {
		pull := "— (no images)"
		if r.runtime == "cri" {
			pull = orDash(r.firstPull)
		}
		w("| %s | %s / %s (%d pods) | %s | %s | %s | %s | %s |\n", r.runtime, orDash(pct(r.single, 50)), orDash(pct(r.single, 99)), len(r.single),
			orDash(r.ordered3Cmd), orDash(r.parallelAll), orDash(r.parallelDNS), memCell(r), pull)
	}
	w("\n")

	w("| target | value | met |\n| --- | --- | --- |\n")
	for _, r := range rs {
		switch r.runtime {
		case "cri":
			w("| cri: single pod create → Ready, median < 1 s | %s | %s |\n", orDash(pct(r.single, 50)), met(r.single != nil, pct(r.single, 50) < time.Second))
			w("| cri: %d replicas Ready < 30 s | %s | %s |\n", r.replicas, orDash(r.parallelAll), met(r.parallelAll > 0, r.parallelAll < 30*time.Second))
		case "process":
			w("| process: single pod create → Ready, median < 50 ms | %s | %s |\n", orDash(pct(r.single, 50)), met(r.single != nil, pct(r.single, 50) < 50*time.Millisecond))
			w("| process: %d replicas Ready < 3 s | %s | %s |\n", r.replicas, orDash(r.parallelAll), met(r.parallelAll > 0, r.parallelAll < 3*time.Second))
			w("| process: %d replicas in the cluster DNS < 1.5 s from `kubectl apply` | %s | %s |\n", r.replicas, orDash(r.parallelDNS), met(r.parallelDNS > 0, r.parallelDNS < 1500*time.Millisecond))
		}
	}
	w("\n")

	// Details, one column per runtime.
	w("| detail |")
	for _, r := range rs {
		w(" %s |", r.runtime)
	}
	w("\n| --- |%s\n", strings.Repeat(" --- |", len(rs)))
	row := func(name string, f func(r *result) string) {
		w("| %s |", name)
		for _, r := range rs {
			w(" %s |", f(r))
		}
		w("\n")
	}
	row("server exec → Node Ready", func(r *result) string { return orDash(r.nodeReady) })
	row("OCI runtime the managed containerd's shims run (the server's log)", func(r *result) string {
		if r.ociRuntime == "" {
			return "—"
		}
		return r.ociRuntime
	})
	row("single pod: delete → the runtime has removed it, median", func(r *result) string { return orDash(pct(r.singleGone, 50)) })
	row("nginx:alpine (image's command, httpGet probe on /): create → Ready, median / p99; first pull", func(r *result) string {
		if len(r.nginx) == 0 {
			return "—"
		}
		return fmt.Sprintf("%s / %s (%d pods); %s", ms(pct(r.nginx, 50)), ms(pct(r.nginx, 99)), len(r.nginx), orDash(r.nginxFirstPull))
	})
	row("3-replica: `kubectl apply` alone", func(r *result) string { return orDash(r.ordered3Apply) })
	row("3-replica: apply started → all 3 Ready (watch)", func(r *result) string { return orDash(r.ordered3Watch) })
	row("3-replica: each pod, first sight → Ready, median", func(r *result) string { return orDash(pct(r.ordered3PerPod, 50)) })
	row(fmt.Sprintf("%d-replica: each pod, first sight → Ready, median / p99", o.replicas), func(r *result) string {
		if len(r.parallelPerPod) == 0 {
			return "—"
		}
		return ms(pct(r.parallelPerPod, 50)) + " / " + ms(pct(r.parallelPerPod, 99))
	})
	row(fmt.Sprintf("%d-replica: `kubectl apply` alone", o.replicas), func(r *result) string { return orDash(r.parallelApply) })
	row(fmt.Sprintf("%d-replica: apply started → half the pods Ready", o.replicas), func(r *result) string { return orDash(pct(r.parallelBegin, 50)) })
	row(fmt.Sprintf("%d-replica: apply started → the headless name answers with its first address / with all %d", o.replicas, o.replicas), func(r *result) string {
		return orDash(r.parallelDNSFirst) + " / " + orDash(r.parallelDNS)
	})
	row(fmt.Sprintf("%d-replica: delete → the runtime has removed every pod", o.replicas), func(r *result) string { return orDash(r.parallelGone) })
	perPod := func(v int64, r *result) string {
		if r.replicas == 0 || r.parallelAll == 0 {
			return "—"
		}
		return mib(v / int64(r.replicas))
	}
	row("memory: pods' own processes, RSS per pod (cri: shim + pause + container; process: the container)", func(r *result) string {
		s := perPod(r.pods.rss, r)
		if r.parallelAll > 0 {
			s += fmt.Sprintf(" (%d processes; PSS %s)", r.pods.procs, perPod(r.pods.pss, r))
		}
		return s
	})
	row("memory: containerd RSS growth per pod", func(r *result) string {
		if r.runtime != "cri" {
			return "—"
		}
		return perPod(r.containerdAfter-r.containerdBefore, r)
	})
	row("memory: headway server RSS growth per pod (API server, controllers, DNS, agent in one)", func(r *result) string {
		return perPod(r.headwayAfter-r.headwayBefore, r)
	})
	row("server stop (SIGTERM, --cleanup) → exit", func(r *result) string {
		switch {
		case r.stopHung:
			return fmt.Sprintf("**did not exit** in 1 min (%d pods running at SIGTERM)", r.podsAtStop)
		case r.stopTook == 0:
			return "—"
		}
		return fmt.Sprintf("%s (%d pods running)", ms(r.stopTook), r.podsAtStop)
	})
	row("shims still running once every pod was removed / after the server exited", func(r *result) string {
		if r.runtime != "cri" {
			return "—"
		}
		return fmt.Sprintf("%d / %d", len(r.shimsAfterTeardown), r.leftoverShims)
	})
	row(fmt.Sprintf("%d-replica start: most CNI plugin processes (headway-cni) at once, their summed RSS; the OCI runtime (runc or crun) at once", o.replicas), func(r *result) string {
		if r.runtime != "cri" || r.helpers.count == nil {
			return "—"
		}
		return fmt.Sprintf("%d, %s; %d", r.helpers.count["headway-cni"], mib(r.helpers.rss["headway-cni"]), r.helpers.count["runc"]+r.helpers.count["crun"])
	})
	row("CPU: machine busy in 2 s before the server started (the neighbours)", func(r *result) string {
		return fmt.Sprintf("%.0f%%", 100*r.busyBefore)
	})
	row("CPU: machine busy during the run (all cores)", func(r *result) string {
		return fmt.Sprintf("%.0f%%", 100*r.machineBusy)
	})
	row("CPU: headway server / the children it waited for (process: the pods)", func(r *result) string {
		return fmt.Sprintf("%.1f s / %.1f s", r.serverCPU.Seconds(), r.serverChildrenCPU.Seconds())
	})
	row("CPU: containerd / the children it waited for (CNI plugins, `containerd-shim-runc-v2 start` and `delete`)", func(r *result) string {
		if r.runtime != "cri" {
			return "—"
		}
		return fmt.Sprintf("%.1f s / %.1f s", r.containerdCPU.Seconds(), r.containerdChildrenCPU.Seconds())
	})
	cpu := func(title string, f func(c stackCPU) time.Duration, criOnly bool) {
		row(fmt.Sprintf("%d-replica start (`kubectl apply` → all Ready), CPU: %s", o.replicas, title), func(r *result) string {
			if r.parallelCPU.wall == 0 || (criOnly && r.runtime != "cri") {
				return "—"
			}
			return fmt.Sprintf("%.1f s", f(r.parallelCPU).Seconds())
		})
	}
	cpu("all of the node's pod machinery (the rows below summed)", stackCPU.total, false)
	cpu("headway server / the children it waited for (process: pods that ended)", func(c stackCPU) time.Duration { return c.server + c.serverChildren }, false)
	cpu("containerd itself", func(c stackCPU) time.Duration { return c.containerd }, true)
	cpu("containerd's children (CNI plugins, `containerd-shim-runc-v2 start`)", func(c stackCPU) time.Duration { return c.containerdChildren }, true)
	cpu("shims themselves", func(c stackCPU) time.Duration { return c.shims }, true)
	cpu("shims' children (the OCI runtime: runc or crun create, start)", func(c stackCPU) time.Duration { return c.shimChildren }, true)
	cpu("the pods' processes (CRI: pause and container, with runc init before exec)", func(c stackCPU) time.Duration { return c.pods }, false)
	row(fmt.Sprintf("CPU while the %d pods run Ready and nothing happens, per second of wall time: headway server / containerd / shims / the pods", o.replicas), func(r *result) string {
		c := r.idleCPU
		if c.wall == 0 {
			return "—"
		}
		per := func(d time.Duration) string {
			return fmt.Sprintf("%.0f ms", float64(d.Milliseconds())/c.wall.Seconds())
		}
		return fmt.Sprintf("%s / %s / %s / %s", per(c.server+c.serverChildren), per(c.containerd+c.containerdChildren), per(c.shims+c.shimChildren), per(c.pods))
	})
	row("CPU per pod, all of the node's pod machinery: single pods one at a time (start, Ready, delete, removed) / the Parallel StatefulSet (start to all Ready, then delete to all removed)", func(r *result) string {
		one, par := "—", "—"
		if n := len(r.single); n > 0 && r.singleCPU.wall > 0 {
			one = ms(r.singleCPU.total() / time.Duration(n))
		}
		if r.parallelCPU.wall > 0 && r.parallelGoneCPU.wall > 0 && r.replicas > 0 {
			par = ms((r.parallelCPU.total() + r.parallelGoneCPU.total()) / time.Duration(r.replicas))
		}
		return one + " / " + par
	})
	row(fmt.Sprintf("%d-replica start, CPU: the whole machine busy (neighbours included), of the %d CPUs × wall time", o.replicas, runtime.NumCPU()), func(r *result) string {
		c := r.parallelCPU
		if c.wall == 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f s of %.1f s", c.machine.Seconds(), c.wall.Seconds()*float64(runtime.NumCPU()))
	})
	row(fmt.Sprintf("%d-replica start, CPU: this benchmark itself (watch, DNS poll, process sampler, kubectl), part of the machine's", o.replicas), func(r *result) string {
		if r.parallelCPU.wall == 0 {
			return "—"
		}
		return fmt.Sprintf("%.1f s", r.parallelCPU.bench.Seconds())
	})
	w("\n")

	for _, r := range rs {
		for _, x := range []struct {
			title string
			b     *breakdown
		}{
			{"single pods", r.breakdown},
			{fmt.Sprintf("%d-replica Parallel StatefulSet (from the start of `kubectl apply`)", r.replicas), r.parallelBreakdown},
		} {
			if x.b == nil {
				continue
			}
			w("Where a CRI pod's time goes, %s (%d pods; from containerd's log and the watch), median / p99 per step:\n\n", x.title, x.b.pods)
			w("| step | median | p99 |\n| --- | --- | --- |\n")
			for _, s := range x.b.steps {
				w("| %s | %s | %s |\n", s.name, ms(pct(s.took, 50)), ms(pct(s.took, 99)))
			}
			w("\n")
		}
	}

	w("Memory per pod: for CRI, the RSS of each pod's containerd-shim-runc-v2 and the processes under it (pause, the container) plus containerd's RSS growth, "+
		"for process the container processes' RSS plus the headway server's RSS growth, taken with all %d pods of the Parallel StatefulSet Ready "+
		"and divided by %d. RSS counts shared pages (the shim binary's text, libraries) once per process; PSS shares them out. "+
		"The machine has %d cores shared with other work: figures move with the neighbours' load; run again on a quiet machine before acting on a number.\n",
		o.replicas, o.replicas, runtime.NumCPU())
	for _, sk := range skipped {
		w("\n%s\n", sk)
	}
	for _, err := range failed {
		w("\n**failed**: %v\n", err)
	}
	return b.String()
}

func memCell(r *result) string {
	if r.parallelAll == 0 || r.replicas == 0 {
		return "—"
	}
	n := int64(r.replicas)
	if r.runtime == "cri" {
		cd := r.containerdAfter - r.containerdBefore
		return fmt.Sprintf("%s (pod processes %s + containerd %s)", mib((r.pods.rss+cd)/n), mib(r.pods.rss/n), mib(cd/n))
	}
	hw := r.headwayAfter - r.headwayBefore
	return fmt.Sprintf("%s (pod processes %s + headway %s)", mib((r.pods.rss+hw)/n), mib(r.pods.rss/n), mib(hw/n))
}

func orDash(d time.Duration) string {
	if d == 0 {
		return "—"
	}
	return ms(d)
}

func met(measured, ok bool) string {
	if !measured {
		return "—"
	}
	return yes(ok)
}

// machine describes this machine in one line: CPUs, memory, kernel,
// containerd, the binary's version.
func machine(bin string) string {
	var parts []string
	cpu := ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	parts = append(parts, fmt.Sprintf("%d CPUs (%s), shared with other work", runtime.NumCPU(), cpu))
	parts = append(parts, fmt.Sprintf("%.1f GiB memory", float64(procKB("/proc/meminfo", "MemTotal"))/(1<<30)))
	if out, err := exec.Command("uname", "-sr").Output(); err == nil {
		parts = append(parts, strings.TrimSpace(string(out)))
	}
	if out, err := exec.Command("containerd", "--version").Output(); err == nil {
		f := strings.Fields(string(out))
		parts = append(parts, "containerd "+f[len(f)-1])
	}
	for _, oci := range []string{"runc", "crun"} {
		if out, err := exec.Command(oci, "--version").Output(); err == nil {
			parts = append(parts, strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0])
		}
	}
	if out, err := exec.Command(bin, "version").Output(); err == nil {
		parts = append(parts, strings.SplitN(strings.TrimSpace(string(out)), "\n", 2)[0])
	}
	return strings.Join(parts, "; ")
}
