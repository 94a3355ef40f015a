package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	schedulingv1 "k8s.io/api/scheduling/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilerrors "k8s.io/apimachinery/pkg/util/errors"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/headway/headway/internal/apiserver"
	"github.com/headway/headway/internal/apiserver/openapi"
	"github.com/headway/headway/internal/atomicfile"
	"github.com/headway/headway/internal/auth/rbac"
	"github.com/headway/headway/internal/controller/systemservices"
	"github.com/headway/headway/internal/pki"
	"github.com/headway/headway/internal/registry"
	"github.com/headway/headway/internal/registry/builtin"
	"github.com/headway/headway/internal/registry/service"
	"github.com/headway/headway/internal/registry/storageclass"
	"github.com/headway/headway/internal/storage"
	"github.com/headway/headway/internal/version"
)

// api is the serving API server and its admin client.
type api struct {
	srv        *apiserver.Server
	bundle     *pki.Bundle
	url        string
	port       int // the API's port (the kubernetes Service's target)
	kubeconfig string
	// restConfig and client authenticate as the admin.
	restConfig *rest.Config
	client     kubernetes.Interface
	// rbacInformers feed the RBAC authorizer (nil with AlwaysAllow).
	rbacInformers informers.SharedInformerFactory
	// serveErr receives Serve's result; stopServe ends it.
	serveErr  chan error
	stopServe context.CancelFunc
	// startConnections is how many connections the API accepted before
	// it became ready (its own clients' only).
	startConnections int64
}

// countingListener counts the connections it accepts.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// stop stops serving and waits until it has.
func (a *api) stop() error {
	a.stopServe()
	err := <-a.serveErr
	if a.rbacInformers != nil {
		a.rbacInformers.Shutdown()
	}
	return err
}

// clientConfig is a client configuration for a component of this process:
// it authenticates with a fresh client certificate for user in groups, so
// the component is authorized as that user (kept in memory only).
func (a *api) clientConfig(user string, groups ...string) (*rest.Config, error) {
	certPEM, keyPEM, err := a.bundle.IssueClient(user, groups)
	if err != nil {
		return nil, fmt.Errorf("issuing a client certificate for %s: %w", user, err)
	}
	cfg := &rest.Config{
		Host:            a.url,
		TLSClientConfig: rest.TLSClientConfig{CAData: a.bundle.CAPEM, CertData: certPEM, KeyData: keyPEM},
		QPS:             -1,
	}
	return cfg, nil
}

// clientFor is a clientset on clientConfig(user, groups...).
func (a *api) clientFor(user string, groups ...string) (kubernetes.Interface, *rest.Config, error) {
	cfg, err := a.clientConfig(user, groups...)
	if err != nil {
		return nil, nil, err
	}
	c, err := kubernetes.NewForConfig(cfg)
	return c, cfg, err
}

