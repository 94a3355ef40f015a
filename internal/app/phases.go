package app

import (
	"log/slog"
	"time"
)

// phases times the steps of a start for one debug line ("start phases"):
// where a start's wall-clock time goes, read from the server's own log.
type phases struct {
	last  time.Time
	attrs []any
}

func newPhases(start time.Time) *phases { return &phases{last: start} }

// done records the time since the previous step (or the start) as name's.
func (p *phases) done(name string) {
	now := time.Now()
	p.attrs = append(p.attrs, name, now.Sub(p.last).Round(10*time.Microsecond))
	p.last = now
}

// took records d as name's, for a step that ran beside others (it does not
// move the start of the next step).
func (p *phases) took(name string, d time.Duration) {
	p.attrs = append(p.attrs, name, d.Round(10*time.Microsecond))
}

// log writes the steps recorded so far at debug level, and extra
// attributes after them.
func (p *phases) log(log *slog.Logger, extra ...any) {
	log.Debug("start phases", append(p.attrs, extra...)...)
}
