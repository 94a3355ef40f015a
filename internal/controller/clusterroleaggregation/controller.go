package clusterroleaggregation

import (
	"context"
	"log/slog"

	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	rbaclisters "k8s.io/client-go/listers/rbac/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/headway/headway/internal/controller/workloop"
)

// Writer stores a ClusterRole's aggregated rules (the side-effect seam).
type Writer interface {
	UpdateRules(ctx context.Context, role *rbacv1.ClusterRole, rules []rbacv1.PolicyRule) error
}

// ClientWriter writes through the API.
type ClientWriter struct{ Client kubernetes.Interface }

// UpdateRules updates a copy of role with rules (a conflict is retried by
// the loop from the newer cached object).
func (w ClientWriter) UpdateRules(ctx context.Context, role *rbacv1.ClusterRole, rules []rbacv1.PolicyRule) error {
	next := role.DeepCopy()
	next.Rules = rules
	_, err := w.Client.RbacV1().ClusterRoles().Update(ctx, next, metav1.UpdateOptions{FieldManager: "clusterrole-aggregation-controller"})
	return err
}

// Controller aggregates ClusterRole rules.
type Controller struct {
	writer Writer
	roles  rbaclisters.ClusterRoleLister
	synced cache.InformerSynced
	queue  *workloop.Loop[string]
	log    *slog.Logger
}

// New builds the controller on a shared informer factory.
func New(client kubernetes.Interface, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	return NewWithWriter(ClientWriter{Client: client}, factory, log)
}

// NewWithWriter builds the controller with another seam (tests).
func NewWithWriter(w Writer, factory informers.SharedInformerFactory, log *slog.Logger) *Controller {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	inf := factory.Rbac().V1().ClusterRoles()
	c := &Controller{writer: w, roles: inf.Lister(), synced: inf.Informer().HasSynced,
		log: log.With("controller", "clusterrole-aggregation")}
	c.queue = workloop.New("clusterrole_aggregation", c.log, c.sync)
	// Any change to any ClusterRole may change what an aggregated one
	// gathers: look at every aggregated role again.
	inf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.enqueueAggregated() },
		UpdateFunc: func(any, any) { c.enqueueAggregated() },
		DeleteFunc: func(any) { c.enqueueAggregated() },
	})
	return c
}

func (c *Controller) enqueueAggregated() {
	all, err := c.roles.List(labels.Everything())
	if err != nil {
		return
	}
	for _, r := range all {
		if r.AggregationRule != nil {
			c.queue.Add(r.Name)
		}
	}
}

// Run aggregates until ctx ends.
func (c *Controller) Run(ctx context.Context) { c.queue.Run(ctx, 1, c.synced) }

func (c *Controller) sync(ctx context.Context, name string) error {
	role, err := c.roles.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if role.AggregationRule == nil {
		return nil
	}
	all, err := c.roles.List(labels.Everything())
	if err != nil {
		return err
	}
	rules, err := Aggregate(role, all)
	if err != nil {
		c.log.Error("cannot aggregate", "clusterrole", name, "err", err)
		return nil
	}
	if rulesEqual(rules, role.Rules) {
		return nil
	}
	if err := c.writer.UpdateRules(ctx, role, rules); err != nil {
		return err
	}
	c.log.Debug("aggregated", "clusterrole", name, "rules", len(rules))
	return nil
}
