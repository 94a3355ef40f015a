package agent

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/runtime/schema"
)

func corev1Resource(r string) schema.GroupResource { return schema.GroupResource{Resource: r} }

// logOptions are the kubelet's containerLogs query parameters.
type logOptions struct {
	follow, previous, timestamps bool
	tail                         int64 // -1: all
	since                        time.Time
	limitBytes                   int64 // 0: none
}

func parseLogOptions(r *http.Request) (logOptions, error) {
	q := r.URL.Query()
	o := logOptions{tail: -1, follow: q.Get("follow") == "true", previous: q.Get("previous") == "true", timestamps: q.Get("timestamps") == "true"}
	if v := q.Get("tailLines"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return o, fmt.Errorf("invalid tailLines %q", v)
		}
		o.tail = n
	}
	if v := q.Get("sinceSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return o, fmt.Errorf("invalid sinceSeconds %q", v)
		}
		o.since = time.Now().Add(-time.Duration(n) * time.Second)
	}
	if v := q.Get("sinceTime"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return o, fmt.Errorf("invalid sinceTime %q", v)
		}
		o.since = t
	}
	if v := q.Get("limitBytes"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return o, fmt.Errorf("invalid limitBytes %q", v)
		}
		o.limitBytes = n
	}
	return o, nil
}

// logFiles returns a container's log files, oldest start first.
func (a *Agent) logFiles(ns, pod, uid, container string) []string {
	dir := filepath.Join(a.cfg.DataDir, "logs", fmt.Sprintf("%s_%s_%s", ns, pod, uid), container)
	entries, _ := os.ReadDir(dir)
	type f struct {
		n    int
		path string
	}
	var fs []f
	for _, e := range entries {
		n, err := strconv.Atoi(strings.TrimSuffix(e.Name(), ".log"))
		if err == nil && strings.HasSuffix(e.Name(), ".log") {
			fs = append(fs, f{n, filepath.Join(dir, e.Name())})
		}
	}
	sort.Slice(fs, func(i, j int) bool { return fs[i].n < fs[j].n })
	out := make([]string, len(fs))
	for i := range fs {
		out[i] = fs[i].path
	}
	return out
}

// logLine is one parsed CRI log line.
type logLine struct {
	t       time.Time
	partial bool
	text    []byte
}

