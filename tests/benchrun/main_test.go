package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		runs          []float64
		med, min, max float64
	}{
		{[]float64{5}, 5, 5, 5},
		{[]float64{3, 1, 2}, 2, 1, 3},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4},
		{[]float64{10, 50, 20, 40, 30}, 30, 10, 50},
		{[]float64{7, 7, 1, 7, 9}, 7, 1, 9},
	} {
		s := summarize(tc.runs)
		if s.N != len(tc.runs) || s.Median != tc.med || s.Min != tc.min || s.Max != tc.max {
			t.Errorf("summarize(%v) = %+v, want n=%d median=%v min=%v max=%v", tc.runs, s, len(tc.runs), tc.med, tc.min, tc.max)
		}
	}
	in := []float64{3, 1, 2}
	s := summarize(in)
	if in[0] != 3 || s.Runs[0] != 3 || s.Runs[2] != 2 {
		t.Errorf("summarize must keep the run order and not sort its input: in %v, runs %v", in, s.Runs)
	}
	if z := summarize(nil); z.N != 0 || z.Runs != nil {
		t.Errorf("summarize(nil) = %+v, want zero", z)
	}
}

func TestRatio(t *testing.T) {
	a, b := summarize([]float64{300}), summarize([]float64{600, 500, 700})
	if got := ratio(a, b); got != 0.5 {
		t.Errorf("ratio = %v, want 0.5", got)
	}
	if got := ratio(a, Stats{}); !math.IsNaN(got) {
		t.Errorf("ratio with a missing side = %v, want NaN", got)
	}
	if got := ratio(a, summarize([]float64{0})); !math.IsNaN(got) {
		t.Errorf("ratio by zero = %v, want NaN", got)
	}
}

func TestParseVmHWM(t *testing.T) {
	status := "Name:\tkvfs\nVmPeak:\t 5123456 kB\nVmHWM:\t  533468 kB\nVmRSS:\t  514344 kB\n"
	got, err := parseVmHWM(status)
	if err != nil || got != 533468 {
		t.Fatalf("parseVmHWM = %d, %v; want 533468", got, err)
	}
	if _, err := parseVmHWM("Name:\tkvfs\nVmRSS:\t 1 kB\n"); err == nil {
		t.Error("parseVmHWM without a VmHWM line: want an error")
	}
	if _, err := parseVmHWM("VmHWM:\t 12 MB\n"); err == nil {
		t.Error("parseVmHWM with an unknown unit: want an error")
	}
	if _, err := parseVmHWM("VmHWM:\t x kB\n"); err == nil {
		t.Error("parseVmHWM with a non-number: want an error")
	}
	full := status + "RssAnon:\t  120004 kB\nRssFile:\t  394340 kB\n"
	if anon, err := statusKiB(full, "RssAnon:"); err != nil || anon != 120004 {
		t.Errorf("RssAnon = %d, %v; want 120004", anon, err)
	}
	if file, err := statusKiB(full, "RssFile:"); err != nil || file != 394340 {
		t.Errorf("RssFile = %d, %v; want 394340", file, err)
	}
}

func TestMountsUnder(t *testing.T) {
	pm := "proc /proc proc rw 0 0\nkvfs /tmp/kvfs-bench-1/embedded/mnt fuse.kvfs rw 0 0\nkvfs /tmp/with\\040space fuse.kvfs rw 0 0\n"
	for _, tc := range []struct {
		dir   string
		exact bool
		want  bool
	}{
		{"/tmp/kvfs-bench-1/embedded/mnt", true, true},
		{"/tmp/kvfs-bench-1/embedded/mnt/", true, true},
		{"/tmp/kvfs-bench-1", true, false},
		{"/tmp/kvfs-bench-1", false, true},
		{"/tmp/kvfs-bench-10", false, false},
		{"/tmp/kvfs-bench-1/embedded/mn", false, false},
		{"/tmp/with space", true, true},
	} {
		if got := mountsUnder(pm, tc.dir, tc.exact); got != tc.want {
			t.Errorf("mountsUnder(%q, exact=%v) = %v, want %v", tc.dir, tc.exact, got, tc.want)
		}
	}
}

