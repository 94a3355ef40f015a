package apiserver

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// windowPair is a TLS connection over real loopback TCP whose server side
// reads through a windowConn.
func windowPair(t *testing.T) (server *windowConn, client *tls.Conn) {
	t.Helper()
	sraw, raw := tcpPair(t)
	stls := tls.Server(sraw, servingTLS(t))
	client = tls.Client(raw, &tls.Config{InsecureSkipVerify: true})
	handshake(t, stls, client)
	return newWindowConn(stls), client
}

// chunked writes what it is given in writes of at most n bytes.
type chunked struct {
	w io.Writer
	n int
}

func (c chunked) Write(p []byte) (int, error) {
	for i := 0; i < len(p); i += c.n {
		if _, err := c.w.Write(p[i:min(len(p), i+c.n)]); err != nil {
			return i, err
		}
	}
	return len(p), nil
}

// frameSeen is a frame the server read.
type frameSeen struct {
	typ    http2.FrameType
	stream uint32
	inc    uint32 // WINDOW_UPDATE
	window uint32 // SETTINGS' initial window, if it has one
	data   int    // DATA payload length
	ping   [8]byte
}

// The client's grants reach the server gathered, with every other frame
// in its place, whether the bytes arrive whole or one at a time.
func TestWindowConnGathersGrants(t *testing.T) {
	for _, step := range []int{0, 1, 7} {
		t.Run("write"+map[int]string{0: "Whole", 1: "Bytes", 7: "Sevens"}[step], func(t *testing.T) {
			server, client := windowPair(t)
			var w io.Writer = client
			if step > 0 {
				w = chunked{client, step}
			}
			var buf bytes.Buffer
			fr := http2.NewFramer(&buf, nil)
			fr.AllowIllegalWrites = true // the zero grant below
			buf.WriteString(http2.ClientPreface)
			// As a Go client starts: a 4 MiB stream window, then its
			// connection window grown to 1 GiB.
			fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 4 << 20})
			fr.WriteWindowUpdate(0, 1<<30-65535)
			// 300 reads of 4 KiB on stream 1: 1 MiB passes at once (a
			// quarter of either window, at most 1 MiB), the rest is held.
			for range 300 {
				fr.WriteWindowUpdate(0, 4096)
				fr.WriteWindowUpdate(1, 4096)
			}
			fr.WriteData(3, false, make([]byte, 20<<10))
			fr.WritePing(false, [8]byte{1})
			// Stream 5's grant is dropped with the stream.
			fr.WriteWindowUpdate(5, 4096)
			fr.WriteRSTStream(5, http2.ErrCodeCancel)
			// A new SETTINGS frame: the held grants go first.
			fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535})
			// With a 64 KiB window a quarter passes: four grants.
			for range 4 {
				fr.WriteWindowUpdate(7, 4096)
			}
			// A zero grant is the client's error, passed for the
			// server to answer.
			fr.WriteWindowUpdate(9, 0)
			fr.WritePing(false, [8]byte{2})
			errc := make(chan error, 1)
			go func() {
				_, err := w.Write(buf.Bytes())
				errc <- err
			}()
			type F = frameSeen
			const (
				wu   = http2.FrameWindowUpdate
				set  = http2.FrameSettings
				data = http2.FrameData
				ping = http2.FramePing
				rst  = http2.FrameRSTStream
			)
			want := []F{
				{typ: set, window: 4 << 20},
				{typ: wu, stream: 0, inc: 1<<30 - 65535},
				{typ: wu, stream: 1, inc: 256 * 4096},
				{typ: data, stream: 3, data: 20 << 10},
				{typ: ping, ping: [8]byte{1}},
				{typ: rst, stream: 5},
				// The connection's 1,200 KiB went out as 1 MiB when it
				// reached it, then the rest here.
				{typ: wu, stream: 0, inc: 44 * 4096},
				{typ: wu, stream: 1, inc: 44 * 4096},
				{typ: set, window: 65535},
				{typ: wu, stream: 7, inc: 4 * 4096},
				{typ: wu, stream: 9, inc: 0},
				{typ: ping, ping: [8]byte{2}},
			}
			// The connection's grant of 1 MiB passes between stream 1's
			// grants; find it, then compare the rest in order.
			server.SetReadDeadline(time.Now().Add(20 * time.Second))
			got := readFrames(t, server, len(want)+1)
			var conn1M int
			var rest []F
			for _, f := range got {
				if f.typ == wu && f.stream == 0 && f.inc == 256*4096 {
					conn1M++
					continue
				}
				rest = append(rest, f)
			}
			if conn1M != 1 || len(rest) != len(want) {
				t.Fatalf("got %+v", got)
			}
			for i := range want {
				if rest[i] != want[i] {
					t.Errorf("frame %d: got %+v, want %+v", i, rest[i], want[i])
				}
			}
			if err := <-errc; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// readFrames reads n frames after the preface, by hand (the framer
// refuses the zero WINDOW_UPDATE the test passes through).
func readFrames(t *testing.T, c io.Reader, n int) []frameSeen {
	t.Helper()
	pre := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(c, pre); err != nil || string(pre) != http2.ClientPreface {
		t.Fatalf("preface %q: %v", pre, err)
	}
	var seen []frameSeen
	for len(seen) < n {
		var h [9]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			t.Fatalf("after %d frames %+v: %v", len(seen), seen, err)
		}
		length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
		payload := make([]byte, length)
		if _, err := io.ReadFull(c, payload); err != nil {
			t.Fatal(err)
		}
		s := frameSeen{typ: http2.FrameType(h[3]), stream: binary.BigEndian.Uint32(h[5:]) & (1<<31 - 1)}
		switch s.typ {
		case http2.FrameWindowUpdate:
			s.inc = binary.BigEndian.Uint32(payload) & (1<<31 - 1)
		case http2.FrameSettings:
			for p := payload; len(p) >= 6; p = p[6:] {
				if http2.SettingID(binary.BigEndian.Uint16(p)) == http2.SettingInitialWindowSize {
					s.window = binary.BigEndian.Uint32(p[2:])
				}
			}
		case http2.FrameData:
			s.data = length
		case http2.FramePing:
			copy(s.ping[:], payload)
		}
		seen = append(seen, s)
	}
	return seen
}

// A read that fails (a deadline) keeps the half frame it read: once the
// deadline moves, the frame comes whole.
func TestWindowConnKeepsPartialFrameAcrossErrors(t *testing.T) {
	server, client := windowPair(t)
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	buf.WriteString(http2.ClientPreface)
	fr.WritePing(false, [8]byte{7})
	b := buf.Bytes()
	half := len(http2.ClientPreface) + 5
	if _, err := client.Write(b[:half]); err != nil {
		t.Fatal(err)
	}
	pre := make([]byte, len(http2.ClientPreface))
	if _, err := io.ReadFull(server, pre); err != nil {
		t.Fatal(err)
	}
	server.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	var ne net.Error
	if _, err := server.Read(make([]byte, 9)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read of half a frame: %v, want a timeout", err)
	}
	server.SetReadDeadline(time.Time{})
	if _, err := client.Write(b[half:]); err != nil {
		t.Fatal(err)
	}
	f, err := http2.NewFramer(io.Discard, server).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := f.(*http2.PingFrame); !ok || p.Data != [8]byte{7} {
		t.Fatalf("got %v", f)
	}
	// The client's end ends the server's reads.
	client.Close()
	if _, err := server.Read(make([]byte, 9)); err == nil {
		t.Fatal("read after the client closed: no error")
	}
}
