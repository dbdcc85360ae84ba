package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
	_ "github.com/mattn/go-sqlite3"
	"golang.org/x/sys/unix"
)

// journalModes are the modes the autocommit workloads run in: a journal
// mode, and "/SYNC" for a synchronous setting other than SQLite's default
// (FULL).
var journalModes = []string{"DELETE", "TRUNCATE", "PERSIST", "WAL", "WAL/NORMAL"}

// splitMode returns a journalModes entry's journal mode and synchronous
// setting ("" for the default).
func splitMode(mode string) (journal, sync string) {
	journal, sync, _ = strings.Cut(mode, "/")
	return journal, sync
}

// modeFile is mode as part of a file name.
func modeFile(mode string) string { return strings.ToLower(strings.ReplaceAll(mode, "/", "-")) }

// cli runs the stock sqlite3 CLI on path with script on stdin and returns
// its output.
func cli(ctx context.Context, path, script string) (string, error) {
	cmd := exec.CommandContext(ctx, "sqlite3", "-batch", "-bail", path)
	cmd.Stdin = strings.NewReader(script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("sqlite3 %s: %w: %s", path, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// expectCount checks that table t of path holds want rows.
func expectCount(ctx context.Context, path string, want int) error {
	out, err := cli(ctx, path, "select count(*) from t;")
	if err != nil {
		return err
	}
	if got := strings.TrimSpace(out); got != strconv.Itoa(want) {
		return fmt.Errorf("%s: %s rows, want %d", path, got, want)
	}
	return nil
}

const createT = "create table t(id integer primary key, v text);"

// insertScript returns n autocommit single-row inserts, after a journal
// mode pragma (rollback modes are per connection).
func insertScript(mode string, n, tag int) string {
	var b strings.Builder
	journal, sync := splitMode(mode)
	fmt.Fprintf(&b, ".timeout 10000\npragma journal_mode=%s;\n", journal)
	if sync != "" {
		fmt.Fprintf(&b, "pragma synchronous=%s;\n", sync)
	}
	for i := range n {
		fmt.Fprintf(&b, "insert into t(v) values('writer %d row %d padding-padding-padding');\n", tag, i)
	}
	return b.String()
}

// autocommitCLI times n autocommit inserts by one sqlite3 CLI process into a
// fresh database; it returns inserts/s.
func autocommitCLI(ctx context.Context, dir, mode string, n, run int) (float64, error) {
	path := filepath.Join(dir, fmt.Sprintf("ac-cli-%s-%d.db", modeFile(mode), run))
	if _, err := cli(ctx, path, createT); err != nil {
		return 0, err
	}
	script := insertScript(mode, n, 0)
	t0 := time.Now()
	if _, err := cli(ctx, path, script); err != nil {
		return 0, err
	}
	el := time.Since(t0)
	if err := expectCount(ctx, path, n); err != nil {
		return 0, err
	}
	return float64(n) / el.Seconds(), nil
}

// attachCLI times n transactions, each inserting a row into each of two
// attached databases (SQLite commits them through a super-journal; kvfs in
// one etcd transaction), by one sqlite3 CLI process; it returns
// transactions/s.
func attachCLI(ctx context.Context, dir string, n, run int) (float64, error) {
	a := filepath.Join(dir, fmt.Sprintf("attach-a-%d.db", run))
	b := filepath.Join(dir, fmt.Sprintf("attach-b-%d.db", run))
	for _, path := range []string{a, b} {
		if _, err := cli(ctx, path, createT); err != nil {
			return 0, err
		}
	}
	var s strings.Builder
	fmt.Fprintf(&s, ".timeout 10000\nattach '%s' as b;\n", b)
	for i := range n {
		fmt.Fprintf(&s, "begin; insert into main.t(v) values('a row %d padding'); insert into b.t(v) values('b row %d padding'); commit;\n", i, i)
	}
	t0 := time.Now()
	if _, err := cli(ctx, a, s.String()); err != nil {
		return 0, err
	}
	el := time.Since(t0)
	for _, path := range []string{a, b} {
		if err := expectCount(ctx, path, n); err != nil {
			return 0, err
		}
	}
	return float64(n) / el.Seconds(), nil
}

// openDB opens path with go-sqlite3 on one connection.
func openDB(path, params string) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=10000"+params)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return db, nil
}

// autocommitGo times n autocommit inserts through go-sqlite3 into a fresh
// database; it returns inserts/s.
func autocommitGo(ctx context.Context, dir, mode string, n, run int) (float64, error) {
	path := filepath.Join(dir, fmt.Sprintf("ac-go-%s-%d.db", modeFile(mode), run))
	journal, sync := splitMode(mode)
	params := "&_journal_mode=" + journal
	if sync != "" {
		params += "&_synchronous=" + sync
	}
	db, err := openDB(path, params)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, createT); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	var got string
	if err := db.QueryRowContext(ctx, "pragma journal_mode").Scan(&got); err != nil || !strings.EqualFold(got, journal) {
		return 0, fmt.Errorf("%s: journal_mode %q (%v), want %s", path, got, err, journal)
	}
	t0 := time.Now()
	for i := range n {
		if _, err := db.ExecContext(ctx, "insert into t(v) values(?)", fmt.Sprintf("go row %d padding-padding-padding", i)); err != nil {
			return 0, fmt.Errorf("%s: insert %d: %w", path, i, err)
		}
	}
	el := time.Since(t0)
	if err := expectCount(ctx, path, n); err != nil {
		return 0, err
	}
	return float64(n) / el.Seconds(), nil
}

// rowShape is the value of the rows a one-transaction insert makes.
type rowShape struct {
	name  string // for file names
	title string // for the figure's title
	expr  string // SQL expression of row i's value
}

var (
	rows100 = rowShape{"100b", "~100-byte rows", "printf('row %08d ', i) || hex(randomblob(40))"}
	// rows200 are 200-byte hex values: about 25 MiB of table for 100k
	// rows, the size of a realistic bulk load.
	rows200 = rowShape{"200b", "200-byte values", "hex(randomblob(100))"}
)

// rowsSQL inserts rows 1..n of the given shape into t with one statement.
func rowsSQL(shape rowShape, n int) string {
	return fmt.Sprintf("with recursive c(i) as (select 1 union all select i+1 from c where i < %d) "+
		"insert into t(id, v) select i, %s from c;", n, shape.expr)
}

// bigTxnCLI times one transaction inserting n rows through the CLI. It
// returns the seconds of the whole CLI process and of its COMMIT statement
// alone (the CLI's .timer).
func bigTxnCLI(ctx context.Context, dir string, shape rowShape, journal string, n, run int) (total, commit float64, err error) {
	path := filepath.Join(dir, fmt.Sprintf("txn-cli-%s-%s-%d.db", shape.name, strings.ToLower(journal), run))
	if _, err := cli(ctx, path, "pragma journal_mode="+journal+";\n"+createT); err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	out, err := cli(ctx, path, "begin;\n"+rowsSQL(shape, n)+"\n.timer on\ncommit;\n")
	if err != nil {
		return 0, 0, err
	}
	total = time.Since(t0).Seconds()
	if commit, err = runTime(out); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	return total, commit, expectCount(ctx, path, n)
}

// runTime returns the real seconds of the last "Run Time: real S user U
// sys Y" line the CLI's .timer printed in out.
func runTime(out string) (float64, error) {
	lines := strings.Split(out, "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		f := strings.Fields(lines[i])
		if len(f) >= 4 && f[0] == "Run" && f[1] == "Time:" && f[2] == "real" {
			return strconv.ParseFloat(f[3], 64)
		}
	}
	return 0, fmt.Errorf("no .timer line in the CLI's output %q", out)
}

// bigTxnGo times one go-sqlite3 transaction of n prepared single-row
// inserts; seconds.
func bigTxnGo(ctx context.Context, dir string, n, run int) (float64, error) {
	path := filepath.Join(dir, fmt.Sprintf("txn-go-%d.db", run))
	db, err := openDB(path, "")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, createT); err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	t0 := time.Now()
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	st, err := tx.PrepareContext(ctx, "insert into t(id, v) values(?, ?)")
	if err != nil {
		return 0, err
	}
	pad := strings.Repeat("x", 80)
	for i := 1; i <= n; i++ {
		if _, err := st.ExecContext(ctx, i, fmt.Sprintf("row %08d %s", i, pad)); err != nil {
			return 0, fmt.Errorf("%s: insert %d: %w", path, i, err)
		}
	}
	st.Close()
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("%s: commit: %w", path, err)
	}
	el := time.Since(t0)
	return el.Seconds(), expectCount(ctx, path, n)
}

