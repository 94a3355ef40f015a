package apiserver

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/framer"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"

	"github.com/headway/headway/internal/storage"
	"github.com/headway/headway/internal/storage/memory"
)

// restConfigOf is the configuration of serveForTest's client, with
// content type ct ("" for JSON).
func restConfigOf(cs *kubernetes.Clientset, ct string) *rest.Config {
	u := cs.RESTClient().Get().URL()
	cfg := &rest.Config{Host: u.Scheme + "://" + u.Host, BearerToken: "t", TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: -1}
	if ct != "" {
		cfg.ContentType = ct
		cfg.AcceptContentTypes = ct
	}
	return cfg
}

// smallWindowClient is client-go on its own HTTP/2 connection with a 64 KiB
// receive window per stream (client-go's default is 4 MiB), so that a
// little unread data stalls it: the slow watcher of several tests.
func smallWindowClient(t *testing.T, cs *kubernetes.Clientset) *kubernetes.Clientset {
	t.Helper()
	cfg := restConfigOf(cs, "")
	cfg.TLSClientConfig = rest.TLSClientConfig{}
	cfg.Transport = &http.Transport{
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true},
		ForceAttemptHTTP2: true,
		HTTP2:             &http.HTTP2Config{MaxReceiveBufferPerStream: 64 << 10, MaxReceiveBufferPerConnection: 64 << 10},
	}
	stuck, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return stuck
}

// nextEvents reads n events from w (bookmarks only when withBookmarks),
// as "TYPE name", failing on an ERROR event or after a deadline.
func nextEvents(t *testing.T, w watch.Interface, n int, withBookmarks bool) ([]string, []watch.Event) {
	t.Helper()
	var out []string
	var evs []watch.Event
	deadline := time.After(20 * time.Second)
	for len(out) < n {
		select {
		case ev, ok := <-w.ResultChan():
			if !ok {
				t.Fatalf("watch closed after %v", out)
			}
			if ev.Type == watch.Error {
				t.Fatalf("watch error after %v: %v", out, apierrors.FromObject(ev.Object))
			}
			if ev.Type == watch.Bookmark && !withBookmarks {
				continue
			}
			acc, err := meta.Accessor(ev.Object)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, string(ev.Type)+" "+acc.GetName())
			evs = append(evs, ev)
		case <-deadline:
			t.Fatalf("timed out after %v", out)
		}
	}
	return out, evs
}

func rvOf(t *testing.T, obj runtime.Object) int64 {
	t.Helper()
	acc, err := meta.Accessor(obj)
	if err != nil {
		t.Fatal(err)
	}
	return mustRV(t, acc.GetResourceVersion())
}