// startAPI loads the PKI, serves the Kubernetes API on cfg.Listen, creates
// the built-in objects and the default RBAC policy and writes the admin
// kubeconfig; the server is then ready (with RBAC, once the authorizer has
// read the roles and bindings). It serves until stop, also after ctx ends.
func startAPI(ctx context.Context, cfg Config, store storage.Interface, log *slog.Logger, steps *phases) (*api, error) {
	listenHost, _, _ := net.SplitHostPort(cfg.Listen)
	bundle, err := pki.LoadOrCreateWith(cfg.PKIDir, kubernetesHosts(cfg, listenHost), pki.Options{NoSync: cfg.NoSync})
	if err != nil {
		return nil, fmt.Errorf("loading certificates: %w", err)
	}
	steps.done("pki")
	if cfg.Store == "etcd" {
		if err := checkSharedPKI(ctx, store, bundle); err != nil {
			return nil, err
		}
	}
	id, err := newIdentity(cfg, bundle)
	if err != nil {
		return nil, err
	}
	resources, err := Resources(cfg.ServiceCIDR, store, id.options(!cfg.NoControllers))
	if err != nil {
		return nil, err
	}
	oidc, err := id.oidc()
	if err != nil {
		return nil, err
	}
	// The OpenAPI documents are built when a client first asks for them.
	described := openAPIResources(resources)
	buildOpenAPI := func() (*openapi.Documents, error) {
		return openAPIDocuments(described, version.Kubernetes)
	}
	agentTLS, err := bundle.ClientTLS(apiServerKubeletClient, []string{"system:masters"})
	if err != nil {
		return nil, fmt.Errorf("issuing the API server's client certificate: %w", err)
	}
	steps.done("resources")
	ln, podAddr, err := listenAPI(ctx, cfg)
	if err != nil {
		return nil, err
	}
	steps.done("listen")
	port := ln.Addr().(*net.TCPAddr).Port
	host := listenHost
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	a := &api{bundle: bundle, port: port, serveErr: make(chan error, 1), stopServe: func() {}}
	a.url = "https://" + net.JoinHostPort(host, fmt.Sprint(port))
	a.restConfig = &rest.Config{
		Host:            a.url,
		BearerToken:     bundle.Token,
		TLSClientConfig: rest.TLSClientConfig{CAData: bundle.CAPEM},
		QPS:             -1,
	}
	if a.client, err = kubernetes.NewForConfig(a.restConfig); err != nil {
		ln.Close()
		return nil, err
	}
	srvCfg := apiserver.Config{
		AgentTransport: &http.Transport{TLSClientConfig: agentTLS, ForceAttemptHTTP2: false},
		Store:          store,
		Scheme:         builtin.Scheme(),
		Resources:      resources,
		Version:        version.Info(),
		Token:          bundle.Token,
		Authenticators: []apiserver.Authenticator{apiserver.AuthenticatorFunc(id.authenticateBootstrapToken), id.authenticator()},
		APIAudiences:   id.audiences,
		OIDC:           oidc,
		OpenAPI:        openapi.NewLazyWithCustomResources(buildOpenAPI),
		Logger:         log.With("component", "apiserver"),
		Limits:         cfg.Serving,
		Admission:      admissionChain(cfg, log),
		Handlers:       map[string]http.Handler{JoinPath: joinHandler(cfg, bundle, log.With("component", "join"))},
	}
	if cfg.AuthorizationMode == AuthorizationRBAC {
		// The authorizer reads roles and bindings through informers of the
		// server's own admin (system:masters) client, as kube-apiserver's
		// loopback client does.
		a.rbacInformers = informers.NewSharedInformerFactory(a.client, 0)
		authz := newRBACAuthorizer(a.rbacInformers)
		guardRBAC(resources, authz)
		// Node agents read the secrets, config maps, claims and service
		// accounts of their own pods only (the Node authorizer), then RBAC.
		nodeAuthz, err := newNodeAuthorizer(a.rbacInformers, a.client)
		if err != nil {
			ln.Close()
			return nil, err
		}
		srvCfg.Authorizer, srvCfg.RuleResolver = authorizers{joinAuthorizer{}, nodeAuthz, authz}, authz
	}
	if a.srv, err = apiserver.New(srvCfg); err != nil {
		ln.Close()
		return nil, err
	}
	id.srv = a.srv
	steps.done("apiserver")
	tlsConfig := apiserver.TLSConfig(bundle.Serving, bundle.CAPool)
	serveCtx, stopServe := context.WithCancel(context.WithoutCancel(ctx))
	a.stopServe = stopServe
	accepted := &countingListener{Listener: ln}
	go func() { a.serveErr <- a.srv.Serve(serveCtx, accepted, tlsConfig) }()

	fail := func(err error) (*api, error) {
		a.stop()
		return nil, err
	}
	// One request first, so that the admin client's connection exists
	// before the many below: started at once on a client without one,
	// each dialled its own and made its own TLS handshake (8 before
	// ready, 12 % of the start's CPU), all but one then thrown away. Its
	// answer does not matter: a server that does not answer fails the
	// requests below.
	_ = a.client.CoreV1().RESTClient().Get().AbsPath("/livez").Do(ctx).Error()
	// The built-in objects and the service accounts in their namespaces on
	// one side, the default RBAC objects and the authorizer's informers on
	// the other: independent, so they run at once (on a restart with the
	// data dir, where everything exists, they are mostly reads).
	var objects, serviceAccounts, rbacTook, rbacSync time.Duration
	var objectsErr, rbacErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		t0 := time.Now()
		if err := bootstrap(ctx, a.client, cfg.KubernetesIP, port, podAddr); err != nil {
			objectsErr = fmt.Errorf("creating the built-in objects: %w", err)
			return
		}
		objects = time.Since(t0)
		if !cfg.NoControllers {
			// What the controllers keep in every namespace is there for the
			// built-in ones from the start (the controllers see to new ones).
			t1 := time.Now()
			if err := bootstrapIdentity(ctx, a.client, bundle.CAPEM); err != nil {
				objectsErr = fmt.Errorf("creating the built-in namespaces' service accounts: %w", err)
				return
			}
			serviceAccounts = time.Since(t1)
		}
	})
	if a.rbacInformers != nil {
		wg.Go(func() {
			t0 := time.Now()
			if err := rbac.Reconcile(ctx, a.client, log.With("component", "rbac")); err != nil {
				rbacErr = fmt.Errorf("creating the default roles and bindings: %w", err)
				return
			}
			rbacTook = time.Since(t0)
			t1 := time.Now()
			a.rbacInformers.Start(serveCtx.Done())
			for typ, ok := range a.rbacInformers.WaitForCacheSync(ctx.Done()) {
				if !ok {
					rbacErr = fmt.Errorf("reading %v for the RBAC authorizer: %w", typ, context.Cause(ctx))
					return
				}
			}
			rbacSync = time.Since(t1)
		})
	}
	wg.Wait()
	if err := errors.Join(objectsErr, rbacErr); err != nil {
		return fail(err)
	}
	steps.done("objects")
	steps.took("bootstrap", objects)
	steps.took("serviceAccounts", serviceAccounts)
	steps.took("rbac", rbacTook)
	steps.took("rbacSync", rbacSync)
	a.kubeconfig = filepath.Join(cfg.DataDir, "kubeconfig")
	if err := writeKubeconfig(a.kubeconfig, a.url, bundle, cfg.NoSync); err != nil {
		return fail(err)
	}
	a.startConnections = accepted.n.Load()
	a.srv.SetReady(true)
	steps.done("ready")
	return a, nil
}

