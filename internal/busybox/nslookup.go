// Package busybox holds applets that behave as busybox 1.28's do, for pods
// whose image is busybox under the process runtime (there are no images:
// the runtime offers the host's busybox, and these where the host's newer
// busybox prints something else). busybox:1.28 is what the Kubernetes DNS
// debugging guides use; its nslookup names every address it prints.
package busybox

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"
)

// Nslookup runs `nslookup HOST [DNS_SERVER]` as busybox 1.28 does: it
// resolves HOST with the system resolver (search list and ndots from
// /etc/resolv.conf) and prints each address with its reverse name.
func Nslookup(args []string, stdout, stderr io.Writer) int {
	if len(args) < 1 || len(args) > 2 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintln(stderr, "BusyBox v1.28 (headway) multi-call binary.\n\nUsage: nslookup [HOST] [SERVER]\n\nQuery the nameserver for the IP address of the given HOST\noptionally using a specified DNS server")
		return 1
	}
	server := ""
	if len(args) == 2 {
		server = args[1]
	} else {
		server = firstNameserver("/etc/resolv.conf")
	}
	r := resolverFor(server)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if server != "" {
		printHost(ctx, r, stdout, "Server:", server, []string{server})
		fmt.Fprintln(stdout)
	}
	addrs, err := r.LookupHost(ctx, args[0])
	if err != nil || len(addrs) == 0 {
		fmt.Fprintf(stderr, "nslookup: can't resolve '%s'\n", args[0])
		return 1
	}
	printHost(ctx, r, stdout, "Name:", args[0], addrs)
	return 0
}

// printHost prints a header line and numbered addresses with reverse names.
func printHost(ctx context.Context, r *net.Resolver, w io.Writer, header, name string, addrs []string) {
	fmt.Fprintf(w, "%-10s %s\n", header, name)
	for i, a := range addrs {
		names, err := r.LookupAddr(ctx, a)
		if err == nil && len(names) > 0 {
			fmt.Fprintf(w, "Address %d: %s %s\n", i+1, a, strings.TrimSuffix(names[0], "."))
		} else {
			fmt.Fprintf(w, "Address %d: %s\n", i+1, a)
		}
	}
}

// resolverFor returns a resolver that asks server (or the system's
// nameservers when server is empty).
func resolverFor(server string) *net.Resolver {
	if server == "" {
		return &net.Resolver{PreferGo: true}
	}
	addr := server
	if _, _, err := net.SplitHostPort(server); err != nil {
		addr = net.JoinHostPort(server, "53")
	}
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, addr)
	}}
}

// firstNameserver reads the first nameserver of a resolv.conf.
func firstNameserver(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "nameserver" {
			return fields[1]
		}
	}
	return ""
}
