package dns

import (
	"net/netip"
	"reflect"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

func addrs(s ...string) []netip.Addr {
	var out []netip.Addr
	for _, a := range s {
		out = append(out, netip.MustParseAddr(a))
	}
	return out
}

func TestToSvcInfo(t *testing.T) {
	meta := metav1.ObjectMeta{Namespace: "default", Name: "Web"}
	for _, c := range []struct {
		name string
		spec corev1.ServiceSpec
		ann  map[string]string
		want svcInfo
	}{
		{"cluster IP, protocol defaults to TCP, names lower case",
			corev1.ServiceSpec{ClusterIP: "198.19.0.5", ClusterIPs: []string{"198.19.0.5", "fd00::5"}, Ports: []corev1.ServicePort{{Name: "HTTP", Port: 80}, {Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP}}},
			nil,
			svcInfo{namespace: "default", name: "web", clusterIPs: addrs("198.19.0.5", "fd00::5"),
				ports: []portInfo{{name: "http", proto: "tcp", port: 80}, {name: "dns", proto: "udp", port: 53}}}},
		{"clusterIP only (no clusterIPs)",
			corev1.ServiceSpec{ClusterIP: "::ffff:198.19.0.6"},
			nil,
			svcInfo{namespace: "default", name: "web", clusterIPs: addrs("198.19.0.6")}},
		{"headless",
			corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, ClusterIPs: []string{corev1.ClusterIPNone}},
			nil,
			svcInfo{namespace: "default", name: "web", headless: true}},
		{"external name made an FQDN, lower case",
			corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "DB.Example.org", ClusterIP: "198.19.0.7"},
			nil,
			svcInfo{namespace: "default", name: "web", external: true, externalName: "db.example.org."}},
		{"tolerate-unready-endpoints annotation",
			corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone},
			map[string]string{"service.alpha.kubernetes.io/tolerate-unready-endpoints": "true"},
			svcInfo{namespace: "default", name: "web", headless: true, publishNotReady: true}},
		{"publishNotReadyAddresses",
			corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, PublishNotReadyAddresses: true},
			nil,
			svcInfo{namespace: "default", name: "web", headless: true, publishNotReady: true}},
	} {
		m := meta
		m.Annotations = c.ann
		got := toSvcInfo(&corev1.Service{ObjectMeta: m, Spec: c.spec})
		if !reflect.DeepEqual(*got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, *got, c.want)
		}
	}
}

func TestToSliceInfo(t *testing.T) {
	p := func(s string) *string { return &s }
	n := func(i int32) *int32 { return &i }
	b := func(v bool) *bool { return &v }
	udp := corev1.ProtocolUDP
	labels := map[string]string{discoveryv1.LabelServiceName: "web"}
	for _, c := range []*struct {
		name  string
		slice discoveryv1.EndpointSlice
		want  sliceInfo
	}{
		{"ports: name lower case, protocol defaults to tcp, no port number is -1; ready unset is ready",
			discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "web-1", Labels: labels},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{{Name: p("HTTP"), Port: n(80)}, {Name: p("dns"), Protocol: &udp}},
				Endpoints: []discoveryv1.Endpoint{
					{Addresses: []string{"198.18.0.5"}, Hostname: p("Web-0")},
					{Addresses: []string{"198.18.0.6", "bad"}, Conditions: discoveryv1.EndpointConditions{Ready: b(false)}},
				},
			},
			sliceInfo{service: "default/web",
				ports: []portInfo{{name: "http", proto: "tcp", port: 80}, {name: "dns", proto: "udp", port: -1}},
				endpoints: []epInfo{
					{addrs: addrs("198.18.0.5"), hostname: "web-0", ready: true},
					{addrs: addrs("198.18.0.6"), ready: false},
				}}},
		{"no ports: one unnamed port -1; FQDN; no service label",
			discoveryv1.EndpointSlice{
				ObjectMeta:  metav1.ObjectMeta{Namespace: "default", Name: "x"},
				AddressType: discoveryv1.AddressTypeFQDN,
			},
			sliceInfo{fqdn: true, ports: []portInfo{{port: -1}}}},
	} {
		got := toSliceInfo(&c.slice)
		if !reflect.DeepEqual(got, &c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, got, &c.want)
		}
	}
}

