package apiserver_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"

	"github.com/headway/headway/internal/testing/cluster"
)

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func headless(name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"app": "nginx"}},
		Spec: corev1.ServiceSpec{
			ClusterIP: corev1.ClusterIPNone,
			Selector:  map[string]string{"app": "nginx"},
			Ports:     []corev1.ServicePort{{Name: "web", Port: 80}},
		},
	}
}

func protobufClient(t *testing.T, c *cluster.Cluster) kubernetes.Interface {
	cfg := rest.CopyConfig(c.Config)
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

func TestInformersSyncWithWatchList(t *testing.T) {
	c := cluster.Start(t)
	ctx := ctxT(t)
	cs := protobufClient(t, c)
	if _, err := cs.CoreV1().Services("default").Create(ctx, headless("before"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	factory := informers.NewSharedInformerFactory(cs, 0)
	svcInf := factory.Core().V1().Services().Informer()
	esInf := factory.Discovery().V1().EndpointSlices().Informer()
	seen := make(chan string, 100)
	svcInf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(obj any) { seen <- "add " + obj.(*corev1.Service).Name },
		UpdateFunc: func(_, obj any) { seen <- "update " + obj.(*corev1.Service).Name },
		DeleteFunc: func(obj any) {
			if s, ok := obj.(*corev1.Service); ok {
				seen <- "delete " + s.Name
			}
		},
	})
	stop := make(chan struct{})
	defer func() { close(stop); factory.Shutdown() }()
	factory.Start(stop)
	if !cache.WaitForCacheSync(ctx.Done(), svcInf.HasSynced, esInf.HasSynced) {
		t.Fatal("informers did not sync")
	}
	expect := func(want string) {
		t.Helper()
		for {
			select {
			case got := <-seen:
				if got == want {
					return
				}
			case <-ctx.Done():
				t.Fatalf("informer never saw %q", want)
			}
		}
	}
	expect("add before")
	if _, err := cs.CoreV1().Services("default").Create(ctx, headless("after"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("add after")
	es := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "after-abc", Labels: map[string]string{discoveryv1.LabelServiceName: "after"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"198.18.0.5"}, Hostname: ptr.To("web-0")}},
	}
	if _, err := cs.DiscoveryV1().EndpointSlices("default").Create(ctx, es, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the EndpointSlice in the informer cache", func() bool {
		_, ok, _ := esInf.GetStore().GetByKey("default/after-abc")
		return ok
	})
	svc, _ := cs.CoreV1().Services("default").Get(ctx, "after", metav1.GetOptions{})
	svc.Labels["tier"] = "db"
	if _, err := cs.CoreV1().Services("default").Update(ctx, svc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("update after")
	if err := cs.CoreV1().Services("default").Delete(ctx, "after", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	expect("delete after")
}

func TestCRUDSemantics(t *testing.T) {
	c := cluster.Start(t)
	ctx := ctxT(t)
	for _, cs := range []kubernetes.Interface{c.Client, protobufClient(t, c)} {
		cms := cs.CoreV1().ConfigMaps("default")
		cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "gen-"}, Data: map[string]string{"a": "1"}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(cm.Name, "gen-") || len(cm.Name) != len("gen-")+5 || cm.UID == "" || cm.CreationTimestamp.IsZero() || cm.ResourceVersion == "" {
			t.Fatalf("create did not fill system fields: %+v", cm.ObjectMeta)
		}
		// Stale resourceVersion → 409 Conflict, nothing changed.
		stale := cm.DeepCopy()
		cm.Data["a"] = "2"
		cm2, err := cms.Update(ctx, cm, metav1.UpdateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if cm2.ResourceVersion == cm.ResourceVersion {
			t.Fatal("update did not change resourceVersion")
		}
		stale.Data["a"] = "3"
		if _, err := cms.Update(ctx, stale, metav1.UpdateOptions{}); !apierrors.IsConflict(err) {
			t.Fatalf("stale update: want 409 Conflict, got %v", err)
		}
		got, _ := cms.Get(ctx, cm.Name, metav1.GetOptions{})
		if got.Data["a"] != "2" {
			t.Fatalf("a rejected update changed the object: %v", got.Data)
		}
		// dryRun stores nothing.
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "dry"}}, metav1.CreateOptions{DryRun: []string{"All"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := cms.Get(ctx, "dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("dry-run create stored the object: %v", err)
		}
		// Delete with a wrong UID precondition → 409.
		bad := types.UID("nope")
		if err := cms.Delete(ctx, cm.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &bad}}); !apierrors.IsConflict(err) {
			t.Fatalf("delete with wrong uid: want 409, got %v", err)
		}
		if err := cms.Delete(ctx, cm.Name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := cms.Get(ctx, cm.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
			t.Fatalf("deleted object still there: %v", err)
		}
	}
}

