package headwaytest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/headway/headway/pkg/headwaytest"
)

// A Deployment behind a Service, ready, and the Service's name resolved
// by the cluster's DNS. In a test, use Start(t, ...), Apply and WaitReady,
// which fail the test instead of returning errors.
func ExampleStartE() {
	c, err := headwaytest.StartE(headwaytest.Options{})
	if err != nil {
		panic(err)
	}
	defer c.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	objs, err := c.ApplyE(ctx, `apiVersion: apps/v1
kind: Deployment
metadata: {name: hello}
spec:
  replicas: 3
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      containers: [{name: hello, image: hello}]
---
apiVersion: v1
kind: Service
metadata: {name: hello}
spec:
  clusterIP: None
  selector: {app: hello}
  ports: [{port: 80}]
`)
	if err != nil {
		panic(err)
	}
	for _, o := range objs {
		if err := c.WaitReadyE(ctx, o); err != nil {
			panic(err)
		}
	}
	ips, err := c.Resolver.LookupNetIP(ctx, "ip4", "hello.default.svc.cluster.local.")
	if err != nil {
		panic(err)
	}
	fmt.Println(len(ips), "addresses for hello.default.svc.cluster.local")
	// Output: 3 addresses for hello.default.svc.cluster.local
}
