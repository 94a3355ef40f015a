// Package apiserver serves the Kubernetes REST API over HTTPS on top of
// internal/storage: discovery, the verbs (get, list, watch, create, update,
// patch, apply, delete, deletecollection), tables, OpenAPI, authentication.
// It is generic over the resources described in internal/registry.
package apiserver

import (
	"container/list"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/authorization/authorizer"

	"github.com/headway/headway/internal/apiserver/admission"
	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/storage"
)

// MaxRequestBodyBytes is kube-apiserver's limit on a request body (3 MiB).
const MaxRequestBodyBytes = 3 * 1024 * 1024

// Config is what the server needs.
type Config struct {
	Store     storage.Interface
	Scheme    *runtime.Scheme
	Resources []*registry.Resource
	Version   version.Info
	// Token is the admin bearer token. Requests carrying it, or a client
	// certificate the TLS layer verified against the CA, are authenticated.
	Token string
	// Authenticators are tried in order after the client certificate and
	// the admin token (service-account tokens, for example).
	Authenticators []Authenticator
	// APIAudiences are the audiences a token must name to authenticate to
	// the API (the service-account issuer's URL).
	APIAudiences []string
	// OIDC, when set, serves the service-account issuer's discovery
	// documents to authenticated users.
	OIDC *OIDCDiscovery
	// Authorizer decides whether an authenticated user may make a request;
	// nil allows every authenticated request. It also answers the access
	// reviews and authorizes impersonation.
	Authorizer authorizer.UnconditionalAuthorizer
	// RuleResolver lists what a user may do (SelfSubjectRulesReview); nil
	// answers everything without an Authorizer, and an incomplete empty
	// list with one.
	RuleResolver authorizer.RuleResolver
	// OpenAPI, when set, serves /openapi/v2 and /openapi/v3 (see package
	// openapi); it is built from the same resource table.
	OpenAPI http.Handler
	Logger  *slog.Logger
	// MinWatchTimeout is the shortest server-side watch duration when the
	// client gives none (kube-apiserver: 30 min, randomised up to double).
	MinWatchTimeout time.Duration
	// BookmarkInterval is how often a watch that asked for bookmarks gets one.
	BookmarkInterval time.Duration
	// WatchWriteTimeout is how long a watch response may take to hand one
	// batch of events to a client before the watch is closed (a client
	// that stopped reading; it re-watches or relists). Default 10 s.
	WatchWriteTimeout time.Duration
	// WatchFlushRate is how many flushes a second the watches served from
	// memory make together before they are paced (watchpace.go): 0 is
	// 1,000 per usable core, negative never paces.
	WatchFlushRate int
	// pace replaces the pacing WatchFlushRate gives (tests).
	pace *flushPace
	// AgentTransport reaches node agents for pod logs, exec, attach and
	// port-forward (TLS with the server's client certificate).
	AgentTransport *http.Transport
	// Limits bound connections, requests in flight and request timeouts
	// (zero fields: DefaultServingLimits).
	Limits ServingLimits
	// Admission is the chain of mutating and validating steps client writes
	// go through (see package admission); empty admits everything.
	Admission admission.Chain
	// Handlers serve further paths (outside /api and /apis), behind the
	// same authentication, limits and authorization as the API: the
	// node-join endpoint, for one.
	Handlers map[string]http.Handler
}

// Server is the API server.
type Server struct {
	cfg       Config
	log       *slog.Logger
	store     *recordingStore // cfg.Store, noting each prefix's newest write
	codecs    *codecs
	resources map[string]*resource // "group/version/plural"
	byGV      map[schema.GroupVersion][]*resource
	groups    []string // API groups in order, "" first
	versions  map[string][]string

	// bootstrapped: the caller has created the built-in objects
	// (SetReady); shuttingDown: Serve is stopping.
	bootstrapped atomic.Bool
	shuttingDown atomic.Bool
	checksMu     sync.Mutex
	extraChecks  []ReadyCheck

	inflight *inflight
	connsMu  sync.Mutex
	conns    *connLimiter

	crds *crdServing

	watchers sync.WaitGroup

	// warm runs managedFields tracking on grown stacks (warmstack.go).
	warm *warmStacks
	// nsTerminating: checkNamespace's decoded namespaces.
	nsTerminating nsStates
	// openWatches counts the watch responses being served.
	openWatches atomic.Int64
	// cache holds built-in resources' objects for lists and watches that
	// may be served from memory (listcache.go).
	cache *objectCache
	// pace spreads the cached watches' flushes under load (watchpace.go).
	pace *flushPace
}

