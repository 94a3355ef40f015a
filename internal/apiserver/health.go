package apiserver

// /readyz as kube-apiserver serves it: named checks, each listed with
// ?verbose ("[+]ping ok" ... "readyz check passed"), every one listed on
// failure (500, reasons withheld: the endpoint is public; they are
// logged), one alone at /readyz/<name>, and ?exclude=<name>.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/headway/headway/internal/storage"
)

// ReadyCheck is one named readiness check; Check returns why it is not
// ready, or nil.
type ReadyCheck struct {
	Name  string
	Check func(*http.Request) error
}

// AddReadyCheck adds a check /readyz runs after the server's own (ping,
// log, store, bootstrap, shutdown). Safe to call while serving.
func (s *Server) AddReadyCheck(c ReadyCheck) {
	s.checksMu.Lock()
	defer s.checksMu.Unlock()
	s.extraChecks = append(s.extraChecks, c)
}

func (s *Server) readyChecks() []ReadyCheck {
	checks := []ReadyCheck{
		{Name: "ping", Check: func(*http.Request) error { return nil }},
		{Name: "log", Check: func(*http.Request) error { return nil }},
		{Name: "store", Check: s.checkStore},
		{Name: "bootstrap", Check: func(*http.Request) error {
			if !s.bootstrapped.Load() {
				return errors.New("the built-in objects are not created yet")
			}
			return nil
		}},
		{Name: "shutdown", Check: func(*http.Request) error {
			if s.shuttingDown.Load() {
				return errors.New("the server is shutting down")
			}
			return nil
		}},
	}
	s.checksMu.Lock()
	defer s.checksMu.Unlock()
	return append(checks, s.extraChecks...)
}

// checkStore reads a key that does not exist: the store answers.
func (s *Server) checkStore(r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	_, err := s.store.Get(ctx, "/headway/readyz")
	if err == nil || errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	checks := s.readyChecks()
	if name := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/readyz"), "/"); name != "" {
		for _, c := range checks {
			if c.Name == name {
				if err := c.Check(r); err != nil {
					s.log.Info("readyz check failed", "check", c.Name, "err", err)
					http.Error(w, fmt.Sprintf("internal server error: %v", err), http.StatusInternalServerError)
					return
				}
				s.health(w, r)
				return
			}
		}
		http.NotFound(w, r)
		return
	}
	excluded := map[string]bool{}
	for _, e := range r.URL.Query()["exclude"] {
		for _, n := range strings.Split(e, ",") {
			if n = strings.TrimSpace(n); n != "" {
				excluded[n] = true
			}
		}
	}
	var out bytes.Buffer
	var failed []string
	for _, c := range checks {
		if excluded[c.Name] {
			delete(excluded, c.Name)
			fmt.Fprintf(&out, "[+]%s excluded: ok\n", c.Name)
			continue
		}
		if err := c.Check(r); err != nil {
			fmt.Fprintf(&out, "[-]%s failed: reason withheld\n", c.Name)
			s.log.Info("readyz check failed", "check", c.Name, "err", err)
			failed = append(failed, c.Name)
			continue
		}
		fmt.Fprintf(&out, "[+]%s ok\n", c.Name)
	}
	if len(excluded) > 0 {
		var names []string
		for n := range excluded {
			names = append(names, fmt.Sprintf("%q", n))
		}
		fmt.Fprintf(&out, "warn: some health checks cannot be excluded: no matches for %s\n", strings.Join(names, ","))
	}
	if len(failed) > 0 {
		http.Error(w, out.String()+"readyz check failed", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if _, verbose := r.URL.Query()["verbose"]; !verbose {
		fmt.Fprint(w, "ok")
		return
	}
	out.WriteTo(w)
	fmt.Fprint(w, "readyz check passed\n")
}