// concurrentWriters runs `writers` sqlite3 CLI processes at once, each doing
// n autocommit inserts (DELETE mode, busy timeout 10 s) into one database;
// it returns total commits/s.
func concurrentWriters(ctx context.Context, dir string, writers, n, run int) (float64, error) {
	path := filepath.Join(dir, fmt.Sprintf("multi-%d.db", run))
	if _, err := cli(ctx, path, createT); err != nil {
		return 0, err
	}
	el, err := inParallel(writers, func(w int) error {
		_, err := cli(ctx, path, insertScript("DELETE", n, w))
		return err
	})
	if err != nil {
		return 0, err
	}
	if err := expectCount(ctx, path, writers*n); err != nil {
		return 0, err
	}
	return float64(writers*n) / el.Seconds(), nil
}

// writersOwnDBs runs `writers` sqlite3 CLI processes at once, each doing n
// autocommit inserts (DELETE mode) into a database of its own; it returns
// the aggregate commits/s.
func writersOwnDBs(ctx context.Context, dir string, writers, n, run int) (float64, error) {
	paths := make([]string, writers)
	for w := range writers {
		paths[w] = filepath.Join(dir, fmt.Sprintf("own-%d-%d.db", run, w))
		if _, err := cli(ctx, paths[w], createT); err != nil {
			return 0, err
		}
	}
	el, err := inParallel(writers, func(w int) error {
		_, err := cli(ctx, paths[w], insertScript("DELETE", n, w))
		return err
	})
	if err != nil {
		return 0, err
	}
	for _, path := range paths {
		if err := expectCount(ctx, path, n); err != nil {
			return 0, err
		}
	}
	return float64(writers*n) / el.Seconds(), nil
}

