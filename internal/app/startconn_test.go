package app_test

import (
	"testing"

	"github.com/headway/headway/internal/testing/cluster"
)

// TestStartOneConnection: before it is ready, the server's own clients
// reach its API over one connection (one TLS handshake). The built-in
// objects, the default RBAC objects and the authorizer's informers start
// their requests at once; on a client without a connection each dialled
// its own (8 handshakes, 12 % of a start's CPU) until the server made one
// request first.
func TestStartOneConnection(t *testing.T) {
	for _, store := range []string{"memory", "bolt"} {
		t.Run(store, func(t *testing.T) {
			dir := t.TempDir()
			var opts []cluster.Option
			if store == "bolt" {
				opts = append(opts, cluster.WithBolt(dir))
			}
			c, err := cluster.StartE(dir, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Stop()
			if n := c.Running.StartConnections; n != 1 {
				t.Errorf("the API accepted %d connections before ready, want 1 (its own clients' shared connection)", n)
			}
		})
	}
}
