package network

import (
	"bufio"
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"strings"

	corev1 "k8s.io/api/core/v1"
)

// DNSSettings are the node's side of a pod's resolv.conf.
type DNSSettings struct {
	// ClusterDNS is the cluster DNS service address (198.19.0.10).
	ClusterDNS netip.Addr
	// ClusterDomain is the cluster's domain, normalised: lower case, no
	// trailing dot (cluster.local).
	ClusterDomain string
	// HostResolvConf is the host's resolv.conf, used for dnsPolicy Default
	// (and for ClusterFirst when there is no cluster DNS).
	HostResolvConf string
}

// DNSConfig is a pod's resolv.conf content: what the CRI runtime passes
// to the container runtime, and ResolvConf renders.
type DNSConfig struct {
	Servers, Searches, Options []string
}

// ResolvConf renders a pod's /etc/resolv.conf the way the kubelet does for
// its dnsPolicy and dnsConfig.
func ResolvConf(pod *corev1.Pod, s DNSSettings) []byte {
	c := PodDNS(pod, s)
	var b bytes.Buffer
	for _, s := range c.Servers {
		fmt.Fprintf(&b, "nameserver %s\n", s)
	}
	if len(c.Searches) > 0 {
		fmt.Fprintf(&b, "search %s\n", strings.Join(c.Searches, " "))
	}
	if len(c.Options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(c.Options, " "))
	}
	return b.Bytes()
}

// PodDNS is a pod's DNS configuration for its dnsPolicy and dnsConfig, as
// the kubelet makes it.
func PodDNS(pod *corev1.Pod, s DNSSettings) DNSConfig {
	var servers, searches, options []string
	hostServers, hostSearches, hostOptions := parseResolvConf(s.HostResolvConf)
	policy := pod.Spec.DNSPolicy
	if policy == "" {
		policy = corev1.DNSClusterFirst
	}
	if pod.Spec.HostNetwork && policy == corev1.DNSClusterFirst {
		policy = corev1.DNSDefault
	}
	switch policy {
	case corev1.DNSClusterFirst, corev1.DNSClusterFirstWithHostNet:
		if s.ClusterDNS.IsValid() {
			servers = []string{s.ClusterDNS.String()}
			zone := s.ClusterDomain
			searches = []string{pod.Namespace + ".svc." + zone, "svc." + zone, zone}
			searches = append(searches, hostSearches...)
			options = []string{"ndots:5"}
		} else {
			servers, searches, options = hostServers, hostSearches, hostOptions
		}
	case corev1.DNSDefault:
		servers, searches, options = hostServers, hostSearches, hostOptions
	case corev1.DNSNone:
	}
	if c := pod.Spec.DNSConfig; c != nil {
		servers = appendNew(servers, c.Nameservers...)
		searches = appendNew(searches, c.Searches...)
		for _, o := range c.Options {
			opt := o.Name
			if o.Value != nil {
				opt += ":" + *o.Value
			}
			options = mergeOption(options, opt)
		}
	}
	if len(servers) > 3 {
		servers = servers[:3]
	}
	if len(searches) > 32 {
		searches = searches[:32]
	}
	return DNSConfig{Servers: servers, Searches: searches, Options: options}
}

func appendNew(list []string, add ...string) []string {
	for _, a := range add {
		found := false
		for _, l := range list {
			found = found || l == a
		}
		if !found {
			list = append(list, a)
		}
	}
	return list
}

// mergeOption adds opt, replacing an option of the same name.
func mergeOption(options []string, opt string) []string {
	name, _, _ := strings.Cut(opt, ":")
	for i, o := range options {
		if n, _, _ := strings.Cut(o, ":"); n == name {
			options[i] = opt
			return options
		}
	}
	return append(options, opt)
}

func parseResolvConf(path string) (servers, searches, options []string) {
	if path == "" {
		return nil, nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, nil
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 || strings.HasPrefix(fields[0], "#") || strings.HasPrefix(fields[0], ";") {
			continue
		}
		switch fields[0] {
		case "nameserver":
			if len(fields) > 1 {
				if a, err := netip.ParseAddr(fields[1]); err == nil && a.IsLoopback() {
					// A loopback resolver is the host's own; from a pod's
					// network namespace it is not there.
					continue
				}
				servers = append(servers, fields[1])
			}
		case "search", "domain":
			searches = fields[1:]
		case "options":
			options = append(options, fields[1:]...)
		}
	}
	return servers, searches, options
}

// Hosts renders a pod's /etc/hosts as the kubelet writes it: loopback and
// IPv6 names, then the pod's own name (fully qualified when it has a
// subdomain), then spec.hostAliases.
func Hosts(pod *corev1.Pod, ip netip.Addr, clusterDomain string) []byte {
	var b bytes.Buffer
	b.WriteString("# Kubernetes-managed hosts file (written by headway).\n")
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	b.WriteString("fe00::0\tip6-localnet\n")
	b.WriteString("fe00::0\tip6-mcastprefix\n")
	b.WriteString("fe00::1\tip6-allnodes\n")
	b.WriteString("fe00::2\tip6-allrouters\n")
	host := Hostname(pod)
	if ip.IsValid() {
		if pod.Spec.Subdomain != "" {
			fqdn := fmt.Sprintf("%s.%s.%s.svc.%s", host, pod.Spec.Subdomain, pod.Namespace, clusterDomain)
			fmt.Fprintf(&b, "%s\t%s\t%s\n", ip, fqdn, host)
		} else {
			fmt.Fprintf(&b, "%s\t%s\n", ip, host)
		}
	}
	if len(pod.Spec.HostAliases) > 0 {
		b.WriteString("\n# Entries added by HostAliases.\n")
		for _, a := range pod.Spec.HostAliases {
			fmt.Fprintf(&b, "%s\t%s\n", a.IP, strings.Join(a.Hostnames, "\t"))
		}
	}
	return b.Bytes()
}

// Hostname is the pod's host name: spec.hostname, else the pod name, cut to
// 63 characters as the kubelet does.
func Hostname(pod *corev1.Pod) string {
	h := pod.Spec.Hostname
	if h == "" {
		h = pod.Name
	}
	if len(h) > 63 {
		h = strings.TrimRight(h[:63], "-.")
	}
	return h
}
