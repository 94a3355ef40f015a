package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netns"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/release"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
)

// netnsDial dials from inside the named network namespace: the socket is
// made on a thread switched into it, then the thread switches back. A
// thread that cannot switch back is left locked, so it ends with its
// goroutine instead of serving others in the wrong namespace.
func netnsDial(name string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			conn net.Conn
			err  error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			orig, err := netns.Get()
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{err: err}
				return
			}
			defer orig.Close()
			target, err := netns.GetFromName(name)
			if err != nil {
				runtime.UnlockOSThread()
				ch <- result{err: err}
				return
			}
			defer target.Close()
			if err := netns.Set(target); err != nil {
				runtime.UnlockOSThread()
				ch <- result{err: fmt.Errorf("entering network namespace %s: %w", name, err)}
				return
			}
			conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
			if rerr := netns.Set(orig); rerr != nil {
				if conn != nil {
					conn.Close()
				}
				ch <- result{err: fmt.Errorf("leaving network namespace %s: %w", name, rerr)}
				return // the thread stays locked and ends with this goroutine
			}
			runtime.UnlockOSThread()
			ch <- result{conn, err}
		}()
		r := <-ch
		return r.conn, r.err
	}
}

// syncLog collects Helm's debug log (shown when the test fails).
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) printf(format string, v ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(&l.buf, format+"\n", v...)
}

// loadTestChart loads test/e2e/testdata/charts/hwdb, with its CRD
// (crds/) and its custom resource (templates/backup.yaml).
func loadTestChart(t *testing.T) *chart.Chart {
	t.Helper()
	ch, err := loader.Load(repoFile("test/e2e/testdata/charts/hwdb"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ch.CRDObjects()) != 1 || !slices.ContainsFunc(ch.Templates, func(f *chart.File) bool { return f.Name == "templates/backup.yaml" }) {
		t.Fatalf("the test chart should have one CRD and the Backup template: %d CRDs", len(ch.CRDObjects()))
	}
	return ch
}

// listed is `helm list` (deployed and failed releases) as name/revision/status/chart/appVersion lines.
func listed(t *testing.T, cfg *action.Configuration, all bool) []string {
	t.Helper()
	l := action.NewList(cfg)
	l.All = all
	l.SetStateMask()
	rels, err := l.Run()
	if err != nil {
		t.Fatalf("helm list: %v", err)
	}
	var out []string
	for _, r := range rels {
		out = append(out, fmt.Sprintf("%s %s %d %s %s-%s %s", r.Name, r.Namespace, r.Version, r.Info.Status,
			r.Chart.Metadata.Name, r.Chart.Metadata.Version, r.Chart.Metadata.AppVersion))
	}
	return out
}

func wantList(t *testing.T, step string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("helm list after %s:\n got %q\nwant %q", step, got, want)
	}
	t.Logf("helm list after %s: %q", step, got)
}