// New builds a server from its config.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Scheme == nil {
		return nil, errors.New("apiserver: Store and Scheme are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MinWatchTimeout == 0 {
		cfg.MinWatchTimeout = 30 * time.Minute
	}
	if cfg.BookmarkInterval == 0 {
		cfg.BookmarkInterval = time.Minute
	}
	if cfg.WatchWriteTimeout == 0 {
		cfg.WatchWriteTimeout = 10 * time.Second
	}
	limitJSONPatchCopies()
	cfg.Limits.defaults()
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		store:     &recordingStore{Interface: cfg.Store},
		codecs:    newCodecs(cfg.Scheme),
		resources: map[string]*resource{},
		byGV:      map[schema.GroupVersion][]*resource{},
		versions:  map[string][]string{},
		inflight:  newInflight(cfg.Limits),
		warm:      newWarmStacks(),
		pace:      newFlushPace(cfg.WatchFlushRate),
	}
	if cfg.pace != nil {
		s.pace = cfg.pace
	}
	s.cache = newObjectCache(s)
	for _, reg := range append(cfg.Resources[:len(cfg.Resources):len(cfg.Resources)], s.reviewResources()...) {
		res, err := newResource(s, reg)
		if err != nil {
			return nil, err
		}
		gv := reg.GroupVersion
		s.resources[gv.Group+"/"+gv.Version+"/"+reg.Plural] = res
		if _, seen := s.byGV[gv]; !seen {
			if _, seenGroup := s.versions[gv.Group]; !seenGroup {
				s.groups = append(s.groups, gv.Group)
			}
			s.versions[gv.Group] = append(s.versions[gv.Group], gv.Version)
		}
		s.byGV[gv] = append(s.byGV[gv], res)
	}
	s.crds = newCRDServing(s)
	if err := s.crds.sync(context.Background()); err != nil {
		return nil, fmt.Errorf("restoring custom resource definitions: %w", err)
	}
	for _, res := range s.resources {
		if res.reg.Restore == nil {
			continue
		}
		if err := res.restore(context.Background()); err != nil {
			return nil, fmt.Errorf("restoring %s: %w", res.reg.Plural, err)
		}
	}
	return s, nil
}

// restore feeds every stored object of the resource to its Restore hook.
func (res *resource) restore(ctx context.Context) error {
	start := ""
	for {
		page, err := res.s.store.List(ctx, res.prefix, storage.ListOptions{Limit: 1000, StartKey: start})
		if err != nil {
			return err
		}
		for _, kv := range page.Items {
			obj, err := res.decode(kv)
			if err != nil {
				return err
			}
			if err := res.reg.Restore(ctx, obj); err != nil {
				return err
			}
		}
		if !page.More || len(page.Items) == 0 {
			return nil
		}
		start = page.Items[len(page.Items)-1].Key + "\x00"
	}
}

// Handler returns the server's HTTP handler (authentication included).
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", s.health)
	mux.HandleFunc("/healthz/", s.health)
	mux.HandleFunc("/livez", s.health)
	mux.HandleFunc("/livez/", s.health)
	mux.HandleFunc("/readyz", s.readyz)
	mux.HandleFunc("/readyz/", s.readyz)
	mux.HandleFunc("/version", s.serveVersion)
	mux.HandleFunc("/version/", s.serveVersion)
	mux.HandleFunc("/api", s.serveDiscoveryAPI)
	mux.HandleFunc("/api/", s.serveAPI)
	mux.HandleFunc("/apis", s.serveDiscoveryAPIs)
	mux.HandleFunc("/apis/", s.serveAPI)
	mux.Handle("/metrics", metricsHandler())
	mux.HandleFunc("/openapi/v2", s.serveOpenAPI)
	mux.HandleFunc("/openapi/v3", s.serveOpenAPI)
	mux.HandleFunc("/openapi/v3/", s.serveOpenAPI)
	mux.HandleFunc(OpenIDConfigurationPath, s.serveOIDC)
	mux.HandleFunc(JWKSPath, s.serveOIDC)
	for path, h := range s.cfg.Handlers {
		mux.Handle(path, h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/" {
			s.serveRootPaths(w, r)
			return
		}
		s.writeError(w, r, notFoundResource())
	})
	// As kube-apiserver orders its filters: authentication, the in-flight
	// limit, impersonation, then authorization.
	return s.recoverPanics(s.authenticate(s.limitInflight(s.impersonate(s.authorize(s.limitBody(mux))))))
}

// recoverPanics turns a handler panic into a logged 500 Status.
func (s *Server) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				stack := debug.Stack()
				if wp, ok := v.(*warmPanic); ok {
					v, stack = wp.value, wp.stack
				}
				if v == http.ErrAbortHandler {
					panic(v)
				}
				s.log.Error("handler panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(stack))
				s.writeError(w, r, fmt.Errorf("internal error: %v", v))
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// anonymousPaths may be read without credentials, as on kube-apiserver.
func anonymousPath(p string) bool {
	switch p {
	case "/healthz", "/livez", "/readyz", "/version":
		return true
	}
	return strings.HasPrefix(p, "/healthz/") || strings.HasPrefix(p, "/livez/") || strings.HasPrefix(p, "/readyz/")
}

// limitBody rejects request bodies over MaxRequestBodyBytes with 413.
func (s *Server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > MaxRequestBodyBytes {
			s.writeError(w, r, tooLarge())
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, MaxRequestBodyBytes)
			s.bodyDeadline(w, r)
		}
		next.ServeHTTP(w, r)
	})
}

