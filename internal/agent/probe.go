package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

// probeSpec is a probe with the API defaults filled in.
type probeSpec struct {
	corev1.Probe
	initialDelay, period, timeout time.Duration
}

func withDefaults(p *corev1.Probe) probeSpec {
	s := probeSpec{Probe: *p}
	if s.PeriodSeconds <= 0 {
		s.PeriodSeconds = 10
	}
	if s.TimeoutSeconds <= 0 {
		s.TimeoutSeconds = 1
	}
	if s.SuccessThreshold <= 0 {
		s.SuccessThreshold = 1
	}
	if s.FailureThreshold <= 0 {
		s.FailureThreshold = 3
	}
	s.initialDelay = time.Duration(s.InitialDelaySeconds) * time.Second
	s.period = time.Duration(s.PeriodSeconds) * time.Second
	s.timeout = time.Duration(s.TimeoutSeconds) * time.Second
	return s
}

// startProbes runs the container's probes: the startup probe first (the
// others wait for it), then liveness and readiness side by side. Without a
// readiness probe the container is ready once started.
func (w *worker) startProbes(pod *corev1.Pod, c *ctr, proc hwruntime.Process) {
	ctx, cancel := context.WithCancel(w.ctx)
	c.probeCancel = cancel
	spec := c.spec
	podIP := ""
	if w.sb != nil && w.sb.IP.IsValid() {
		podIP = w.sb.IP.String()
	}
	set := func(f func()) {
		w.mu.Lock()
		f()
		w.mu.Unlock()
		w.poke()
	}
	if c.init {
		return
	}
	if spec.StartupProbe == nil && spec.ReadinessProbe == nil {
		set(func() { c.started, c.ready = true, true })
	} else if spec.StartupProbe == nil {
		set(func() { c.started = true })
	}
	if spec.StartupProbe == nil && spec.ReadinessProbe == nil && spec.LivenessProbe == nil {
		return
	}
	c.probes.Add(1)
	go func() {
		defer c.probes.Done()
		if spec.StartupProbe != nil {
			ps := withDefaults(spec.StartupProbe)
			ok := w.probeLoop(ctx, pod, c, proc, podIP, "Startup", ps, false, func(passed bool) bool {
				if passed {
					set(func() { c.started = true })
					return false // done
				}
				return true
			})
			if !ok {
				return
			}
			if spec.ReadinessProbe == nil {
				set(func() { c.ready = true })
			}
		}
		done := make(chan struct{}, 2)
		n := 0
		if spec.ReadinessProbe != nil {
			n++
			go func() {
				defer func() { done <- struct{}{} }()
				w.probeLoop(ctx, pod, c, proc, podIP, "Readiness", withDefaults(spec.ReadinessProbe), true, func(passed bool) bool {
					set(func() { c.ready = passed })
					return true
				})
			}()
		}
		if spec.LivenessProbe != nil {
			n++
			go func() {
				defer func() { done <- struct{}{} }()
				w.probeLoop(ctx, pod, c, proc, podIP, "Liveness", withDefaults(spec.LivenessProbe), false, func(passed bool) bool {
					return true
				})
			}()
		}
		for range n {
			<-done
		}
	}()
}

// maxQuickProbe is the longest wait between a readiness probe's quick
// retries before it first passes; firstQuickProbe is the first wait
// (a TCP, HTTP or gRPC check refused by a port not yet bound costs tens
// of microseconds, so the first retries come soon: most servers bind
// within a few milliseconds of their start).
const (
	firstQuickProbe     = 2 * time.Millisecond
	firstQuickExecProbe = 20 * time.Millisecond
	maxQuickProbe       = 100 * time.Millisecond
)

// probeLoop runs one probe every period and reports each verdict (after
// the success/failure thresholds) to verdict, which says whether to go
// on. A startup or liveness probe that reaches its failure threshold asks
// for the container to be restarted and ends the loop (false). Before a
// readiness probe first succeeds it is retried quickly, for at most one
// period from the probe's start (from 2ms, doubling up to 100ms, so a pod
// is Ready at most 100ms after it serves, also when it was slow to start
// because many pods started at once; an exec probe, a process each time,
// starts from 20ms and keeps doubling): failures in that phase do not
// count and make no events.
func (w *worker) probeLoop(ctx context.Context, pod *corev1.Pod, c *ctr, proc hwruntime.Process, podIP, kind string, ps probeSpec, fastStart bool, verdict func(bool) bool) bool {
	delay := ps.initialDelay
	successes, failures := int32(0), int32(0)
	everPassed := false
	quick := firstQuickProbe
	quickUntil := time.Now().Add(ps.initialDelay + ps.period)
	quickCap := maxQuickProbe
	if ps.Exec != nil {
		// Each try starts a process: start later and keep doubling.
		quick, quickCap = firstQuickExecProbe, ps.period
	}
	for {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-proc.Done():
			t.Stop()
			return false
		case <-t.C:
		}
		err := w.runProbe(ctx, pod, c, proc, podIP, &ps.Probe, ps.timeout)
		if ctx.Err() != nil {
			return false
		}
		delay = ps.period
		if err == nil {
			if !everPassed && successes == 0 {
				w.a.log.Debug("probe passed", append(w.log(), "container", c.spec.Name, "probe", kind)...)
			}
			failures = 0
			successes++
			if successes >= ps.SuccessThreshold {
				everPassed = true
				if !verdict(true) {
					return true
				}
			}
			continue
		}
		successes = 0
		if fastStart && !everPassed && time.Now().Add(quick).Before(quickUntil) {
			delay = quick
			quick = min(2*quick, quickCap)
			continue
		}
		failures++
		w.event(pod, corev1.EventTypeWarning, "Unhealthy", fmt.Sprintf("%s probe failed: %v", kind, err))
		if failures >= ps.FailureThreshold {
			if kind == "Readiness" {
				if !verdict(false) {
					return true
				}
				continue
			}
			w.mu.Lock()
			c.killReason = fmt.Sprintf("failed %s probe", strings.ToLower(kind))
			w.mu.Unlock()
			w.poke()
			return false
		}
	}
}

