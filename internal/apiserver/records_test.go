package apiserver

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/headway/headway/internal/pki"
)

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// servingTLS is the server's TLS config with the serving certificate
// headway's PKI issues.
func servingTLS(t *testing.T) *tls.Config {
	t.Helper()
	b, err := pki.LoadOrCreateWith(t.TempDir(), []string{"127.0.0.1"}, pki.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{b.Serving}}
}

// tcpPair is a connection over real loopback TCP: the server's end and
// the client's.
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, ok := <-accepted
	if !ok {
		client.Close()
		t.Fatal("accept failed")
	}
	return server, client
}

// handshake completes the TLS handshake of both ends, and closes them when
// the test ends.
func handshake(t *testing.T, server, client *tls.Conn) {
	t.Helper()
	t.Cleanup(func() { server.Close(); client.Close() })
	errc := make(chan error, 1)
	go func() { errc <- server.Handshake() }()
	if err := client.Handshake(); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
}

// tlsPair is a TLS connection over real loopback TCP whose server side
// writes through a recordConn over a countingConn.
func tlsPair(t *testing.T, version uint16) (server *tls.Conn, count *countingConn, client *tls.Conn) {
	t.Helper()
	sraw, raw := tcpPair(t)
	count = &countingConn{Conn: sraw}
	cfg := servingTLS(t)
	cfg.MinVersion, cfg.MaxVersion = version, version
	rc := newRecordConn(count)
	// Long enough that a slow test machine never releases records early.
	rc.holdFor = 200 * time.Millisecond
	server = tls.Server(rc, cfg)
	client = tls.Client(raw, &tls.Config{InsecureSkipVerify: true, MinVersion: version, MaxVersion: version})
	handshake(t, server, client)
	// Past crypto/tls's small first records (it grows them over the
	// first 128 KiB a connection sends).
	warm := make([]byte, 160<<10)
	go server.Write(warm)
	if _, err := io.ReadFull(client, make([]byte, len(warm))); err != nil {
		t.Fatal(err)
	}
	return server, count, client
}

func TestRecordConnOneSocketWritePerTLSWrite(t *testing.T) {
	for _, v := range []struct {
		name    string
		version uint16
	}{{"TLS1.3", tls.VersionTLS13}, {"TLS1.2", tls.VersionTLS12}} {
		t.Run(v.name, func(t *testing.T) {
			server, count, client := tlsPair(t, v.version)
			for _, size := range []int{100, 16 << 10, 40<<10 + 123, 200 << 10, 32 << 10} {
				payload := make([]byte, size)
				rand.Read(payload)
				before := count.writes.Load()
				errc := make(chan error, 1)
				go func() {
					_, err := server.Write(payload)
					errc <- err
				}()
				client.SetReadDeadline(time.Now().Add(10 * time.Second))
				got := make([]byte, size)
				if _, err := io.ReadFull(client, got); err != nil {
					t.Fatalf("%d bytes: reading: %v", size, err)
				}
				if err := <-errc; err != nil {
					t.Fatalf("%d bytes: writing: %v", size, err)
				}
				if !bytes.Equal(got, payload) {
					t.Fatalf("%d bytes: the client read other bytes than the server wrote", size)
				}
				// 200 KiB is held at most recordHoldMax at a time.
				want := int64(1)
				if size > recordHoldMax {
					want = int64((size + recordHoldMax - 1) / recordHoldMax)
				}
				// A write of exactly 32 KiB ends with a full record, which the
				// release timer sends: still one socket write.
				if n := count.writes.Load() - before; n != want {
					t.Errorf("a %d-byte TLS write took %d socket writes, want %d", size, n, want)
				}
			}
		})
	}
}

// blockingConn's writes block until it is closed.
type blockingConn struct {
	net.Conn
	closed chan struct{}
	once   sync.Once
}

func (c *blockingConn) Write(p []byte) (int, error) {
	<-c.closed
	return 0, net.ErrClosed
}

func (c *blockingConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func TestRecordConnCloseEndsABlockedWrite(t *testing.T) {
	rc := newRecordConn(&blockingConn{closed: make(chan struct{})})
	done := make(chan error, 1)
	go func() {
		_, err := rc.Write([]byte("a small record"))
		done <- err
	}()
	closed := make(chan struct{})
	go func() {
		rc.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for the write it should end")
	}
	select {
	case err := <-done:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("the blocked write returned %v, want net.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the blocked write did not return after Close")
	}
}

// failingConn fails every write.
type failingConn struct{ net.Conn }

var errBroken = errors.New("broken pipe")

func (failingConn) Write(p []byte) (int, error) { return 0, errBroken }

func TestRecordConnReportsAFailedHeldWrite(t *testing.T) {
	rc := newRecordConn(failingConn{})
	full := make([]byte, tlsRecordHeader+tlsFullRecord)
	full[0], full[3], full[4] = 23, byte(tlsFullRecord>>8), byte(tlsFullRecord&0xff)
	if !fullRecord(full) {
		t.Fatal("a full-size application-data record is not taken for one")
	}
	if n, err := rc.Write(full); err != nil || n != len(full) {
		t.Fatalf("holding a full record: %d, %v", n, err)
	}
	// Nothing follows: the release timer writes it, and fails.
	deadline := time.Now().Add(10 * time.Second)
	for {
		rc.mu.Lock()
		err := rc.err
		rc.mu.Unlock()
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the held record was never written")
		}
		time.Sleep(time.Millisecond)
	}
	if _, err := rc.Write([]byte("next")); !errors.Is(err, errBroken) {
		t.Fatalf("the write after a failed held one returned %v, want the failure", err)
	}
}

func TestFullRecord(t *testing.T) {
	rec := func(typ byte, n int) []byte {
		p := make([]byte, tlsRecordHeader+n)
		p[0], p[3], p[4] = typ, byte(n>>8), byte(n)
		return p
	}
	for _, c := range []struct {
		name string
		p    []byte
		want bool
	}{
		{"TLS 1.3 full", rec(23, 16384+17), true},
		{"TLS 1.2 GCM full", rec(23, 16384+24), true},
		{"short", rec(23, 4000), false},
		{"handshake", rec(22, 16384+17), false},
		{"two records", append(rec(23, 16384+17), rec(23, 10)...), false},
		{"header only", []byte{23, 3, 3}, false},
	} {
		if got := fullRecord(c.p); got != c.want {
			t.Errorf("%s: fullRecord = %v, want %v", c.name, got, c.want)
		}
	}
}