// apiServerKubeletClient is the common name of the API server's client
// certificate to node agents (kube-apiserver's --kubelet-client-certificate
// names it so too): the only client the agents' streaming servers serve.
const apiServerKubeletClient = "kube-apiserver-kubelet-client"

// newRBACAuthorizer is the RBAC authorizer over informers of factory
// (which the caller starts).
func newRBACAuthorizer(factory informers.SharedInformerFactory) *rbac.Authorizer {
	v1 := factory.Rbac().V1()
	synced := []cache.InformerSynced{
		v1.Roles().Informer().HasSynced, v1.RoleBindings().Informer().HasSynced,
		v1.ClusterRoles().Informer().HasSynced, v1.ClusterRoleBindings().Informer().HasSynced,
	}
	return rbac.New(rbac.Listers{
		Roles: v1.Roles().Lister(), RoleBindings: v1.RoleBindings().Lister(),
		ClusterRoles: v1.ClusterRoles().Lister(), ClusterRoleBindings: v1.ClusterRoleBindings().Lister(),
	}, func() bool {
		for _, s := range synced {
			if !s() {
				return false
			}
		}
		return true
	})
}

// guardRBAC makes writes of roles and bindings go through the authorizer's
// escalation checks.
func guardRBAC(resources []*registry.Resource, authz *rbac.Authorizer) {
	admit := map[string]func(context.Context, runtime.Object, runtime.Object) error{
		"roles": authz.AdmitRole, "clusterroles": authz.AdmitClusterRole,
		"rolebindings": authz.AdmitRoleBinding, "clusterrolebindings": authz.AdmitClusterRoleBinding,
	}
	for _, r := range resources {
		if r.GroupVersion.Group == rbacv1.GroupName {
			if f := admit[r.Plural]; f != nil {
				r.Admit = f
			}
		}
	}
}

// kubernetesHosts are the names the serving certificate covers besides the
// listen address.
func kubernetesHosts(cfg Config, listenHost string) []string {
	hosts := []string{"127.0.0.1", "::1", "localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc." + cfg.ClusterDomain}
	if listenHost != "" && listenHost != "0.0.0.0" && listenHost != "::" {
		hosts = append(hosts, listenHost)
	} else if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	hosts = append(hosts, cfg.KubernetesIP.String())
	// Pods reach the API on the gateway (the kubernetes Service's endpoint).
	if a := podAPIAddr(cfg, 0); a.IsValid() {
		hosts = append(hosts, a.Addr().String())
	}
	return hosts
}