func TestFormatting(t *testing.T) {
	for v, want := range map[float64]string{1234.5: "1234", 56.78: "56.8", 3.14159: "3.14", 0.12345: "0.123"} {
		if got := fmtNum(v); got != want {
			t.Errorf("fmtNum(%v) = %q, want %q", v, got, want)
		}
	}
	if got := fmtStats(summarize([]float64{900, 1000, 1100})); got != "1000 (900–1100)" {
		t.Errorf("fmtStats = %q", got)
	}
	if got := fmtStats(Stats{}); got != "—" {
		t.Errorf("fmtStats(empty) = %q, want —", got)
	}
	if got := fmtRatios(map[string]float64{embedded: 0.5, cluster: 1.25}); got != "0.50 / — / 1.25" {
		t.Errorf("fmtRatios = %q", got)
	}
	if got := fmtDuration(83); got != "1m23s" {
		t.Errorf("fmtDuration(83) = %q", got)
	}
	if got := memTotal("24684084 kB"); got != "23.5 GiB" {
		t.Errorf("memTotal = %q", got)
	}
}

// TestMarkdownTable renders a small report and checks the table's rows,
// cells and ratios.
func TestMarkdownTable(t *testing.T) {
	r := &Report{Date: "2026-01-02", Quick: true, Params: Params{Runs: 3}, Targets: map[string]string{}}
	ins := r.figure("insert-autocommit/cli/delete", "300 autocommit inserts, DELETE", "inserts/s", true, true)
	ins.Values[native] = summarize([]float64{1000, 900, 1100})
	ins.Values[embedded] = summarize([]float64{500, 450, 550})
	ins.Values[process] = summarize([]float64{800, 700, 900})
	ins.Values[cluster] = summarize([]float64{250, 200, 300})
	ins.Values[liteFS] = summarize([]float64{250, 250, 250})
	att := r.figure("insert-attach/cli", "attach", "txns/s", true, true)
	att.Values[embedded] = summarize([]float64{100, 100, 100})
	att.Errors = map[string]string{liteFS: "disk I/O error"}
	raw := r.figure(rawEtcdID, "raw etcd", "txn/s", true, false)
	raw.Values[embedded] = summarize([]float64{1000, 1000, 1000})
	raw.Values[process] = summarize([]float64{1600, 1600, 1600})
	raw.Values[cluster] = summarize([]float64{500, 500, 500})
	scan := r.figure("scan-cold/cli", "full scan", "s", false, false)
	scan.Values[native] = summarize([]float64{2, 2, 2})
	scan.Values[embedded] = summarize([]float64{4, 4, 4})
	if again := r.figure("scan-cold/cli", "other title", "ms", true, true); again != scan {
		t.Fatal("figure with an existing id must return that figure")
	}
	past := r.figure("history/scan", "full scan of DB@TXID", "s", false, false)
	past.Base = scan.ID
	past.Values[embedded] = summarize([]float64{6, 6, 6})
	r.RSS = []RSS{{Target: embedded, PeakKiB: 2048, AnonKiB: 1536, FileKiB: 1024, Sessions: []Session{{Label: "writes", PeakKiB: 1024, AnonKiB: 512, FileKiB: 512}, {Label: "reads run 1", PeakKiB: 2048, AnonKiB: 1536, FileKiB: 1024}}}}
	own := r.figure("own-dbs-writers/cli", "16 writers, own dbs", "commits/s", true, true)
	own.Raw = rawEtcdManyID
	own.Values[embedded] = summarize([]float64{800, 800, 800})
	many := r.figure(rawEtcdManyID, "raw etcd, 16 clients", "txn/s", true, false)
	many.Values[embedded] = summarize([]float64{1000, 1000, 1000})
	r.computeRatios()

	if got := ins.KVFSDivNative[embedded]; got != 0.5 {
		t.Errorf("insert kvfs÷native emb = %v, want 0.5", got)
	}
	if got := ins.KVFSDivLiteFS[process]; got != 3.2 {
		t.Errorf("insert kvfs÷LiteFS proc = %v, want 3.2", got)
	}
	if len(scan.KVFSDivLiteFS) != 0 {
		t.Errorf("ratios to LiteFS without LiteFS values: %v", scan.KVFSDivLiteFS)
	}
	if got := ins.KVFSDivRawEtcd[process]; got != 0.5 {
		t.Errorf("insert kvfs÷raw proc = %v, want 0.5", got)
	}
	if len(scan.KVFSDivRawEtcd) != 0 {
		t.Errorf("a figure that is not commit-bound has kvfs÷raw ratios: %v", scan.KVFSDivRawEtcd)
	}
	if _, ok := scan.KVFSDivNative[process]; ok {
		t.Error("ratio for a target without values")
	}
	if got := past.KVFSDivBase[embedded]; got != 1.5 {
		t.Errorf("time-travel scan ÷ live emb = %v, want 1.5", got)
	}
	if scan.KVFSDivBase != nil {
		t.Errorf("a figure without a base has ÷ live ratios: %v", scan.KVFSDivBase)
	}

	var b strings.Builder
	r.writeMarkdown(&b)
	md := b.String()
	for _, want := range []string{
		"# kvfs benchmarks — 2026-01-02 (quick mode)",
		"median (min–max) of 3 runs (quick mode",
		"| workload | unit | native | LiteFS | kvfs emb | kvfs proc | kvfs 3× | kvfs ÷ native | kvfs ÷ LiteFS | kvfs ÷ raw etcd |",
		"| 300 autocommit inserts, DELETE | inserts/s ↑ | 1000 (900–1100) | 250 (250–250) | 500 (450–550) | 800 (700–900) | 250 (200–300) | 0.50 / 0.80 / 0.25 | 2.00 / 3.20 / 1.00 | 0.50 / 0.50 / 0.50 |",
		"| attach | txns/s ↑ | — | failed (1) | 100 (100–100) | — | — | — | — | 0.10 / — / — |",
		"1. LiteFS, attach: disk I/O error\n",
		"| raw etcd | txn/s ↑ | — | — | 1000 (1000–1000) | 1600 (1600–1600) | 500 (500–500) | — | — | — |",
		"| full scan | s ↓ | 2.00 (2.00–2.00) | — | 4.00 (4.00–4.00) | — | — | 2.00 / — / — | — | — |",
		"| full scan of DB@TXID | s ↓ | — | — | 6.00 (6.00–6.00) | — | — | 1.50 / — / — ÷ live | — | — |",
		"| kvfs emb | 2 MiB | 2 MiB | 1 MiB | writes: 1 MiB (0 MiB / 0 MiB); reads run 1: 2 MiB (2 MiB / 1 MiB) |",
		"| 16 writers, own dbs | commits/s ↑ | — | — | 800 (800–800) | — | — | — | — | 0.80 / — / — |",
		"| raw etcd, 16 clients | txn/s ↑ | — | — | 1000 (1000–1000) | — | — | — | — | — |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q\n%s", want, md)
		}
	}
	// The main table has a header and one row per figure; the RSS table a
	// header and one row per target.
	if n := strings.Count(md, "\n| ") - 2; n != 1+len(r.Figures) {
		t.Errorf("table has %d lines, want %d\n%s", n, 1+len(r.Figures), md)
	}
}

