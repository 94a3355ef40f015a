//go:build !linux

package dns

import (
	"net"
	"net/netip"
)

// udpBatch is Linux's batched UDP reads and writes; elsewhere udpLoop reads
// one datagram at a time.
type udpBatch struct{}

func newUDPBatch(*net.UDPConn) *udpBatch { return nil }

func (*udpBatch) read() (int, error)        { return 0, net.ErrClosed }
func (*udpBatch) query(int) []byte          { return nil }
func (*udpBatch) source(int) netip.AddrPort { return netip.AddrPort{} }
func (*udpBatch) answerBuf(int) []byte      { return nil }
func (*udpBatch) queue(int, []byte)         {}
func (*udpBatch) flush() error              { return nil }
