package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"
)

// Target keys, in table order. Every figure is measured on each target that
// applies to it; raw etcd figures exist only for the three etcd targets.
const (
	native   = "native"
	liteFS   = "litefs"
	embedded = "embedded"
	process  = "process"
	cluster  = "cluster"
)

// kvfsTargets are the targets served by a kvfs mount.
var kvfsTargets = []string{embedded, process, cluster}

// allTargets are the table's columns, in order.
var allTargets = []string{native, liteFS, embedded, process, cluster}

// targetHeads are the column headings of the Markdown table.
var targetHeads = map[string]string{
	native:   "native",
	liteFS:   "LiteFS",
	embedded: "kvfs emb",
	process:  "kvfs proc",
	cluster:  "kvfs 3×",
}

// Figure is one measured quantity on every target.
type Figure struct {
	ID    string `json:"id"`    // stable key, e.g. "insert-autocommit/cli/delete"
	Title string `json:"title"` // table row label
	Unit  string `json:"unit"`
	// HigherIsBetter is true for rates and false for times.
	HigherIsBetter bool `json:"higher_is_better"`
	// CommitBound marks figures where every unit is one durable commit, so
	// they are also compared with the raw etcd fenced-txn rate.
	CommitBound bool             `json:"commit_bound"`
	Values      map[string]Stats `json:"values"` // by target key
	// KVFSDivNative is kvfs median ÷ native median, by kvfs target.
	KVFSDivNative map[string]float64 `json:"kvfs_div_native,omitempty"`
	// KVFSDivLiteFS is kvfs median ÷ LiteFS median, by kvfs target.
	KVFSDivLiteFS map[string]float64 `json:"kvfs_div_litefs,omitempty"`
	// KVFSDivRawEtcd is kvfs median ÷ that target's raw etcd txn/s median:
	// of the figure Raw names, or rawEtcdID.
	Raw            string             `json:"raw,omitempty"`
	KVFSDivRawEtcd map[string]float64 `json:"kvfs_div_raw_etcd,omitempty"`
	// Base is the ID of the figure of the same workload on the live file,
	// for a figure measured on a time-travel file (which native has not);
	// KVFSDivBase is then this figure's median ÷ Base's, by kvfs target,
	// and the table shows it in place of ÷ native.
	Base        string             `json:"base,omitempty"`
	KVFSDivBase map[string]float64 `json:"kvfs_div_base,omitempty"`
	// Errors are, by target, why a target that was measured could not run
	// the workload (LiteFS only: see bench.tolerate).
	Errors map[string]string `json:"errors,omitempty"`
}

// Session is one kvfs mount process's lifetime and its peak RSS.
type Session struct {
	Label   string `json:"label"`
	PID     int    `json:"pid"`
	PeakKiB int64  `json:"peak_kib"` // VmHWM just before it was stopped
	// AnonKiB and FileKiB are the largest RssAnon and RssFile sampled
	// (every 100 ms) during the session: anonymous memory (heaps, caches)
	// apart from mapped files (etcd's bbolt backend for kvfs emb).
	AnonKiB int64 `json:"peak_anon_kib"`
	FileKiB int64 `json:"peak_file_kib"`
}

// RSS is the peak resident set of a target's kvfs daemon over the run.
type RSS struct {
	Target   string    `json:"target"`
	PeakKiB  int64     `json:"peak_kib"`
	AnonKiB  int64     `json:"peak_anon_kib"`
	FileKiB  int64     `json:"peak_file_kib"`
	Sessions []Session `json:"sessions"`
}

// SetupFigure is a one-off measurement made while preparing data; it is
// reported for information, not as a benchmark.
type SetupFigure struct {
	Target  string  `json:"target"`
	What    string  `json:"what"`
	Seconds float64 `json:"seconds"`
}

// Machine describes where the run happened.
type Machine struct {
	NProc    int    `json:"nproc"`
	Model    string `json:"cpu_model"`
	Kernel   string `json:"kernel"`
	MemTotal string `json:"mem_total"`
}

// Versions are the software measured.
type Versions struct {
	Go        string `json:"go"`
	SQLiteCLI string `json:"sqlite3_cli"`
	GoSQLite  string `json:"go_sqlite3_library"`
	Etcd      string `json:"etcd"`
	LiteFS    string `json:"litefs,omitempty"`
	KVFS      string `json:"kvfs"`
}

// Report is everything one run measured; it is written as JSON and Markdown.
type Report struct {
	Date            string            `json:"date"`
	Started         string            `json:"started"`
	DurationSeconds float64           `json:"duration_seconds"`
	Quick           bool              `json:"quick"`
	Params          Params            `json:"params"`
	Machine         Machine           `json:"machine"`
	Versions        Versions          `json:"versions"`
	Targets         map[string]string `json:"targets"`
	Figures         []*Figure         `json:"figures"`
	RSS             []RSS             `json:"rss"`
	Setup           []SetupFigure     `json:"setup"`
	Notes           []string          `json:"notes"`
	// Launch says how the kvfs processes were started.
	Launch string `json:"launch"`
}

