package apiserver

import (
	"net"
	"sync"
	"time"
)

// recordConn is the connection under the server's TLS: it gathers the
// records of one large TLS write into one write to the socket.
//
// crypto/tls cuts a write into records of at most 16 KiB of plaintext and
// writes each to the connection on its own: a watch flush of 40 KiB (a
// burst's events for one watcher) cost three writes, each a trip through
// the kernel's TCP stack and a wake of the reader. A full-size record is
// followed by the rest of the same write at once (tls writes them in a
// loop), so recordConn holds full-size records and writes them with the
// next smaller one: one write per TLS write. A write whose length is an
// exact multiple of 16 KiB ends with a full-size record; holdFor bounds how
// long that waits for a next record that may not come (recordHoldFor).
type recordConn struct {
	net.Conn

	holdFor time.Duration // how long held records wait for the next

	mu    sync.Mutex
	held  []byte
	timer *time.Timer
	err   error // a held write that failed, reported by the next write
}

const (
	// tlsRecordHeader is a TLS record's header: type, version, length.
	tlsRecordHeader = 5
	// tlsFullRecord is the shortest ciphertext of a record carrying the
	// most plaintext (16 KiB), with the smallest AEAD overhead (TLS 1.3:
	// the content type byte and a 16-byte tag).
	tlsFullRecord = 16384 + 17
	// recordHoldMax bounds what is held: more goes out at once.
	recordHoldMax = 256 << 10
	// recordHoldFor bounds how long a full-size record waits for the next
	// (tls encrypts 16 KiB in a few microseconds).
	recordHoldFor = 500 * time.Microsecond
)

func newRecordConn(c net.Conn) *recordConn { return &recordConn{Conn: c, holdFor: recordHoldFor} }

// fullRecord reports whether p is exactly one application-data record
// carrying the most plaintext a record can.
func fullRecord(p []byte) bool {
	if len(p) < tlsRecordHeader || p[0] != 23 { // application data
		return false
	}
	n := int(p[3])<<8 | int(p[4])
	return n >= tlsFullRecord && len(p) == tlsRecordHeader+n
}

func (c *recordConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return 0, c.err
	}
	if fullRecord(p) && len(c.held)+len(p) <= recordHoldMax {
		// The wait runs from the newest record.
		if c.timer == nil {
			c.timer = time.AfterFunc(c.holdFor, c.release)
		} else {
			c.timer.Reset(c.holdFor)
		}
		c.held = append(c.held, p...)
		return len(p), nil
	}
	if len(c.held) == 0 {
		return c.Conn.Write(p)
	}
	c.timer.Stop()
	c.held = append(c.held, p...)
	err := c.writeHeld()
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// writeHeld writes what is held (c.mu held).
func (c *recordConn) writeHeld() error {
	_, err := c.Conn.Write(c.held)
	if cap(c.held) > recordHoldMax+tlsFullRecord {
		c.held = nil
	} else {
		c.held = c.held[:0]
	}
	if err != nil {
		c.err = err
	}
	return err
}

// release writes held records that no next record followed in time.
func (c *recordConn) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.held) > 0 {
		_ = c.writeHeld()
	}
}

// Close closes the connection first, so that a write blocked on it (under
// mu) returns; records still held are dropped with it (tls writes its
// closing alert, which sends them, before it closes).
func (c *recordConn) Close() error {
	err := c.Conn.Close()
	c.mu.Lock()
	if c.timer != nil {
		c.timer.Stop()
	}
	c.held = nil
	c.mu.Unlock()
	return err
}