func tooLarge() error {
	return apierrors.NewRequestEntityTooLargeError(fmt.Sprintf("limit is %d", MaxRequestBodyBytes))
}

// readBody reads a request body within the limit.
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	data, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, tooLarge()
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, apierrors.NewTimeoutError(fmt.Sprintf("the request body did not arrive within %v", bodyTimeoutOf(r)), 0)
		}
		return nil, badRequest("unable to read request body: %v", err)
	}
	return data, nil
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	io.WriteString(w, "ok")
}

func (s *Server) serveVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, s.cfg.Version)
}

func (s *Server) serveRootPaths(w http.ResponseWriter, r *http.Request) {
	paths := []string{"/api", "/api/v1", "/apis", "/healthz", "/livez", "/openapi/v2", "/openapi/v3", "/readyz", "/version"}
	idx := s.index()
	for _, g := range idx.groups {
		if g == "" {
			continue
		}
		paths = append(paths, "/apis/"+g)
		for _, v := range idx.versions[g] {
			paths = append(paths, "/apis/"+g+"/"+v)
		}
	}
	writeJSON(w, http.StatusOK, metav1.RootPaths{Paths: paths})
}

// SetReady marks the server bootstrapped (the /readyz check "bootstrap"
// passes) once the caller has created the built-in objects.
func (s *Server) SetReady(ready bool) { s.bootstrapped.Store(ready) }

// Serve serves HTTPS on ln until ctx ends, then shuts down gracefully
// (open watches are ended). Connections are capped and time out as
// Config.Limits says.
func (s *Server) Serve(ctx context.Context, ln net.Listener, tlsConfig *tls.Config) error {
	lim := s.cfg.Limits
	srv := &http.Server{
		Handler:           s.Handler(),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    1 << 20,
		ErrorLog:          log.New(serverLog{s.log}, "", 0),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	// Connections are tracked with or without a cap: a stop closes the
	// idle ones (below).
	cl := &connLimiter{max: lim.MaxConnections, conns: list.New()}
	s.connsMu.Lock()
	s.conns = cl
	s.connsMu.Unlock()
	ln = &limitListener{Listener: ln, l: cl}
	srv.ConnState = cl.setState
	if tlsConfig != nil {
		if err := serveHTTP2(srv); err != nil {
			return err
		}
	}
	s.cache.serve(ctx)
	s.watchers.Add(1)
	go func() {
		defer s.watchers.Done()
		s.crds.run(ctx)
	}()
	s.warm.start(ctx, warmWorkers(), &s.watchers)
	errc := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		s.shuttingDown.Store(true)
		return err
	case <-ctx.Done():
	}
	s.shuttingDown.Store(true)
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(shutdownCtx) }()
	// Shutdown waits for every HTTP/2 connection to go away, and the HTTP/2
	// server gives an idle one a second after its GOAWAY before it closes
	// it: close the idle ones as they become idle, so a stop waits for the
	// requests in flight only.
	tick := time.NewTicker(5 * time.Millisecond)
	var err error
wait:
	for {
		select {
		case err = <-shut:
			break wait
		case <-tick.C:
			cl.closeIdle()
		}
	}
	tick.Stop()
	if err != nil {
		srv.Close()
	}
	s.watchers.Wait()
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serveAPI dispatches /api/... and /apis/... paths.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	info, ok := parseRequestInfo(r)
	if !ok {
		s.serveDiscoveryPath(w, r)
		return
	}
	res := s.lookup(info.Group, info.Version, info.Resource)
	if res == nil {
		s.writeError(w, r, notFoundResource())
		return
	}
	if res.reg.Namespaced && info.Namespace == "" && info.Name != "" {
		// A named namespaced object needs a namespace in its path.
		s.writeError(w, r, notFoundResource())
		return
	}
	if !res.reg.Namespaced && info.Namespace != "" && info.Resource != "namespaces" {
		s.writeError(w, r, notFoundResource())
		return
	}
	instrument(w, info, func(w http.ResponseWriter) { s.serveResource(res, w, r, info) })
}

// TLSConfig is the serving TLS configuration: the server certificate, and
// client certificates verified against the CA when a client offers one.
func TLSConfig(cert tls.Certificate, clientCAs *x509.CertPool) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.VerifyClientCertIfGiven,
		ClientCAs:    clientCAs,
		MinVersion:   tls.VersionTLS12,
		NextProtos:   []string{"h2", "http/1.1"},
	}
}
