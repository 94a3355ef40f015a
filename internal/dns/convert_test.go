package dns

import (
	"net/netip"
	"reflect"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
	for _, c := range []struct {
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
		if !reflect.DeepEqual(*got, c.want) {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, *got, c.want)
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