// TestWatchersFedFromCache: watches of a cached resource, whatever their
// selection, namespace, encoding or form (resumed, watch-list, metadata
// only), are fed by the cache's one store watch (no watch of their own on
// the store) and see exactly kube-apiserver's events: selections turn
// updates into ADDED/DELETED, watch-list ends its initial events with the
// annotated bookmark, and periodic bookmarks carry a version no older than
// the events sent.
func TestWatchersFedFromCache(t *testing.T) {
	store := &gatedStore{Interface: memory.New()}
	_, cs := serveForTest(t, Config{Store: store, BookmarkInterval: 50 * time.Millisecond})
	ctx := context.Background()
	mkNamespaces(t, cs, "a", "b")
	if _, err := cs.CoreV1().ConfigMaps("a").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "old", Labels: map[string]string{"app": "web"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	l, err := cs.CoreV1().ConfigMaps("").List(ctx, metav1.ListOptions{ResourceVersion: "0"})
	if err != nil {
		t.Fatal(err)
	}
	rv0 := l.ResourceVersion
	proto, err := kubernetes.NewForConfig(restConfigOf(cs, mediaProtobuf))
	if err != nil {
		t.Fatal(err)
	}
	mc, err := metadata.NewForConfig(restConfigOf(cs, ""))
	if err != nil {
		t.Fatal(err)
	}
	open := func(w watch.Interface, err error) watch.Interface {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
		return w
	}
	wAll := open(cs.CoreV1().ConfigMaps("").Watch(ctx, metav1.ListOptions{ResourceVersion: rv0}))
	wWeb := open(cs.CoreV1().ConfigMaps("").Watch(ctx, metav1.ListOptions{ResourceVersion: rv0, LabelSelector: "app=web"}))
	wA := open(cs.CoreV1().ConfigMaps("a").Watch(ctx, metav1.ListOptions{ResourceVersion: rv0}))
	wProto := open(proto.CoreV1().ConfigMaps("").Watch(ctx, metav1.ListOptions{ResourceVersion: rv0, FieldSelector: "metadata.name=web1"}))
	wList := open(cs.CoreV1().ConfigMaps("a").Watch(ctx, metav1.ListOptions{
		SendInitialEvents: ptrTo(true), ResourceVersionMatch: metav1.ResourceVersionMatchNotOlderThan, AllowWatchBookmarks: true,
	}))
	wMeta := open(mc.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace("b").Watch(ctx, metav1.ListOptions{ResourceVersion: rv0}))
	// The watch-list's initial events come before any write below.
	got, evs := nextEvents(t, wList, 2, true)
	if strings.Join(got, ",") != "ADDED old,BOOKMARK " || evs[1].Object.(*corev1.ConfigMap).Annotations[metav1.InitialEventsAnnotationKey] != "true" {
		t.Fatalf("watch-list initial events: %v (bookmark %+v)", got, evs[1].Object)
	}
	if n := store.prefixWatches.Load(); n != 0 {
		t.Fatalf("%d watches read the store themselves; every watch of a cached resource must be fed by the cache", n)
	}

	cms := func(ns string) interface {
		Create(context.Context, *corev1.ConfigMap, metav1.CreateOptions) (*corev1.ConfigMap, error)
	} {
		return cs.CoreV1().ConfigMaps(ns)
	}
	if _, err := cms("a").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "web1", Labels: map[string]string{"app": "web"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := cms("b").Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "db1", Labels: map[string]string{"app": "db"}}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	web1, err := cs.CoreV1().ConfigMaps("a").Get(ctx, "web1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	web1.Labels["app"] = "db"
	moved, err := cs.CoreV1().ConfigMaps("a").Update(ctx, web1, metav1.UpdateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if err := cs.CoreV1().ConfigMaps("b").Delete(ctx, "db1", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name string
		w    watch.Interface
		want string
	}{
		{"all", wAll, "ADDED web1,ADDED db1,MODIFIED web1,DELETED db1"},
		{"app=web", wWeb, "ADDED web1,DELETED web1"},
		{"namespace a", wA, "ADDED web1,MODIFIED web1"},
		{"protobuf, name=web1", wProto, "ADDED web1,MODIFIED web1"},
		{"watch-list of a", wList, "ADDED web1,MODIFIED web1"},
		{"metadata of b", wMeta, "ADDED db1,DELETED db1"},
	} {
		got, evs := nextEvents(t, c.w, strings.Count(c.want, ",")+1, false)
		if strings.Join(got, ",") != c.want {
			t.Fatalf("%s watch: %v, want %s", c.name, got, c.want)
		}
		for i := 1; i < len(evs); i++ {
			if rvOf(t, evs[i].Object) <= rvOf(t, evs[i-1].Object) {
				t.Fatalf("%s watch: resourceVersions not increasing: %v", c.name, got)
			}
		}
		if c.name == "app=web" {
			// The object as it left the selection.
			if cm := evs[1].Object.(*corev1.ConfigMap); cm.Labels["app"] != "web" {
				t.Fatalf("app=web watch: DELETED carries %v, want the object before the update", cm.Labels)
			}
		}
	}
	// A periodic bookmark is no older than the last event sent.
	for {
		_, evs := nextEvents(t, wList, 1, true)
		if evs[0].Type == watch.Bookmark {
			if rvOf(t, evs[0].Object) < mustRV(t, moved.ResourceVersion) {
				t.Fatalf("bookmark at %d, older than the update %s already sent", rvOf(t, evs[0].Object), moved.ResourceVersion)
			}
			break
		}
	}
	if n := store.prefixWatches.Load(); n != 0 {
		t.Fatalf("%d watches read the store themselves", n)
	}
}

// TestWatchResumeWindow: a watch resumes from any version the cache's
// window of recent events still covers; once events after a version have
// left the window it is answered 410 Expired "too old resource version"
// (the client relists), as kube-apiserver's watch cache does; a version
// older than the cache itself (it loaded later) is served from the store.
func TestWatchResumeWindow(t *testing.T) {
	store := &gatedStore{Interface: memory.New()}
	srv, cs := serveForTest(t, Config{Store: store})
	srv.cache.histSize = 4
	ctx := context.Background()
	mkNamespaces(t, cs, "n")
	cms := cs.CoreV1().ConfigMaps("n")
	create := func(name string) string {
		t.Helper()
		cm, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return cm.ResourceVersion
	}
	watchFrom := func(rv string) watch.Interface {
		t.Helper()
		w, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(w.Stop)
		return w
	}
	before := create("before")
	create("c0")
	// The cache loads now, after "before" and c0.
	if _, err := cms.List(ctx, metav1.ListOptions{ResourceVersion: "0"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := nextEvents(t, watchFrom(before), 1, false); got[0] != "ADDED c0" {
		t.Fatalf("resume from before the cache loaded: %v", got)
	}
	if n := store.prefixWatches.Load(); n != 1 {
		t.Fatalf("a resume from before the cache loaded: %d store watches, want 1", n)
	}
	rvs := []string{create("c1"), create("c2"), create("c3")}
	if got, _ := nextEvents(t, watchFrom(rvs[0]), 2, false); strings.Join(got, ",") != "ADDED c2,ADDED c3" {
		t.Fatalf("resume within the window: %v", got)
	}
	rvs = append(rvs, create("c4"), create("c5"), create("c6"))
	// The window holds the last 4 events (c3..c6): every event after c2.
	if got, _ := nextEvents(t, watchFrom(rvs[1]), 4, false); strings.Join(got, ",") != "ADDED c3,ADDED c4,ADDED c5,ADDED c6" {
		t.Fatalf("resume at the window's start: %v", got)
	}
	if n := store.prefixWatches.Load(); n != 1 {
		t.Fatalf("resumes within the window: %d store watches, want 1", n)
	}
	// c2 has left it: events after c1 are no longer all held.
	w := watchFrom(rvs[0])
	select {
	case ev := <-w.ResultChan():
		err := apierrors.FromObject(ev.Object)
		if ev.Type != watch.Error || !apierrors.IsResourceExpired(err) || !strings.Contains(err.Error(), "too old resource version: "+rvs[0]) {
			t.Fatalf("resume from before the window: want 410 too old resource version, got %s %v", ev.Type, err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("no answer to a resume from before the window")
	}
}

// TestWatcherBehindIsClosed: a watcher that falls further behind than the
// cache keeps events for is closed (its client relists) when it reads
// again, while the writers and the other watchers went on; it never saw
// an event out of order or a gap.
func TestWatcherBehindIsClosed(t *testing.T) {
	store := memory.New()
	srv, cs := serveForTest(t, Config{Store: store, WatchWriteTimeout: time.Minute})
	srv.cache.histSize = 16
	ctx := context.Background()
	mkNamespaces(t, cs, "slow")
	cms := cs.CoreV1().ConfigMaps("slow")
	if _, err := cms.List(ctx, metav1.ListOptions{ResourceVersion: "0"}); err != nil {
		t.Fatal(err)
	}
	rv := strconv.FormatInt(store.Revision(), 10)
	// A client with a 64 KiB window that does not read until the writes are done.
	stuckCS := smallWindowClient(t, cs)
	stuck, err := stuckCS.CoreV1().ConfigMaps("slow").Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Stop()
	reader, err := cms.Watch(ctx, metav1.ListOptions{ResourceVersion: rv})
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Stop()
	waitUntil(t, "two open watches", func() bool { return srv.openWatches.Load() == 2 })
	const n = 60
	big := strings.Repeat("x", 8<<10)
	for i := range n {
		if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("big%02d", i)}, Data: map[string]string{"d": big}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if got, _ := nextEvents(t, reader, n, false); got[n-1] != fmt.Sprintf("ADDED big%02d", n-1) {
		t.Fatalf("the reading watcher: %v", got[n-1])
	}
	got := 0
	for ev := range stuck.ResultChan() {
		if name := ev.Object.(*corev1.ConfigMap).Name; name != fmt.Sprintf("big%02d", got) {
			t.Fatalf("the stuck watcher's event %d is %s %s", got, ev.Type, name)
		}
		got++
	}
	if got == 0 || got >= n {
		t.Fatalf("the stuck watcher got %d of %d events before its watch closed; want some, not all", got, n)
	}
	t.Logf("the stuck watcher got %d of %d events, then its watch ended", got, n)
}

// TestProtobufFromCachedEncodings: protobuf lists written from cached
// per-object encodings are byte for byte what the protobuf serializer
// writes for the whole list, and so are shared protobuf watch frames.
func TestProtobufFromCachedEncodings(t *testing.T) {
	store := memory.New()
	srv, cs := serveForTest(t, Config{Store: store})
	ctx := context.Background()
	mkNamespaces(t, cs, "n")
	for i := range 5 {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("c%d", i), Labels: map[string]string{"i": strconv.Itoa(i % 2)}}, Data: map[string]string{"k": strings.Repeat("v", i*100)}}
		if _, err := cs.CoreV1().ConfigMaps("n").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	rv := strconv.FormatInt(store.Revision(), 10)
	get := func(path, q string) []byte {
		t.Helper()
		req := httptest.NewRequest("GET", path+"?"+q, nil)
		req.Header.Set("Authorization", "Bearer t")
		req.Header.Set("Accept", mediaProtobuf)
		rec := httptest.NewRecorder()
		srv.Handler().ServeHTTP(rec, req)
		if rec.Code != http.StatusOK || rec.Header().Get("Content-Type") != mediaProtobuf {
			t.Fatalf("GET %s?%s: %d %s", path, q, rec.Code, rec.Header().Get("Content-Type"))
		}
		return rec.Body.Bytes()
	}
	for _, q := range []string{"", "resourceVersion=0", "resourceVersion=" + rv, "limit=2", "resourceVersion=" + rv + "&limit=2", "labelSelector=i%3D1", "resourceVersion=0&labelSelector=i%3Dnone"} {
		for _, path := range []string{"/api/v1/namespaces/n/configmaps", "/api/v1/configmaps"} {
			for range 2 { // the second time the encodings are cached
				got := get(path, q)
				obj, _, err := srv.codecs.proto.Decode(got, nil, &corev1.ConfigMapList{})
				if err != nil {
					t.Fatalf("?%s: %v", q, err)
				}
				var want bytes.Buffer
				if err := srv.codecs.proto.Encode(obj, &want); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, want.Bytes()) {
					t.Fatalf("%s?%s: the list differs from the serializer's (%d vs %d bytes)", path, q, len(got), want.Len())
				}
				if q == "" && len(obj.(*corev1.ConfigMapList).Items) < 5 {
					t.Fatalf("%s: %d items", path, len(obj.(*corev1.ConfigMapList).Items))
				}
			}
		}
	}

	// A shared protobuf watch frame is the framer's output of the watch event.
	cm, err := cs.CoreV1().ConfigMaps("n").Get(ctx, "c3", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	res := srv.lookup("", "v1", "configmaps")
	srv.setKind(cm, res.gvk.GroupVersion())
	for _, typ := range []watch.EventType{watch.Added, watch.Modified, watch.Deleted} {
		var ev, want bytes.Buffer
		if err := srv.encodeWatchFrame(&ev, mediaProtobuf, typ, cm); err != nil {
			t.Fatal(err)
		}
		if _, err := framer.NewLengthDelimitedFrameWriter(&want).Write(ev.Bytes()); err != nil {
			t.Fatal(err)
		}
		obj, err := res.encodeObject(cm, mediaProtobuf)
		if err != nil {
			t.Fatal(err)
		}
		if got := protoWatchFrame(typ, obj); !bytes.Equal(got, want.Bytes()) {
			t.Fatalf("%s frame:\ngot  %x\nwant %x", typ, got, want.Bytes())
		}
	}
}

// TestWatchBatchGrowsWhenFull: a new watcher takes firstBatch events at a
// time; finding its batches full it takes twice as many each time, up to
// historyBatch, and reads every event once, in order.
func TestWatchBatchGrowsWhenFull(t *testing.T) {
	const n = 600
	h := newHistory(0, historySize)
	for i := 1; i <= n; i++ {
		h.add(storage.Event{Type: storage.EventPut, KV: storage.KV{Key: fmt.Sprintf("/k/%d", i)}, Revision: int64(i)}, nil)
	}
	w := &cacheWatch{hist: h}
	var sizes []int
	next := int64(1)
	for next <= n {
		events, _, gone := w.read()
		if gone || len(events) == 0 {
			t.Fatalf("read after revision %d: %d events, gone %v", next-1, len(events), gone)
		}
		for _, e := range events {
			if e.ev.Revision != next {
				t.Fatalf("event with revision %d, want %d", e.ev.Revision, next)
			}
			next++
		}
		sizes = append(sizes, len(events))
	}
	want := []int{8, 16, 32, 64, 128, 256, 96}
	if fmt.Sprint(sizes) != fmt.Sprint(want) {
		t.Fatalf("batches %v, want %v", sizes, want)
	}
	if events, wake, gone := w.read(); len(events) != 0 || wake == nil || gone {
		t.Fatalf("read past the end: %d events, wake %v, gone %v", len(events), wake != nil, gone)
	}
}

// TestEventCacheKeepsRecent: the event cache starts empty and grows to
// eventCacheSize entries, then forgets the oldest event for each new one.
func TestEventCacheKeepsRecent(t *testing.T) {
	c := newEventCache()
	if len(c.ring) != 0 {
		t.Fatalf("a new event cache holds a ring of %d", len(c.ring))
	}
	ev := func(i int) storage.Event {
		return storage.Event{KV: storage.KV{Key: fmt.Sprintf("/k/%d", i)}, Revision: int64(i)}
	}
	first := c.get(ev(1))
	if c.get(ev(1)) != first {
		t.Fatal("the same event gave two entries")
	}
	for i := 2; i <= eventCacheSize+10; i++ {
		c.get(ev(i))
		if len(c.ring) != min(i, eventCacheSize) || len(c.entries) != min(i, eventCacheSize) {
			t.Fatalf("after %d events: ring %d, entries %d", i, len(c.ring), len(c.entries))
		}
	}
	if c.get(ev(1)) == first {
		t.Fatal("the oldest event was kept past eventCacheSize newer ones")
	}
	last := c.get(ev(eventCacheSize + 10))
	if c.get(ev(eventCacheSize+10)) != last {
		t.Fatal("a recent event was forgotten")
	}
}
