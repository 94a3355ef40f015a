package apiserver

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"net/http"

	"golang.org/x/net/http2"
)

// windowConn is an HTTP/2 connection above its TLS, as the HTTP/2 server
// reads it: it gathers the client's WINDOW_UPDATE frames.
//
// A Go client (client-go's informers) grants the server more window after
// every 4 KiB it reads, for the stream and for the connection: a watch
// carrying 40 KiB of events a create (100 watchers of a 400-byte object)
// brings back ten TLS records of two frames each, and the HTTP/2 server
// hands every frame from its reading goroutine to its serving one and
// back: with 100 client-go watchers, about half the server's extra CPU per
// watched create (bench/apiserver -watch-mode split). windowConn holds the
// grants and passes them on in one frame once they add up to a quarter of
// the client's window (at most windowHoldMax): the server's view of the
// window lags the client's by less than that, so it never stalls for a
// grant that is held, and it sends what the client allowed, never more.
// Every other frame, and the client's preface, passes as it came, in order.
type windowConn struct {
	*tls.Conn

	buf    []byte // what was read from the connection and not yet handled
	in     []byte // buf's unhandled part
	out    []byte // frames to hand over before anything else (outBuf)
	outBuf []byte
	pass   int // bytes still to hand over as they are (the preface, a frame)

	streamWindow uint32            // the client's initial stream window (SETTINGS)
	connWindow   uint32            // a lower bound of the client's connection window
	connHeld     uint32            // held grants for the connection
	held         map[uint32]uint32 // held grants per stream
}

const (
	h2FrameHeader   = 9
	h2DefaultWindow = 65535
	h2MaxWindow     = 1<<31 - 1

	// windowHoldMax bounds a held grant (a Go client's stream window is 4
	// MiB, its connection window 1 GiB).
	windowHoldMax = 1 << 20
	// windowHeldStreams bounds the streams with held grants: more, and
	// every grant goes out (a stream's grant outlives the stream).
	windowHeldStreams = 128
	// windowSettingsMax is the largest SETTINGS frame read for its window
	// (a larger one passes as it is); windowReadBuf holds it whole.
	windowSettingsMax = 1024
	windowReadBuf     = 2048
)

func newWindowConn(c *tls.Conn) *windowConn {
	return &windowConn{
		Conn:         c,
		buf:          make([]byte, windowReadBuf),
		pass:         len(http2.ClientPreface),
		streamWindow: h2DefaultWindow,
		connWindow:   h2DefaultWindow,
	}
}

func (c *windowConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if len(c.out) > 0 {
			n := copy(p, c.out)
			c.out = c.out[n:]
			return n, nil
		}
		if c.pass > 0 {
			n, err := c.passOn(p[:min(len(p), c.pass)])
			c.pass -= n
			return n, err
		}
		// A read that fails keeps what it read for the next: a deadline
		// may be moved and the read tried again.
		if err := c.fill(h2FrameHeader); err != nil {
			return 0, err
		}
		length := int(c.in[0])<<16 | int(c.in[1])<<8 | int(c.in[2])
		typ, flags := http2.FrameType(c.in[3]), http2.Flags(c.in[4])
		id := binary.BigEndian.Uint32(c.in[5:9]) & h2MaxWindow
		switch {
		case typ == http2.FrameWindowUpdate && length == 4:
			if err := c.fill(h2FrameHeader + 4); err != nil {
				return 0, err
			}
			inc := binary.BigEndian.Uint32(c.in[9:13]) & h2MaxWindow
			if inc == 0 { // a protocol error the server answers
				c.pass = h2FrameHeader + 4
				continue
			}
			c.in = c.in[h2FrameHeader+4:]
			c.grant(id, inc)
		case typ == http2.FrameSettings && !flags.Has(http2.FlagSettingsAck) && length%6 == 0 && length <= windowSettingsMax:
			if err := c.fill(h2FrameHeader + length); err != nil {
				return 0, err
			}
			// Grants held go first, as the client sent them: a new
			// initial window applies to the windows they made.
			c.releaseAll()
			for s := c.in[h2FrameHeader : h2FrameHeader+length]; len(s) >= 6; s = s[6:] {
				if http2.SettingID(binary.BigEndian.Uint16(s)) == http2.SettingInitialWindowSize {
					c.streamWindow = binary.BigEndian.Uint32(s[2:])
				}
			}
			c.pass = h2FrameHeader + length
		case typ == http2.FrameRSTStream:
			delete(c.held, id) // the stream is over: its grant no longer matters
			c.pass = h2FrameHeader + length
		default:
			c.pass = h2FrameHeader + length
		}
	}
}

