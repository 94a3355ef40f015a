package apiserver

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/headway/headway/internal/storage/memory"
)

// watchWrites records what a watch response hands its connection: each
// Write (with its bytes) and each Flush, in order; holdNext makes the next
// Write wait until released.
type watchWrites struct {
	mu     sync.Mutex
	ops    []string // "write" or "flush"
	writes [][]byte
	hold   chan struct{} // the next Write waits on it
	held   chan struct{} // closed when a Write waits
}

func (r *watchWrites) holdNext() (held, release chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hold, r.held = make(chan struct{}), make(chan struct{})
	return r.held, r.hold
}

// since is the operations from the n-th on.
func (r *watchWrites) since(n int) (ops []string, writes [][]byte) {
	r.mu.Lock()
	defer r.mu.Unlock()
	w := 0
	for _, op := range r.ops[:n] {
		if op == "write" {
			w++
		}
	}
	return append([]string(nil), r.ops[n:]...), append([][]byte(nil), r.writes[w:]...)
}

func (r *watchWrites) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ops)
}

type recordingWriter struct {
	http.ResponseWriter
	r *watchWrites
}

func (w recordingWriter) Write(p []byte) (int, error) {
	w.r.mu.Lock()
	w.r.ops = append(w.r.ops, "write")
	w.r.writes = append(w.r.writes, bytes.Clone(p))
	hold, held := w.r.hold, w.r.held
	w.r.hold, w.r.held = nil, nil
	w.r.mu.Unlock()
	if hold != nil {
		close(held)
		<-hold
	}
	return w.ResponseWriter.Write(p)
}

func (w recordingWriter) Flush() {
	w.r.mu.Lock()
	w.r.ops = append(w.r.ops, "flush")
	w.r.mu.Unlock()
	w.ResponseWriter.(http.Flusher).Flush()
}

func (w recordingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// recordedWatches serves h over TLS and HTTP/2 with its watch responses
// recorded, and a client of it speaking ct ("": client-go's default).
func recordedWatches(t *testing.T, h http.Handler, ct string) (*kubernetes.Clientset, *watchWrites) {
	t.Helper()
	rec := &watchWrites{}
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("watch") != "" {
			w = recordingWriter{ResponseWriter: w, r: rec}
		}
		h.ServeHTTP(w, r)
	}))
	ts.EnableHTTP2 = true
	ts.StartTLS()
	t.Cleanup(ts.Close)
	cfg := &rest.Config{Host: ts.URL, BearerToken: "t", TLSClientConfig: rest.TLSClientConfig{Insecure: true}, QPS: -1}
	if ct != "" {
		cfg.ContentType, cfg.AcceptContentTypes = ct, ct
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cs, rec
}

// TestWatchBatchesReadyEvents: the events ready for a watcher when it
// writes go to its connection in one write and one flush (JSON and
// protobuf, over HTTP/2 and TLS to client-go), byte for byte the frames
// one at a time would be; an event alone is written and flushed at once,
// without waiting for more.
func TestWatchBatchesReadyEvents(t *testing.T) {
	store := memory.New()
	srv, cs := serveForTest(t, Config{Store: store})
	ctx := context.Background()
	h := srv.Handler()
	for _, ct := range []string{"application/json", mediaProtobuf} {
		t.Run(ct, func(t *testing.T) {
			ns := "batch-json"
			if ct == mediaProtobuf {
				ns = "batch-proto"
			}
			mkNamespaces(t, cs, ns)
			cms := cs.CoreV1().ConfigMaps(ns)
			if _, err := cms.List(ctx, metav1.ListOptions{ResourceVersion: "0"}); err != nil {
				t.Fatal(err)
			}
			// The same server, its watch responses recorded.
			wcs, rec := recordedWatches(t, h, ct)
			w, err := wcs.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{ResourceVersion: strconv.FormatInt(store.Revision(), 10)})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			create := func(name string) {
				t.Helper()
				if _, err := cms.Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: map[string]string{"k": name}}, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}

			// The watcher's write of e0 is held while e1..e4 are created.
			n0 := rec.count()
			held, release := rec.holdNext()
			create("e0")
			<-held
			for i := 1; i <= 4; i++ {
				create(fmt.Sprintf("e%d", i))
			}
			waitUntil(t, "the cache to hold e1..e4", func() bool {
				srv.cache.mu.Lock()
				defer srv.cache.mu.Unlock()
				return srv.cache.rev >= store.Revision()
			})
			close(release)
			got, evs := nextEvents(t, w, 5, false)
			if want := "[ADDED e0 ADDED e1 ADDED e2 ADDED e3 ADDED e4]"; fmt.Sprint(got) != want {
				t.Fatalf("events %v, want %s", got, want)
			}
			waitUntil(t, "two flushes", func() bool { ops, _ := rec.since(n0); return len(ops) >= 4 })
			ops, writes := rec.since(n0)
			if fmt.Sprint(ops) != "[write flush write flush]" || len(writes) != 2 {
				t.Fatalf("the watch response's operations %v; want e0 written and flushed, then e1..e4 in one write and one flush", ops)
			}
			// The batch is the frames the server writes one at a time.
			var want bytes.Buffer
			res := srv.lookup("", "v1", "configmaps")
			for i, ev := range evs[1:] {
				srv.setKind(ev.Object, res.gvk.GroupVersion())
				if ct == mediaProtobuf {
					// The framer's output (TestProtobufFromCachedEncodings).
					obj, err := res.encodeObject(ev.Object, mediaProtobuf)
					if err != nil {
						t.Fatal(err)
					}
					want.Write(protoWatchFrame(ev.Type, obj))
				} else {
					var frame bytes.Buffer
					if err := srv.encodeWatchFrame(&frame, ct, ev.Type, ev.Object); err != nil {
						t.Fatal(err)
					}
					want.Write(frame.Bytes())
				}
				if !bytes.Contains(writes[1], []byte(fmt.Sprintf("e%d", i+1))) {
					t.Fatalf("the batch lacks e%d", i+1)
				}
			}
			if !bytes.Equal(writes[1], want.Bytes()) {
				t.Fatalf("the batch differs from the events' frames:\ngot  %q\nwant %q", writes[1], want.Bytes())
			}

			// One event alone is written and flushed without waiting for another.
			n1 := rec.count()
			create("e5")
			if got, _ := nextEvents(t, w, 1, false); got[0] != "ADDED e5" {
				t.Fatalf("got %v, want ADDED e5", got)
			}
			waitUntil(t, "the flush of e5", func() bool { ops, _ := rec.since(n1); return len(ops) >= 2 })
			ops, writes = rec.since(n1)
			if fmt.Sprint(ops) != "[write flush]" || !bytes.Contains(writes[0], []byte("e5")) {
				t.Fatalf("e5: operations %v", ops)
			}
		})
	}
}
