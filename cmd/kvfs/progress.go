package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// progress reports a long copy: a bar redrawn in place on a terminal, plain
// lines (at most one per 10% or per 5 s) otherwise.
type progress struct {
	w        io.Writer
	label    string
	total    int64
	done     int64
	tty      bool
	start    time.Time
	lastLine time.Time
	lastPct  int
}

func newProgress(w io.Writer, label string, total int64) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil && st.Mode()&os.ModeCharDevice != 0 {
			tty = true
		}
	}
	return &progress{w: w, label: label, total: total, tty: tty, start: time.Now(), lastPct: -1}
}

// Add records n more bytes copied.
func (p *progress) Add(n int64) {
	p.done += n
	pct := 100
	if p.total > 0 {
		pct = int(100 * p.done / p.total)
	}
	now := time.Now()
	if p.tty {
		if pct == p.lastPct && now.Sub(p.lastLine) < 100*time.Millisecond {
			return
		}
		const width = 30
		bar := strings.Repeat("=", pct*width/100) + strings.Repeat(" ", width-pct*width/100)
		fmt.Fprintf(p.w, "\r%s [%s] %3d%% %s/%s", p.label, bar, pct, humanBytes(p.done), humanBytes(p.total))
	} else {
		if pct/10 == p.lastPct/10 && now.Sub(p.lastLine) < 5*time.Second {
			return
		}
		fmt.Fprintf(p.w, "%s: %d%% (%s of %s)\n", p.label, pct, humanBytes(p.done), humanBytes(p.total))
	}
	p.lastPct, p.lastLine = pct, now
}

// Done ends the report with a summary line.
func (p *progress) Done(what string) {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
	el := time.Since(p.start)
	fmt.Fprintf(p.w, "%s: %s in %v (%s/s)\n", p.label, what, el.Round(time.Millisecond),
		humanBytes(int64(float64(p.done)/max(el.Seconds(), 1e-3))))
}
