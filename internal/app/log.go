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
// debug level (their errors are about single connections). It is for the
// binary's main: it sets process-wide state and must run before anything logs.
func RouteKlog(log *slog.Logger) {
	klog.SetSlogLogger(slog.New(debugHandler{log.Handler()}).With("component", "k8s"))
}

// debugHandler logs every record at debug level.
type debugHandler struct{ slog.Handler }

func (h debugHandler) Enabled(ctx context.Context, _ slog.Level) bool {
	return h.Handler.Enabled(ctx, slog.LevelDebug)
}

func (h debugHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.Handler.Enabled(ctx, slog.LevelDebug) {
		return nil
	}
	r.Level = slog.LevelDebug
	return h.Handler.Handle(ctx, r)
}

func (h debugHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return debugHandler{h.Handler.WithAttrs(as)}
}
func (h debugHandler) WithGroup(g string) slog.Handler { return debugHandler{h.Handler.WithGroup(g)} }