func TestToPodInfo(t *testing.T) {
	for _, c := range []struct {
		name   string
		status corev1.PodStatus
		want   []netip.Addr
	}{
		{"podIPs", corev1.PodStatus{PodIP: "198.18.0.5", PodIPs: []corev1.PodIP{{IP: "198.18.0.5"}, {IP: "fd00::5"}}}, addrs("198.18.0.5", "fd00::5")},
		{"podIP only", corev1.PodStatus{PodIP: "198.18.0.6"}, addrs("198.18.0.6")},
		{"unparsable left out", corev1.PodStatus{PodIPs: []corev1.PodIP{{IP: "x"}, {IP: "::ffff:198.18.0.7"}}}, addrs("198.18.0.7")},
		{"none", corev1.PodStatus{}, nil},
	} {
		got := toPodInfo(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "p"}, Status: c.status})
		if got.namespace != "web" || !reflect.DeepEqual(got.addrs, c.want) {
			t.Errorf("%s: got %+v, want addrs %v", c.name, got, c.want)
		}
	}
}

// TestToCached: the informers' transform keeps an object's key, resource
// version and records, the slice's trigger time and no pod record for a
// pod being deleted; a cached record passes through unchanged (the
// informers transform their initial watch list's objects twice); the
// informers' stores key the records as they key the objects.
func TestToCached(t *testing.T) {
	at := time.Date(2026, 11, 30, 12, 0, 0, 123456789, time.UTC)
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web-1", ResourceVersion: "7",
			Labels:      map[string]string{discoveryv1.LabelServiceName: "web"},
			Annotations: map[string]string{corev1.EndpointsLastChangeTriggerTime: at.Format(time.RFC3339Nano)}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"198.18.0.1"}}},
	}
	got, err := toCached(sl)
	if err != nil {
		t.Fatal(err)
	}
	c, ok := got.(*cached)
	if !ok {
		t.Fatalf("toCached(slice) = %T, want *cached", got)
	}
	if c.namespace != "web" || c.name != "web-1" || c.resourceVersion != "7" || c.trigger != at.UnixNano() {
		t.Errorf("slice cached as %+v", c.objectKey)
	}
	if !reflect.DeepEqual(c.slice, toSliceInfo(sl)) || c.svc != nil || c.pod != nil {
		t.Errorf("slice records %+v, want %+v only", c, toSliceInfo(sl))
	}
	if again, _ := toCached(c); again != c {
		t.Errorf("toCached(cached) = %v, want the same record", again)
	}
	if key, err := cache.MetaNamespaceKeyFunc(c); err != nil || key != "web/web-1" {
		t.Errorf("informer key %q (%v), want web/web-1", key, err)
	}
	store := cache.NewStore(cache.DeletionHandlingMetaNamespaceKeyFunc)
	if err := store.Add(c); err != nil {
		t.Fatal(err)
	}
	if o, ok, _ := store.GetByKey("web/web-1"); !ok || o != c {
		t.Errorf("store holds %v, want the record", o)
	}

	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "web"}, Spec: corev1.ServiceSpec{ClusterIP: "None"}}
	got, _ = toCached(svc)
	if c := got.(*cached); !reflect.DeepEqual(c.svc, toSvcInfo(svc)) || c.slice != nil || c.trigger != 0 {
		t.Errorf("service cached as %+v", c)
	}

	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "p"}, Status: corev1.PodStatus{PodIP: "198.18.0.5"}}
	got, _ = toCached(pod)
	if c := got.(*cached); c.pod == nil || !reflect.DeepEqual(*c.pod, toPodInfo(pod)) {
		t.Errorf("pod cached as %+v", c)
	}
	pod.DeletionTimestamp = &metav1.Time{Time: at}
	got, _ = toCached(pod)
	if c := got.(*cached); c.pod != nil {
		t.Errorf("a pod being deleted cached with addresses %v", c.pod.addrs)
	}
	got, _ = toCached(&corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "web", Name: "q"}})
	if c := got.(*cached); c.pod != nil {
		t.Errorf("a pod without addresses cached with %v", c.pod.addrs)
	}

	got, _ = toCached(&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "web"}})
	if key, _ := cache.MetaNamespaceKeyFunc(got); key != "web" {
		t.Errorf("namespace keyed %q, want web", key)
	}
	cm := &corev1.ConfigMap{}
	if got, _ := toCached(cm); got != cm {
		t.Errorf("toCached(ConfigMap) = %v, want it unchanged", got)
	}
}
