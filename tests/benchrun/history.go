package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The history workloads: time-travel files (DB@TXID) and kvfs restore,
// measured on kvfs targets only (native SQLite has no history).

// historyCommits makes n autocommit updates of random rows of table t of
// path (1..rows) through one sqlite3 CLI process, each setting the row's
// value to value, an SQL expression of the row's id giving one of the
// same length as before, so the row count and value lengths the other
// workloads check stay as they were.
func historyCommits(ctx context.Context, path string, rows int64, n int, value string, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 2))
	var b strings.Builder
	b.WriteString(".timeout 10000\n")
	for range n {
		fmt.Fprintf(&b, "update t set v = %s where id = %d;\n", value, 1+rng.Int64N(rows))
	}
	_, err := cli(ctx, path, b.String())
	return err
}

// The values historyCommits writes to big.db and lookup.db.
var (
	bigValue    = fmt.Sprintf("cast(randomblob(%d)||zeroblob(%d) as blob)", bigRowBytes/2, bigRowBytes/2)
	lookupValue = "printf('row %08d ', id) || hex(randomblob(40))"
)

// kvfsCLI runs `kvfs CMD` against the target's store and returns its
// standard output.
func (t *target) kvfsCLI(ctx context.Context, cmd string, args ...string) (string, error) {
	all := append(append([]string{cmd}, t.storeArgs...), args...)
	c := exec.CommandContext(ctx, t.mount.bin, all...)
	c.Env = childEnv()
	var stderr strings.Builder
	c.Stderr = &stderr
	out, err := c.Output()
	if err != nil {
		return string(out), fmt.Errorf("kvfs %s: %w: %s", strings.Join(all, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// txidBack returns the txid of the commit of db that is back commits
// before its latest one, from `kvfs log`.
func (t *target) txidBack(ctx context.Context, db string, back int) (uint64, error) {
	out, err := t.kvfsCLI(ctx, "log", "-n", strconv.Itoa(back+1), db)
	if err != nil {
		return 0, err
	}
	// A header line, then one line per commit, newest first.
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != back+2 {
		return 0, fmt.Errorf("kvfs log %s: %d commits in the history, want %d:\n%s", db, len(lines)-1, back+1, out)
	}
	f := strings.Fields(lines[len(lines)-1])
	if len(f) == 0 {
		return 0, fmt.Errorf("kvfs log %s: empty last line", db)
	}
	return strconv.ParseUint(f[0], 10, 64)
}

// versionPath is the time-travel file of db at txid in dir.
func versionPath(dir, db string, txid uint64) string {
	return filepath.Join(dir, fmt.Sprintf("%s@%d", db, txid))
}

// restoreLine matches kvfs restore's report.
var restoreLine = regexp.MustCompile(`: (\d+) pages written \((\d+) bytes of delta in (\d+) etcd transactions\)`)

// restoreResult is one timed kvfs restore.
type restoreResult struct {
	seconds float64
	pages   int
	bytes   int64
}

// restoreBack restores db to the version back commits before its latest
// one with `kvfs restore` (while the target's mount runs and may hold the
// write lease), timing the command.
func (t *target) restoreBack(ctx context.Context, db string, back int) (restoreResult, error) {
	txid, err := t.txidBack(ctx, db, back)
	if err != nil {
		return restoreResult{}, err
	}
	t0 := time.Now()
	out, err := t.kvfsCLI(ctx, "restore", "--to", strconv.FormatUint(txid, 10), db)
	if err != nil {
		return restoreResult{}, err
	}
	r := restoreResult{seconds: time.Since(t0).Seconds()}
	m := restoreLine.FindStringSubmatch(out)
	if m == nil {
		return restoreResult{}, fmt.Errorf("kvfs restore %s: unexpected report %q", db, out)
	}
	r.pages, _ = strconv.Atoi(m[1])
	r.bytes, _ = strconv.ParseInt(m[2], 10, 64)
	return r, nil
}
