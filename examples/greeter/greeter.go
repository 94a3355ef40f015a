// Package greeter is a small gRPC service behind a headless Service, and a
// client that balances over its pods with pkg/discovery/grpcresolver: the
// example of client-side load balancing the Kubernetes documents mention
// for headless Services, with the address list following scale-up and
// scale-down as the EndpointSlices change.
//
// The service has one method, /greeter.Greeter/Hello, taking and returning
// a google.protobuf.StringValue (no generated code needed); it answers
// with the name of the pod that served the call. Manifest is its headless
// Service and StatefulSet.
//
// In a cluster, the client dials
//
//	headway:///greeter.default:grpc
//
// with round_robin; see Dial.
package greeter

import (
	"context"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/client-go/kubernetes"

	"github.com/headway/headway/pkg/discovery/grpcresolver"
)

// Manifest is the greeter's headless Service and StatefulSet (replicas set
// with fmt: Manifest has one %d). Pods serve gRPC on port 50051, named
// "grpc" in the Service.
const Manifest = `apiVersion: v1
kind: Service
metadata:
  name: greeter
spec:
  clusterIP: None
  selector: {app: greeter}
  ports: [{name: grpc, port: 50051, targetPort: 50051}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: greeter
spec:
  serviceName: greeter
  replicas: %d
  podManagementPolicy: Parallel
  selector: {matchLabels: {app: greeter}}
  template:
    metadata: {labels: {app: greeter}}
    spec:
      containers:
      - name: greeter
        image: headway.dev/examples/greeter
        ports: [{name: grpc, containerPort: 50051}]
`

// Port is the port pods serve on.
const Port = 50051

// Target is the client's dial target.
const Target = "headway:///greeter.default:grpc"

const method = "/greeter.Greeter/Hello"

// server answers Hello with its pod's name.
type server struct{ pod string }

func (s *server) hello(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return wrapperspb.String(s.pod), nil
}

// helloer is the service's Go interface (what generated code would hold).
type helloer interface {
	hello(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
}

var serviceDesc = grpc.ServiceDesc{
	ServiceName: "greeter.Greeter",
	HandlerType: (*helloer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Hello",
		Handler: func(srv any, ctx context.Context, dec func(any) error, interceptor grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			if interceptor == nil {
				return srv.(helloer).hello(ctx, in)
			}
			info := &grpc.UnaryServerInfo{Server: srv, FullMethod: method}
			return interceptor(ctx, in, info, func(ctx context.Context, req any) (any, error) {
				return srv.(helloer).hello(ctx, req.(*wrapperspb.StringValue))
			})
		},
	}},
}

// Serve serves the greeter as pod on lis until the returned server stops.
func Serve(lis net.Listener, pod string, opts ...grpc.ServerOption) *grpc.Server {
	s := grpc.NewServer(opts...)
	s.RegisterService(&serviceDesc, &server{pod: pod})
	go s.Serve(lis)
	return s
}

// Dial returns a client connection to the greeter pods that follows the
// Service's EndpointSlices through client and balances calls round robin
// over the ready pods.
func Dial(client kubernetes.Interface, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	return DialWith(grpcresolver.NewBuilder(client), opts...)
}

// DialWith is Dial with a builder of one's own (a DNS fallback, a callback).
func DialWith(b *grpcresolver.Builder, opts ...grpc.DialOption) (*grpc.ClientConn, error) {
	opts = append([]grpc.DialOption{
		grpc.WithResolvers(b),
		grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"round_robin":{}}]}`),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
	}, opts...)
	return grpc.NewClient(Target, opts...)
}

// Hello calls the greeter once and returns the name of the pod that
// answered.
func Hello(ctx context.Context, conn *grpc.ClientConn) (string, error) {
	out := new(wrapperspb.StringValue)
	if err := conn.Invoke(ctx, method, wrapperspb.String("hello"), out); err != nil {
		return "", err
	}
	return out.GetValue(), nil
}
