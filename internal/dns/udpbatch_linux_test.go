package dns

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"
)

// Datagrams from several senders wait in the socket; one read takes them
// all, each with its own bytes and sender, and one flush answers each
// sender with its own answer.
func TestUDPBatchReadsWaitingDatagramsAndAnswersEachSender(t *testing.T) {
	for _, tc := range []struct{ network, addr string }{{"udp4", "127.0.0.1:0"}, {"udp6", "[::1]:0"}} {
		t.Run(tc.network, func(t *testing.T) {
			pc, err := net.ListenPacket(tc.network, tc.addr)
			if err != nil {
				t.Skipf("no %s loopback here: %v", tc.network, err)
			}
			srv := pc.(*net.UDPConn)
			defer srv.Close()
			b := newUDPBatch(srv)
			if b == nil {
				t.Fatal("no batch reader for a UDP socket")
			}
			// Three senders, 5 datagrams each, the last of each longer than
			// a slot's buffer: 15 datagrams, 16 slots.
			var clients []*net.UDPConn
			sent := map[netip.AddrPort][][]byte{}
			for c := range 3 {
				cc, err := net.DialUDP(tc.network, nil, srv.LocalAddr().(*net.UDPAddr))
				if err != nil {
					t.Fatal(err)
				}
				defer cc.Close()
				clients = append(clients, cc)
				from := cc.LocalAddr().(*net.UDPAddr).AddrPort()
				for i := range 5 {
					msg := []byte(fmt.Sprintf("client %d datagram %d", c, i))
					if i == 4 {
						msg = append(msg, bytes.Repeat([]byte{'x'}, udpBatchBuf)...)
					}
					if _, err := cc.Write(msg); err != nil {
						t.Fatal(err)
					}
					sent[from] = append(sent[from], msg)
				}
			}
			srv.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := 0
			for got < 15 {
				n, err := b.read()
				if err != nil {
					t.Fatalf("read: %v", err)
				}
				if got == 0 && n < 2 {
					t.Errorf("the first read took %d datagram(s) of the 15 waiting", n)
				}
				for i := range n {
					from := b.source(i)
					want := sent[netip.AddrPortFrom(from.Addr().WithZone(""), from.Port())]
					if len(want) == 0 {
						t.Fatalf("datagram %d from %v: no such sender (senders %v)", i, from, keys(sent))
					}
					q := b.query(i)
					if w := want[0]; len(w) > udpBatchBuf {
						if len(q) != udpBatchBuf || !bytes.Equal(q, w[:udpBatchBuf]) {
							t.Errorf("long datagram from %v: got %d bytes, want its first %d", from, len(q), udpBatchBuf)
						}
					} else if !bytes.Equal(q, w) {
						t.Errorf("datagram from %v: %q, want %q", from, q, w)
					}
					sent[netip.AddrPortFrom(from.Addr().WithZone(""), from.Port())] = want[1:]
					b.queue(i, append(b.answerBuf(i), "answer to "+string(q[:min(len(q), len("client 0 datagram 0"))])...))
				}
				if err := b.flush(); err != nil {
					t.Fatalf("flush: %v", err)
				}
				got += n
			}
			for c, cc := range clients {
				cc.SetReadDeadline(time.Now().Add(5 * time.Second))
				buf := make([]byte, 100)
				for i := range 5 {
					n, err := cc.Read(buf)
					if err != nil {
						t.Fatalf("client %d, answer %d: %v", c, i, err)
					}
					want := fmt.Sprintf("answer to client %d datagram %d", c, i)
					if string(buf[:n]) != want {
						t.Errorf("client %d got %q, want %q", c, buf[:n], want)
					}
				}
			}
		})
	}
}

func keys[K comparable, V any](m map[K]V) []K {
	var ks []K
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
