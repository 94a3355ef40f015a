package app

import (
	"context"
	"log/slog"
	"path/filepath"
	"sync"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/tools/record"

	"github.com/headway/headway/internal/auth/rbac"
	"github.com/headway/headway/internal/controller/clusterroleaggregation"
	"github.com/headway/headway/internal/controller/cronjob"
	"github.com/headway/headway/internal/controller/daemonset"
	"github.com/headway/headway/internal/controller/deployment"
	"github.com/headway/headway/internal/controller/disruption"
	"github.com/headway/headway/internal/controller/endpointslice"
	"github.com/headway/headway/internal/controller/gc"
	"github.com/headway/headway/internal/controller/job"
	"github.com/headway/headway/internal/controller/localpath"
	"github.com/headway/headway/internal/controller/namespace"
	"github.com/headway/headway/internal/controller/networkpolicy"
	"github.com/headway/headway/internal/controller/nodeipam"
	"github.com/headway/headway/internal/controller/nodelifecycle"
	"github.com/headway/headway/internal/controller/podgc"
	"github.com/headway/headway/internal/controller/replicaset"
	"github.com/headway/headway/internal/controller/resourcequota"
	"github.com/headway/headway/internal/controller/rootcacert"
	"github.com/headway/headway/internal/controller/scheduler"
	"github.com/headway/headway/internal/controller/serviceaccount"
	"github.com/headway/headway/internal/controller/statefulset"
	"github.com/headway/headway/internal/registry/builtin"
)

// newControllers builds the controllers, clients of a; the function it
// returns runs them until its context ends. Events are recorded until ctx
// ends.
func newControllers(ctx context.Context, cfg Config, a *api, log *slog.Logger) (func(context.Context), error) {
	// The controllers act as system:kube-controller-manager, the scheduler
	// as system:kube-scheduler, each with the rights its default roles give
	// (see internal/auth/rbac).
	client, restConfig, err := a.clientFor(rbac.ControllerManagerUser)
	if err != nil {
		return nil, err
	}
	schedClient, _, err := a.clientFor(rbac.SchedulerUser)
	if err != nil {
		return nil, err
	}
	md, err := metadata.NewForConfig(restConfig)
	if err != nil {
		return nil, err
	}
	factory := informers.NewSharedInformerFactory(client, 0)
	broadcaster := record.NewBroadcaster(record.WithContext(ctx))
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	recorder := func(component string) record.EventRecorder {
		return broadcaster.NewRecorder(builtin.Scheme(), corev1.EventSource{Component: component})
	}
	nsc := namespace.New(client, md, factory, log)
	sched := scheduler.New(schedClient, factory, recorder("default-scheduler"), log)
	lifecycle := nodelifecycle.New(client, factory, recorder("node-controller"), log)
	lifecycle.GracePeriod = cfg.NodeMonitorGracePeriod
	podGC := podgc.New(client, factory, log)
	collector := gc.New(md, client.Discovery(), log)
	sts := statefulset.New(client, factory, recorder("statefulset-controller"), log)
	slices := endpointslice.New(client, factory, log)
	replicasets := replicaset.New(client, factory, recorder("replicaset-controller"), log)
	deployments := deployment.New(client, factory, recorder("deployment-controller"), log)
	daemonsets := daemonset.New(client, factory, recorder("daemonset-controller"), log)
	jobs := job.New(client, factory, recorder("job-controller"), log)
	cronjobs := cronjob.New(client, factory, recorder("cronjob-controller"), log)
	disruptions := disruption.New(client, factory, recorder("disruption-controller"), log)
	quotas := resourcequota.New(client, md, client.Discovery(), factory, log)
	policies := networkpolicy.New(client, factory, log)
	accounts := serviceaccount.New(client, factory, log)
	rootCA := rootcacert.New(client, factory, a.bundle.CAPEM, log)
	aggregation := clusterroleaggregation.New(client, factory, log)
	var nodeIPAM *nodeipam.Controller
	if cfg.AllocateNodeCIDRs {
		nodeIPAM = nodeipam.New(client, factory, cfg.ClusterCIDR, NodeCIDRBits, recorder("nodeipam-controller"), log)
	}
	volumes := localpath.New(client, factory, recorder(LocalPathProvisioner), log, LocalPathProvisioner, filepath.Join(cfg.DataDir, "volumes"))
	return func(ctx context.Context) {
		connect(ctx, client)
		factory.Start(ctx.Done())
		var wg sync.WaitGroup
		runs := []func(context.Context){
			nsc.Run,
			accounts.Run,
			rootCA.Run,
			sched.Run,
			lifecycle.Run,
			podGC.Run,
			sts.Run,
			replicasets.Run,
			deployments.Run,
			daemonsets.Run,
			jobs.Run,
			cronjobs.Run,
			disruptions.Run,
			quotas.Run,
			policies.Run,
			slices.Run,
			volumes.Run,
			aggregation.Run,
			collector.Run,
		}
		if nodeIPAM != nil {
			runs = append(runs, nodeIPAM.Run)
		}
		for _, run := range runs {
			wg.Add(1)
			go func() { defer wg.Done(); run(ctx) }()
		}
		wg.Wait()
		broadcaster.Shutdown()
		factory.Shutdown()
	}, nil
}
