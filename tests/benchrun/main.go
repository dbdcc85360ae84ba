// Command benchrun is kvfs's benchmark suite (`make bench`): it measures
// SQLite workloads side by side on a local directory and on kvfs mounts
// backed by three kinds of etcd, plus the raw etcd fenced-transaction rate
// that bounds durable commits, and writes bench-results/bench-DATE.{json,md}
// (bench-DATE-quick.{json,md} for a quick run).
//
// Targets, all in one run: native (SQLite on a local directory under /tmp);
// kvfs with its embedded etcd (`kvfs mount --data-dir`); kvfs with a separate
// etcd process; kvfs with a 3-member etcd cluster on loopback. The separate
// etcd servers are bin/etcd-server at etcd's default limits, with fsync.
//
// Every figure is the median, min and max of -runs runs (5; 3 with -quick or
// BENCH_QUICK=1, which also shrinks the sizes to finish in under 3 minutes).
// Ratios are computed from medians of the same run, because these machines
// are shared: absolute numbers drift between runs, side-by-side ratios much
// less.
//
// It needs root (or fusermount3) and /dev/fuse, and the sqlite3 CLI. Every
// mount lives in its own temp dir; mounts are unmounted and child processes
// stopped on return, on error and on SIGINT/SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

// Params are the sizes of one run.
type Params struct {
	Runs          int   `json:"runs"`           // runs per figure
	Inserts       int   `json:"inserts"`        // autocommit inserts per run
	TxnRows       int   `json:"txn_rows"`       // rows of the one-transaction insert
	LookupRows    int   `json:"lookup_rows"`    // rows of lookup.db
	Lookups       int   `json:"lookups"`        // random point lookups per run
	BigBytes      int64 `json:"big_bytes"`      // size of big.db (scan, mount-to-first-answer)
	Writers       int   `json:"writers"`        // concurrent writer processes
	WriterInserts int   `json:"writer_inserts"` // autocommit inserts per writer
	// OwnWriters processes each write OwnWriterInserts autocommits to a
	// database of its own; the raw etcd figure they compare with runs as
	// many clients, each that many txns.
	OwnWriters       int `json:"own_writers"`
	OwnWriterInserts int `json:"own_writer_inserts"`
	// ManyDBs databases are created on one mount for the many-databases
	// rows.
	ManyDBs int `json:"many_dbs"`
	// HistoryCommits is how many commits back the time-travel files and
	// the restore go.
	HistoryCommits int `json:"history_commits"`
	RawTxns        int `json:"raw_txns"` // raw etcd txns per run
	RawValueBytes  int `json:"raw_value_bytes"`
}

// fullParams and quickParams are the two sizes `make bench` offers.
var (
	fullParams = Params{Runs: 5, Inserts: 1000, TxnRows: 100_000, LookupRows: 100_000, Lookups: 10_000,
		BigBytes: 1 << 30, Writers: 4, WriterInserts: 200, OwnWriters: 16, OwnWriterInserts: 100, ManyDBs: 10_000,
		HistoryCommits: 1000, RawTxns: 1000, RawValueBytes: 4096}
	quickParams = Params{Runs: 3, Inserts: 300, TxnRows: 100_000, LookupRows: 100_000, Lookups: 10_000,
		BigBytes: 64 << 20, Writers: 4, WriterInserts: 50, OwnWriters: 16, OwnWriterInserts: 30, ManyDBs: 1000,
		HistoryCommits: 300, RawTxns: 300, RawValueBytes: 4096}
)

// runtimeEnv are the environment variables that change how a Go program
// or kvfs runs. kvfs and etcd are started without them, exactly as `make
// run` and systemd/kvfs.service start kvfs (flags only), so that the
// figures are what users get; see Report.Started.
var runtimeEnv = []string{"GODEBUG=", "GOGC=", "GOMAXPROCS=", "GOMEMLIMIT=", "GOTRACEBACK=", "KVFS_"}

// childEnv is the environment of the kvfs and etcd processes benchrun
// starts: the caller's, without runtimeEnv.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !slices.ContainsFunc(runtimeEnv, func(p string) bool { return strings.HasPrefix(kv, p) }) {
			env = append(env, kv)
		}
	}
	return env
}