func TestListSelectorsAndPagination(t *testing.T) {
	// Only the test's own ConfigMaps in default: no controller publishing
	// kube-root-ca.crt there.
	c := cluster.Start(t, cluster.WithoutControllers())
	ctx := ctxT(t)
	cms := c.Client.CoreV1().ConfigMaps("default")
	for i := 0; i < 25; i++ {
		tier := "a"
		if i%5 == 0 {
			tier = "b"
		}
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm-%02d", i), Labels: map[string]string{"tier": tier}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	l, err := cms.List(ctx, metav1.ListOptions{LabelSelector: "tier=b"})
	if err != nil || len(l.Items) != 5 {
		t.Fatalf("label selector: %v items, err %v", len(l.Items), err)
	}
	l, err = cms.List(ctx, metav1.ListOptions{FieldSelector: "metadata.name=cm-07"})
	if err != nil || len(l.Items) != 1 || l.Items[0].Name != "cm-07" {
		t.Fatalf("field selector: %+v, err %v", l, err)
	}
	if _, err := cms.List(ctx, metav1.ListOptions{FieldSelector: "spec.bogus=1"}); !apierrors.IsBadRequest(err) {
		t.Fatalf("unsupported field selector: want 400, got %v", err)
	}
	// Pages of 10 over 25 objects; a write between pages is not seen.
	var names []string
	opts := metav1.ListOptions{Limit: 10}
	for page := 0; ; page++ {
		l, err := cms.List(ctx, opts)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range l.Items {
			names = append(names, it.Name)
		}
		if page == 0 {
			if l.RemainingItemCount == nil || *l.RemainingItemCount != 15 {
				t.Fatalf("remainingItemCount = %v, want 15", l.RemainingItemCount)
			}
			if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "cm-99"}}, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		if l.Continue == "" {
			break
		}
		opts.Continue = l.Continue
	}
	if len(names) != 25 || names[0] != "cm-00" || names[24] != "cm-24" {
		t.Fatalf("paginated list returned %d items: %v", len(names), names)
	}
	// Paginated label-selected list.
	l, err = cms.List(ctx, metav1.ListOptions{LabelSelector: "tier=b", Limit: 2})
	if err != nil || len(l.Items) != 2 || l.Continue == "" {
		t.Fatalf("selected page: %d items, continue %q, err %v", len(l.Items), l.Continue, err)
	}
}