// NodePortBase and NodePortSize are the node port range, 30000-32767.
const (
	NodePortBase = 30000
	NodePortSize = 2768
)

// Resources is the resource table, with Service addresses from
// serviceCIDR and the rest of o (service accounts and tokens). The cluster
// IPs and node ports are reserved as keys of store.
func Resources(serviceCIDR netip.Prefix, store storage.Interface, o builtin.Options) ([]*registry.Resource, error) {
	ips, err := service.NewIPAllocator(serviceCIDR, store)
	if err != nil {
		return nil, fmt.Errorf("--service-cidr: %w", err)
	}
	o.Services = service.Allocators{IPs: ips, Ports: service.NewPortAllocator(NodePortBase, NodePortSize, store)}
	return builtin.Resources(o), nil
}

// bootstrap creates what every cluster has: the four namespaces, the
// kubernetes Service (with its endpoint where pods reach the API: podAddr,
// when valid), the default local-path StorageClass and the system
// PriorityClasses. The systemservices controller then keeps the kubernetes
// and kube-dns Services (systemServices).
func bootstrap(ctx context.Context, client kubernetes.Interface, kubernetesIP netip.Addr, apiPort int, podAddr netip.AddrPort) error {
	opts := metav1.CreateOptions{FieldManager: "headway"}
	var steps []func() error
	for _, name := range []string{metav1.NamespaceDefault, metav1.NamespaceSystem, metav1.NamespacePublic, corev1.NamespaceNodeLease} {
		steps = append(steps, func() error {
			_, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, opts)
			if err != nil && !apierrors.IsAlreadyExists(err) {
				return err
			}
			return nil
		})
	}
	// The namespaces first: the kubernetes Service lives in one.
	if err := utilerrors.AggregateGoroutines(steps...); err != nil {
		return err
	}
	steps = []func() error{func() error {
		svc := systemservices.KubernetesService(kubernetesIP.String(), int32(apiPort))
		if _, err := client.CoreV1().Services(metav1.NamespaceDefault).Create(ctx, svc, opts); err != nil && !apierrors.IsAlreadyExists(err) {
			// Another server on the same store may have created it between
			// our existence check and our reservation of its address.
			if _, gerr := client.CoreV1().Services(metav1.NamespaceDefault).Get(ctx, svc.Name, metav1.GetOptions{}); gerr != nil {
				return fmt.Errorf("the kubernetes Service: %w", err)
			}
		}
		if err := reconcileAPIEndpoints(ctx, client, podAddr); err != nil {
			return fmt.Errorf("the kubernetes Service's endpoints: %w", err)
		}
		return nil
	}, func() error {
		reclaim := corev1.PersistentVolumeReclaimDelete
		binding := storagev1.VolumeBindingWaitForFirstConsumer
		sc := &storagev1.StorageClass{
			ObjectMeta:        metav1.ObjectMeta{Name: LocalPathClass, Annotations: map[string]string{storageclass.DefaultAnnotation: "true"}},
			Provisioner:       LocalPathProvisioner,
			ReclaimPolicy:     &reclaim,
			VolumeBindingMode: &binding,
		}
		if _, err := client.StorageV1().StorageClasses().Create(ctx, sc, opts); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("the %s StorageClass: %w", LocalPathClass, err)
		}
		return nil
	}}
	for _, pc := range systemPriorityClasses() {
		steps = append(steps, func() error {
			if _, err := client.SchedulingV1().PriorityClasses().Create(ctx, pc, opts); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("the %s PriorityClass: %w", pc.Name, err)
			}
			return nil
		})
	}
	return utilerrors.AggregateGoroutines(steps...)
}

// systemPriorityClasses are the PriorityClasses every Kubernetes cluster
// has, as kube-apiserver creates them.
func systemPriorityClasses() []*schedulingv1.PriorityClass {
	return []*schedulingv1.PriorityClass{
		{ObjectMeta: metav1.ObjectMeta{Name: "system-node-critical"}, Value: 2000001000,
			Description: "Used for system critical pods that must not be moved from their current node."},
		{ObjectMeta: metav1.ObjectMeta{Name: "system-cluster-critical"}, Value: 2000000000,
			Description: "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary."},
	}
}

