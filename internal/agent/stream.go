package agent

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/creack/pty"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/proxy"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

// The streaming server is the agent's HTTPS endpoint the API server proxies
// pods/log, exec, attach and portforward to, on the kubelet's paths:
//
//	GET  /containerLogs/<ns>/<pod>/<container>
//	POST /exec/<ns>/<pod>/<container>?command=...&input=1&output=1&error=1&tty=1
//	POST /attach/<ns>/<pod>/<container>?input=1&output=1&tty=1
//	POST /portForward/<ns>/<pod>
//
// Only clients with a certificate signed by the cluster CA get in (the TLS
// config requires one), and of those only the names in
// Config.StreamingClients: the API server's own client certificate, not
// the other components' or users' (403 Forbidden, as the kubelet answers).
const (
	streamIdleTimeout     = 4 * time.Hour
	streamCreationTimeout = remotecommand.DefaultStreamCreationTimeout
)

// startStreaming listens on the node address and serves until ctx ends.
func (a *Agent) startStreaming(ctx context.Context) (int, func(), error) {
	if a.cfg.StreamingTLS == nil {
		return 0, func() {}, nil
	}
	host := a.hostIP
	if !host.IsValid() {
		host = netip.MustParseAddr("127.0.0.1")
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host.String(), strconv.Itoa(a.cfg.StreamingPort)))
	if err != nil {
		return 0, nil, fmt.Errorf("listening for pod streams on %s: %w", host, err)
	}
	srv := &http.Server{Handler: a.streamHandler(), TLSConfig: a.cfg.StreamingTLS, ReadHeaderTimeout: 30 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx }}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(tls.NewListener(ln, a.cfg.StreamingTLS)); err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("pod streaming server stopped", "err", err)
		}
	}()
	stop := func() {
		srv.Close()
		<-done
	}
	a.log.Info("pod streaming server listening", "addr", ln.Addr().String())
	return ln.Addr().(*net.TCPAddr).Port, stop, nil
}

