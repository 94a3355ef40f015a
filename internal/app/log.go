package app

import (
	"context"
	"log/slog"
	"os"

	"k8s.io/klog/v2"
)

// NewLogger builds the slog logger for a level name.
func NewLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l}))
}

// RouteKlog sends what the Kubernetes libraries log through klog to log, at
// debug level (their errors are about single connections). Their verbose
// records (klog's -v 5 and up: every request's and response's body, as a
// hex dump for protobuf) come only with a lower level: --log-level debug-4
// is their -v 8. It is for the binary's main: it sets process-wide state
// and must run before anything logs.
func RouteKlog(log *slog.Logger) {
	klog.SetSlogLogger(slog.New(debugHandler{log.Handler()}).With("component", "k8s"))
}

// debugHandler logs every record at debug level; klog's V(n) arrives as
// level -n, and n above 4 needs a handler below debug.
type debugHandler struct{ slog.Handler }

func (h debugHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.Handler.Enabled(ctx, min(l, slog.LevelDebug))
}

func (h debugHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.Handler.Enabled(ctx, min(r.Level, slog.LevelDebug)) {
		return nil
	}
	r.Level = slog.LevelDebug
	return h.Handler.Handle(ctx, r)
}

func (h debugHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return debugHandler{h.Handler.WithAttrs(as)}
}
func (h debugHandler) WithGroup(g string) slog.Handler { return debugHandler{h.Handler.WithGroup(g)} }
