package process

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"sync"
	"time"

	"github.com/creack/pty"

	hwruntime "github.com/headway/headway/internal/agent/runtime"
)

// MaxLogSize is the size at which a container's log file is rotated: it is
// renamed to <file>.1 (replacing the previous one) and a new file begun, so
// a container keeps at most twice this much log.
var MaxLogSize int64 = 10 << 20

// maxLogLine is the longest log line written whole; longer output is split
// into partial ("P") lines, as the CRI log format does.
const maxLogLine = 16 * 1024

// stdio is a container's standard streams: a pseudo-terminal (tty: true)
// or pipes. Pumps copy output to the log file, one CRI-format line per
// line of output ("<RFC 3339 time> stdout|stderr F|P <text>"), and to the
// clients attached at the time.
type stdio struct {
	tty        bool
	stdinOnce  bool
	master     *os.File // tty
	stdinW     *os.File // pipes with stdin
	outR, errR *os.File // pipes
	// The child's ends, closed in the parent once the child has started.
	childIn, childOut, childErr *os.File

	logMu   sync.Mutex
	log     *os.File
	logPath string
	logSize int64

	mu        sync.Mutex
	listeners map[int]*listener
	nextID    int

	pumps sync.WaitGroup
	done  chan struct{}
}

type listener struct {
	out, err io.Writer
}

func newStdio(c *hwruntime.ContainerSpec, logf *os.File) (*stdio, error) {
	s := &stdio{tty: c.TTY, stdinOnce: c.StdinOnce, log: logf, logPath: c.LogPath, listeners: map[int]*listener{}, done: make(chan struct{})}
	if st, err := logf.Stat(); err == nil {
		s.logSize = st.Size()
	}
	if c.TTY {
		master, slave, err := pty.Open()
		if err != nil {
			return nil, err
		}
		s.master, s.childIn, s.childOut, s.childErr = master, slave, slave, slave
		return s, nil
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, err
	}
	s.childOut, s.childErr = outW, errW
	s.outR, s.errR = outR, errR
	if c.Stdin {
		inR, inW, err := os.Pipe()
		if err != nil {
			return nil, err
		}
		s.childIn, s.stdinW = inR, inW
	}
	return s, nil
}

// closeChildEnds closes the parent's copies of the child's ends.
func (s *stdio) closeChildEnds() {
	seen := map[*os.File]bool{}
	for _, f := range []*os.File{s.childIn, s.childOut, s.childErr} {
		if f != nil && !seen[f] {
			seen[f] = true
			f.Close()
		}
	}
}

// start runs the pumps; the log file is closed when they end.
func (s *stdio) start() {
	if s.tty {
		s.pumps.Add(1)
		go s.pump(s.master, "stdout", false)
	} else {
		s.pumps.Add(2)
		go s.pump(s.outR, "stdout", false)
		go s.pump(s.errR, "stderr", true)
	}
	go func() {
		s.pumps.Wait()
		s.logMu.Lock()
		s.log.Close()
		s.logMu.Unlock()
		close(s.done)
	}()
}

// finish is called when the process has exited: a tty has no EOF of its own.
func (s *stdio) finish() {
	if s.tty {
		// Output still buffered in the pty is read until EIO; give it a moment.
		time.AfterFunc(200*time.Millisecond, func() { s.master.Close() })
	}
	if s.stdinW != nil {
		s.stdinW.Close()
	}
}

func (s *stdio) pump(r io.ReadCloser, stream string, isErr bool) {
	defer s.pumps.Done()
	defer r.Close()
	br := bufio.NewReaderSize(r, 32*1024)
	var line []byte
	buf := make([]byte, 32*1024)
	for {
		n, err := br.Read(buf)
		if n > 0 {
			chunk := buf[:n]
			s.fanout(chunk, isErr)
			line = append(line, chunk...)
			for {
				i := bytes.IndexByte(line, '\n')
				if i < 0 {
					break
				}
				s.writeLog(stream, "F", bytes.TrimSuffix(line[:i], []byte("\r")))
				line = line[i+1:]
			}
			for len(line) > maxLogLine {
				s.writeLog(stream, "P", line[:maxLogLine])
				line = line[maxLogLine:]
			}
		}
		if err != nil {
			if len(line) > 0 {
				// Output that ends without a newline is a partial line, as
				// containerd logs it: readers add no newline to it.
				s.writeLog(stream, "P", line)
			}
			return
		}
	}
}

func (s *stdio) writeLog(stream, tag string, text []byte) {
	var b bytes.Buffer
	b.WriteString(time.Now().UTC().Format(time.RFC3339Nano))
	b.WriteByte(' ')
	b.WriteString(stream)
	b.WriteByte(' ')
	b.WriteString(tag)
	b.WriteByte(' ')
	b.Write(text)
	b.WriteByte('\n')
	s.logMu.Lock()
	if s.logPath != "" && s.logSize+int64(b.Len()) > MaxLogSize && s.logSize > 0 {
		s.rotate()
	}
	n, _ := s.log.Write(b.Bytes())
	s.logSize += int64(n)
	s.logMu.Unlock()
}

func (s *stdio) fanout(p []byte, isErr bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, l := range s.listeners {
		w := l.out
		if isErr && l.err != nil {
			w = l.err
		}
		if w == nil {
			continue
		}
		if _, err := w.Write(p); err != nil {
			delete(s.listeners, id)
		}
	}
}

// errNoStdin: attach with stdin to a container that has none.
var errNoStdin = errors.New("the container was not started with stdin (spec.containers[].stdin: true)")

// attach connects a client to the container's streams until the container
// exits or ctx ends. With stdinOnce, the end of the client's stdin closes
// the container's stdin (for a tty: end-of-file, as typing Ctrl-D).
func (s *stdio) attach(ctx context.Context, in io.Reader, out, errw io.Writer, resize <-chan hwruntime.TerminalSize) error {
	s.mu.Lock()
	id := s.nextID
	s.nextID++
	s.listeners[id] = &listener{out: out, err: errw}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, id)
		s.mu.Unlock()
	}()
	if in != nil {
		var w io.Writer
		switch {
		case s.tty:
			w = s.master
		case s.stdinW != nil:
			w = s.stdinW
		default:
			return errNoStdin
		}
		go func() {
			io.Copy(w, in)
			if s.stdinOnce {
				if s.tty {
					s.master.Write([]byte{4})
				} else if s.stdinW != nil {
					s.stdinW.Close()
				}
			}
		}()
	}
	if resize != nil && s.tty {
		go func() {
			for {
				select {
				case sz, ok := <-resize:
					if !ok {
						return
					}
					pty.Setsize(s.master, &pty.Winsize{Rows: sz.Height, Cols: sz.Width})
				case <-ctx.Done():
					return
				case <-s.done:
					return
				}
			}
		}()
	}
	select {
	case <-ctx.Done():
		return nil
	case <-s.done:
		return nil
	}
}

// rotate moves the log file to <file>.1 and starts a new one (logMu held).
func (s *stdio) rotate() {
	if err := os.Rename(s.logPath, s.logPath+".1"); err != nil {
		return
	}
	f, err := os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		// Keep writing to the renamed file rather than lose output.
		return
	}
	s.log.Close()
	s.log, s.logSize = f, 0
}
