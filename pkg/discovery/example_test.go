package discovery_test

import (
	"context"
	"fmt"
	"time"

	"github.com/headway/headway/pkg/discovery"
	"github.com/headway/headway/pkg/headwaytest"
)

// Follow a headless Service's pods as a StatefulSet scales.
func ExampleWatch() {
	c, err := headwaytest.StartE(headwaytest.Options{})
	if err != nil {
		panic(err)
	}
	defer c.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	manifest := `apiVersion: v1
kind: Service
metadata: {name: nginx-headless}
spec:
  clusterIP: None
  selector: {app: nginx}
  ports: [{name: web, port: 80}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: web}
spec:
  serviceName: nginx-headless
  replicas: %d
  selector: {matchLabels: {app: nginx}}
  template:
    metadata: {labels: {app: nginx}}
    spec:
      containers: [{name: nginx, image: nginx}]
`
	objs, err := c.ApplyE(ctx, fmt.Sprintf(manifest, 2))
	if err != nil {
		panic(err)
	}
	if err := c.WaitReadyE(ctx, objs[1]); err != nil {
		panic(err)
	}

	w, err := discovery.Watch(ctx, c.Client, "nginx-headless", "default", discovery.Options{})
	if err != nil {
		panic(err)
	}
	show := func(s discovery.Snapshot) {
		for _, e := range s.Ready() {
			fmt.Println(e.DNSName, "port", e.Ports["web"].Port)
		}
	}
	for len(w.Snapshot().Ready()) < 2 {
		<-w.Changes()
	}
	show(w.Snapshot())

	if _, err := c.ApplyE(ctx, fmt.Sprintf(manifest, 1)); err != nil {
		panic(err)
	}
	for len(w.Snapshot().Ready()) != 1 {
		<-w.Changes()
	}
	fmt.Println("after scaling to 1:")
	show(w.Snapshot())
	// Output:
	// web-0.nginx-headless.default.svc.cluster.local port 80
	// web-1.nginx-headless.default.svc.cluster.local port 80
	// after scaling to 1:
	// web-0.nginx-headless.default.svc.cluster.local port 80
}