// figure returns the figure with id, adding it with the given description
// when it is new.
func (r *Report) figure(id, title, unit string, higher, commit bool) *Figure {
	for _, f := range r.Figures {
		if f.ID == id {
			return f
		}
	}
	f := &Figure{ID: id, Title: title, Unit: unit, HigherIsBetter: higher, CommitBound: commit, Values: map[string]Stats{}}
	r.Figures = append(r.Figures, f)
	return f
}

// rawEtcdID is the figure of the raw etcd fenced-txn rate, and
// rawEtcdManyID that of concurrent clients.
const (
	rawEtcdID     = "raw-etcd-fenced-txn"
	rawEtcdManyID = "raw-etcd-fenced-txn/concurrent"
)

// computeRatios fills every figure's kvfs ÷ native and kvfs ÷ raw etcd
// ratios, and kvfs ÷ live for a figure with a Base.
func (r *Report) computeRatios() {
	byID := map[string]*Figure{}
	for _, f := range r.Figures {
		byID[f.ID] = f
	}
	for _, f := range r.Figures {
		if f.ID == rawEtcdID || f.ID == rawEtcdManyID {
			continue
		}
		raw := byID[rawEtcdID]
		if f.Raw != "" {
			raw = byID[f.Raw]
		}
		f.KVFSDivNative, f.KVFSDivLiteFS, f.KVFSDivRawEtcd, f.KVFSDivBase = map[string]float64{}, map[string]float64{}, map[string]float64{}, nil
		base := byID[f.Base]
		if base != nil {
			f.KVFSDivBase = map[string]float64{}
		}
		for _, t := range kvfsTargets {
			if v := ratio(f.Values[t], f.Values[native]); !math.IsNaN(v) {
				f.KVFSDivNative[t] = v
			}
			if v := ratio(f.Values[t], f.Values[liteFS]); !math.IsNaN(v) {
				f.KVFSDivLiteFS[t] = v
			}
			if base != nil {
				if v := ratio(f.Values[t], base.Values[t]); !math.IsNaN(v) {
					f.KVFSDivBase[t] = v
				}
			}
			if f.CommitBound && raw != nil {
				if v := ratio(f.Values[t], raw.Values[t]); !math.IsNaN(v) {
					f.KVFSDivRawEtcd[t] = v
				}
			}
		}
	}
}

// fileBase is the output files' name without extension: bench-DATE, or
// bench-DATE-quick for a quick run, so both runs of a day are kept.
func (r *Report) fileBase() string {
	if r.Quick {
		return "bench-" + r.Date + "-quick"
	}
	return "bench-" + r.Date
}

// writeFiles writes fileBase().json and fileBase().md into dir and returns
// their paths.
func (r *Report) writeFiles(dir string) (jsonPath, mdPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("create output dir: %w", err)
	}
	base := filepath.Join(dir, r.fileBase())
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(base+".json", append(b, '\n'), 0o644); err != nil {
		return "", "", fmt.Errorf("write report: %w", err)
	}
	var md strings.Builder
	r.writeMarkdown(&md)
	if err := os.WriteFile(base+".md", []byte(md.String()), 0o644); err != nil {
		return "", "", fmt.Errorf("write report: %w", err)
	}
	return base + ".json", base + ".md", nil
}

