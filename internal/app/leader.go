package app

import (
	"context"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/uuid"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"github.com/headway/headway/internal/auth/rbac"
)

// The controllers' Lease: kube-controller-manager's, which the default
// RBAC policy lets system:kube-controller-manager get and update.
const (
	LeaderLeaseNamespace = "kube-system"
	LeaderLeaseName      = "kube-controller-manager"
)

// Leader election times: kube-controller-manager's defaults are 15s, 10s
// and 2s; these are shorter so that the controllers resume on another
// server within about 11s of the leader dying: a follower sees the Lease
// renewed at its retries (every 1-1.2s), takes it 8s after the last
// renewal it saw, at its next retry.
const (
	leaseDuration = 8 * time.Second
	renewDeadline = 5 * time.Second
	retryPeriod   = 1 * time.Second
)

// leaderIdentity names this server in the Lease: the host name and a
// random suffix, as kube-controller-manager's.
func leaderIdentity() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "headway"
	}
	return host + "_" + string(uuid.NewUUID())
}

// whileLeading returns a background function that campaigns for the
// controllers' Lease and, while this server holds it, runs what start
// builds (built anew for every term, since informers cannot be restarted).
// A server that loses the Lease stops them and campaigns again; when ctx
// ends, the Lease is released so that another server takes over at once.
func whileLeading(a *api, id string, log *slog.Logger, start func(ctx context.Context) (func(context.Context), error)) (func(context.Context), error) {
	client, _, err := a.clientFor(rbac.ControllerManagerUser)
	if err != nil {
		return nil, err
	}
	log = log.With("component", "leader-election", "identity", id, "lease", LeaderLeaseNamespace+"/"+LeaderLeaseName)
	return func(ctx context.Context) { campaign(ctx, client, id, log, start) }, nil
}

// heldLock notes when this server took the Lease: then the elector has
// started (or is about to start) OnStartedLeading.
type heldLock struct {
	resourcelock.Interface
	acquired atomic.Bool
}

func (l *heldLock) Create(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Create(ctx, r)
	if err == nil && r.HolderIdentity == l.Identity() {
		l.acquired.Store(true)
	}
	return err
}

func (l *heldLock) Update(ctx context.Context, r resourcelock.LeaderElectionRecord) error {
	err := l.Interface.Update(ctx, r)
	if err == nil && r.HolderIdentity == l.Identity() {
		l.acquired.Store(true)
	}
	return err
}

func campaign(ctx context.Context, client kubernetes.Interface, id string, log *slog.Logger, start func(ctx context.Context) (func(context.Context), error)) {
	log.Info("campaigning for the controllers' lease")
	for ctx.Err() == nil {
		done := make(chan struct{})
		lock := &heldLock{Interface: &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: LeaderLeaseNamespace, Name: LeaderLeaseName},
			Client:     client.CoordinationV1(),
			LockConfig: resourcelock.ResourceLockConfig{Identity: id},
		}}
		le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
			Lock:            lock,
			LeaseDuration:   leaseDuration,
			RenewDeadline:   renewDeadline,
			RetryPeriod:     retryPeriod,
			ReleaseOnCancel: true,
			Name:            LeaderLeaseName,
			Callbacks: leaderelection.LeaderCallbacks{
				OnStartedLeading: func(ctx context.Context) {
					defer close(done)
					if ctx.Err() != nil {
						return
					}
					log.Info("leading: starting the controllers")
					run, err := start(ctx)
					if err != nil {
						log.Error("starting the controllers", "err", err)
						return
					}
					run(ctx)
				},
				OnStoppedLeading: func() {},
				OnNewLeader: func(leader string) {
					if leader != id {
						log.Info("another server leads the controllers", "leader", leader)
					}
				},
			},
		})
		if err != nil {
			log.Error("leader election misconfigured", "err", err)
			return
		}
		le.Run(ctx)
		if lock.acquired.Load() {
			<-done // the controllers have stopped
			if ctx.Err() == nil {
				log.Warn("lost the controllers' lease: controllers stopped; campaigning again")
			}
		}
	}
}