// manyDir is the directory of the many-databases rows, and manyName the
// name of database i in it.
const manyDir = "many"

func manyName(i int) string { return fmt.Sprintf("db%05d.db", i) }

// createMany creates count databases in dir/many (dir itself on LiteFS,
// which has no directories), each a table with one row written in one
// transaction, through go-sqlite3, 8 at a time; it returns seconds.
func createMany(ctx context.Context, dir string, count int) (float64, error) {
	if err := os.Mkdir(dir, 0o755); err != nil && !os.IsExist(err) {
		return 0, err
	}
	const workers = 8
	el, err := inParallel(workers, func(w int) error {
		for i := w; i < count; i += workers {
			path := filepath.Join(dir, manyName(i))
			db, err := openDB(path, "")
			if err == nil {
				_, err = db.ExecContext(ctx, "begin; create table t(id integer primary key, v text); insert into t(v) values('database "+strconv.Itoa(i)+"'); commit;")
				db.Close()
			}
			if err != nil {
				return fmt.Errorf("create %s: %w", path, err)
			}
		}
		return nil
	})
	return el.Seconds(), err
}

// inParallel runs fn(0) … fn(n-1) at once and returns how long they took
// together and their errors.
func inParallel(n int, fn func(i int) error) (time.Duration, error) {
	errs := make([]error, n)
	var wg sync.WaitGroup
	t0 := time.Now()
	for i := range n {
		wg.Go(func() { errs[i] = fn(i) })
	}
	wg.Wait()
	return time.Since(t0), errors.Join(errs...)
}

// listMany lists dir (ls -f: no sort, no stat, as a program that reads the
// directory does) and checks it holds at least count entries; it returns
// seconds.
func listMany(ctx context.Context, dir string, count int) (float64, error) {
	t0 := time.Now()
	out, err := exec.CommandContext(ctx, "ls", "-f", dir).Output()
	el := time.Since(t0)
	if err != nil {
		return 0, fmt.Errorf("ls -f %s: %w", dir, err)
	}
	if n := strings.Count(string(out), ".db\n"); n < count {
		return 0, fmt.Errorf("ls -f %s: %d databases, want %d", dir, n, count)
	}
	return el.Seconds(), nil
}

// openOneOfMany answers a query from database i of dir with the sqlite3
// CLI; it returns seconds.
func openOneOfMany(ctx context.Context, dir string, i int) (float64, error) {
	path := filepath.Join(dir, manyName(i))
	t0 := time.Now()
	out, err := cli(ctx, path, "select v from t;")
	el := time.Since(t0)
	if err != nil {
		return 0, err
	}
	if got, want := strings.TrimSpace(out), "database "+strconv.Itoa(i); got != want {
		return 0, fmt.Errorf("%s answers %q, want %q", path, got, want)
	}
	return el.Seconds(), nil
}

