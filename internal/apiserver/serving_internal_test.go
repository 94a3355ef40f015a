package apiserver

import (
	"container/list"
	"net"
	"net/http"
	"testing"
)

// closeRecorder is a connection that remembers being closed.
type closeRecorder struct {
	net.Conn
	closed bool
}

func (c *closeRecorder) Close() error { c.closed = true; return nil }

// On a stop the server closes the connections that are idle (an HTTP/2
// connection between requests stays open until its client closes it
// otherwise) and leaves those with a request in flight to finish.
func TestCloseIdleClosesOnlyIdleConnections(t *testing.T) {
	l := &connLimiter{max: 10, conns: list.New()}
	states := []http.ConnState{http.StateIdle, http.StateActive, http.StateNew, http.StateIdle}
	var raw []*closeRecorder
	for _, st := range states {
		r := &closeRecorder{}
		lc := &limitedConn{Conn: r, l: l, state: http.StateNew}
		if _, ok := l.add(lc); !ok {
			t.Fatal("the limiter refused a connection below its limit")
		}
		l.setState(lc, st)
		raw = append(raw, r)
	}
	l.closeIdle()
	if n := l.open(); n != 2 {
		t.Fatalf("%d connections tracked after closeIdle, want 2 (the active and the new one)", n)
	}
	for i, r := range raw {
		if want := states[i] == http.StateIdle; r.closed != want {
			t.Errorf("connection %d (%v): closed=%v, want %v", i, states[i], r.closed, want)
		}
	}
}
