// Package app turns flags into a running Headway: it parses them once into
// a Config, opens the store, starts the API server, the controllers and the
// node (Service proxy, cluster DNS, node agent), and writes the kubeconfig.
// It is the only package that knows every component.
package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"k8s.io/client-go/rest"

	"github.com/headway/headway/internal/agent"
	"github.com/headway/headway/internal/apiserver"
	"github.com/headway/headway/internal/pki"
	"github.com/headway/headway/internal/storage"
	"github.com/headway/headway/internal/storage/bolt"
	"github.com/headway/headway/internal/storage/memory"
)

// Running is a started server.
type Running struct {
	APIServer  *apiserver.Server
	Store      storage.Interface
	PKI        *pki.Bundle
	URL        string
	Kubeconfig string
	// RestConfig authenticates as the admin.
	RestConfig *rest.Config
	// StartedIn is the time from Start to ready.
	StartedIn time.Duration
	// StartConnections is how many connections the API accepted before
	// it was ready: its own clients' (one, their shared HTTP/2
	// connection, each made with a TLS handshake).
	StartConnections int64
	// DNSAddr is where the cluster DNS answers (UDP and TCP, ip:port);
	// empty when it is not running.
	DNSAddr string
	// DNSSynced is closed once the cluster DNS has listed the cluster and
	// answers from it (nil when it does not run).
	DNSSynced <-chan struct{}
	// Agent is the node agent (nil with --runtime none).
	Agent *agent.Agent
	// LeaderIdentity is this server's holder identity in the controllers'
	// Lease (LeaderLeaseNamespace/LeaderLeaseName) when it campaigns for
	// it (a shared store); empty when it runs them alone.
	LeaderIdentity string

	done chan error
}

// Wait blocks until the server has stopped (its context ended) and returns
// why it stopped.
func (r *Running) Wait() error { return <-r.done }

// Start starts the server and returns once it is ready. It runs until ctx
// ends: open the store, start the API, then the controllers and the node.
func Start(ctx context.Context, o Options) (*Running, error) {
	start := time.Now()
	steps := newPhases(start)
	cfg, err := o.Config()
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	steps.done("config")
	store, err := openStore(cfg)
	if err != nil {
		return nil, err
	}
	steps.done("store")
	a, err := startAPI(ctx, cfg, store, log, steps)
	if err != nil {
		store.Close()
		return nil, err
	}
	fail := func(err error) (*Running, error) {
		a.stop()
		store.Close()
		return nil, err
	}
	background := []func(context.Context){func(ctx context.Context) {
		storage.RunCompactor(ctx, store, 5*time.Minute, 100000)
	}}
	if b, ok := store.(*bolt.Store); ok && cfg.BackupInterval > 0 {
		background = append(background, func(ctx context.Context) {
			b.BackupEvery(ctx, BackupDir(cfg.DataDir), cfg.BackupInterval, cfg.BackupKeep, log.With("component", "store"))
		})
	}
	// The system Services' keeper and the controllers run on one server
	// at a time: with a shared store (etcd) on the one holding the
	// controllers' Lease; alone (bolt, memory) at once.
	leaderOnly := func(ctx context.Context) (func(context.Context), error) {
		runs := []func(context.Context){systemServices(cfg, a, log)}
		if !cfg.NoControllers {
			run, err := newControllers(ctx, cfg, a, log)
			if err != nil {
				return nil, err
			}
			runs = append(runs, run)
		}
		return func(ctx context.Context) {
			var wg sync.WaitGroup
			for _, run := range runs {
				wg.Add(1)
				go func() { defer wg.Done(); run(ctx) }()
			}
			wg.Wait()
		}, nil
	}
	var identity string
	var controllers func(context.Context)
	if cfg.Store == "etcd" {
		identity = leaderIdentity()
		if controllers, err = whileLeading(a, identity, log, leaderOnly); err != nil {
			return fail(err)
		}
	} else if controllers, err = leaderOnly(ctx); err != nil {
		return fail(err)
	}
	steps.done("controllers")
	n, err := startNode(cfg, a, log)
	if err != nil {
		return fail(err)
	}
	// The node's components (the DNS among them) start before the
	// controllers, whose informers' first lists are the bulk of the work
	// right after the start.
	background = append(background, n.run...)
	background = append(background, controllers)

	r := &Running{
		Agent: n.agent, DNSAddr: n.dnsAddr, DNSSynced: n.dnsSynced, LeaderIdentity: identity,
		APIServer: a.srv, Store: store, PKI: a.bundle, URL: a.url, Kubeconfig: a.kubeconfig,
		RestConfig: a.restConfig, StartedIn: time.Since(start), StartConnections: a.startConnections, done: make(chan error, 1),
	}
	go r.run(ctx, a, background)
	steps.done("node")
	steps.log(log, "connections", a.startConnections)
	log.Info("headway is ready", "api", a.url, "kubeconfig", a.kubeconfig, "startup", r.StartedIn.Round(time.Millisecond),
		"try", "headway kubectl get namespaces (or: export KUBECONFIG="+a.kubeconfig+")")
	return r, nil
}

// StorePath is the bolt store file in a data dir.
func StorePath(dataDir string) string { return filepath.Join(dataDir, "headway.db") }

// BackupDir is where the server keeps copies of the store.
func BackupDir(dataDir string) string { return filepath.Join(dataDir, "backups") }

// openStore makes the data dir and opens the state store in it.
func openStore(cfg Config) (storage.Interface, error) {
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating data dir %s: %w", cfg.DataDir, err)
	}
	switch cfg.Store {
	case "memory":
		return memory.New(), nil
	case "etcd":
		return openEtcd(cfg.Etcd)
	}
	b, err := bolt.Open(StorePath(cfg.DataDir), bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("opening the store: %w", err)
	}
	if n := b.Replayed(); n > 0 {
		cfg.Logger.Info("store: committed the writes the write-ahead log held after the last stop into the file", "writes", n, "file", b.Path(), "revision", b.Revision())
	}
	return b, nil
}

// run runs the background functions until ctx ends or the API server
// fails, then stops them, the API server and the store, in that order, and
// says why through Wait.
func (r *Running) run(ctx context.Context, a *api, background []func(context.Context)) {
	bgCtx, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	bgDone := make(chan struct{}, len(background))
	for _, fn := range background {
		go func() { fn(bgCtx); bgDone <- struct{}{} }()
	}
	var err error
	served := false
	select {
	case <-ctx.Done():
	case err = <-a.serveErr:
		served = true
	}
	stopBG()
	for range background {
		<-bgDone
	}
	// The API server's stop closes our own idle client connections with
	// everyone's (apiserver.Server.Serve).
	a.stopServe()
	if !served {
		if e := <-a.serveErr; err == nil {
			err = e
		}
	}
	if a.rbacInformers != nil {
		a.rbacInformers.Shutdown()
	}
	if e := r.Store.Close(); err == nil {
		err = e
	}
	r.done <- err
}
