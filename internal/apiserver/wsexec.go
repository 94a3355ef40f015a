package apiserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/httpstream/spdy"
	"k8s.io/client-go/tools/remotecommand"
	utilexec "k8s.io/client-go/util/exec"
	"k8s.io/streaming/pkg/httpstream/wsstream"
)

// kubectl 1.30+ runs exec and attach over WebSocket (v5.channel.k8s.io);
// the agent speaks SPDY (v4.channel.k8s.io). translateExec accepts the
// WebSocket from the client and runs the stream to the agent over SPDY,
// as kube-apiserver's stream translator does.
const v5Protocol = "v5.channel.k8s.io"

// Channels of the v5 protocol.
const (
	chStdin = iota
	chStdout
	chStderr
	chError
	chResize
)

// wantsV5 reports whether a request is a WebSocket upgrade offering v5.
func wantsV5(r *http.Request) bool {
	return wsstream.IsWebSocketRequestWithStreamCloseProtocol(r)
}

// sizeQueue feeds terminal sizes read from the resize channel.
type sizeQueue struct {
	ch chan remotecommand.TerminalSize
}

func (q *sizeQueue) Next() *remotecommand.TerminalSize {
	sz, ok := <-q.ch
	if !ok {
		return nil
	}
	return &sz
}

func (res *resource) translateExec(w http.ResponseWriter, r *http.Request, loc *url.URL, q url.Values) error {
	stdin, stdout, stderr, tty := q.Get("input") == "1", q.Get("output") == "1", q.Get("error") == "1", q.Get("tty") == "1"
	if tty {
		stderr = false
	}
	channel := func(on bool, c wsstream.ChannelType) wsstream.ChannelType {
		if on {
			return c
		}
		return wsstream.IgnoreChannel
	}
	channels := []wsstream.ChannelType{
		channel(stdin, wsstream.ReadChannel),
		channel(stdout, wsstream.WriteChannel),
		channel(stderr, wsstream.WriteChannel),
		wsstream.WriteChannel,
		channel(tty, wsstream.ReadChannel),
	}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		v5Protocol: {Binary: true, Channels: channels},
	})
	rt, err := spdy.NewRoundTripperWithConfig(spdy.RoundTripperConfig{TLS: res.s.cfg.AgentTransport.TLSClientConfig})
	if err != nil {
		return err
	}
	exec, err := remotecommand.NewSPDYExecutorForTransports(rt, rt, http.MethodPost, loc)
	if err != nil {
		return err
	}
	_, streams, err := conn.Open(w, r)
	if err != nil {
		// The handshake failed; the response has been written.
		res.s.log.Debug("exec WebSocket handshake failed", "err", err)
		return nil
	}
	defer conn.Close()

	opts := remotecommand.StreamOptions{Tty: tty}
	if stdin {
		opts.Stdin = streams[chStdin]
	}
	if stdout {
		opts.Stdout = streams[chStdout]
	}
	if stderr {
		opts.Stderr = streams[chStderr]
	}
	if tty {
		sizes := &sizeQueue{ch: make(chan remotecommand.TerminalSize, 1)}
		opts.TerminalSizeQueue = sizes
		go func() {
			defer close(sizes.ch)
			dec := json.NewDecoder(streams[chResize])
			for {
				var sz remotecommand.TerminalSize
				if err := dec.Decode(&sz); err != nil {
					return
				}
				select {
				case sizes.ch <- sz:
				case <-r.Context().Done():
					return
				}
			}
		}()
	}
	err = exec.StreamWithContext(r.Context(), opts)
	writeStreamStatus(streams[chError], err)
	return nil
}

// writeStreamStatus writes the v5 error channel's final Status.
func writeStreamStatus(w io.Writer, err error) {
	st := metav1.Status{Status: metav1.StatusSuccess}
	var ce utilexec.CodeExitError
	switch {
	case err == nil:
	case errors.As(err, &ce):
		st = metav1.Status{Status: metav1.StatusFailure, Reason: "NonZeroExitCode",
			Message: fmt.Sprintf("command terminated with non-zero exit code: %v", err),
			Details: &metav1.StatusDetails{Causes: []metav1.StatusCause{{Type: "ExitCode", Message: fmt.Sprint(ce.Code)}}}}
	default:
		st = apierrors.NewInternalError(err).ErrStatus
	}
	st.Kind, st.APIVersion = "Status", "v1"
	data, _ := json.Marshal(st)
	w.Write(data)
}
