package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"
)

// apiServers are the API servers an agent may use (`headway agent --server
// URL,URL`), all serving one cluster. The agent talks to one at a time and
// moves to the next when a connection to it fails, as k3s's agent load
// balancer does, so a node keeps its Lease and pods when the server it used
// dies.
type apiServers struct {
	urls  []string // https://host:port
	hosts []string // host:port
	log   *slog.Logger

	mu      sync.Mutex
	current int
}

// parseServers checks --server: one https URL or several, comma-separated.
func parseServers(flag string, log *slog.Logger) (*apiServers, error) {
	s := &apiServers{log: log}
	for _, raw := range strings.Split(flag, ",") {
		raw = strings.TrimRight(strings.TrimSpace(raw), "/")
		u, err := url.Parse(raw)
		if raw == "" || err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			return nil, fmt.Errorf("--server %q: want the API server's https URL, e.g. https://198.18.254.1:6443, or several separated by commas", flag)
		}
		host := u.Host
		if u.Port() == "" {
			host = net.JoinHostPort(u.Hostname(), "443")
		}
		s.urls, s.hosts = append(s.urls, raw), append(s.hosts, host)
	}
	return s, nil
}

// first is the first server's URL: the one rest clients name (the dialer
// decides where connections really go).
func (s *apiServers) first() string { return s.urls[0] }

// serverName is the name the agent checks the servers' certificates
// against: with one server, its own (from its URL); with several, the name
// every server's certificate holds, since a connection meant for one may
// reach another.
func (s *apiServers) serverName() string {
	if len(s.urls) == 1 {
		return ""
	}
	return "kubernetes"
}

// order is the servers to try, the one in use first.
func (s *apiServers) order() []int {
	s.mu.Lock()
	cur := s.current
	s.mu.Unlock()
	out := make([]int, 0, len(s.hosts))
	for i := range s.hosts {
		out = append(out, (cur+i)%len(s.hosts))
	}
	return out
}

func (s *apiServers) use(i int) {
	s.mu.Lock()
	prev := s.current
	s.current = i
	s.mu.Unlock()
	if prev != i {
		s.log.Warn("API server changed: the one in use did not answer", "from", s.urls[prev], "to", s.urls[i])
	}
}

// dial connects to the server in use, else to the next that answers.
func (s *apiServers) dial(ctx context.Context, network, _ string) (net.Conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	var errs []error
	for _, i := range s.order() {
		c, err := d.DialContext(ctx, network, s.hosts[i])
		if err == nil {
			s.use(i)
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("no API server of --server %s answers: %w", strings.Join(s.urls, ","), errors.Join(errs...))
}