// runProbe runs one probe check; nil is success.
func (w *worker) runProbe(ctx context.Context, pod *corev1.Pod, c *ctr, proc hwruntime.Process, podIP string, p *corev1.Probe, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	h := p.ProbeHandler
	switch {
	case h.Exec != nil:
		res, err := w.a.rt.Exec(ctx, proc, c.rspec, h.Exec.Command)
		if err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("command timed out after %s", timeout)
			}
			return err
		}
		if res.ExitCode != 0 {
			return fmt.Errorf("command %q exited with %d: %s", strings.Join(h.Exec.Command, " "), res.ExitCode, strings.TrimSpace(string(res.Output)))
		}
		return nil
	case h.HTTPGet != nil:
		return httpCheck(ctx, h.HTTPGet, &c.spec, podIP)
	case h.TCPSocket != nil:
		host := h.TCPSocket.Host
		if host == "" {
			host = podIP
		}
		port, err := resolvePort(h.TCPSocket.Port, &c.spec)
		if err != nil {
			return err
		}
		var d net.Dialer
		conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return err
		}
		conn.Close()
		return nil
	case h.GRPC != nil:
		host := podIP
		addr := net.JoinHostPort(host, strconv.Itoa(int(h.GRPC.Port)))
		service := ""
		if h.GRPC.Service != nil {
			service = *h.GRPC.Service
		}
		return grpcHealthCheck(ctx, addr, service)
	}
	return errors.New("probe has no handler")
}

// runHandler runs a lifecycle handler (preStop, postStart).
func (w *worker) runHandler(ctx context.Context, pod *corev1.Pod, c *ctr, proc hwruntime.Process, h *corev1.LifecycleHandler) error {
	podIP := ""
	if w.sb != nil && w.sb.IP.IsValid() {
		podIP = w.sb.IP.String()
	}
	switch {
	case h.Exec != nil:
		res, err := w.a.rt.Exec(ctx, proc, c.rspec, h.Exec.Command)
		if err != nil {
			return err
		}
		if res.ExitCode != 0 {
			return fmt.Errorf("command %q exited with %d: %s", strings.Join(h.Exec.Command, " "), res.ExitCode, strings.TrimSpace(string(res.Output)))
		}
		return nil
	case h.HTTPGet != nil:
		return httpCheck(ctx, h.HTTPGet, &c.spec, podIP)
	case h.Sleep != nil:
		t := time.NewTimer(time.Duration(h.Sleep.Seconds) * time.Second)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		case <-proc.Done():
		}
		return nil
	}
	return nil
}

func resolvePort(p intstr.IntOrString, c *corev1.Container) (int, error) {
	if p.Type == intstr.Int {
		return p.IntValue(), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("container %s has no port named %q", c.Name, p.StrVal)
}

var probeClient = &http.Client{
	Transport: &http.Transport{DisableKeepAlives: true, Proxy: nil},
	CheckRedirect: func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("too many redirects")
		}
		// Redirects elsewhere count as success, as the kubelet has it.
		if req.URL.Hostname() != via[0].URL.Hostname() {
			return http.ErrUseLastResponse
		}
		return nil
	},
}

func httpCheck(ctx context.Context, g *corev1.HTTPGetAction, c *corev1.Container, podIP string) error {
	host := g.Host
	if host == "" {
		host = podIP
	}
	port, err := resolvePort(g.Port, c)
	if err != nil {
		return err
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
		host = "[" + host + "]"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u, err := url.Parse(fmt.Sprintf("%s://%s:%d%s", scheme, host, port, path))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "kube-probe/1.37")
	req.Header.Set("Accept", "*/*")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP probe failed with statuscode: %d", resp.StatusCode)
	}
	return nil
}
