package app

import (
	"context"
	"log/slog"

	"k8s.io/client-go/kubernetes"
)

// runDNS runs the cluster DNS server for `headway server` until ctx ends.
// (Filled in by the cluster DNS work; a no-op until then.)
func runDNS(ctx context.Context, o Options, client kubernetes.Interface, log *slog.Logger) error {
	<-ctx.Done()
	return nil
}