// createLookupDB creates name in dir, in the given journal mode, with rows
// 1..n of ~100 bytes.
func createLookupDB(ctx context.Context, dir, name, journal string, n int) error {
	path := filepath.Join(dir, name)
	_, err := cli(ctx, path, "pragma journal_mode="+journal+";\n"+createT+"\nbegin;\n"+rowsSQL(rows100, n)+"\ncommit;\n")
	return err
}

// lookups runs n random primary-key lookups on path through go-sqlite3 on
// one connection (each its own read transaction, as an application's
// point queries are); it returns lookups/s. With warm set it first reads
// the whole table and does the n lookups once, untimed.
func lookups(ctx context.Context, path string, rows, n int, warm bool, seed uint64) (float64, error) {
	db, err := openDB(path, "")
	if err != nil {
		return 0, err
	}
	defer db.Close()
	st, err := db.PrepareContext(ctx, "select v from t where id = ?")
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	defer st.Close()
	pass := func() error {
		rng := rand.New(rand.NewPCG(seed, 1))
		var v string
		for range n {
			if err := st.QueryRowContext(ctx, 1+rng.IntN(rows)).Scan(&v); err != nil {
				return fmt.Errorf("%s: lookup: %w", path, err)
			}
		}
		return nil
	}
	if warm {
		var sum int64
		if err := db.QueryRowContext(ctx, "select sum(length(v)) from t").Scan(&sum); err != nil {
			return 0, fmt.Errorf("%s: warm-up: %w", path, err)
		}
		if err := pass(); err != nil {
			return 0, err
		}
	}
	t0 := time.Now()
	if err := pass(); err != nil {
		return 0, err
	}
	return float64(n) / time.Since(t0).Seconds(), nil
}

// bigRowBytes is the value size of the large database's rows; four fit a
// 4 KiB page, so the file is about rows × 1 KiB.
const bigRowBytes = 1000

// createBigDB creates big.db of about size bytes in dir (native), with
// values half random, half zeros (so LZ4 in kvfs halves them, as it would
// typical data), and returns its path.
func createBigDB(ctx context.Context, dir string, size int64) (string, error) {
	path := filepath.Join(dir, bigDB)
	rows := size / 1024
	_, err := cli(ctx, path, fmt.Sprintf("pragma page_size=4096; create table t(id integer primary key, v blob);\n"+
		"begin; with recursive c(i) as (select 1 union all select i+1 from c where i < %d) "+
		"insert into t(id, v) select i, cast(randomblob(%d)||zeroblob(%d) as blob) from c; commit;\n",
		rows, bigRowBytes/2, bigRowBytes/2))
	return path, err
}

// bigRows is the number of rows createBigDB writes for size.
func bigRows(size int64) int64 { return size / 1024 }

// firstQuery runs one point query on big.db (or a version of it) at path
// through the CLI and checks the answer.
func firstQuery(ctx context.Context, path string, size int64) error {
	out, err := cli(ctx, path, fmt.Sprintf("select length(v) from t where id = %d;", bigRows(size)/2))
	if err != nil {
		return err
	}
	if strings.TrimSpace(out) != strconv.Itoa(bigRowBytes) {
		return fmt.Errorf("first query on %s: got %q", path, out)
	}
	return nil
}

// scan reads every row of big.db through the CLI; it returns seconds.
func scan(ctx context.Context, dir string, size int64) (float64, error) {
	t0 := time.Now()
	out, err := cli(ctx, filepath.Join(dir, bigDB), "select sum(length(v)), count(*) from t;")
	if err != nil {
		return 0, err
	}
	el := time.Since(t0)
	rows := bigRows(size)
	if want := fmt.Sprintf("%d|%d", rows*bigRowBytes, rows); strings.TrimSpace(out) != want {
		return 0, fmt.Errorf("scan of big.db: got %q, want %s", strings.TrimSpace(out), want)
	}
	return el.Seconds(), nil
}

// evict drops a local file's pages from the OS page cache (after writing
// back dirty ones), so the next read of it is cold.
func evict(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return err
	}
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		return fmt.Errorf("fadvise %s: %w", path, err)
	}
	return nil
}

// rawKeys is one raw etcd measurement's keys under a fresh prefix of its
// own, with a fence key holding "gen-1".
type rawKeys struct {
	s           *etcdstore.Store
	pfx         string
	fence, head string
	fenceCmp    etcdstore.Cmp
}

