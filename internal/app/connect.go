package app

import (
	"context"
	"time"

	"k8s.io/client-go/kubernetes"
)

// connect makes one request with client (its server's version) so that
// its transport holds a connection before a component starts its
// informers. On a fresh transport, requests made at once each dial and
// shake hands (net/http does not wait for the HTTP/2 connection being
// set up): the controllers' ~20 informers cost ~20 TLS handshakes, client
// and server side, for the one connection that is kept, which was most of
// the CPU of a start. A failure is ignored: the informers retry on their
// own.
func connect(ctx context.Context, client kubernetes.Interface) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	client.Discovery().RESTClient().Get().AbsPath("/version").Do(ctx).Error()
}