func TestWatchResumeAndExpiry(t *testing.T) {
	c := cluster.Start(t)
	ctx := ctxT(t)
	cms := c.Client.CoreV1().ConfigMaps("default")
	first, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "w1"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "w2"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := cms.Delete(ctx, "w1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	// Resume from the first create's version: see w2 added, w1 deleted.
	w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for ev := range w.ResultChan() {
		got = append(got, string(ev.Type)+" "+ev.Object.(*corev1.ConfigMap).Name)
		if len(got) == 2 {
			break
		}
	}
	w.Stop()
	if strings.Join(got, ",") != "ADDED w2,DELETED w1" {
		t.Fatalf("resumed watch saw %v", got)
	}
	// Compact everything and watch from the old version: 410 Expired.
	if err := c.Running.Store.Compact(ctx, c.Running.Store.Revision()); err != nil {
		t.Fatal(err)
	}
	w, err = cms.Watch(ctx, metav1.ListOptions{ResourceVersion: first.ResourceVersion})
	if err == nil {
		ev := <-w.ResultChan()
		w.Stop()
		if ev.Type != watch.Error {
			t.Fatalf("watch from a compacted version: want an ERROR event, got %s", ev.Type)
		}
		err = apierrors.FromObject(ev.Object)
	}
	if !apierrors.IsResourceExpired(err) && !apierrors.IsGone(err) {
		t.Fatalf("watch from a compacted version: want 410 Expired, got %v", err)
	}
}

func TestServerSideApply(t *testing.T) {
	c := cluster.Start(t)
	ctx := ctxT(t)
	svcs := c.Client.CoreV1().Services("default")
	ac := corev1ac.Service("applied", "default").WithSpec(corev1ac.ServiceSpec().
		WithClusterIP("None").WithSelector(map[string]string{"app": "x"}).
		WithPorts(corev1ac.ServicePort().WithName("web").WithPort(80)))
	s1, err := svcs.Apply(ctx, ac, metav1.ApplyOptions{FieldManager: "test", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	s2, err := svcs.Apply(ctx, ac, metav1.ApplyOptions{FieldManager: "test", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if s1.ResourceVersion != s2.ResourceVersion {
		t.Fatalf("a repeated apply changed the object (%s → %s)", s1.ResourceVersion, s2.ResourceVersion)
	}
	if len(s2.ManagedFields) == 0 || s2.ManagedFields[0].Manager != "test" || s2.ManagedFields[0].Operation != metav1.ManagedFieldsOperationApply {
		t.Fatalf("managedFields not recorded: %+v", s2.ManagedFields)
	}
	// Another manager changing an owned field conflicts (409).
	other := corev1ac.Service("applied", "default").WithSpec(corev1ac.ServiceSpec().WithSelector(map[string]string{"app": "y"}))
	if _, err := svcs.Apply(ctx, other, metav1.ApplyOptions{FieldManager: "other"}); !apierrors.IsConflict(err) {
		t.Fatalf("conflicting apply: want 409, got %v", err)
	}
}

func TestNamespaceDeletionRemovesContent(t *testing.T) {
	c := cluster.Start(t)
	ctx := ctxT(t)
	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "doomed"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Client.CoreV1().ConfigMaps("doomed").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Client.CoreV1().Namespaces().Delete(ctx, "doomed", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "namespace doomed to be gone", func() bool {
		_, err := c.Client.CoreV1().Namespaces().Get(ctx, "doomed", metav1.GetOptions{})
		return apierrors.IsNotFound(err)
	})
	if l, err := c.Client.CoreV1().ConfigMaps("doomed").List(ctx, metav1.ListOptions{}); err != nil || len(l.Items) != 0 {
		t.Fatalf("objects of a deleted namespace remain: %v %v", l, err)
	}
	if _, err := c.Client.CoreV1().ConfigMaps("nowhere").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "x"}}, metav1.CreateOptions{}); !apierrors.IsNotFound(err) {
		t.Fatalf("create in a missing namespace: want 404, got %v", err)
	}
}

// rawClient sends HTTP requests as kubectl would, with or without the token.
type rawClient struct {
	t     *testing.T
	c     *cluster.Cluster
	http  *http.Client
	token string
}

func newRaw(t *testing.T, c *cluster.Cluster) *rawClient {
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	t.Cleanup(tr.CloseIdleConnections)
	return &rawClient{t: t, c: c, http: &http.Client{Transport: tr, Timeout: 30 * time.Second}, token: c.Config.BearerToken}
}

func (r *rawClient) do(method, path, contentType string, body []byte) (int, metav1.Status, http.Header) {
	r.t.Helper()
	req, _ := http.NewRequest(method, r.c.URL+path, bytes.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var st metav1.Status
	_ = json.Unmarshal(data, &st)
	return resp.StatusCode, st, resp.Header
}

func TestBadInputIsRejectedAndChangesNothing(t *testing.T) {
	c := cluster.Start(t)
	ctx := ctxT(t)
	raw := newRaw(t, c)
	count := func() int {
		l, err := c.Client.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return len(l.Items)
	}
	if _, err := c.Client.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "exists"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	big := `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"big"},"data":{"x":"` + strings.Repeat("a", 3*1024*1024+10) + `"}}`
	cases := []struct {
		name, method, path, ct, body string
		code                         int
		reason                       metav1.StatusReason
	}{
		{"malformed JSON", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap",`, 400, metav1.StatusReasonBadRequest},
		{"malformed YAML", "POST", "/api/v1/namespaces/default/configmaps", "application/yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: [name: x\n", 400, metav1.StatusReasonBadRequest},
		{"invalid name", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"Not_Valid"}}`, 422, metav1.StatusReasonInvalid},
		{"unknown field under Strict", "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"strict"},"bogus":1}`, 400, metav1.StatusReasonBadRequest},
		{"wrong kind for the resource", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"Secret","metadata":{"name":"kind"}}`, 400, metav1.StatusReasonBadRequest},
		{"already exists", "POST", "/api/v1/namespaces/default/configmaps", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"exists"}}`, 409, metav1.StatusReasonAlreadyExists},
		{"stale resourceVersion", "PUT", "/api/v1/namespaces/default/configmaps/exists", "application/json", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"exists","resourceVersion":"1"},"data":{"k":"v"}}`, 409, metav1.StatusReasonConflict},
		{"body over 3 MiB", "POST", "/api/v1/namespaces/default/configmaps", "application/json", big, 413, metav1.StatusReasonRequestEntityTooLarge},
		{"unknown resource", "GET", "/api/v1/namespaces/default/widgets", "", "", 404, metav1.StatusReasonNotFound},
		{"unknown group", "GET", "/apis/example.com/v1/widgets", "", "", 404, metav1.StatusReasonNotFound},
		{"missing object", "GET", "/api/v1/namespaces/default/configmaps/missing", "", "", 404, metav1.StatusReasonNotFound},
		{"unsupported patch type", "PATCH", "/api/v1/namespaces/default/configmaps/exists", "text/plain", "x", 415, metav1.StatusReasonUnsupportedMediaType},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := count()
			code, st, _ := raw.do(tc.method, tc.path, tc.ct, []byte(tc.body))
			if code != tc.code || st.Kind != "Status" || st.Reason != tc.reason || int(st.Code) != tc.code {
				t.Fatalf("got HTTP %d, Status %+v; want %d %s", code, st, tc.code, tc.reason)
			}
			if after := count(); after != before {
				t.Fatalf("a rejected request changed the store: %d → %d objects", before, after)
			}
		})
	}
	got, _ := c.Client.CoreV1().ConfigMaps("default").Get(ctx, "exists", metav1.GetOptions{})
	if len(got.Data) != 0 {
		t.Fatalf("a rejected update changed the object: %v", got.Data)
	}
	// Unknown fields under Warn are stored without them, with a warning.
	code, _, hdr := raw.do("POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Warn", "application/json", []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"warned"},"bogus":1}`))
	if code != 201 || !strings.Contains(hdr.Get("Warning"), `unknown field \"bogus\"`) {
		t.Fatalf("Warn: got %d, Warning %q", code, hdr.Get("Warning"))
	}
	// Authentication: no token and a wrong token are 401; health is open.
	for _, token := range []string{"", "wrong"} {
		raw.token = token
		code, st, _ := raw.do("GET", "/api/v1/namespaces", "", nil)
		if code != 401 || st.Reason != metav1.StatusReasonUnauthorized {
			t.Fatalf("token %q: got %d %+v, want 401 Unauthorized", token, code, st)
		}
		for _, p := range []string{"/readyz", "/healthz", "/livez", "/version"} {
			if code, _, _ := raw.do("GET", p, "", nil); code != 200 {
				t.Fatalf("%s without credentials: %d", p, code)
			}
		}
	}
}