// writeMarkdown renders the report: header, one table of every figure on
// every target with the ratios, the daemon's peak RSS, setup times, notes.
func (r *Report) writeMarkdown(w io.Writer) {
	mode := "full"
	if r.Quick {
		mode = "quick"
	}
	fmt.Fprintf(w, "# kvfs benchmarks — %s (%s mode)\n\n", r.Date, mode)
	fmt.Fprintf(w, "- Machine: %d × %s, Linux %s, %s RAM\n", r.Machine.NProc, r.Machine.Model, r.Machine.Kernel, r.Machine.MemTotal)
	fmt.Fprintf(w, "- Versions: %s; sqlite3 CLI %s; go-sqlite3 library %s; etcd %s; LiteFS %s; kvfs %s\n",
		r.Versions.Go, r.Versions.SQLiteCLI, r.Versions.GoSQLite, r.Versions.Etcd, orDash(r.Versions.LiteFS), r.Versions.KVFS)
	fmt.Fprintf(w, "- Started %s, took %s\n", r.Started, fmtDuration(r.DurationSeconds))
	if r.Launch != "" {
		fmt.Fprintf(w, "- kvfs started as users start it: %s\n", r.Launch)
	}
	fmt.Fprintf(w, "- Targets: ")
	for i, t := range allTargets {
		if i > 0 {
			fmt.Fprint(w, "; ")
		}
		fmt.Fprintf(w, "**%s** = %s", targetHeads[t], r.Targets[t])
	}
	fmt.Fprint(w, "\n\n")

	fmt.Fprintf(w, "Each cell: median (min–max) of %d runs", r.Params.Runs)
	if r.Quick {
		fmt.Fprint(w, " (quick mode: 3 runs, smaller sizes; `make bench` runs 5)")
	}
	fmt.Fprint(w, ". ↑ higher is better, ↓ lower is better. ")
	fmt.Fprint(w, "÷ native, ÷ LiteFS and ÷ raw etcd are kvfs medians divided by native's, by LiteFS's, or by the raw etcd fenced-txn rate of the same etcd (for commit-bound rows), in the order emb / proc / 3×; ")
	fmt.Fprint(w, "a row on a time-travel file (`DB@TXID`, which native has not) shows instead its median divided by the same workload's on the live file of the same target (\"÷ live\").\n\n")

	fmt.Fprint(w, "| workload | unit |")
	for _, t := range allTargets {
		fmt.Fprintf(w, " %s |", targetHeads[t])
	}
	fmt.Fprint(w, " kvfs ÷ native | kvfs ÷ LiteFS | kvfs ÷ raw etcd |\n|---|---|")
	for range allTargets {
		fmt.Fprint(w, "---:|")
	}
	fmt.Fprint(w, "---:|---:|---:|\n")
	var failures []string
	for _, f := range r.Figures {
		arrow := "↓"
		if f.HigherIsBetter {
			arrow = "↑"
		}
		fmt.Fprintf(w, "| %s | %s %s |", f.Title, f.Unit, arrow)
		for _, t := range allTargets {
			cell := fmtStats(f.Values[t])
			if e, ok := f.Errors[t]; ok {
				failures = append(failures, fmt.Sprintf("%s, %s: %s", targetHeads[t], f.Title, e))
				cell = fmt.Sprintf("failed (%d)", len(failures))
			}
			fmt.Fprintf(w, " %s |", cell)
		}
		divNative := fmtRatios(f.KVFSDivNative)
		if f.KVFSDivBase != nil {
			divNative = fmtRatios(f.KVFSDivBase) + " ÷ live"
		}
		fmt.Fprintf(w, " %s | %s | %s |\n", divNative, fmtRatios(f.KVFSDivLiteFS), fmtRatios(f.KVFSDivRawEtcd))
	}
	if len(failures) > 0 {
		fmt.Fprint(w, "\nWorkloads that failed (the run went on without them):\n\n")
		for i, s := range failures {
			fmt.Fprintf(w, "%d. %s\n", i+1, s)
		}
	}

	if len(r.RSS) > 0 {
		fmt.Fprint(w, "\nPeak RSS of each daemon (VmHWM of the `kvfs mount` or `litefs mount` process; for kvfs emb it includes the embedded etcd), and apart the largest anonymous and file-backed RSS sampled every 100 ms (RssAnon, RssFile; file-backed is mostly etcd's mapped backend for kvfs emb):\n\n")
		fmt.Fprint(w, "| target | peak RSS | anon | file | per mount session: peak (anon / file) |\n|---|---:|---:|---:|---|\n")
		for _, x := range r.RSS {
			var parts []string
			for _, s := range x.Sessions {
				parts = append(parts, fmt.Sprintf("%s: %s (%s / %s)", s.Label, fmtKiB(s.PeakKiB), fmtKiB(s.AnonKiB), fmtKiB(s.FileKiB)))
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s |\n", targetHeads[x.Target], fmtKiB(x.PeakKiB), fmtKiB(x.AnonKiB), fmtKiB(x.FileKiB), strings.Join(parts, "; "))
		}
	}
	if len(r.Setup) > 0 {
		fmt.Fprint(w, "\nSetup (one run each, for information):\n\n")
		for _, s := range r.Setup {
			fmt.Fprintf(w, "- %s, %s: %s\n", targetHeads[s.Target], s.What, fmtDuration(s.Seconds))
		}
	}
	if len(r.Notes) > 0 {
		fmt.Fprint(w, "\nNotes:\n\n")
		for _, n := range r.Notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
}

// fmtNum prints v with about three significant digits.
func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

// fmtStats prints "median (min–max)", or "—" when nothing was measured.
func fmtStats(s Stats) string {
	if s.N == 0 {
		return "—"
	}
	if s.N == 1 {
		return fmtNum(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", fmtNum(s.Median), fmtNum(s.Min), fmtNum(s.Max))
}

// fmtRatios prints the ratios of the kvfs targets as "a / b / c", with "—"
// for a missing one, or "—" alone when there are none.
func fmtRatios(m map[string]float64) string {
	if len(m) == 0 {
		return "—"
	}
	parts := make([]string, len(kvfsTargets))
	for i, t := range kvfsTargets {
		if v, ok := m[t]; ok {
			parts[i] = fmt.Sprintf("%.2f", v)
		} else {
			parts[i] = "—"
		}
	}
	return strings.Join(parts, " / ")
}

// orDash returns s, or "—" when it is empty.
func orDash(s string) string {
	if s == "" {
		return "—"
	}
	return s
}

// fmtKiB prints a size given in KiB as MiB.
func fmtKiB(kib int64) string {
	return fmt.Sprintf("%.0f MiB", float64(kib)/1024)
}

// fmtDuration prints seconds as "1m23s" or "4.2 s".
func fmtDuration(sec float64) string {
	if sec >= 60 {
		return fmt.Sprintf("%dm%02ds", int(sec)/60, int(sec)%60)
	}
	return fmt.Sprintf("%.1f s", sec)
}