func TestWriteFiles(t *testing.T) {
	dir := t.TempDir()
	for _, quick := range []bool{false, true} {
		r := &Report{Date: "2026-01-02", Quick: quick, Params: Params{Runs: 5}, Targets: map[string]string{}}
		f := r.figure("x", "x", "s", false, false)
		f.Values[native] = summarize([]float64{1, 2, 3})
		r.computeRatios()
		jp, mp, err := r.writeFiles(dir)
		if err != nil {
			t.Fatal(err)
		}
		want := filepath.Join(dir, "bench-2026-01-02")
		if quick {
			want += "-quick"
		}
		if jp != want+".json" || mp != want+".md" {
			t.Errorf("quick=%v: wrote %s, %s; want %s.{json,md}", quick, jp, mp, want)
		}
		b, err := os.ReadFile(jp)
		if err != nil {
			t.Fatal(err)
		}
		var back Report
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("JSON does not decode: %v", err)
		}
		if back.Quick != quick || len(back.Figures) != 1 || back.Figures[0].Values[native].Median != 2 {
			t.Errorf("JSON round trip lost data: %+v", back)
		}
	}
}

func TestChildEnvDropsRuntimeSettings(t *testing.T) {
	t.Setenv("GODEBUG", "asyncpreemptoff=1")
	t.Setenv("GOMAXPROCS", "1")
	t.Setenv("KVFS_IDLE_RELEASE", "1s")
	t.Setenv("BENCHRUN_KEEP_ME", "yes")
	env := childEnv()
	for _, kv := range env {
		for _, p := range []string{"GODEBUG=", "GOMAXPROCS=", "KVFS_"} {
			if strings.HasPrefix(kv, p) {
				t.Errorf("childEnv keeps %q: kvfs must start as users start it", kv)
			}
		}
	}
	if !slices.Contains(env, "BENCHRUN_KEEP_ME=yes") {
		t.Error("childEnv dropped an unrelated variable")
	}
}

func TestRunTime(t *testing.T) {
	out := "Run Time: real 0.002 user 0.000100 sys 0.000200\nRun Time: real 0.468 user 0.100000 sys 0.050000\n"
	if got, err := runTime(out); err != nil || got != 0.468 {
		t.Fatalf("runTime = %v, %v; want the last line's 0.468", got, err)
	}
	if _, err := runTime("Error: stepping, disk I/O error (10)\n"); err == nil {
		t.Error("runTime without a .timer line: want an error")
	}
}
