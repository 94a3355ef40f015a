package apiserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/headway/headway/internal/registry/builtin"
	"github.com/headway/headway/internal/storage"
	"github.com/headway/headway/internal/storage/memory"
)

// gatedStore is a store whose lists, and the cache's store watch, a test
// can break: what is still answered then comes from memory.
type gatedStore struct {
	storage.Interface
	failLists atomic.Bool

	mu         sync.Mutex
	cacheWatch context.CancelFunc // ends the current watch of every key
	compacted  int                // watches of every key to answer ErrCompacted
	allWatches int                // watches of every key made

	prefixWatches atomic.Int64 // watches of configmaps by prefix (a watch request's own)
}

var errListsOff = errors.New("the test turned store lists off")

func (g *gatedStore) List(ctx context.Context, prefix string, opts storage.ListOptions) (storage.ListResult, error) {
	if g.failLists.Load() {
		return storage.ListResult{}, errListsOff
	}
	return g.Interface.List(ctx, prefix, opts)
}

func (g *gatedStore) Watch(ctx context.Context, prefix string, from int64) (<-chan storage.Event, error) {
	if prefix != "" {
		if strings.Contains(prefix, "/configmaps/") {
			g.prefixWatches.Add(1)
		}
		return g.Interface.Watch(ctx, prefix, from)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.allWatches++
	if g.compacted > 0 {
		g.compacted--
		return nil, storage.ErrCompacted
	}
	ctx, cancel := context.WithCancel(ctx)
	g.cacheWatch = cancel
	return g.Interface.Watch(ctx, prefix, from)
}

// serveForTest serves srv over HTTPS (HTTP/2) on loopback until the test
// ends and returns a client of it.
func serveForTest(t *testing.T, cfg Config) (*Server, *kubernetes.Clientset) {
	t.Helper()
	cfg.Scheme, cfg.Resources, cfg.Token = builtin.Scheme(), builtin.Resources(builtin.Options{}), "t"
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Borrow httptest's certificate.
	ts := httptest.NewUnstartedServer(nil)
	ts.StartTLS()
	cert := ts.TLS.Certificates[0]
	ts.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln, TLSConfig(cert, nil)) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	rc := &rest.Config{Host: "https://" + ln.Addr().String(), BearerToken: "t", TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: -1}
	cs, err := kubernetes.NewForConfig(rc)
	if err != nil {
		t.Fatal(err)
	}
	return srv, cs
}