// TestHelm installs the test chart (test/e2e/testdata/charts/hwdb, laid out
// like the database charts) with Helm's own action package: install
// --wait (the post-install hook Job reaches the first member by its
// per-pod name), status deployed, upgrade to 3 replicas --wait, rollback
// to revision 1, uninstall; helm list at each step. Pods run under the
// process runtime, as a non-root user, inside a network namespace the test
// makes. The chart's CRD (crds/) is installed first and its custom
// resource with the release; a chart with a kind the server does not
// serve fails naming that kind.
func TestHelm(t *testing.T) {
	needRoot(t)
	s := startNetnsServer(t)
	// Pods running as uid 1001 exec the busybox applets under the data
	// directory: let them through the test's private temp directories.
	for _, dir := range []string{filepath.Dir(s.dataDir), s.dataDir} {
		if err := os.Chmod(dir, 0o711); err != nil {
			t.Fatal(err)
		}
	}
	const ns = "hwdb"
	s.mustKubectl(t, "create", "namespace", ns)

	kubeconfig := filepath.Join(s.dataDir, "kubeconfig")
	flags := genericclioptions.NewConfigFlags(true)
	flags.KubeConfig = &kubeconfig
	namespace := ns
	flags.Namespace = &namespace
	cacheDir := t.TempDir() // not ~/.kube/cache: other servers answer on 127.0.0.1:6443 in their namespaces
	flags.CacheDir = &cacheDir
	flags.WrapConfigFn = func(c *rest.Config) *rest.Config {
		c.Dial = netnsDial(s.ns)
		return c
	}
	var hlog syncLog
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("helm log:\n%s", hlog.buf.String())
		}
	})
	cfg := new(action.Configuration)
	if err := cfg.Init(flags, ns, "secret", hlog.printf); err != nil {
		t.Fatal(err)
	}
	ch := loadTestChart(t)
	ctx := t.Context()
	const timeout = 3 * time.Minute
	pods := []string{"get", "pods", "-n", ns, "-l", "app.kubernetes.io/instance=db,app.kubernetes.io/component=primary",
		"-o", `jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}`}

	wantList(t, "nothing yet", listed(t, cfg, true))

	// A chart with a kind the server does not serve: Helm names it, and
	// nothing is installed.
	bad := &chart.Chart{
		Metadata: &chart.Metadata{APIVersion: chart.APIVersionV2, Name: "unknown", Version: "0.1.0"},
		Templates: []*chart.File{{Name: "templates/widget.yaml",
			Data: []byte("apiVersion: example.com/v1\nkind: Widget\nmetadata:\n  name: w\n")}},
	}
	badInstall := action.NewInstall(cfg)
	badInstall.ReleaseName = "unknown"
	badInstall.Namespace = ns
	if _, err := badInstall.RunWithContext(t.Context(), bad, nil); err == nil ||
		!strings.Contains(err.Error(), `no matches for kind "Widget" in version "example.com/v1"`) {
		t.Fatalf("helm install of a chart with an unknown kind: %v, want the kind named", err)
	}
	wantList(t, "a chart with an unknown kind", listed(t, cfg, true))

	// install --wait
	install := action.NewInstall(cfg)
	install.ReleaseName = "db"
	install.Namespace = ns
	install.Wait = true
	install.Timeout = timeout
	start := time.Now()
	rel, err := install.RunWithContext(ctx, ch, map[string]any{"replicaCount": 2})
	if err != nil {
		t.Fatalf("helm install --wait: %v\n%s", err, s.mustKubectl(t, "get", "all,pvc,events", "-n", ns))
	}
	t.Logf("helm install --wait took %v", time.Since(start).Round(time.Millisecond))
	if rel.Version != 1 || rel.Info.Status != release.StatusDeployed {
		t.Fatalf("install: revision %d %s", rel.Version, rel.Info.Status)
	}
	if out := s.mustKubectl(t, pods...); out != "db-hwdb-0 True\ndb-hwdb-1 True\n" {
		t.Fatalf("after install --wait, the pods are not both Ready:\n%s", out)
	}
	// The post-install hook ran to success and was deleted (hook-succeeded).
	var hookRan bool
	for _, h := range rel.Hooks {
		if h.Kind == "Job" && slices.Contains(h.Events, release.HookPostInstall) {
			hookRan = h.LastRun.Phase == release.HookPhaseSucceeded
		}
	}
	if !hookRan {
		t.Fatalf("the post-install Job did not succeed: %+v", rel.Hooks)
	}
	if out, err := s.kubectl("", "get", "job", "-n", ns, "db-hwdb-init"); err == nil || !strings.Contains(out, "NotFound") {
		t.Fatalf("the succeeded hook Job was not deleted: %v\n%s", err, out)
	}
	// Every kind of the chart is there.
	for _, obj := range []string{"service/db-hwdb", "service/db-hwdb-headless", "statefulset/db-hwdb", "configmap/db-hwdb",
		"secret/db-hwdb", "serviceaccount/db-hwdb", "role/db-hwdb", "rolebinding/db-hwdb", "pdb/db-hwdb",
		"networkpolicy/db-hwdb", "pvc/data-db-hwdb-0", "pvc/data-db-hwdb-1"} {
		s.mustKubectl(t, "get", "-n", ns, obj)
	}
	if out := s.mustKubectl(t, "get", "backups.hwdb.headway.dev", "-n", ns, "db-hwdb", "-o", "jsonpath={.spec.database} {.spec.schedule} {.spec.retention}"); out != "db-hwdb 0 3 * * * 7" {
		t.Fatalf("the Backup custom resource: %q", out)
	}
	// Non-root with the claim mounted: the member wrote its uid and
	// config to its data directory and serves them.
	if out := s.mustKubectl(t, "exec", "-n", ns, "db-hwdb-0", "--", "sh", "-c", "id -u; cat /bitnami/hwdb/data/uid /bitnami/hwdb/data/initialized; grep listen_port /bitnami/hwdb/data/hwdb.conf"); out != "1001\n1001\ndb-hwdb-0\nlisten_port = 8080\n" {
		t.Fatalf("inside db-hwdb-0: %q", out)
	}

	st, err := action.NewStatus(cfg).Run("db")
	if err != nil || st.Info.Status != release.StatusDeployed || st.Version != 1 || !strings.Contains(st.Info.Notes, "db-hwdb.hwdb.svc.cluster.local:8080") {
		t.Fatalf("helm status: %v %+v", err, st)
	}
	wantList(t, "install", listed(t, cfg, false), "db hwdb 1 deployed hwdb-0.1.0 1.36.1")

	// upgrade --wait: 2 → 3 replicas.
	upgrade := action.NewUpgrade(cfg)
	upgrade.Namespace = ns
	upgrade.Wait = true
	upgrade.Timeout = timeout
	rel, err = upgrade.RunWithContext(ctx, "db", ch, map[string]any{"replicaCount": 3})
	if err != nil {
		t.Fatalf("helm upgrade --wait: %v\n%s", err, s.mustKubectl(t, "get", "all,pvc", "-n", ns))
	}
	if rel.Version != 2 || rel.Info.Status != release.StatusDeployed {
		t.Fatalf("upgrade: revision %d %s", rel.Version, rel.Info.Status)
	}
	if out := s.mustKubectl(t, pods...); out != "db-hwdb-0 True\ndb-hwdb-1 True\ndb-hwdb-2 True\n" {
		t.Fatalf("after upgrade --wait, three Ready members expected:\n%s", out)
	}
	wantList(t, "upgrade", listed(t, cfg, false), "db hwdb 2 deployed hwdb-0.1.0 1.36.1")

	// rollback to revision 1 --wait: back to 2 replicas.
	rollback := action.NewRollback(cfg)
	rollback.Version = 1
	rollback.Wait = true
	rollback.Timeout = timeout
	if err := rollback.Run("db"); err != nil {
		t.Fatalf("helm rollback db 1: %v", err)
	}
	out := s.waitKubectl(t, regexp.MustCompile(`\Adb-hwdb-0 True\ndb-hwdb-1 True\n\z`), 60*time.Second, pods...)
	t.Logf("after rollback:\n%s", out)
	if r := s.mustKubectl(t, "get", "statefulset", "-n", ns, "db-hwdb", "-o", "jsonpath={.spec.replicas}"); r != "2" {
		t.Fatalf("after rollback the StatefulSet has %s replicas", r)
	}
	wantList(t, "rollback", listed(t, cfg, false), "db hwdb 3 deployed hwdb-0.1.0 1.36.1")
	hist, err := action.NewHistory(cfg).Run("db")
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, r := range hist {
		states = append(states, fmt.Sprintf("%d %s %s", r.Version, r.Info.Status, r.Info.Description))
	}
	if want := []string{"1 superseded Install complete", "2 superseded Upgrade complete", "3 deployed Rollback to 1"}; !slices.Equal(states, want) {
		t.Fatalf("helm history:\n got %q\nwant %q", states, want)
	}

	// uninstall --wait: the release's objects go; the claims and the CRD
	// stay, as on Kubernetes.
	uninstall := action.NewUninstall(cfg)
	uninstall.Wait = true
	uninstall.Timeout = timeout
	if _, err := uninstall.Run("db"); err != nil {
		t.Fatalf("helm uninstall: %v", err)
	}
	wantList(t, "uninstall", listed(t, cfg, true))
	// kube-root-ca.crt is every namespace's own (not the release's), as on Kubernetes.
	s.waitKubectl(t, regexp.MustCompile(`\ANo resources found`), 60*time.Second, "get", "statefulset,service,configmap,role,rolebinding,pdb,networkpolicy", "-n", ns,
		"--field-selector", "metadata.name!=kube-root-ca.crt")
	if out := s.mustKubectl(t, "get", "secret", "-n", ns, "-o", "name"); strings.Contains(out, "db-hwdb") || strings.Contains(out, "sh.helm.release") {
		t.Fatalf("secrets left after uninstall:\n%s", out)
	}
	s.mustKubectl(t, "get", "pvc", "-n", ns, "data-db-hwdb-0", "data-db-hwdb-1", "data-db-hwdb-2")
	s.mustKubectl(t, "get", "crd", "backups.hwdb.headway.dev")
	s.waitKubectl(t, regexp.MustCompile(`\ANo resources found`), 30*time.Second, "get", "backups.hwdb.headway.dev", "-n", ns)
}