// passOn hands over bytes as they came: first what was read ahead, then
// straight from the connection.
func (c *windowConn) passOn(p []byte) (int, error) {
	if len(c.in) > 0 {
		n := copy(p, c.in)
		c.in = c.in[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// fill reads until in holds n bytes (at most windowReadBuf).
func (c *windowConn) fill(n int) error {
	for len(c.in) < n {
		if cap(c.in) < n || len(c.in) == 0 {
			// Move what is left to the front; cap(in) counts from
			// in's start to buf's end.
			k := copy(c.buf, c.in)
			c.in = c.buf[:k]
		}
		m, err := c.Conn.Read(c.in[len(c.in):cap(c.in)])
		c.in = c.in[:len(c.in)+m]
		if err != nil && len(c.in) < n {
			return err
		}
	}
	return nil
}

// limit is how much grant is held for stream id (0: the connection).
func (c *windowConn) limit(id uint32) uint32 {
	w := c.streamWindow
	if id == 0 {
		w = c.connWindow
	}
	return min(w/4, windowHoldMax)
}

// grant holds a grant of inc for stream id, or passes it on with what is
// held once that adds up to the limit.
func (c *windowConn) grant(id, inc uint32) {
	var held uint32
	if id == 0 {
		// A grant is never more than the window it refills or grows.
		c.connWindow = max(c.connWindow, inc)
		held = c.connHeld
	} else {
		held = c.held[id]
	}
	sum := uint64(held) + uint64(inc)
	if sum < uint64(c.limit(id)) {
		if id == 0 {
			c.connHeld = uint32(sum)
			return
		}
		if _, ok := c.held[id]; !ok && len(c.held) >= windowHeldStreams {
			c.releaseAll()
		}
		if c.held == nil {
			c.held = make(map[uint32]uint32)
		}
		c.held[id] = uint32(sum)
		return
	}
	if id == 0 {
		c.connHeld = 0
	} else {
		delete(c.held, id)
	}
	if sum > h2MaxWindow { // each was valid alone: send them apart
		c.emit(id, held)
		c.emit(id, inc)
		return
	}
	c.emit(id, uint32(sum))
}

// releaseAll passes on every held grant.
func (c *windowConn) releaseAll() {
	c.emit(0, c.connHeld)
	c.connHeld = 0
	for id, n := range c.held {
		c.emit(id, n)
	}
	clear(c.held)
}

// emit queues a WINDOW_UPDATE frame for the reader.
func (c *windowConn) emit(id, inc uint32) {
	if inc == 0 {
		return
	}
	if len(c.out) == 0 {
		c.out = c.outBuf[:0]
	}
	var f [h2FrameHeader + 4]byte
	f[2] = 4
	f[3] = byte(http2.FrameWindowUpdate)
	binary.BigEndian.PutUint32(f[5:], id)
	binary.BigEndian.PutUint32(f[9:], inc)
	c.out = append(c.out, f[:]...)
	c.outBuf = c.out[:0]
}

// serveHTTP2 makes srv serve HTTP/2 with golang.org/x/net/http2 (the same
// server net/http bundles) on a windowConn: net/http's own hands its
// server the *tls.Conn only.
func serveHTTP2(srv *http.Server) error {
	h2 := &http2.Server{}
	if err := http2.ConfigureServer(srv, h2); err != nil {
		return err
	}
	srv.TLSNextProto[http2.NextProtoTLS] = func(hs *http.Server, c *tls.Conn, h http.Handler) {
		// net/http passes its per-connection context on the handler.
		var ctx context.Context
		if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
			ctx = bc.BaseContext()
		}
		h2.ServeConn(newWindowConn(c), &http2.ServeConnOpts{Context: ctx, Handler: h, BaseConfig: hs})
	}
	return nil
}