func mkNamespaces(t *testing.T, cs *kubernetes.Clientset, names ...string) {
	t.Helper()
	for _, n := range names {
		if _, err := cs.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: n}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func names(l *corev1.ConfigMapList) string {
	var out []string
	for _, cm := range l.Items {
		out = append(out, cm.Namespace+"/"+cm.Name)
	}
	return strings.Join(out, ",")
}

// TestListFromCache: lists with resourceVersion=0 or NotOlderThan and
// watch-list initial events are answered from memory (they still work
// with the store's lists broken), with selectors, kube-apiserver's limit
// rule, freshness and its 504 for a version the store never reached;
// resourceVersion "" and paginated NotOlderThan lists still read the store.
func TestListFromCache(t *testing.T) {
	store := &gatedStore{Interface: memory.New()}
	srv, cs := serveForTest(t, Config{Store: store})
	ctx := context.Background()
	mkNamespaces(t, cs, "a", "b")
	var last string
	for i := range 6 {
		ns := []string{"a", "b"}[i%2]
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("cm%d", i), Labels: map[string]string{"app": []string{"web", "db", "web"}[i%3]}}}
		got, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		last = got.ResourceVersion
	}
	// The first list loads the cache; wait until it answers for the last write.
	l, err := cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{ResourceVersion: last, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(l); got != "a/cm0,a/cm2,a/cm4,b/cm1,b/cm3,b/cm5" {
		t.Fatalf("list not older than the last write: %s", got)
	}
	waitUntil(t, "the cache loaded", func() bool {
		rc := srv.cache.forResource(srv.lookup("", "v1", "configmaps"))
		srv.cache.mu.Lock()
		defer srv.cache.mu.Unlock()
		return rc.loaded
	})

	store.failLists.Store(true)
	if _, err := cs.CoreV1().ConfigMaps("a").List(ctx, metav1.ListOptions{}); err == nil || !strings.Contains(err.Error(), errListsOff.Error()) {
		t.Fatalf("a list with resourceVersion \"\" must read the store: %v", err)
	}
	if _, err := cs.CoreV1().ConfigMaps("a").List(ctx, metav1.ListOptions{ResourceVersion: last, Limit: 2}); err == nil {
		t.Fatal("a paginated list not older than N must read the store (as kube-apiserver's cache delegates it)")
	}

	// resourceVersion=0 from memory: selectors, namespaces, limit ignored.
	l, err = cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{ResourceVersion: "0", LabelSelector: "app=web"})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(l); got != "a/cm0,a/cm2,b/cm3,b/cm5" {
		t.Fatalf("RV=0 app=web: %s", got)
	}
	if rv, _ := strconv.ParseInt(l.ResourceVersion, 10, 64); rv < mustRV(t, last) {
		t.Fatalf("list resourceVersion %s is older than the last write %s", l.ResourceVersion, last)
	}
	l, err = cs.CoreV1().ConfigMaps("b").List(ctx, metav1.ListOptions{ResourceVersion: "0", FieldSelector: "metadata.name!=cm3", Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(l); got != "b/cm1,b/cm5" || l.Continue != "" {
		t.Fatalf("RV=0 limit=1 in b without cm3: %s (continue %q); kube-apiserver's cache ignores the limit", got, l.Continue)
	}
	if l.Items[0].ResourceVersion == "" || l.Items[0].Kind != "" && l.Items[0].Kind != "ConfigMap" {
		t.Fatalf("item metadata: %+v", l.Items[0].TypeMeta)
	}

	// Fresh: an update is in the next list not older than its version.
	store.failLists.Store(false)
	cm, err := cs.CoreV1().ConfigMaps("a").Get(ctx, "cm2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Labels["app"] = "db"
	upd, err := cs.CoreV1().ConfigMaps("a").Update(ctx, cm, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().ConfigMaps("b").Delete(ctx, "cm1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	store.failLists.Store(true)
	l, err = cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{ResourceVersion: upd.ResourceVersion, LabelSelector: "app in (db)"})
	if err != nil {
		t.Fatal(err)
	}
	if got := names(l); !strings.HasPrefix(got, "a/cm2") || !strings.Contains(got, "a/cm4") {
		t.Fatalf("not older than the update: %s", got)
	}

	// A version the store has not reached: 504 with the ResourceVersionTooLarge cause, after waiting.
	future := strconv.FormatInt(store.Revision()+100, 10)
	start := time.Now()
	_, err = cs.CoreV1().ConfigMaps("a").List(ctx, metav1.ListOptions{ResourceVersion: future, ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan})
	if !apierrors.IsTimeout(err) || !apierrors.HasStatusCause(err, metav1.CauseTypeResourceVersionTooLarge) {
		t.Fatalf("list from a future version: want 504 Too large resource version, got %v", err)
	}
	if waited := time.Since(start); waited < 2*time.Second {
		t.Fatalf("answered after %v; kube-apiserver waits 3s for the cache", waited)
	}

	// Watch-list and a plain watch from 0: initial events from memory.
	w, err := cs.CoreV1().ConfigMaps("").Watch(ctx, metav1.ListOptions{
		SendInitialEvents: ptrTo(true), ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan,
		AllowWatchBookmarks: true, LabelSelector: "app=web",
	})
	if err != nil {
		t.Fatal(err)
	}
	var seen []string
	for ev := range w.ResultChan() {
		if ev.Type == watch.Bookmark {
			break
		}
		if ev.Type != watch.Added {
			t.Fatalf("watch-list: %s %v", ev.Type, ev.Object)
		}
		o := ev.Object.(*corev1.ConfigMap)
		seen = append(seen, o.Namespace+"/"+o.Name)
	}
	w.Stop()
	if got := strings.Join(seen, ","); got != "a/cm0,b/cm3,b/cm5" {
		t.Fatalf("watch-list initial events: %s", got)
	}
	w, err = cs.CoreV1().ConfigMaps("b").Watch(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	seen = nil
	for ev := range w.ResultChan() {
		seen = append(seen, string(ev.Type)+" "+ev.Object.(*corev1.ConfigMap).Name)
		if len(seen) == 2 {
			break
		}
	}
	w.Stop()
	if got := strings.Join(seen, ","); got != "ADDED cm3,ADDED cm5" {
		t.Fatalf("watch from 0: %s", got)
	}
}

func ptrTo[T any](v T) *T { return &v }

func mustRV(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestCacheFollowsStore: under concurrent creates, updates and deletes,
// and across a lost store watch whose history was compacted (the cache
// reloads), a list from memory not older than the store's revision is
// exactly the store's list, byte for byte in JSON.
func TestCacheFollowsStore(t *testing.T) {
	store := &gatedStore{Interface: memory.New()}
	srv, cs := serveForTest(t, Config{Store: store})
	ctx := context.Background()
	mkNamespaces(t, cs, "x", "y")
	if _, err := cs.CoreV1().ConfigMaps("x").List(ctx, metav1.ListOptions{ResourceVersion: "0"}); err != nil {
		t.Fatal(err)
	}
	churn := func(round int) {
		var wg sync.WaitGroup
		for w := range 4 {
			wg.Go(func() {
				c := cs.CoreV1().ConfigMaps([]string{"x", "y"}[w%2])
				for i := range 30 {
					name := fmt.Sprintf("w%d-%d", w, i%7)
					cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"round": strconv.Itoa(round)}}, Data: map[string]string{"i": strconv.Itoa(i), "html": "<&>"}}
					var err error
					switch i % 3 {
					case 0:
						_, err = c.Create(ctx, cm, metav1.CreateOptions{})
					case 1:
						_, err = c.Update(ctx, cm, metav1.UpdateOptions{})
					case 2:
						err = c.Delete(ctx, name, metav1.DeleteOptions{})
					}
					if err != nil && !apierrors.IsAlreadyExists(err) && !apierrors.IsNotFound(err) {
						t.Error(err)
					}
				}
			})
		}
		wg.Wait()
	}
	compare := func(what string) {
		t.Helper()
		rv := strconv.FormatInt(store.Revision(), 10)
		for _, path := range []string{"/api/v1/configmaps", "/api/v1/namespaces/x/configmaps"} {
			fromStore := rawList(t, srv, path, "")
			store.failLists.Store(true) // from memory only
			fromCache := rawList(t, srv, path, "resourceVersion="+rv)
			store.failLists.Store(false)
			// The list's own resourceVersion may differ; the items may not.
			if a, b := itemsOf(fromStore), itemsOf(fromCache); a != b {
				t.Fatalf("%s, %s: the cache's list differs from the store's:\nstore %s\ncache %s", what, path, a, b)
			}
		}
	}
	churn(1)
	compare("after concurrent writes")

	// The cache's store watch ends and its history is gone: it reloads.
	store.mu.Lock()
	store.compacted = 1
	stop := store.cacheWatch
	before := store.allWatches
	store.mu.Unlock()
	stop()
	waitUntil(t, "the cache to watch again", func() bool {
		store.mu.Lock()
		defer store.mu.Unlock()
		return store.allWatches >= before+2
	})
	churn(2)
	compare("after a reload")
}

// rawList GETs a list as JSON through the server's handler.
func rawList(t *testing.T, srv *Server, path, query string) []byte {
	t.Helper()
	req := httptest.NewRequest("GET", path+"?"+query, nil)
	req.Header.Set("Authorization", "Bearer t")
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("GET %s?%s: %d %s", path, query, rec.Code, rec.Body)
	}
	return rec.Body.Bytes()
}

func itemsOf(b []byte) string {
	_, items, ok := bytes.Cut(b, []byte(`"items":`))
	if !ok {
		return "no items in " + string(b)
	}
	return string(items)
}

// TestListJSONFromCachedEncodings: the JSON list written from cached
// per-object encodings is byte for byte what the JSON serializer writes
// for the whole list (continue and remainingItemCount included).
func TestListJSONFromCachedEncodings(t *testing.T) {
	store := memory.New()
	srv, cs := serveForTest(t, Config{Store: store})
	ctx := context.Background()
	mkNamespaces(t, cs, "n")
	for i := range 5 {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%d", i), Annotations: map[string]string{"x": "<a&b>"}}, Data: map[string]string{"k": strings.Repeat("v", i)}}
		if _, err := cs.CoreV1().ConfigMaps("n").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rv := strconv.FormatInt(store.Revision(), 10)
	for _, q := range []string{"", "resourceVersion=0", "resourceVersion=" + rv, "limit=2", "resourceVersion=" + rv + "&limit=2"} {
		// Twice: the second time the encodings are cached.
		for range 2 {
			got := rawList(t, srv, "/api/v1/namespaces/n/configmaps", q)
			pretty := rawList(t, srv, "/api/v1/namespaces/n/configmaps", q+"&pretty=true")
			var want bytes.Buffer
			list := &corev1.ConfigMapList{}
			if err := json.Unmarshal(pretty, list); err != nil {
				t.Fatal(err)
			}
			if err := srv.codecs.json.Encode(list, &want); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want.Bytes()) {
				t.Fatalf("?%s:\ngot  %s\nwant %s", q, got, want.Bytes())
			}
		}
	}
}

// TestSlowWatcherIsClosed: a client that stops reading its watch neither
// slows writers nor other watchers; the server ends its watch once its
// writes stall, and the client, reading again, finds the watch closed
// before the end of the events.
func TestSlowWatcherIsClosed(t *testing.T) {
	store := memory.New()
	srv, cs := serveForTest(t, Config{Store: store, WatchWriteTimeout: 500 * time.Millisecond})
	ctx := context.Background()
	mkNamespaces(t, cs, "slow")
	cms := cs.CoreV1().ConfigMaps("slow")
	rv := strconv.FormatInt(store.Revision(), 10)
	stuckCS := smallWindowClient(t, cs)
	stuck, err := stuckCS.CoreV1().ConfigMaps("slow").Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Stop()
	// The reading client re-watches from the last version it saw should
	// its watch end (as informers do); it must see every object.
	readerSeen := map[string]bool{}
	var readerMu sync.Mutex
	var readerGot atomic.Int64
	readerCtx, stopReader := context.WithCancel(ctx)
	defer stopReader()
	reader, err := cms.Watch(readerCtx, metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		last := rv
		for readerCtx.Err() == nil {
			for ev := range reader.ResultChan() {
				if cm, ok := ev.Object.(*corev1.ConfigMap); ok {
					last = cm.ResourceVersion
					readerMu.Lock()
					if !readerSeen[cm.Name] {
						readerSeen[cm.Name] = true
						readerGot.Add(1)
					}
					readerMu.Unlock()
				}
			}
			var werr error
			if reader, werr = cms.Watch(readerCtx, metav1.ListOptions{ResourceVersion: last}); werr != nil {
				return
			}
		}
	}()
	waitUntil(t, "two open watches", func() bool { return srv.openWatches.Load() == 2 })

	// 100 objects of 8 KiB: far more than the stalled client's window.
	const n = 100
	big := strings.Repeat("x", 8<<10)
	start := time.Now()
	for i := range n {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("big%d", i)}, Data: map[string]string{"d": big}}
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("%d creates in %v with a stuck watcher", n, time.Since(start))
	waitUntil(t, "the reading watcher to get every event", func() bool { return readerGot.Load() == n })
	// With the reader gone, no watch is left open only if the server
	// closed the stalled one (its client has not stopped it).
	stopReader()
	waitUntil(t, "the server to close the stuck watch", func() bool { return srv.openWatches.Load() == 0 })

	got := 0
	for range stuck.ResultChan() {
		got++
	}
	if got == 0 || got >= n {
		t.Fatalf("the stuck watcher received %d of %d events before its watch closed; want some, not all", got, n)
	}
	t.Logf("the stuck watcher got %d of %d events, then its watch ended", got, n)
}