func parseLogLine(b []byte) (logLine, bool) {
	parts := bytes.SplitN(b, []byte{' '}, 4)
	if len(parts) < 3 {
		return logLine{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(parts[0]))
	if err != nil {
		return logLine{}, false
	}
	l := logLine{t: t, partial: string(parts[2]) == "P"}
	if len(parts) == 4 {
		l.text = parts[3]
	}
	return l, true
}

func (a *Agent) serveLogs(w http.ResponseWriter, r *http.Request) {
	ns, podName, container := r.PathValue("ns"), r.PathValue("pod"), r.PathValue("container")
	opts, err := parseLogOptions(r)
	if err != nil {
		streamError(w, http.StatusBadRequest, "%v", err)
		return
	}
	pod, err := a.pods.Pods(ns).Get(podName)
	if err != nil {
		streamError(w, http.StatusNotFound, "pod %s/%s is not on node %s", ns, podName, a.cfg.NodeName)
		return
	}
	files := a.logFiles(ns, podName, string(pod.UID), container)
	var path string
	switch {
	case opts.previous && len(files) >= 2:
		path = files[len(files)-2]
	case opts.previous:
		streamError(w, http.StatusBadRequest, "previous terminated container %q in pod %q not found", container, podName)
		return
	case len(files) == 0:
		streamError(w, http.StatusBadRequest, "container %q in pod %q has no logs yet", container, podName)
		return
	default:
		path = files[len(files)-1]
	}
	w.Header().Set("Content-Type", "text/plain")
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	var out io.Writer = w
	if opts.limitBytes > 0 {
		out = &limitWriter{w: w, left: opts.limitBytes}
	}
	flush := func() {
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	follow := opts.follow && !opts.previous
	a.copyLog(r.Context(), path, opts, out, flush, follow, func() bool {
		// Follow while this file is the container's current log and the
		// container has not ended for good.
		fs := a.logFiles(ns, podName, string(pod.UID), container)
		if len(fs) == 0 || fs[len(fs)-1] != path {
			return false
		}
		t, err := a.target(ns, podName, container)
		if err != nil {
			return false
		}
		select {
		case <-t.proc.Done():
			return false
		default:
			return true
		}
	})
}

type limitWriter struct {
	w    io.Writer
	left int64
}

var errLimit = fmt.Errorf("limitBytes reached")

func (l *limitWriter) Write(p []byte) (int, error) {
	if l.left <= 0 {
		return 0, errLimit
	}
	if int64(len(p)) > l.left {
		p = p[:l.left]
	}
	n, err := l.w.Write(p)
	l.left -= int64(n)
	if err == nil && l.left <= 0 {
		err = errLimit
	}
	return n, err
}

// copyLog writes a log file's lines as kubectl logs shows them.
func (a *Agent) copyLog(ctx context.Context, path string, opts logOptions, out io.Writer, flush func(), follow bool, stillGrowing func() bool) {
	// A rotated part (<file>.1) comes first.
	if opts.tail < 0 {
		if rf, err := os.Open(path + ".1"); err == nil {
			if !copyWhole(rf, opts, out) {
				rf.Close()
				return
			}
			rf.Close()
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return
	}
	defer func() { f.Close() }()
	if opts.tail >= 0 {
		// Read all, keep the last n (a container keeps at most two files).
		var lines []logLine
		keep := func(r io.Reader) {
			sc := bufio.NewScanner(r)
			sc.Buffer(make([]byte, 64*1024), 1024*1024)
			for sc.Scan() {
				l, ok := parseLogLine(append([]byte(nil), sc.Bytes()...))
				if !ok || (!opts.since.IsZero() && l.t.Before(opts.since)) {
					continue
				}
				lines = append(lines, l)
				if int64(len(lines)) > opts.tail {
					lines = lines[1:]
				}
			}
		}
		if rf, err := os.Open(path + ".1"); err == nil {
			keep(rf)
			rf.Close()
		}
		keep(f)
		for _, l := range lines {
			if writeLine(out, l, opts.timestamps) != nil {
				return
			}
		}
		flush()
		if !follow {
			return
		}
	}
	br := bufio.NewReaderSize(f, 64*1024)
	var pending []byte
	for {
		b, err := br.ReadBytes('\n')
		if len(b) > 0 {
			pending = append(pending, b...)
		}
		if err == nil {
			l, ok := parseLogLine(bytes.TrimSuffix(pending, []byte("\n")))
			pending = pending[:0]
			if ok && (opts.since.IsZero() || !l.t.Before(opts.since)) {
				if writeLine(out, l, opts.timestamps) != nil {
					return
				}
			}
			continue
		}
		flush()
		if follow && rotated(f, path) {
			// The file was rotated: go on with the new one from its start.
			nf, err := os.Open(path)
			if err == nil {
				f.Close()
				f = nf
				br.Reset(f)
				continue
			}
		}
		if !follow || !stillGrowing() {
			// One more pass for what was written just before the end.
			if follow {
				follow = false
				continue
			}
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func writeLine(w io.Writer, l logLine, timestamps bool) error {
	var b bytes.Buffer
	if timestamps {
		b.WriteString(l.t.Format(time.RFC3339Nano))
		b.WriteByte(' ')
	}
	b.Write(l.text)
	if !l.partial {
		b.WriteByte('\n')
	}
	_, err := w.Write(b.Bytes())
	return err
}

// copyWhole writes every line of r; false when the client has gone.
func copyWhole(r io.Reader, opts logOptions, out io.Writer) bool {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		l, ok := parseLogLine(sc.Bytes())
		if !ok || (!opts.since.IsZero() && l.t.Before(opts.since)) {
			continue
		}
		if writeLine(out, l, opts.timestamps) != nil {
			return false
		}
	}
	return true
}

// rotated reports whether path is no longer the file f has open.
func rotated(f *os.File, path string) bool {
	a, err1 := f.Stat()
	b, err2 := os.Stat(path)
	return err1 == nil && err2 == nil && !os.SameFile(a, b)
}
