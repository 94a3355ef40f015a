// Command leader is the in-cluster client the Kubernetes documents
// describe, run as a pod: it finds the API with rest.InClusterConfig (the
// pod's KUBERNETES_SERVICE_HOST/PORT, its mounted service-account token
// and ca.crt), lists the pods of its namespace, and takes part in a
// Lease-based leader election (k8s.io/client-go/tools/leaderelection) with
// the other replicas, as Patroni-style databases and operators do: one
// leader at a time, and another replica takes over when the leader's pod
// goes away.
//
// Its identity is $POD_NAME (set it from the downward API), else the host
// name. It logs one line per event that matters (JSON, to stderr):
// "listed pods", "started leading", "new leader", "stopped leading".
//
// leader.yaml runs two replicas with a ServiceAccount, a Role allowing
// exactly what the program does (list pods, get/create/update its Lease)
// and a RoleBinding. With the process runtime, build it first where the
// manifest's command points:
//
//	go build -o /tmp/headway-leader ./examples/leader
//	headway kubectl apply -f examples/leader/leader.yaml
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

const namespaceFile = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"

func main() {
	log := slog.New(slog.NewJSONHandler(os.Stderr, nil))
	if err := run(log); err != nil {
		log.Error("leader example failed", "err", err)
		os.Exit(1)
	}
}

func run(log *slog.Logger) error {
	lease := flag.String("lease", "leader-example", "name of the Lease (coordination.k8s.io/v1) the replicas contend for")
	namespace := flag.String("namespace", "", "namespace of the Lease and of the pods listed (default: the pod's own, from its service-account volume)")
	id := flag.String("id", os.Getenv("POD_NAME"), "this replica's identity in the Lease (default: $POD_NAME, else the host name)")
	leaseDuration := flag.Duration("lease-duration", 15*time.Second, "how long a leader's claim holds without renewal")
	renewDeadline := flag.Duration("renew-deadline", 10*time.Second, "how long the leader keeps trying to renew before it gives up leading")
	retryPeriod := flag.Duration("retry-period", 2*time.Second, "how often replicas try to acquire or renew the Lease")
	flag.Parse()

	if *namespace == "" {
		b, err := os.ReadFile(namespaceFile)
		if err != nil {
			return fmt.Errorf("reading the pod's namespace (pass --namespace when not in a pod): %w", err)
		}
		*namespace = strings.TrimSpace(string(b))
	}
	if *id == "" {
		h, err := os.Hostname()
		if err != nil {
			return fmt.Errorf("no --id, no $POD_NAME and no host name: %w", err)
		}
		*id = h
	}
	log = log.With("id", *id, "namespace", *namespace)

	cfg, err := rest.InClusterConfig()
	if err != nil {
		return fmt.Errorf("in-cluster configuration (is this running in a pod with a service-account token?): %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	lctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	pods, err := client.CoreV1().Pods(*namespace).List(lctx, metav1.ListOptions{})
	cancel()
	if err != nil {
		return fmt.Errorf("listing the pods of namespace %s (the pod's ServiceAccount needs list on pods): %w", *namespace, err)
	}
	names := make([]string, 0, len(pods.Items))
	for _, p := range pods.Items {
		names = append(names, p.Name)
	}
	log.Info("listed pods", "api", cfg.Host, "count", len(names), "pods", names)

	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Name: *lease, Namespace: *namespace},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: *id},
	}
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            lock,
		Name:            *lease,
		LeaseDuration:   *leaseDuration,
		RenewDeadline:   *renewDeadline,
		RetryPeriod:     *retryPeriod,
		ReleaseOnCancel: true, // a replica stopped gracefully hands over at once
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { log.Info("started leading", "lease", *lease) },
			OnStoppedLeading: func() { log.Info("stopped leading", "lease", *lease) },
			OnNewLeader: func(identity string) {
				if identity != *id {
					log.Info("new leader", "lease", *lease, "leader", identity)
				}
			},
		},
	})
	if err != nil {
		return err
	}
	elector.Run(ctx) // until SIGTERM (releasing the Lease when leading)
	log.Info("stopped", "cause", context.Cause(ctx))
	return nil
}