func main() {
	quick := flag.Bool("quick", os.Getenv("BENCH_QUICK") == "1", "reduced run (3 runs, small sizes, < 3 minutes); also BENCH_QUICK=1")
	out := flag.String("out", "bench-results", "directory for bench-DATE[-quick].json and .md")
	runs := flag.Int("runs", 0, "runs per figure (default 5, or 3 with -quick)")
	kvfsBin := flag.String("kvfs", "bin/kvfs", "kvfs binary (built with go build if missing)")
	etcdBin := flag.String("etcd", envOr("KVFS_ETCD_BIN", "bin/etcd-server"), "etcd server binary (built with go build if missing)")
	liteFSBin := flag.String("litefs", "bin/litefs", "LiteFS binary, measured side by side (built with go install "+liteFSPkg+"@"+liteFSVersion+" if missing; if that fails, the LiteFS column stays empty)")
	rebuild := flag.Bool("rebuild", false, "rebuild both binaries even if present")
	keep := flag.Bool("keep", false, "keep the temp dir (databases, etcd data, logs) after the run (a failed run always keeps it)")
	flag.Parse()

	p := fullParams
	if *quick {
		p = quickParams
	}
	if *runs > 0 {
		p.Runs = *runs
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, p, *quick, *out, *kvfsBin, *etcdBin, *liteFSBin, *rebuild, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "benchrun:", err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// checkEnv says clearly what is missing for a real mount.
func checkEnv() error {
	var missing []string
	if _, err := os.Stat("/dev/fuse"); err != nil {
		missing = append(missing, "/dev/fuse (load the fuse module: modprobe fuse)")
	}
	if os.Geteuid() != 0 {
		if _, err := exec.LookPath("fusermount3"); err != nil {
			missing = append(missing, "root or fusermount3 (run as root, or apt-get install fuse3)")
		}
	}
	if _, err := exec.LookPath("sqlite3"); err != nil {
		missing = append(missing, "the sqlite3 CLI (apt-get install sqlite3, or make deps)")
	}
	if len(missing) > 0 {
		return fmt.Errorf("cannot run the benchmarks here; missing: %s", strings.Join(missing, "; "))
	}
	return nil
}

// ensureBinary builds pkg into path when it is missing (or rebuild is set).
func ensureBinary(path, pkg string, rebuild bool) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(abs); err == nil && !rebuild {
		return abs, nil
	}
	progress("build", "%s from %s", abs, pkg)
	cmd := exec.Command("go", "build", "-o", abs, pkg)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build -o %s %s: %w\n%s", abs, pkg, err, out)
	}
	return abs, nil
}

// progress prints one progress line.
func progress(phase, format string, args ...any) {
	fmt.Printf("%s %-14s %s\n", time.Now().Format("15:04:05"), phase, fmt.Sprintf(format, args...))
}

// target is one place the databases live.
type target struct {
	key   string
	dir   string     // where the databases are: a local dir or a mountpoint
	mount *mountProc // nil for native
	api   string     // LiteFS: its HTTP API (litefs import)
	// etcd endpoints for the raw etcd figure; nil for embedded, whose
	// endpoint is read from dataDir while the mount runs.
	etcd    []string
	dataDir string
	// storeArgs are the flags that name the target's store, for kvfs
	// commands.
	storeArgs []string
	label     string // current mount session's label
	sessions  []Session
}

// isKVFS reports whether a kvfs mount serves the target.
func (t *target) isKVFS() bool { return t.key != native && t.key != liteFS }

// up starts the target's mount (nothing for native) and returns how long
// mounting took.
func (t *target) up(ctx context.Context, label string) (time.Duration, error) {
	if t.mount == nil {
		return 0, nil
	}
	d, err := t.mount.start(ctx)
	if err != nil {
		return 0, err
	}
	t.label = label
	progress("mount", "%s: mounted %s (pid %d) in %v", t.key, t.dir, t.mount.pid, d.Round(time.Millisecond))
	return d, nil
}

// down records the mount's peak RSS and unmounts it.
func (t *target) down() error {
	if t.mount == nil || t.mount.cmd == nil {
		return nil
	}
	if kib, err := t.mount.peakRSS(); err == nil {
		anon, file := t.mount.peaks()
		t.sessions = append(t.sessions, Session{Label: t.label, PID: t.mount.pid, PeakKiB: kib, AnonKiB: anon, FileKiB: file})
	} else {
		progress("rss", "%s: %v", t.key, err)
	}
	return t.mount.stop()
}

// etcdEndpoints returns the endpoints of the target's etcd.
func (t *target) etcdEndpoints() ([]string, error) {
	if t.etcd != nil {
		return t.etcd, nil
	}
	info, err := etcdstore.ReadEndpointFile(t.dataDir)
	if err != nil {
		return nil, err
	}
	return info.Endpoints, nil
}

// bench is one benchmark run.
type bench struct {
	p       Params
	rep     *Report
	root    string
	targets []*target // native first, then LiteFS (when built), then kvfs
	etcds   [][]*etcdMember
}

// kvfs returns the kvfs targets.
func (b *bench) kvfs() []*target {
	var out []*target
	for _, t := range b.targets {
		if t.isKVFS() {
			out = append(out, t)
		}
	}
	return out
}

// tolerate decides what a failed workload run means: on LiteFS, which
// cannot run every workload kvfs can (no transaction over ATTACHed
// databases, for one), it is recorded as the figure's result there and the
// run goes on; elsewhere it ends the run.
func (b *bench) tolerate(f *Figure, t *target, run int, err error) error {
	if t.key != liteFS {
		return err
	}
	if f.Errors == nil {
		f.Errors = map[string]string{}
	}
	if _, seen := f.Errors[t.key]; !seen {
		f.Errors[t.key] = err.Error()
		progress(f.ID, "%-9s run %d: failed, recorded: %v", targetHeads[t.key], run, err)
	}
	return nil
}

// result keeps run i (of runs) of f on t in vals: its value v, or its
// failure err as tolerate decides.
func (b *bench) result(vals runValues, f *Figure, t *target, i, runs int, v float64, err error) error {
	if err != nil {
		return b.tolerate(f, t, i, err)
	}
	vals.record(f, t, i, runs, v)
	return nil
}