func TestTableAndDiscovery(t *testing.T) {
	c := cluster.Start(t)
	ctx := ctxT(t)
	if _, err := c.Client.CoreV1().Services("default").Create(ctx, headless("nginx-headless"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	raw := newRaw(t, c)
	req, _ := http.NewRequest("GET", c.URL+"/api/v1/namespaces/default/services", nil)
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	req.Header.Set("Authorization", "Bearer "+raw.token)
	resp, err := raw.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var table metav1.Table
	if err := json.NewDecoder(resp.Body).Decode(&table); err != nil {
		t.Fatal(err)
	}
	if table.Kind != "Table" || len(table.ColumnDefinitions) != 7 {
		t.Fatalf("unexpected table: %+v", table)
	}
	var cells []interface{}
	for _, row := range table.Rows {
		if row.Cells[0] == "nginx-headless" {
			cells = row.Cells
		}
	}
	if cells == nil {
		t.Fatalf("no nginx-headless row in %+v", table.Rows)
	}
	if cells[0] != "nginx-headless" || cells[1] != "ClusterIP" || cells[2] != "None" || cells[4] != "80/TCP" {
		t.Fatalf("service row: %v", cells)
	}
	groups, resources, err := c.Client.Discovery().ServerGroupsAndResources()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, g := range groups {
		found[g.Name] = true
	}
	for _, l := range resources {
		for _, r := range l.APIResources {
			found[l.GroupVersion+"/"+r.Name] = true
		}
	}
	for _, want := range []string{"apps", "discovery.k8s.io", "v1/services", "v1/services/status", "apps/v1/statefulsets/scale", "discovery.k8s.io/v1/endpointslices", "v1/namespaces"} {
		if !found[want] {
			t.Errorf("discovery lacks %s", want)
		}
	}
}

func TestScaleSubresourceWithProtobuf(t *testing.T) {
	c := cluster.Start(t)
	ctx := ctxT(t)
	cs := protobufClient(t, c)
	sts := &appsv1.StatefulSet{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.StatefulSetSpec{
			ServiceName: "nginx-headless",
			Selector:    &metav1.LabelSelector{MatchLabels: map[string]string{"app": "nginx"}},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "nginx"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "nginx", Image: "nginx:alpine"}}},
			},
		},
	}
	if _, err := cs.AppsV1().StatefulSets("default").Create(ctx, sts, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	sc, err := cs.AppsV1().StatefulSets("default").GetScale(ctx, "web", metav1.GetOptions{})
	if err != nil || sc.Spec.Replicas != 1 || sc.Status.Selector != "app=nginx" {
		t.Fatalf("scale: %+v %v", sc, err)
	}
	sc.Spec.Replicas = 4
	if _, err := cs.AppsV1().StatefulSets("default").UpdateScale(ctx, "web", sc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	got, _ := cs.AppsV1().StatefulSets("default").Get(ctx, "web", metav1.GetOptions{})
	if *got.Spec.Replicas != 4 {
		t.Fatalf("replicas after UpdateScale: %d", *got.Spec.Replicas)
	}
}

func TestDeleteCollectionAndClientCertificates(t *testing.T) {
	c := cluster.Start(t)
	ctx := ctxT(t)
	cms := c.Client.CoreV1().ConfigMaps("default")
	for i := 0; i < 6; i++ {
		tier := "keep"
		if i%2 == 0 {
			tier = "drop"
		}
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("dc-%d", i), Labels: map[string]string{"tier": tier}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := cms.DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "tier=drop"}); err != nil {
		t.Fatal(err)
	}
	l, err := cms.List(ctx, metav1.ListOptions{LabelSelector: "tier"})
	if err != nil || len(l.Items) != 3 {
		t.Fatalf("after deletecollection: %d left, %v", len(l.Items), err)
	}
	for _, it := range l.Items {
		if it.Labels["tier"] != "keep" {
			t.Fatalf("deletecollection removed the wrong objects: %s left", it.Name)
		}
	}
	// A client certificate signed by the cluster CA authenticates without a token.
	certPEM, keyPEM, err := c.Running.PKI.IssueClient("alice", []string{"system:masters"})
	if err != nil {
		t.Fatal(err)
	}
	cfg := &rest.Config{Host: c.URL, TLSClientConfig: rest.TLSClientConfig{CAData: c.Running.PKI.CAPEM, CertData: certPEM, KeyData: keyPEM}}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
		t.Fatalf("client certificate: %v", err)
	}
	// Without a certificate or a token the same request is refused.
	other := &rest.Config{Host: c.URL, TLSClientConfig: rest.TLSClientConfig{CAData: c.Running.PKI.CAPEM}}
	cs, _ = kubernetes.NewForConfig(other)
	if _, err := cs.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); !apierrors.IsUnauthorized(err) {
		t.Fatalf("no credentials: want 401, got %v", err)
	}
}