// The default StorageClass: volumes are directories under the data dir.
const (
	LocalPathClass       = "local-path"
	LocalPathProvisioner = "headway.dev/local-path"
)

// writeKubeconfig writes an admin kubeconfig for url (synced unless
// noSync).
func writeKubeconfig(path, url string, bundle *pki.Bundle, noSync bool) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["headway"] = &clientcmdapi.Cluster{Server: url, CertificateAuthorityData: bundle.CAPEM}
	cfg.AuthInfos["headway-admin"] = &clientcmdapi.AuthInfo{Token: bundle.Token}
	cfg.Contexts["headway"] = &clientcmdapi.Context{Cluster: "headway", AuthInfo: "headway-admin", Namespace: "default"}
	cfg.CurrentContext = "headway"
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		return err
	}
	write := atomicfile.Write
	if noSync {
		write = atomicfile.WriteUnsynced
	}
	if err := write(path, data, 0o600); err != nil {
		return fmt.Errorf("writing kubeconfig %s: %w", path, err)
	}
	return nil
}

// builtOpenAPI keeps the OpenAPI documents built in this process by their
// input: they are read-only once built and take tens of milliseconds to
// build, so servers started one after another in one process (tests,
// pkg/headwaytest) share them.
var builtOpenAPI struct {
	sync.Mutex
	docs map[string]*openapi.Documents
}

// openAPIDocuments builds the documents for resources, or returns those
// built before for the same input.
func openAPIDocuments(resources []openapi.Resource, serverVersion string) (*openapi.Documents, error) {
	var key strings.Builder
	key.WriteString(serverVersion)
	for _, r := range resources {
		fmt.Fprintf(&key, "|%s/%s %s %s %s %v %s %s %v %v", r.Group, r.Version, r.Kind, r.ListKind, r.Resource, r.Namespaced,
			typeName(r.Object), typeName(r.List), r.Verbs, r.Subresources)
	}
	builtOpenAPI.Lock()
	defer builtOpenAPI.Unlock()
	if d, ok := builtOpenAPI.docs[key.String()]; ok {
		return d, nil
	}
	d, err := openapi.Build(resources, serverVersion)
	if err != nil {
		return nil, fmt.Errorf("building OpenAPI documents: %w", err)
	}
	if builtOpenAPI.docs == nil {
		builtOpenAPI.docs = map[string]*openapi.Documents{}
	}
	builtOpenAPI.docs[key.String()] = d
	return d, nil
}

func typeName(t reflect.Type) string {
	if t == nil {
		return ""
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.PkgPath() + "." + t.Name()
}

func openAPIResources(resources []*registry.Resource) []openapi.Resource {
	out := make([]openapi.Resource, 0, len(resources))
	for _, r := range resources {
		if r.CreateOnly != nil {
			continue // reviews have no list or stored objects to describe
		}
		var subs []string
		if r.HasStatus {
			subs = append(subs, "status")
		}
		if r.Scale != nil {
			subs = append(subs, "scale")
		}
		out = append(out, openapi.Resource{
			Group: r.GroupVersion.Group, Version: r.GroupVersion.Version,
			Kind: r.Kind, ListKind: r.ListKind, Resource: r.Plural, Namespaced: r.Namespaced,
			Object: r.ObjectType(), List: r.ListType(),
			Verbs:        []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"},
			Subresources: subs,
		})
	}
	return out
}

// systemServices is the controller that keeps the kubernetes Service and,
// when the cluster DNS runs, kube-system/kube-dns, as kube-apiserver's
// bootstrap controller does: it runs with the API, --no-controllers or not.
func systemServices(cfg Config, a *api, log *slog.Logger) func(context.Context) {
	services := []*corev1.Service{systemservices.KubernetesService(cfg.KubernetesIP.String(), int32(a.port))}
	if !cfg.NoDNS && cfg.DNSServiceIP.IsValid() {
		services = append(services, systemservices.KubeDNSService(cfg.DNSServiceIP.String()))
	}
	factory := informers.NewSharedInformerFactory(a.client, 0)
	c := systemservices.New(a.client, factory, log, services...)
	return func(ctx context.Context) {
		factory.Start(ctx.Done())
		c.Run(ctx)
		factory.Shutdown()
	}
}
