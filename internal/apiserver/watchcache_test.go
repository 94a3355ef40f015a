package apiserver

import (
	"context"
	"encoding/json"
	"strings"
	"sync"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"

	"github.com/headway/headway/internal/registry/builtin"
	"github.com/headway/headway/internal/storage"
	"github.com/headway/headway/internal/storage/memory"
)

// TestSharedWatchFrames: watchers of one resource get one encoding of an
// event (the same bytes, not copies), per media type and per what their
// selection sees; the frame is the watch event kube-apiserver sends.
func TestSharedWatchFrames(t *testing.T) {
	store := memory.New()
	srv, err := New(Config{Store: store, Scheme: builtin.Scheme(), Resources: builtin.Resources(builtin.Options{}), Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	res := srv.lookup("", "v1", "configmaps")
	if res == nil {
		t.Fatal("no configmaps resource")
	}
	ctx := context.Background()
	events, err := store.Watch(ctx, res.prefix, store.Revision())
	if err != nil {
		t.Fatal(err)
	}
	put := func(labelValue string, created bool) storage.Event {
		cm := &corev1.ConfigMap{}
		cm.APIVersion, cm.Kind = "v1", "ConfigMap"
		cm.Name, cm.Namespace = "a", "default"
		cm.Labels = map[string]string{"app": labelValue}
		raw, err := res.encode(cm)
		if err != nil {
			t.Fatal(err)
		}
		key := res.prefix + "default/a"
		if created {
			_, err = store.Create(ctx, key, raw)
		} else {
			_, err = store.Update(ctx, key, raw, 0)
		}
		if err != nil {
			t.Fatal(err)
		}
		return <-events
	}
	created := put("web", true)

	everything := selection{labels: labels.Everything(), fields: fields.Everything()}
	webOnly := selection{labels: labels.SelectorFromSet(labels.Set{"app": "web"}), fields: fields.Everything()}
	var wg sync.WaitGroup
	frames := make([][]byte, 50)
	for i := range frames {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := res.sharedWatchFrame(created, everything, mediaJSON)
			if err != nil {
				t.Error(err)
			}
			frames[i] = f
		}()
	}
	wg.Wait()
	for _, f := range frames[1:] {
		if &f[0] != &frames[0][0] {
			t.Fatal("watchers got separate encodings of one event")
		}
	}
	var ev struct {
		Type   watch.EventType
		Object runtime.RawExtension
	}
	if err := json.Unmarshal(frames[0], &ev); err != nil || ev.Type != watch.Added || !strings.Contains(string(ev.Object.Raw), `"kind":"ConfigMap"`) {
		t.Fatalf("frame %s: %v", frames[0], err)
	}
	if pb, err := res.sharedWatchFrame(created, everything, mediaProtobuf); err != nil || len(pb) == 0 || pb[0] == '{' {
		t.Fatalf("protobuf frame %q: %v", pb, err)
	}

	// A label change out of a selection: MODIFIED for everyone, DELETED
	// (with the object before) for a watch of app=web.
	moved := put("db", false)
	all, err := res.sharedWatchFrame(moved, everything, mediaJSON)
	if err != nil || !strings.HasPrefix(string(all), `{"type":"MODIFIED"`) || !strings.Contains(string(all), `"app":"db"`) {
		t.Fatalf("unselected watch: %s %v", all, err)
	}
	web, err := res.sharedWatchFrame(moved, webOnly, mediaJSON)
	if err != nil || !strings.HasPrefix(string(web), `{"type":"DELETED"`) || !strings.Contains(string(web), `"app":"web"`) {
		t.Fatalf("app=web watch: %s %v", web, err)
	}
	// Back in: ADDED for app=web.
	back := put("web", false)
	if f, _ := res.sharedWatchFrame(back, webOnly, mediaJSON); !strings.HasPrefix(string(f), `{"type":"ADDED"`) {
		t.Fatalf("back into the selection: %s", f)
	}
	// Not seen at all by a selection that never matched.
	dbOnly := selection{labels: labels.SelectorFromSet(labels.Set{"app": "other"}), fields: fields.Everything()}
	if f, err := res.sharedWatchFrame(back, dbOnly, mediaJSON); f != nil || err != nil {
		t.Fatalf("a selection that matches neither side got %s %v", f, err)
	}
}