// openRaw connects to eps and writes the fence of a fresh prefix for kind;
// close deletes the prefix and disconnects.
func openRaw(ctx context.Context, eps []string, kind string, run int) (*rawKeys, error) {
	s, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: eps})
	if err != nil {
		return nil, err
	}
	pfx := fmt.Sprintf("/kvfs-bench-%s/%d-%d/", kind, time.Now().UnixNano(), run)
	r := &rawKeys{s: s, pfx: pfx, fence: pfx + "fence", head: pfx + "head",
		fenceCmp: etcdstore.CmpValue(pfx+"fence", []byte("gen-1"))}
	if _, err := s.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpPut(r.fence, []byte("gen-1"))}); err != nil {
		s.Close()
		return nil, err
	}
	return r, nil
}

func (r *rawKeys) close(ctx context.Context) error {
	defer r.s.Close()
	if _, err := r.s.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpDeletePrefix(r.pfx)}); err != nil {
		return fmt.Errorf("delete raw etcd keys: %w", err)
	}
	return nil
}

// rawIngest times writing total bytes of hex text (what LZ4 leaves of the
// 200-byte-value transaction's pages) to etcd as a staged commit does: a
// fenced transaction per chunk of at most etcd's default request size,
// sequentially, then one flip. It returns seconds: the floor of that
// transaction's COMMIT on this etcd.
func rawIngest(ctx context.Context, eps []string, total, run int) (float64, error) {
	r, err := openRaw(ctx, eps, "ingest", run)
	if err != nil {
		return 0, err
	}
	cmps := []etcdstore.Cmp{r.fenceCmp}
	chunk := etcdstore.DefaultLimits().ChunkSize(len(r.pfx)+32) - 64<<10
	value := make([]byte, chunk)
	const hexDigits = "0123456789ABCDEF"
	for i := range value {
		value[i] = hexDigits[rand.IntN(16)]
	}
	t0 := time.Now()
	for i := 0; i*chunk < total; i++ {
		if _, err := r.s.Txn(ctx, cmps, []etcdstore.Op{etcdstore.OpPut(fmt.Sprintf("%sdelta/%04x", r.pfx, i), value[:min(chunk, total-i*chunk)])}); err != nil {
			r.close(ctx)
			return 0, fmt.Errorf("raw ingest chunk %d: %w", i, err)
		}
	}
	if _, err := r.s.Txn(ctx, cmps, []etcdstore.Op{etcdstore.OpPut(r.head, []byte("1"))}); err != nil {
		r.close(ctx)
		return 0, err
	}
	el := time.Since(t0)
	return el.Seconds(), r.close(ctx)
}

// rawFencedTxns runs, from each of clients goroutines on one etcd
// connection, n sequential fenced transactions against etcd, each comparing
// a fence value and that client's head's mod revision and putting a
// valueBytes value and the head — kvfs's fast-path commit shape, one head
// per database. It returns the aggregate txn/s, and deletes its keys
// afterwards.
func rawFencedTxns(ctx context.Context, eps []string, clients, n, valueBytes, run int) (float64, error) {
	r, err := openRaw(ctx, eps, "raw", run)
	if err != nil {
		return 0, err
	}
	value := make([]byte, valueBytes)
	for i := range value {
		value[i] = byte(rand.IntN(256))
	}
	heads := make([]string, clients)
	revs := make([]int64, clients)
	for c := range clients {
		heads[c] = fmt.Sprintf("%shead/%d", r.pfx, c)
		res, err := r.s.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpPut(heads[c], []byte("0"))})
		if err != nil {
			r.close(ctx)
			return 0, err
		}
		revs[c] = res.Revision
	}
	el, err := inParallel(clients, func(c int) error {
		for i := range n {
			res, err := r.s.Txn(ctx,
				[]etcdstore.Cmp{r.fenceCmp, etcdstore.CmpModRevision(heads[c], revs[c])},
				[]etcdstore.Op{etcdstore.OpPut(fmt.Sprintf("%sdelta/%d/%016x", r.pfx, c, i), value), etcdstore.OpPut(heads[c], []byte(strconv.Itoa(i)))})
			if err != nil {
				return fmt.Errorf("raw txn %d of client %d: %w", i, c, err)
			}
			revs[c] = res.Revision
		}
		return nil
	})
	if err != nil {
		r.close(ctx)
		return 0, err
	}
	return float64(clients*n) / el.Seconds(), r.close(ctx)
}