func (a *Agent) streamHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/containerLogs/{ns}/{pod}/{container}", a.serveLogs)
	mux.HandleFunc("/exec/{ns}/{pod}/{container}", a.serveExec)
	mux.HandleFunc("/attach/{ns}/{pod}/{container}", a.serveAttach)
	mux.HandleFunc("/portForward/{ns}/{pod}", a.servePortForward)
	if len(a.cfg.StreamingClients) == 0 {
		return mux
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The TLS config has verified the chain; the name says who it is.
		var name string
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			name = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		if !slices.Contains(a.cfg.StreamingClients, name) {
			// As the kubelet answers a client its authorizer refuses
			// (these paths are the nodes/proxy subresource).
			verb := "get"
			if r.Method != http.MethodGet {
				verb = "create"
			}
			a.log.Warn("refused a pod stream request: only the API server may make them", "user", name, "path", r.URL.Path, "remote", r.RemoteAddr)
			streamError(w, http.StatusForbidden, "Forbidden (user=%s, verb=%s, resource=nodes, subresource=proxy)", name, verb)
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func streamError(w http.ResponseWriter, code int, format string, args ...any) {
	http.Error(w, fmt.Sprintf(format, args...), code)
}

func (a *Agent) serveExec(w http.ResponseWriter, r *http.Request) {
	ns, pod, container := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		streamError(w, http.StatusBadRequest, "%v", err)
		return
	}
	cmd := r.URL.Query()["command"]
	if len(cmd) == 0 {
		streamError(w, http.StatusBadRequest, "exec: no command given")
		return
	}
	t, err := a.target(ns, pod, container)
	if err != nil {
		streamError(w, http.StatusNotFound, "%v", err)
		return
	}
	if su, ok := a.rt.(hwruntime.StreamingURLs); ok {
		u, err := su.ExecURL(r.Context(), t.proc, cmd, opts.Stdin, opts.Stdout, opts.Stderr, opts.TTY)
		a.proxyStream(w, r, u, err)
		return
	}
	remotecommand.ServeExec(w, r, execer{a}, ns+"/"+pod, "", container, cmd, opts,
		streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (a *Agent) serveAttach(w http.ResponseWriter, r *http.Request) {
	ns, pod, container := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	opts, err := remotecommand.NewOptions(r)
	if err != nil {
		streamError(w, http.StatusBadRequest, "%v", err)
		return
	}
	t, err := a.target(ns, pod, container)
	if err != nil {
		streamError(w, http.StatusNotFound, "%v", err)
		return
	}
	if su, ok := a.rt.(hwruntime.StreamingURLs); ok {
		u, err := su.AttachURL(r.Context(), t.proc, opts.Stdin, opts.Stdout, opts.Stderr, opts.TTY)
		a.proxyStream(w, r, u, err)
		return
	}
	remotecommand.ServeAttach(w, r, execer{a}, ns+"/"+pod, "", container, opts,
		streamIdleTimeout, streamCreationTimeout, remotecommand.SupportedStreamingProtocols)
}

func (a *Agent) servePortForward(w http.ResponseWriter, r *http.Request) {
	ns, pod := r.PathValue("ns"), r.PathValue("pod")
	p, err := a.pods.Pods(ns).Get(pod)
	if err != nil {
		streamError(w, http.StatusNotFound, "pod %s/%s is not on node %s", ns, pod, a.cfg.NodeName)
		return
	}
	opts, err := portforward.NewV4Options(r)
	if err != nil {
		streamError(w, http.StatusBadRequest, "%v", err)
		return
	}
	// Port-forward is the agent's own for every runtime: it dials the pod's
	// address on the bridge (containerd 1.6's forwarder, reached through
	// its stream URL, never connected the streams here).
	portforward.ServePortForward(w, r, forwarder{a}, ns+"/"+pod, string(p.UID), opts,
		streamIdleTimeout, streamCreationTimeout, portforward.SupportedProtocols)
}

// proxyStream hands an upgraded stream to the runtime's own streaming
// server (the URL it gave for this exec, attach or port-forward), as the
// kubelet does for CRI runtimes.
func (a *Agent) proxyStream(w http.ResponseWriter, r *http.Request, rawURL string, err error) {
	if err != nil {
		streamError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		streamError(w, http.StatusInternalServerError, "the runtime's stream URL %q: %v", rawURL, err)
		return
	}
	h := proxy.NewUpgradeAwareHandler(u, nil, false, true, streamResponder{a.log})
	h.ServeHTTP(w, r)
}

type streamResponder struct{ log *slog.Logger }

func (s streamResponder) Error(w http.ResponseWriter, _ *http.Request, err error) {
	s.log.Warn("proxying a pod stream to the runtime", "err", err)
	streamError(w, http.StatusInternalServerError, "%v", err)
}

// execer runs exec and attach for the streaming library.
type execer struct{ a *Agent }

func splitName(name string) (string, string) {
	ns, pod, _ := strings.Cut(name, "/")
	return ns, pod
}

func (e execer) ExecInContainer(ctx context.Context, name, _ string, container string, cmd []string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	ns, pod := splitName(name)
	var c hwruntime.Waiter
	var err error
	code := 0
	if tty {
		master, slave, perr := pty.Open()
		if perr != nil {
			return perr
		}
		defer master.Close()
		c, err = e.a.StartExec(ns, pod, container, cmd, slave, slave, slave, true)
		slave.Close()
		if err != nil {
			return err
		}
		go func() {
			for sz := range resize {
				pty.Setsize(master, &pty.Winsize{Rows: sz.Height, Cols: sz.Width})
			}
		}()
		if in != nil {
			go io.Copy(master, in)
		}
		outDone := make(chan struct{})
		go func() {
			if out != nil {
				io.Copy(out, master)
			} else {
				io.Copy(io.Discard, master)
			}
			close(outDone)
		}()
		code, err = c.Wait()
		select {
		case <-outDone:
		case <-time.After(time.Second):
		}
	} else {
		var stdin io.Reader
		if in != nil {
			// A pipe, so that the end of the client's stdin is the end of the command's.
			pr, pw, perr := os.Pipe()
			if perr != nil {
				return perr
			}
			go func() { io.Copy(pw, in); pw.Close() }()
			defer pr.Close()
			stdin = pr
		}
		var stdout, stderr io.Writer = io.Discard, io.Discard
		if out != nil {
			stdout = out
		}
		if errw != nil {
			stderr = errw
		}
		c, err = e.a.StartExec(ns, pod, container, cmd, stdin, stdout, stderr, false)
		if err != nil {
			return err
		}
		type result struct {
			code int
			err  error
		}
		done := make(chan result, 1)
		go func() { code, err := c.Wait(); done <- result{code, err} }()
		var res result
		select {
		case res = <-done:
		case <-ctx.Done():
			c.Kill()
			res = <-done
		}
		code, err = res.code, res.err
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return utilexec.CodeExitError{Err: fmt.Errorf("command terminated with exit code %d", code), Code: code}
	}
	return nil
}

func (e execer) AttachContainer(ctx context.Context, name, _ string, container string, in io.Reader, out, errw io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	ns, pod := splitName(name)
	t, err := e.a.target(ns, pod, container)
	if err != nil {
		return err
	}
	at, ok := t.proc.(hwruntime.Attacher)
	if !ok {
		return errors.New("this runtime cannot attach to containers")
	}
	var sizes chan hwruntime.TerminalSize
	if resize != nil {
		sizes = make(chan hwruntime.TerminalSize)
		go func() {
			defer close(sizes)
			for sz := range resize {
				select {
				case sizes <- hwruntime.TerminalSize{Width: sz.Width, Height: sz.Height}:
				case <-ctx.Done():
					return
				}
			}
		}()
	}
	var o, ew io.Writer
	if out != nil {
		o = out
	}
	if errw != nil {
		ew = errw
	}
	return at.Attach(ctx, in, o, ew, sizes)
}

// forwarder connects port-forward streams to the pod's address.
type forwarder struct{ a *Agent }

func (f forwarder) PortForward(ctx context.Context, name, uid string, port int32, stream io.ReadWriteCloser) error {
	ns, podName := splitName(name)
	defer stream.Close()
	p, err := f.a.pods.Pods(ns).Get(podName)
	if err != nil {
		return apierrors.NewNotFound(corev1Resource("pods"), podName)
	}
	ip := p.Status.PodIP
	if ip == "" {
		return fmt.Errorf("pod %s has no IP yet", name)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", net.JoinHostPort(ip, strconv.Itoa(int(port))))
	if err != nil {
		return fmt.Errorf("connecting to port %d of pod %s: %w", port, name, err)
	}
	defer conn.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(conn, stream); conn.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(stream, conn); done <- struct{}{} }()
	<-done
	return nil
}