func run(ctx context.Context, p Params, quick bool, outDir, kvfsBin, etcdBin, liteFSBin string, rebuild, keep bool) (err error) {
	start := time.Now()
	if err := checkEnv(); err != nil {
		return err
	}
	if kvfsBin, err = ensureBinary(kvfsBin, "./cmd/kvfs", rebuild); err != nil {
		return err
	}
	if etcdBin, err = ensureBinary(etcdBin, "./tests/etcd-server", rebuild); err != nil {
		return err
	}
	liteFSBin, liteFSErr := ensureLiteFS(ctx, liteFSBin, rebuild)
	if liteFSErr != nil {
		progress("build", "LiteFS: %v; its column stays empty", liteFSErr)
	}
	root, err := os.MkdirTemp("", "kvfs-bench-")
	if err != nil {
		return err
	}
	b := &bench{p: p, root: root, rep: &Report{
		Date:     start.Format("2006-01-02"),
		Started:  start.Format(time.RFC3339),
		Quick:    quick,
		Params:   p,
		Machine:  machineInfo(),
		Versions: versions(kvfsBin, etcdBin, liteFSBin),
		Launch:   "`kvfs mount` with flags only, no GODEBUG, GOGC, GOMAXPROCS, GOMEMLIMIT, GOTRACEBACK or KVFS_* in its environment (as `make run` and systemd/kvfs.service)",
		Targets: map[string]string{
			native:   "SQLite on a local directory (" + fsType(root) + " under " + filepath.Dir(root) + ")",
			liteFS:   "`litefs mount` " + liteFSVersion + ", one node with a static lease, its data dir on the same disk as native's",
			embedded: "`kvfs mount --data-dir` (etcd embedded in the kvfs process)",
			process:  "`kvfs mount --etcd` to a separate single-member etcd process",
			cluster:  "`kvfs mount --etcd` to a 3-member etcd cluster on loopback",
		},
	}}
	progress("start", "%s mode, %d runs per figure, temp dir %s", map[bool]string{true: "quick", false: "full"}[quick], p.Runs, root)
	defer func() {
		// A failed run keeps its temp dir: the daemons' logs say why.
		if cerr := b.cleanup(keep || err != nil); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	if liteFSErr != nil {
		b.rep.Targets[liteFS] = "not measured: " + liteFSErr.Error()
		liteFSBin = ""
	}
	if err := b.setup(ctx, kvfsBin, etcdBin, liteFSBin); err != nil {
		return err
	}
	if err := b.writePhases(ctx); err != nil {
		return err
	}
	if err := b.readPhases(ctx); err != nil {
		return err
	}
	if err := b.historyPhases(ctx); err != nil {
		return err
	}
	if err := b.manyPhases(ctx); err != nil {
		return err
	}
	b.rep.DurationSeconds = time.Since(start).Seconds()
	b.finish()
	jp, mp, err := b.rep.writeFiles(outDir)
	if err != nil {
		return err
	}
	progress("done", "in %s: %s, %s", fmtDuration(b.rep.DurationSeconds), jp, mp)
	md, _ := os.ReadFile(mp)
	fmt.Printf("\n%s", md)
	return nil
}

// fsType returns the file system type of dir from /proc/mounts, best effort.
func fsType(dir string) string {
	var st syscall.Statfs_t
	if syscall.Statfs(dir, &st) != nil {
		return "local"
	}
	switch st.Type {
	case 0xef53:
		return "ext4"
	case 0x58465342:
		return "xfs"
	case 0x01021994:
		return "tmpfs"
	case 0x9123683e:
		return "btrfs"
	}
	return fmt.Sprintf("fs 0x%x", st.Type)
}

// setup creates the native dir, the LiteFS config (liteFSBin "": none),
// starts the etcd servers and prepares the three kvfs mounts.
func (b *bench) setup(ctx context.Context, kvfsBin, etcdBin, liteFSBin string) error {
	nat := filepath.Join(b.root, native)
	if err := os.MkdirAll(nat, 0o755); err != nil {
		return err
	}
	b.targets = append(b.targets, &target{key: native, dir: nat})
	if liteFSBin != "" {
		t, err := liteFSTarget(liteFSBin, filepath.Join(b.root, liteFS))
		if err != nil {
			return err
		}
		b.targets = append(b.targets, t)
	}
	for _, key := range kvfsTargets {
		base := filepath.Join(b.root, key)
		t := &target{key: key, dir: filepath.Join(base, "mnt"), dataDir: filepath.Join(base, "data")}
		for _, d := range []string{t.dir, t.dataDir, filepath.Join(base, "spool")} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		t.storeArgs = []string{"--prefix", "/kvfs/"}
		switch key {
		case embedded:
			t.storeArgs = append(t.storeArgs, "--data-dir", t.dataDir)
		default:
			n := map[string]int{process: 1, cluster: 3}[key]
			progress("etcd", "%s: starting %d-member etcd", key, n)
			members, err := startEtcd(ctx, etcdBin, filepath.Join(base, "etcd"), n)
			if err != nil {
				return err
			}
			b.etcds = append(b.etcds, members)
			t.etcd = endpoints(members)
			progress("etcd", "%s: %v", key, t.etcd)
			t.storeArgs = append(t.storeArgs, "--etcd", strings.Join(t.etcd, ","))
		}
		args := append([]string{"--spool-dir", filepath.Join(base, "spool")}, t.storeArgs...)
		t.mount = kvfsMount(kvfsBin, args, t.dir, filepath.Join(base, "kvfs.log"))
		b.targets = append(b.targets, t)
	}
	return nil
}

// cleanup unmounts every mount, stops every etcd and removes the temp dir
// (unless keep, or something is still mounted under it).
func (b *bench) cleanup(keep bool) error {
	var errs []error
	for _, t := range b.targets {
		if err := t.down(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, ms := range b.etcds {
		stopEtcd(ms)
	}
	pm, _ := os.ReadFile("/proc/mounts")
	switch {
	case mountsUnder(string(pm), b.root, false):
		errs = append(errs, fmt.Errorf("something is still mounted under %s; not removing it (umount -l it)", b.root))
	case keep:
		progress("cleanup", "kept %s", b.root)
	default:
		if err := os.RemoveAll(b.root); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// measure runs fn runs times on every target in order (run 1 on every
// target, then run 2, ...), so slow drift of a shared machine spreads over
// all targets, and records the figure.
func (b *bench) measure(ctx context.Context, f *Figure, targets []*target, fn func(t *target, run int) (float64, error)) error {
	vals := runValues{}
	for i := 1; i <= b.p.Runs; i++ {
		for _, t := range targets {
			if err := ctx.Err(); err != nil {
				return err
			}
			if _, failed := f.Errors[t.key]; failed {
				continue
			}
			v, err := fn(t, i)
			if err != nil {
				if err := b.tolerate(f, t, i, err); err != nil {
					return fmt.Errorf("%s on %s, run %d: %w", f.Title, t.key, i, err)
				}
				continue
			}
			vals.record(f, t, i, b.p.Runs, v)
		}
	}
	vals.summarize()
	return nil
}

// writePhases runs every write workload on all targets with the mounts up,
// then the raw etcd rate, then creates lookup.db, and unmounts.
func (b *bench) writePhases(ctx context.Context) error {
	for _, t := range b.targets {
		if _, err := t.up(ctx, "writes"); err != nil {
			return err
		}
	}
	p := b.p
	for _, mode := range journalModes {
		f := b.rep.figure("insert-autocommit/cli/"+strings.ToLower(mode),
			fmt.Sprintf("%d autocommit inserts, %s, sqlite3 CLI", p.Inserts, mode), "inserts/s", true, true)
		if err := b.measure(ctx, f, b.targets, func(t *target, i int) (float64, error) {
			return autocommitCLI(ctx, t.dir, mode, p.Inserts, i)
		}); err != nil {
			return err
		}
	}
	for _, mode := range journalModes {
		f := b.rep.figure("insert-autocommit/go/"+strings.ToLower(mode),
			fmt.Sprintf("%d autocommit inserts, %s, go-sqlite3", p.Inserts, mode), "inserts/s", true, true)
		if err := b.measure(ctx, f, b.targets, func(t *target, i int) (float64, error) {
			return autocommitGo(ctx, t.dir, mode, p.Inserts, i)
		}); err != nil {
			return err
		}
	}
	f := b.rep.figure("insert-attach/cli", fmt.Sprintf("%d transactions over 2 attached dbs (a row in each), DELETE, sqlite3 CLI", p.Inserts/2), "txns/s", true, true)
	if err := b.measure(ctx, f, b.targets, func(t *target, i int) (float64, error) {
		return attachCLI(ctx, t.dir, p.Inserts/2, i)
	}); err != nil {
		return err
	}
	f = b.rep.figure("insert-txn/cli", fmt.Sprintf("%dk-row insert in one txn, sqlite3 CLI", p.TxnRows/1000), "s", false, false)
	if err := b.measure(ctx, f, b.targets, func(t *target, i int) (float64, error) {
		total, _, err := bigTxnCLI(ctx, t.dir, rows100, "DELETE", p.TxnRows, i)
		return total, err
	}); err != nil {
		return err
	}
	f = b.rep.figure("insert-txn/cli/200b", fmt.Sprintf("%dk-row insert in one txn, %s, sqlite3 CLI", p.TxnRows/1000, rows200.title), "s", false, false)
	fc := b.rep.figure("insert-txn/cli/200b/commit", "  … of which the COMMIT statement", "s", false, false)
	commits := map[string][]float64{}
	if err := b.measure(ctx, f, b.targets, func(t *target, i int) (float64, error) {
		total, commit, err := bigTxnCLI(ctx, t.dir, rows200, "DELETE", p.TxnRows, i)
		commits[t.key] = append(commits[t.key], commit)
		return total, err
	}); err != nil {
		return err
	}
	for k, v := range commits {
		fc.Values[k] = summarize(v)
	}
	f = b.rep.figure("insert-txn/cli/wal", fmt.Sprintf("%dk-row insert in one txn, WAL, sqlite3 CLI", p.TxnRows/1000), "s", false, false)
	if err := b.measure(ctx, f, b.targets, func(t *target, i int) (float64, error) {
		total, _, err := bigTxnCLI(ctx, t.dir, rows100, "WAL", p.TxnRows, i)
		return total, err
	}); err != nil {
		return err
	}
	f = b.rep.figure("insert-txn/go", fmt.Sprintf("%dk-row insert in one txn, go-sqlite3", p.TxnRows/1000), "s", false, false)
	if err := b.measure(ctx, f, b.targets, func(t *target, i int) (float64, error) {
		return bigTxnGo(ctx, t.dir, p.TxnRows, i)
	}); err != nil {
		return err
	}
	f = b.rep.figure("concurrent-writers/cli",
		fmt.Sprintf("%d sqlite3 processes × %d autocommit inserts, one db, DELETE, busy timeout", p.Writers, p.WriterInserts),
		"commits/s", true, true)
	if err := b.measure(ctx, f, b.targets, func(t *target, i int) (float64, error) {
		return concurrentWriters(ctx, t.dir, p.Writers, p.WriterInserts, i)
	}); err != nil {
		return err
	}
	f = b.rep.figure("own-dbs-writers/cli",
		fmt.Sprintf("%d sqlite3 processes × %d autocommit inserts, each into its own db, DELETE", p.OwnWriters, p.OwnWriterInserts),
		"commits/s", true, true)
	f.Raw = rawEtcdManyID
	if err := b.measure(ctx, f, b.targets, func(t *target, i int) (float64, error) {
		return writersOwnDBs(ctx, t.dir, p.OwnWriters, p.OwnWriterInserts, i)
	}); err != nil {
		return err
	}
	f = b.rep.figure(rawEtcdID, fmt.Sprintf("raw etcd fenced txn (%d B value + head), sequential", p.RawValueBytes), "txn/s", true, false)
	if err := b.measure(ctx, f, b.kvfs(), func(t *target, i int) (float64, error) {
		eps, err := t.etcdEndpoints()
		if err != nil {
			return 0, err
		}
		return rawFencedTxns(ctx, eps, 1, p.RawTxns, p.RawValueBytes, i)
	}); err != nil {
		return err
	}
	f = b.rep.figure(rawEtcdManyID, fmt.Sprintf("raw etcd fenced txn (%d B value + head), %d concurrent clients × %d, a head each", p.RawValueBytes, p.OwnWriters, p.OwnWriterInserts), "txn/s", true, false)
	if err := b.measure(ctx, f, b.kvfs(), func(t *target, i int) (float64, error) {
		eps, err := t.etcdEndpoints()
		if err != nil {
			return 0, err
		}
		return rawFencedTxns(ctx, eps, p.OwnWriters, p.OwnWriterInserts, p.RawValueBytes, i)
	}); err != nil {
		return err
	}
	f = b.rep.figure("raw-etcd-ingest", "raw etcd: 24 MiB of hex text in fenced ~1.4 MiB puts and a flip, sequential (the floor of the 200-byte-value COMMIT)", "s", false, false)
	if err := b.measure(ctx, f, b.kvfs(), func(t *target, i int) (float64, error) {
		eps, err := t.etcdEndpoints()
		if err != nil {
			return 0, err
		}
		return rawIngest(ctx, eps, 24<<20, i)
	}); err != nil {
		return err
	}
	for _, t := range b.targets {
		progress("setup", "%s: lookup.db with %d rows", t.key, p.LookupRows)
		if err := createLookupDB(ctx, t.dir, lookupDB, "DELETE", p.LookupRows); err != nil {
			return err
		}
		if err := createLookupDB(ctx, t.dir, "lookup-wal.db", "WAL", p.LookupRows); err != nil {
			return err
		}
	}
	for _, t := range b.targets {
		if err := t.down(); err != nil {
			return err
		}
	}
	return nil
}

// readPhases creates big.db natively, imports it into every kvfs target (cp
// into the mount), then does runs of: fresh mount, first answer, cold scan,
// cold lookups, hot lookups.
func (b *bench) readPhases(ctx context.Context) error {
	p := b.p
	nat := b.targets[0]
	progress("setup", "native: big.db of %d MiB", p.BigBytes>>20)
	t0 := time.Now()
	bigPath, err := createBigDB(ctx, nat.dir, p.BigBytes)
	if err != nil {
		return err
	}
	b.rep.Setup = append(b.rep.Setup, SetupFigure{Target: native, What: fmt.Sprintf("create big.db (%d MiB, one transaction)", p.BigBytes>>20), Seconds: time.Since(t0).Seconds()})
	if st, err := os.Stat(bigPath); err == nil {
		b.rep.Notes = append(b.rep.Notes, fmt.Sprintf("big.db: %d rows of %d-byte values (half random, half zeros), %d MiB file, 4 KiB pages; lookup.db: %d rows of ~100 bytes.",
			bigRows(p.BigBytes), bigRowBytes, st.Size()>>20, p.LookupRows))
	}
	for _, t := range b.targets[1:] {
		if _, err := t.up(ctx, "import"); err != nil {
			return err
		}
		how := "cp"
		t0 := time.Now()
		if t.key == liteFS {
			how = "litefs import"
			progress("setup", "%s: litefs import big.db", t.key)
			err = liteFSImport(ctx, t, bigPath, bigDB)
		} else {
			progress("setup", "%s: cp big.db into the mount", t.key)
			err = copyFile(ctx, bigPath, filepath.Join(t.dir, bigDB))
		}
		if err != nil {
			return err
		}
		b.rep.Setup = append(b.rep.Setup, SetupFigure{Target: t.key, What: fmt.Sprintf("import big.db with %s (%d MiB)", how, p.BigBytes>>20), Seconds: time.Since(t0).Seconds()})
		if err := t.down(); err != nil {
			return err
		}
	}
	fFirst := b.rep.figure("mount-first-answer", fmt.Sprintf("start `kvfs mount` or `litefs mount` (existing %d MiB db) → first query answered (native: first query, cold)", p.BigBytes>>20), "s", false, false)
	fOpen := b.rep.figure(openFirstID, fmt.Sprintf("open big.db (%d MiB) on a fresh mount → first query answered, sqlite3 CLI (native: cold)", p.BigBytes>>20), "s", false, false)
	fScan := b.rep.figure("scan-cold/cli", fmt.Sprintf("full scan of %d MiB db, cold, sqlite3 CLI", p.BigBytes>>20), "s", false, false)
	fCold := b.rep.figure(lookupColdID, fmt.Sprintf("%dk random PK lookups, cold (fresh mount), go-sqlite3", p.Lookups/1000), "lookups/s", true, false)
	fHot := b.rep.figure(lookupHotID, fmt.Sprintf("%dk random PK lookups, hot (warm mount), go-sqlite3", p.Lookups/1000), "lookups/s", true, false)
	fHotWAL := b.rep.figure("lookups-hot-wal/go", fmt.Sprintf("%dk random PK lookups, hot, WAL, go-sqlite3", p.Lookups/1000), "lookups/s", true, false)
	vals := runValues{}
	record := func(f *Figure, t *target, i int, v float64, err error) error {
		return b.result(vals, f, t, i, p.Runs, v, err)
	}
	for i := 1; i <= p.Runs; i++ {
		for _, t := range b.targets {
			if err := ctx.Err(); err != nil {
				return err
			}
			if t.mount == nil {
				for _, name := range []string{bigDB, lookupDB} {
					if err := evict(filepath.Join(t.dir, name)); err != nil {
						return err
					}
				}
			}
			t0 := time.Now()
			if _, err := t.up(ctx, fmt.Sprintf("reads run %d", i)); err != nil {
				return err
			}
			t1 := time.Now()
			err := firstQuery(ctx, filepath.Join(t.dir, bigDB), p.BigBytes)
			if err := record(fFirst, t, i, time.Since(t0).Seconds(), err); err != nil {
				return err
			}
			if err := record(fOpen, t, i, time.Since(t1).Seconds(), err); err != nil {
				return err
			}
			v, err := scan(ctx, t.dir, p.BigBytes)
			if err := record(fScan, t, i, v, err); err != nil {
				return err
			}
			lk := filepath.Join(t.dir, lookupDB)
			seed := uint64(i)
			v, err = lookups(ctx, lk, p.LookupRows, p.Lookups, false, seed)
			if err := record(fCold, t, i, v, err); err != nil {
				return err
			}
			v, err = lookups(ctx, lk, p.LookupRows, p.Lookups, true, seed+1000)
			if err := record(fHot, t, i, v, err); err != nil {
				return err
			}
			v, err = lookups(ctx, filepath.Join(t.dir, "lookup-wal.db"), p.LookupRows, p.Lookups, true, seed+2000)
			if err := record(fHotWAL, t, i, v, err); err != nil {
				return err
			}
			if err := t.down(); err != nil {
				return err
			}
		}
	}
	vals.summarize()
	return nil
}

// runValues collects the values of figures measured together, run by run,
// by figure and target.
type runValues map[*Figure]map[string][]float64

// record adds run i's value v of f on t and prints it.
func (rv runValues) record(f *Figure, t *target, i, runs int, v float64) {
	if rv[f] == nil {
		rv[f] = map[string][]float64{}
	}
	rv[f][t.key] = append(rv[f][t.key], v)
	progress(f.ID, "%-9s run %d/%d: %s %s", targetHeads[t.key], i, runs, fmtNum(v), f.Unit)
}

// summarize sets every figure's values from what was recorded.
func (rv runValues) summarize() {
	for f, m := range rv {
		for k, v := range m {
			f.Values[k] = summarize(v)
		}
	}
}

// Figure IDs and database names the history phase refers to.
const (
	openFirstID  = "open-first-answer"
	lookupColdID = "lookups-cold/go"
	lookupHotID  = "lookups-hot/go"
	bigDB        = "big.db"
	lookupDB     = "lookup.db"
)

// historyPhases measures time-travel files and kvfs restore on the kvfs
// targets. It first makes p.HistoryCommits commits to big.db and to
// lookup.db, then does runs of: fresh mount, first answer from
// big.db@<that many commits back>, cold and hot lookups on
// lookup.db@<that many back>, and kvfs restore of big.db to the version
// that many commits before its latest.
func (b *bench) historyPhases(ctx context.Context) error {
	p := b.p
	n := p.HistoryCommits
	kv := b.kvfs()
	type versions struct{ big, lookup uint64 }
	at := map[string]versions{}
	for _, t := range kv {
		if _, err := t.up(ctx, "history setup"); err != nil {
			return err
		}
		progress("setup", "%s: %d commits each to %s and %s", t.key, n, bigDB, lookupDB)
		if err := historyCommits(ctx, filepath.Join(t.dir, bigDB), bigRows(p.BigBytes), n, bigValue, 1); err != nil {
			return err
		}
		if err := historyCommits(ctx, filepath.Join(t.dir, lookupDB), int64(p.LookupRows), n, lookupValue, 2); err != nil {
			return err
		}
		var v versions
		var err error
		if v.big, err = t.txidBack(ctx, bigDB, n); err != nil {
			return err
		}
		if v.lookup, err = t.txidBack(ctx, lookupDB, n); err != nil {
			return err
		}
		at[t.key] = v
		progress("setup", "%s: %s@%d, %s@%d", t.key, bigDB, v.big, lookupDB, v.lookup)
		if err := t.down(); err != nil {
			return err
		}
	}
	fOpen := b.rep.figure("history/open-first-answer", fmt.Sprintf("open big.db@<txid %d commits back> on a fresh mount → first query answered, sqlite3 CLI", n), "s", false, false)
	fOpen.Base = openFirstID
	fCold := b.rep.figure("history/lookups-cold/go", fmt.Sprintf("%dk random PK lookups on lookup.db@<txid %d commits back>, cold (fresh mount), go-sqlite3", p.Lookups/1000, n), "lookups/s", true, false)
	fCold.Base = lookupColdID
	fHot := b.rep.figure("history/lookups-hot/go", fmt.Sprintf("%dk random PK lookups on lookup.db@<txid %d commits back>, hot, go-sqlite3", p.Lookups/1000, n), "lookups/s", true, false)
	fHot.Base = lookupHotID
	fRestore := b.rep.figure("history/restore", fmt.Sprintf("`kvfs restore` of big.db (%d MiB) to %d commits back", p.BigBytes>>20, n), "s", false, false)
	fRestoreMiB := b.rep.figure("history/restore/bytes", "  … delta written to etcd (LTX, compressed)", "MiB", false, false)
	vals := runValues{}
	record := func(f *Figure, t *target, i int, v float64) { vals.record(f, t, i, p.Runs, v) }
	for i := 1; i <= p.Runs; i++ {
		for _, t := range kv {
			if err := ctx.Err(); err != nil {
				return err
			}
			if _, err := t.up(ctx, fmt.Sprintf("history run %d", i)); err != nil {
				return err
			}
			v := at[t.key]
			t0 := time.Now()
			if err := firstQuery(ctx, versionPath(t.dir, bigDB, v.big), p.BigBytes); err != nil {
				return err
			}
			record(fOpen, t, i, time.Since(t0).Seconds())
			lk := versionPath(t.dir, lookupDB, v.lookup)
			seed := uint64(i)
			x, err := lookups(ctx, lk, p.LookupRows, p.Lookups, false, seed)
			if err != nil {
				return err
			}
			record(fCold, t, i, x)
			if x, err = lookups(ctx, lk, p.LookupRows, p.Lookups, true, seed+1000); err != nil {
				return err
			}
			record(fHot, t, i, x)
			r, err := t.restoreBack(ctx, bigDB, n)
			if err != nil {
				return err
			}
			record(fRestore, t, i, r.seconds)
			record(fRestoreMiB, t, i, float64(r.bytes)/(1<<20))
			if err := firstQuery(ctx, filepath.Join(t.dir, bigDB), p.BigBytes); err != nil {
				return fmt.Errorf("after restore: %w", err)
			}
			if err := t.down(); err != nil {
				return err
			}
		}
	}
	vals.summarize()
	return nil
}

// manyPhases measures one mount holding p.ManyDBs databases: creating them
// all (once per target), then runs of: fresh mount, listing their
// directory, a query answered by one of them at random, and the daemon's
// anonymous RSS after that, against its anonymous RSS on the fresh mount
// before (idle databases should cost no memory).
func (b *bench) manyPhases(ctx context.Context) error {
	p := b.p
	n := p.ManyDBs
	dirOf := func(t *target) string {
		if t.key == liteFS {
			return t.dir // LiteFS has no directories
		}
		return filepath.Join(t.dir, manyDir)
	}
	fCreate := b.rep.figure("many-dbs/create", fmt.Sprintf("create %d databases (a table and a row each, one transaction), go-sqlite3, 8 at a time (one run)", n), "s", false, false)
	fList := b.rep.figure("many-dbs/ls", fmt.Sprintf("`ls -f` of the directory of the %d databases, fresh mount", n), "s", false, false)
	fOpen := b.rep.figure("many-dbs/open", fmt.Sprintf("then open one of the %d at random → first answer, sqlite3 CLI", n), "s", false, false)
	fAnon := b.rep.figure("many-dbs/anon-growth", fmt.Sprintf("daemon anonymous RSS after that, minus on the fresh mount before the ls (%d databases)", n), "MiB", false, false)
	vals := runValues{}
	record := func(f *Figure, t *target, i, runs int, v float64, err error) error {
		return b.result(vals, f, t, i, runs, v, err)
	}
	for _, t := range b.targets {
		if _, err := t.up(ctx, "many setup"); err != nil {
			return err
		}
		progress("setup", "%s: %d databases", t.key, n)
		v, err := createMany(ctx, dirOf(t), n)
		if err := record(fCreate, t, 1, 1, v, err); err != nil {
			return err
		}
		if err := t.down(); err != nil {
			return err
		}
	}
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	for i := 1; i <= p.Runs; i++ {
		for _, t := range b.targets {
			if err := ctx.Err(); err != nil {
				return err
			}
			if _, failed := fCreate.Errors[t.key]; failed {
				continue
			}
			if _, err := t.up(ctx, fmt.Sprintf("many run %d", i)); err != nil {
				return err
			}
			var before int64
			if t.mount != nil {
				before, _ = t.mount.anonRSS()
			}
			v, err := listMany(ctx, dirOf(t), n)
			if err := record(fList, t, i, p.Runs, v, err); err != nil {
				return err
			}
			v, err = openOneOfMany(ctx, dirOf(t), rng.IntN(n))
			if err := record(fOpen, t, i, p.Runs, v, err); err != nil {
				return err
			}
			if t.mount != nil {
				after, err := t.mount.anonRSS()
				if err := record(fAnon, t, i, p.Runs, float64(after-before)/1024, err); err != nil {
					return err
				}
			}
			if err := t.down(); err != nil {
				return err
			}
		}
	}
	vals.summarize()
	return nil
}

// copyFile copies src to dst with cp (as a user would import a database).
func copyFile(ctx context.Context, src, dst string) error {
	if out, err := exec.CommandContext(ctx, "cp", src, dst).CombinedOutput(); err != nil {
		return fmt.Errorf("cp %s %s: %w: %s", src, dst, err, out)
	}
	return nil
}

// finish computes ratios, the RSS table and the notes.
func (b *bench) finish() {
	b.rep.computeRatios()
	for _, t := range b.targets[1:] {
		r := RSS{Target: t.key, Sessions: t.sessions}
		for _, s := range t.sessions {
			r.PeakKiB, r.AnonKiB, r.FileKiB = max(r.PeakKiB, s.PeakKiB), max(r.AnonKiB, s.AnonKiB), max(r.FileKiB, s.FileKiB)
		}
		b.rep.RSS = append(b.rep.RSS, r)
	}
	b.rep.Notes = append(b.rep.Notes,
		"Cold kvfs = a new `kvfs mount` process (empty kvfs caches and kernel page cache for the mount); the etcd servers and the OS page cache of their data files stay warm. Cold LiteFS = likewise a new `litefs mount` process, the OS page cache of its data dir warm. Cold native = the file evicted with posix_fadvise(DONTNEED).",
		"LiteFS side by side: LiteFS "+liteFSVersion+" runs as one node with a static lease and no other node, so a commit ends when LiteFS has written it to its local data dir (the database file and an LTX file, with fsync); replication to other nodes, when there are any, happens after the commit returns. kvfs commits synchronously to etcd (and, with 3 members, to a quorum of them) before the commit returns. So kvfs ÷ LiteFS compares a synchronously replicated commit with a local one; LiteFS cannot run a transaction over ATTACHed databases (its failures are listed under the table). big.db is loaded into LiteFS with `litefs import` (into kvfs with cp).",
		"Mount → first answer for kvfs counts from exec of `kvfs mount` (for emb this includes starting the embedded etcd) to the answer of a sqlite3 CLI point query; for native it is that query alone, so its ratio mostly measures mount start-up.",
		"Every kvfs process runs as `make run` and systemd/kvfs.service start it: `kvfs mount` with flags only (--data-dir or --etcd, --spool-dir, --prefix), its environment stripped of GODEBUG, GOGC, GOMAXPROCS, GOMEMLIMIT, GOTRACEBACK and KVFS_*. The go-sqlite3 workloads run inside benchrun with Go's defaults (asynchronous preemption on): kvfs finishes commit points despite the FUSE interrupts its signals cause.",
		"The 200-byte-value transaction row is split: the COMMIT row is the CLI's `.timer` of the COMMIT statement alone (kvfs: the journal's deletion, that is encoding the delta and writing it to etcd); the rest of the total is SQLite building the rows and writing the database's pages (kvfs: one FUSE request per page).",
		fmt.Sprintf("History rows (kvfs only): after the read runs, %d autocommit updates of random rows (values of the same length) go to big.db and to lookup.db on each kvfs target; DB@TXID is the version that many commits before the latest, opened by the stock sqlite3 CLI or go-sqlite3 as a plain file on a fresh mount. Their ÷ live column divides by the same workload on the live file of the same target (open big.db → first answer on a fresh mount; cold and hot lookups on lookup.db). `kvfs restore` runs as a separate process against the same etcd while the mount is up, and restores big.db to the version that many commits before its latest at that time (from run 2 on, that range includes the previous run's restore commit); its bytes are the LTX delta it committed, as kvfs restore reports them.", b.p.HistoryCommits),
		"Autocommit and concurrent-writer figures time whole sqlite3 CLI processes (a few ms of start-up included); go-sqlite3 figures time the statements only.",
		"The raw etcd rate is sequential etcdstore.Txn calls comparing a fence value and the head's mod revision and putting a 4 KiB value and the head: the ceiling for one-commit-at-a-time durable commits through that etcd. kvfs ÷ raw etcd near 1 means the commit path adds little beyond the etcd round trip.",
	)
}
