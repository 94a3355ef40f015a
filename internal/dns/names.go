package dns

import (
	"math"
	"net/netip"
	"slices"
	"sort"
	"strings"
)

// The DNS naming rules of the Kubernetes DNS-Based Service Discovery
// specification, as CoreDNS' kubernetes plugin answers them. zone is always
// a lower-case FQDN ("cluster.local."); every name returned is one too.

// nameServerName is the name of the cluster DNS server in a zone: the
// target of the apex NS record and the SOA's MNAME.
func nameServerName(zone string) string { return "ns.dns." + zone }

// versionName is where the schema version is served as TXT.
func versionName(zone string) string { return "dns-version." + zone }

// namespaceName is the name a namespace defines under sub ("svc" or
// "pod"): <ns>.svc.<zone>, <ns>.pod.<zone>.
func namespaceName(ns, sub, zone string) string { return ns + "." + sub + "." + zone }

// namespaceDefines tells whether an existing namespace defines its name
// under sub: always under svc, under pod unless pod records are disabled.
func namespaceDefines(sub, podMode string) bool {
	return sub == "svc" || podMode != PodsDisabled
}

// serviceName is a Service's name: <service>.<ns>.svc.<zone>.
func serviceName(service, ns, zone string) string {
	return service + "." + ns + ".svc." + zone
}

// externalTarget is the CNAME target of an ExternalName Service, false
// when it answers nothing: no external name, or an address as external
// name (as CoreDNS).
func externalTarget(externalName string) (string, bool) {
	if externalName == "" {
		return "", false
	}
	if _, err := netip.ParseAddr(strings.TrimSuffix(externalName, ".")); err == nil {
		return "", false
	}
	return externalName, true
}

// served tells whether an endpoint is in DNS: when ready, or always when
// its Service publishes not-ready addresses.
func served(ready, publishNotReady bool) bool { return ready || publishNotReady }

// endpointLabel is the first label of an endpoint's name under its
// Service: its hostname (explicit), else its address dashed.
func endpointLabel(hostname string, a netip.Addr) (label string, explicit bool) {
	if hostname != "" {
		return hostname, true
	}
	return dashed(a), false
}

// endpointName is an endpoint's name: <label>.<service name>.
func endpointName(label, service string) string { return label + "." + service }

// labelOK tells whether an endpoint label can be a DNS label (at most 63
// bytes): longer ones get no name of their own.
func labelOK(label string) bool { return len(label) <= 63 }

// portNamed tells whether a port gets a SRV name: it has a name and a
// number.
func portNamed(p portInfo) bool { return p.name != "" && p.port >= 0 }

// portName is the SRV name of a named port: _<port>._<proto>.<service name>.
func portName(port, proto, service string) string {
	return "_" + port + "._" + proto + "." + service
}

// srvWeight is the weight of each SRV record of a name standing for n
// entries: 100/n rounded down, at least 1 (as CoreDNS).
func srvWeight(n int) uint16 {
	w := uint16(math.Floor(100.0 / float64(n)))
	if w == 0 {
		w = 1
	}
	return w
}

// PTR priorities: which names an address's PTR record gives.
const (
	prioClusterIP = 0 // the Service's name, for its cluster IP
	prioHostname  = 1 // an endpoint's name from its hostname
	prioAddress   = 2 // an endpoint's name from its dashed address
)

// ptrTarget is a name an address's PTR record may give.
type ptrTarget struct {
	name string
	prio uint8 // prioClusterIP, prioHostname or prioAddress
}

// endpointPrio is the PTR priority of an endpoint's name.
func endpointPrio(explicit bool) uint8 {
	if explicit {
		return prioHostname
	}
	return prioAddress
}

// ptrNames are the names an address's PTR record gives, from every
// Service's targets for it (in a stable order): a cluster IP names its
// Service only; otherwise every endpoint name, those from hostnames first,
// each once. It sorts targets.
func ptrNames(targets []ptrTarget) []string {
	sort.SliceStable(targets, func(i, j int) bool {
		if targets[i].prio != targets[j].prio {
			return targets[i].prio < targets[j].prio
		}
		return targets[i].name < targets[j].name
	})
	if targets[0].prio == prioClusterIP {
		return []string{targets[0].name}
	}
	var out []string
	for _, t := range targets {
		if !slices.Contains(out, t.name) {
			out = append(out, t.name)
		}
	}
	return out
}

// dashed is the CoreDNS name of an address: 198-18-0-5, fd00--5.
func dashed(a netip.Addr) string {
	s := a.String()
	if a.Is4() {
		return strings.ReplaceAll(s, ".", "-")
	}
	s = strings.ReplaceAll(s, ":", "-")
	if strings.HasSuffix(s, "-") {
		s += "0"
	}
	return s
}

// podName is the pod record name of an address in a namespace.
func podName(a netip.Addr, ns, zone string) string {
	s := a.String()
	if a.Is4() {
		s = strings.ReplaceAll(s, ".", "-")
	} else {
		s = strings.ReplaceAll(s, ":", "-")
	}
	return s + "." + ns + ".pod." + zone
}

// podAddr parses the first label of a pod record name as CoreDNS does.
func podAddr(label string) (netip.Addr, bool) {
	var s string
	if strings.Count(label, "-") == 3 && !strings.Contains(label, "--") {
		s = strings.ReplaceAll(label, "-", ".")
	} else {
		s = strings.ReplaceAll(label, "-", ":")
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, false
	}
	return a, true
}

// reverseName is the in-addr.arpa./ip6.arpa. name of an address.
func reverseName(a netip.Addr) string {
	var b strings.Builder
	if a.Is4() {
		v := a.As4()
		for i := 3; i >= 0; i-- {
			b.WriteString(itoa(int(v[i])))
			b.WriteByte('.')
		}
		b.WriteString("in-addr.arpa.")
		return b.String()
	}
	v := a.As16()
	const hex = "0123456789abcdef"
	for i := 15; i >= 0; i-- {
		b.WriteByte(hex[v[i]&0xf])
		b.WriteByte('.')
		b.WriteByte(hex[v[i]>>4])
		b.WriteByte('.')
	}
	b.WriteString("ip6.arpa.")
	return b.String()
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
