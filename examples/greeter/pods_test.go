package greeter_test

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/headway/headway/examples/greeter"
)

// pods are the greeter's simulated pods: the simulated kubelet gives each
// a loopback address, and a pod becomes Ready once a greeter serves on it,
// in this process. A pod's server stops when the pod is gone from the API.
type pods struct {
	mu      sync.Mutex
	servers map[string]*grpc.Server // by pod name
	first   map[string]time.Time    // first call each pod served
	addrs   map[string]string       // host:port by pod name
	errs    []error
}

func newPods() *pods {
	return &pods{servers: map[string]*grpc.Server{}, first: map[string]time.Time{}, addrs: map[string]string{}}
}

// ready is headwaytest's PodReady: serve on the pod's address, then say
// Ready.
func (p *pods) ready(pod *corev1.Pod) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.servers[pod.Name]; ok {
		return true
	}
	lis, err := net.Listen("tcp", net.JoinHostPort(pod.Status.PodIP, strconv.Itoa(greeter.Port)))
	if err != nil {
		p.errs = append(p.errs, err)
		return false
	}
	name := pod.Name
	p.addrs[name] = lis.Addr().String()
	p.servers[name] = greeter.Serve(lis, name, grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		p.mu.Lock()
		if _, ok := p.first[name]; !ok {
			p.first[name] = time.Now()
		}
		p.mu.Unlock()
		return h(ctx, req)
	}))
	return true
}

// addr is where pod serves.
func (p *pods) addr(pod string) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.addrs[pod]
}

// firstCall is when pod served its first call (zero: never).
func (p *pods) firstCall(pod string) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.first[pod]
}

// follow stops each pod's server once the pod is deleted from the API,
// until ctx ends; then it stops them all.
func (p *pods) follow(t *testing.T, ctx context.Context, client kubernetes.Interface) {
	factory := informers.NewSharedInformerFactory(client, 0)
	inf := factory.Core().V1().Pods().Informer()
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{DeleteFunc: func(obj any) {
		if d, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = d.Obj
		}
		if pod, ok := obj.(*corev1.Pod); ok {
			p.stop(pod.Name)
		}
	}})
	factory.Start(ctx.Done())
	t.Cleanup(func() {
		factory.Shutdown()
		p.stopAll()
		p.mu.Lock()
		errs := p.errs
		p.mu.Unlock()
		for _, err := range errs {
			t.Errorf("serving a pod: %v", err)
		}
	})
}

func (p *pods) stop(name string) {
	p.mu.Lock()
	s := p.servers[name]
	delete(p.servers, name)
	p.mu.Unlock()
	if s != nil {
		s.Stop()
	}
}
