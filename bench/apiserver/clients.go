package main

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

const (
	contentProtobuf = "application/vnd.kubernetes.protobuf"
	contentJSON     = "application/json"
)

func newErrorLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// clients makes client-go clientsets on the admin config with no client-side
// rate limit, each on its own HTTP/2 transport unless shared is set.
type clients struct {
	base   *rest.Config
	shared bool

	mu         sync.Mutex
	transports []*http.Transport
	sharedRT   *http.Transport
}

func newClients(base *rest.Config, shared bool) *clients {
	return &clients{base: rest.CopyConfig(base), shared: shared}
}

// transport returns an HTTP/2-capable transport trusting the cluster CA. No
// proxy: the traffic stays on 127.0.0.1.
func (c *clients) transport(forceOwn bool) (*http.Transport, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shared && !forceOwn && c.sharedRT != nil {
		return c.sharedRT, nil
	}
	tlsConf, err := rest.TLSConfigFor(c.base)
	if err != nil {
		return nil, err
	}
	t := &http.Transport{
		Proxy:               nil,
		TLSClientConfig:     tlsConf,
		ForceAttemptHTTP2:   true,
		MaxIdleConnsPerHost: 128,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
	}
	c.transports = append(c.transports, t)
	if c.shared && !forceOwn {
		c.sharedRT = t
	}
	return t, nil
}

// config returns a rest.Config speaking contentType (protobuf falls back to
// JSON for anything without a protobuf form), with no rate limit.
func (c *clients) config(contentType string, forceOwn bool) (*rest.Config, error) {
	t, err := c.transport(forceOwn)
	if err != nil {
		return nil, err
	}
	cfg := rest.CopyConfig(c.base)
	cfg.TLSClientConfig = rest.TLSClientConfig{} // the transport carries TLS
	cfg.Transport = t
	cfg.QPS = -1
	cfg.Burst = 0
	cfg.RateLimiter = nil
	cfg.UserAgent = "headway-bench"
	cfg.ContentType = contentType
	if contentType == contentProtobuf {
		cfg.AcceptContentTypes = contentProtobuf + "," + contentJSON
	} else {
		cfg.AcceptContentTypes = contentType
	}
	return cfg, nil
}

// clientset returns one client (its own connection unless shared).
func (c *clients) clientset(contentType string) (kubernetes.Interface, error) {
	cfg, err := c.config(contentType, false)
	if err != nil {
		return nil, err
	}
	return kubernetes.NewForConfig(cfg)
}

// clientsets returns n clients.
func (c *clients) clientsets(n int, contentType string) ([]kubernetes.Interface, error) {
	out := make([]kubernetes.Interface, n)
	for i := range out {
		cs, err := c.clientset(contentType)
		if err != nil {
			return nil, err
		}
		out[i] = cs
	}
	return out, nil
}

// sharedClientsets returns n clients on one new transport (one HTTP/2
// connection), whatever the default.
func (c *clients) sharedClientsets(n int, contentType string) ([]kubernetes.Interface, error) {
	cfg, err := c.config(contentType, true)
	if err != nil {
		return nil, err
	}
	out := make([]kubernetes.Interface, n)
	for i := range out {
		cs, err := kubernetes.NewForConfig(rest.CopyConfig(cfg))
		if err != nil {
			return nil, err
		}
		out[i] = cs
	}
	return out, nil
}

// protocol reports the HTTP version a client transport negotiates with url.
func (c *clients) protocol(ctx context.Context, url string) (string, error) {
	t, err := c.transport(true)
	if err != nil {
		return "", err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := t.RoundTrip(req)
	if err != nil {
		return "", err
	}
	resp.Body.Close()
	return resp.Proto, nil
}

func (c *clients) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range c.transports {
		t.CloseIdleConnections()
	}
}
