package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"

	"golang.org/x/net/http2"
)

// grpcHealthCheck calls grpc.health.v1.Health/Check on addr (plain-text
// HTTP/2, as the kubelet's gRPC probe does) and succeeds when the answer
// is SERVING. The request and response are tiny protobuf messages, framed
// here by hand: HealthCheckRequest{service = 1: string} and
// HealthCheckResponse{status = 1: enum, SERVING = 1}.
func grpcHealthCheck(ctx context.Context, addr, service string) error {
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	defer tr.CloseIdleConnections()
	var msg []byte
	if service != "" {
		msg = append([]byte{0x0a}, binary.AppendUvarint(nil, uint64(len(service)))...)
		msg = append(msg, service...)
	}
	body := make([]byte, 5, 5+len(msg))
	binary.BigEndian.PutUint32(body[1:], uint32(len(msg)))
	body = append(body, msg...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/grpc.health.v1.Health/Check", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	req.Header.Set("User-Agent", "kube-probe/1.37")
	resp, err := tr.RoundTrip(req)
	if err != nil {
		return fmt.Errorf("gRPC health check: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<16))
	if err != nil {
		return fmt.Errorf("gRPC health check: %w", err)
	}
	code := resp.Trailer.Get("Grpc-Status")
	if code == "" {
		code = resp.Header.Get("Grpc-Status")
	}
	if code != "0" {
		return fmt.Errorf("gRPC health check: status %s: %s", code, resp.Trailer.Get("Grpc-Message"))
	}
	if len(data) < 5 {
		return fmt.Errorf("gRPC health check: short answer")
	}
	m := data[5:]
	status := uint64(0)
	for len(m) > 0 {
		key, n := binary.Uvarint(m)
		if n <= 0 {
			break
		}
		m = m[n:]
		if key&7 != 0 { // only varints expected
			break
		}
		v, n := binary.Uvarint(m)
		if n <= 0 {
			break
		}
		m = m[n:]
		if key>>3 == 1 {
			status = v
		}
	}
	if status != 1 {
		return fmt.Errorf("service unhealthy (responded with %s)", map[uint64]string{0: "UNKNOWN", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}[status])
	}
	return nil
}
