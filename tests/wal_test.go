package tests

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kvfs/kvfs/pager"
)

// TestWALCommitPointsReachEtcd: in WAL mode every autocommit insert is in
// etcd when its statement returns, whatever synchronous and locking_mode
// say: kvfs commits at the write that completes the transaction's commit
// frame. Checkpoints of every kind, and the one at the last close, add no
// commit (their pages are in etcd already).
func TestWALCommitPointsReachEtcd(t *testing.T) {
	m := mountKVFS(t, mountOpts{})
	for _, sync := range []string{"full", "normal", "off"} {
		for _, locking := range []string{"normal", "exclusive"} {
			name := fmt.Sprintf("wal-%s-%s.db", sync, locking)
			t.Run(name, func(t *testing.T) {
				c, closeConn := openConnCloser(t, m.Path(name), "_busy_timeout=5000")
				defer closeConn()
				for _, p := range []string{"locking_mode=" + locking, "journal_mode=wal", "synchronous=" + sync} {
					execConn(t, c, "pragma "+p)
				}
				execConn(t, c, "create table t(x)")
				base := headWrites(t, m, name)
				for i := int64(1); i <= 5; i++ {
					execConn(t, c, fmt.Sprintf("insert into t values (%d)", i))
					if got := headWrites(t, m, name); got != base+i {
						t.Fatalf("after insert %d: %d commits in etcd, want %d", i, got-base, i)
					}
				}
				for _, ck := range []string{"passive", "full", "restart", "truncate"} {
					execConn(t, c, "pragma wal_checkpoint("+ck+")")
					execConn(t, c, "insert into t values (0)")
				}
				want := base + 9
				if got := headWrites(t, m, name); got != want {
					t.Fatalf("after checkpoints and 4 more inserts: %d commits, want %d", got-base, want-base)
				}
				closeConn() // the last close checkpoints and deletes the -wal
				if got := headWrites(t, m, name); got != want {
					t.Fatalf("after the last close: %d commits, want %d", got-base, want-base)
				}
				if out := mustSQL(t, m.Path(name), "pragma journal_mode; select count(*), sum(x) from t; pragma integrity_check;"); out != "wal\n9|15\nok\n" {
					t.Fatalf("read back: %q", out)
				}
			})
		}
	}
}

// TestWALReaderKeepsSnapshotAcrossCommits: a WAL reader's snapshot reads
// pages that later transactions changed from the database file, which must
// still hold them as the checkpoints left them, not the latest commit. A
// read transaction with a 10-page cache reads one row, another connection
// rewrites every row (new frames for every page) and checkpoints as far as
// the reader allows; the reader's pass over the whole table still sees the
// old rows, and its next transaction the new ones.
func TestWALReaderKeepsSnapshotAcrossCommits(t *testing.T) {
	m := mountKVFS(t, mountOpts{})
	path := m.Path("snap.db")
	mustSQL(t, path, "pragma journal_mode=wal;\n"+bigTable)
	writer := openConn(t, path, "_busy_timeout=5000")
	execConn(t, writer, "pragma wal_checkpoint(truncate)")
	reader := openConn(t, path, "_busy_timeout=5000&cache=private")
	execConn(t, reader, "pragma cache_size=10")
	execConn(t, reader, "begin")
	if got := queryInt(t, reader, "select v from t where id = 1"); got != 1 {
		t.Fatalf("first read: %d", got)
	}
	execConn(t, writer, "update t set v = 2")
	execConn(t, writer, "pragma wal_checkpoint(passive)")
	// Memory pressure: the kernel forgets the file's pages, so the
	// reader's pass asks kvfs for them.
	evictCache(t, path)
	if got := queryInt(t, reader, sum); got != 4000 {
		t.Fatalf("reader's pass in its read transaction: sum %d, want 4000 (it saw a later commit)", got)
	}
	execConn(t, reader, "commit")
	if got := queryInt(t, reader, sum); got != 8000 {
		t.Fatalf("reader's next transaction: sum %d, want 8000", got)
	}
	// Checkpointed all the way, then read by a fresh process.
	execConn(t, writer, "pragma wal_checkpoint(truncate)")
	if out := mustSQL(t, path, sum+"; pragma integrity_check;"); out != "8000\nok\n" {
		t.Fatalf("fresh CLI: %q", out)
	}
}

// evictCache drops the kernel's cached pages of path (as memory pressure
// would), so that the next reads reach kvfs.
func evictCache(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
		t.Fatalf("fadvise %s: %v", path, err)
	}
}

// TestWALSwitchModes: a database goes WAL → DELETE → WAL → TRUNCATE →
// PERSIST → WAL with writes in each mode, and reads the same as a local
// file doing the same, also after a remount.
func TestWALSwitchModes(t *testing.T) {
	m := mountKVFS(t, mountOpts{})
	var b strings.Builder
	b.WriteString("create table t(id integer primary key, v text);\n")
	for i, mode := range []string{"wal", "delete", "wal", "truncate", "persist", "wal"} {
		fmt.Fprintf(&b, "pragma journal_mode=%s;\n", mode)
		fmt.Fprintf(&b, "insert into t(v) select printf('%%0300d', %d * 10 + n) from (select 1 n union all select 2 union all select 3);\n", i)
		fmt.Fprintf(&b, "update t set v = '%s-%d' where id %% 2 = %d;\n", mode, i, i%2)
	}
	b.WriteString("pragma journal_mode; select count(*) from t; pragma integrity_check;\n")
	native := filepath.Join(t.TempDir(), "native.db")
	want := mustSQL(t, native, b.String())
	if got := mustSQL(t, m.Path("sw.db"), b.String()); got != want {
		t.Fatalf("kvfs %q, native %q", got, want)
	}
	dump := mustSQL(t, native, ".dump")
	if got := mustSQL(t, m.Path("sw.db"), ".dump"); got != dump {
		t.Fatalf(".dump differs: %s", firstDiff(got, dump))
	}
	prefix := m.Prefix
	m.Unmount()
	m2 := mountKVFS(t, mountOpts{Prefix: prefix})
	if out := mustSQL(t, m2.Path("sw.db"), "pragma journal_mode; select count(*) from t; pragma integrity_check;"); out != "wal\n18\nok\n" {
		t.Fatalf("after remount: %q", out)
	}
}

// TestWALGoSQLite: the go-sqlite3 workload in WAL mode (schema, a 10,000-row
// transaction, 1,000 autocommit inserts, updates, deletes, VACUUM) gives
// the database a local file gets, before and after a remount; VACUUM INTO
// another kvfs file and the CLI's .backup make good copies.
func TestWALGoSQLite(t *testing.T) {
	m := mountKVFS(t, mountOpts{})
	native := filepath.Join(t.TempDir(), "native.db")
	goWorkload(t, native, "wal")
	goWorkload(t, m.Path("go-wal.db"), "wal")
	dump := mustSQL(t, native, ".dump")
	if kv := mustSQL(t, m.Path("go-wal.db"), ".dump"); kv != dump {
		t.Fatalf(".dump differs from native: %s", firstDiff(kv, dump))
	}
	mustSQL(t, m.Path("go-wal.db"), fmt.Sprintf("vacuum into '%s';", m.Path("into.db")))
	mustSQL(t, m.Path("go-wal.db"), fmt.Sprintf(".backup '%s'", m.Path("backup.db")))
	for _, copy := range []string{"into.db", "backup.db"} {
		if kv := mustSQL(t, m.Path(copy), ".dump"); kv != dump {
			t.Fatalf("%s: .dump differs: %s", copy, firstDiff(kv, dump))
		}
	}
	prefix := m.Prefix
	m.Unmount()
	m2 := mountKVFS(t, mountOpts{Prefix: prefix})
	if kv := mustSQL(t, m2.Path("go-wal.db"), ".dump"); kv != dump {
		t.Fatalf("after remount: %s", firstDiff(kv, dump))
	}
}

// TestWALClientKilledMidTransaction: a sqlite3 process killed while it
// writes a large WAL transaction (frames in the -wal, no commit frame)
// leaves nothing of it committed; the next opener recovers the log and
// sees the last commit, and writes on.
func TestWALClientKilledMidTransaction(t *testing.T) {
	m := mountKVFS(t, mountOpts{})
	path := m.Path("kill.db")
	mustSQL(t, path, "pragma journal_mode=wal; create table t(id integer primary key, v blob); insert into t(v) values (randomblob(100));")
	// A connection that stays open keeps the -wal (and its frames) on the
	// host across the kill.
	keeper := openConn(t, path, "_busy_timeout=5000")
	if got := queryInt(t, keeper, "select count(*) from t"); got != 1 {
		t.Fatalf("count %d", got)
	}
	before := headWrites(t, m, "kill.db")
	cmd := exec.Command("sqlite3", path)
	cmd.Stdin = strings.NewReader("pragma cache_size=20; begin; with recursive n(i) as (select 1 union all select i+1 from n where i < 2000000) insert into t(v) select randomblob(200) from n; commit;")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	walPath := path + "-wal"
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if st, err := os.Stat(walPath); err == nil && st.Size() > 4<<20 {
			break
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatal("the transaction never spilled frames into the -wal")
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if got := headWrites(t, m, "kill.db"); got != before {
		t.Fatalf("%d commits landed from a killed transaction", got-before)
	}
	if out := mustSQL(t, path, "select count(*) from t; pragma integrity_check;"); out != "1\nok\n" {
		t.Fatalf("after the kill: %q", out)
	}
	mustSQL(t, path, "insert into t(v) values (randomblob(10));")
	if got := queryInt(t, keeper, "select count(*) from t"); got != 2 {
		t.Fatalf("keeper after the next commit: count %d, want 2", got)
	}
}

// TestWALBadInput: writes to a -wal that SQLite would never make commit
// nothing: a header that is not one is kept as a local disk keeps it (for
// SQLite's recovery to judge, TestWALCopiedIn), and a commit frame that
// does not chain to the log makes the -wal's fsync fail (EIO).
func TestWALBadInput(t *testing.T) {
	m := mountKVFS(t, mountOpts{})
	path := m.Path("bad.db")
	c := openConn(t, path, "_busy_timeout=5000")
	execConn(t, c, "pragma journal_mode=wal")
	execConn(t, c, "create table t(x)")
	execConn(t, c, "insert into t values (1)")
	before := headWrites(t, m, "bad.db")
	f, err := os.OpenFile(path+"-wal", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A frame after the log's end that claims to commit, with a wrong
	// checksum.
	st, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	hdr := make([]byte, 32)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 32), 0); err != nil {
		t.Fatalf("zero header: %v", err)
	}
	if got := headWrites(t, m, "bad.db"); got != before {
		t.Fatalf("%d commits from a zero header", got-before)
	}
	pageSize := int64(binary.BigEndian.Uint32(hdr[8:]))
	frame := make([]byte, 24+pageSize)
	binary.BigEndian.PutUint32(frame[0:], 2) // page 2
	binary.BigEndian.PutUint32(frame[4:], 2) // commit: 2 pages
	copy(frame[8:16], hdr[16:24])            // the log's salts
	binary.BigEndian.PutUint32(frame[16:], 0xdeadbeef)
	off := st.Size()
	if (off-32)%int64(len(frame)) != 0 {
		t.Fatalf("-wal size %d is not whole frames of %d", off, len(frame))
	}
	if _, err := f.WriteAt(frame, off); err != nil {
		t.Fatalf("write frame: %v", err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync after a frame that does not chain: %v, want EIO", err)
	}
	if got := headWrites(t, m, "bad.db"); got != before {
		t.Fatalf("%d commits from bad frames", got-before)
	}
	if got := queryInt(t, c, "select count(*) from t"); got != 1 {
		t.Fatalf("count %d", got)
	}
	execConn(t, c, "insert into t values (2)")
	if got := headWrites(t, m, "bad.db"); got != before+1 {
		t.Fatalf("the next real commit: %d commits, want 1", got-before)
	}
}

// queryIntErr is queryInt that returns the error (SQLITE_BUSY while kvfs
// applies another host's commit is a miss, not a failure).
func queryIntErr(c *sql.Conn, q string) (int64, error) {
	var n int64
	err := c.QueryRowContext(context.Background(), q).Scan(&n)
	return n, err
}

// eventuallyInt polls q on c until it answers want or 5 s pass; an error
// (SQLITE_BUSY while kvfs applies another host's commit) is a miss.
func eventuallyInt(t *testing.T, what string, c *sql.Conn, q string, want int64) {
	t.Helper()
	eventually(t, what, fmt.Sprint(want), func() string {
		n, err := queryIntErr(c, q)
		if err != nil {
			return err.Error()
		}
		return fmt.Sprint(n)
	})
}

// TestWALTwoHosts: two mounts on one etcd stand for two hosts, each with a
// WAL connection that stays open (so each host keeps its -wal and -shm).
// A's commits reach B's open connection at its next read transaction (kvfs
// empties B's log and resets its wal-index once no transaction is open),
// a reader on B during a stream of A's two-row transactions only ever sees
// whole ones, B's writer waits (busy handler) until A lets the lease go
// and then commits, and A's open connection sees B's row.
func TestWALTwoHosts(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	mustSQL(t, a.Path("w2.db"), "pragma journal_mode=wal; create table t(k integer, host text); insert into t values (0, 'a'), (0, 'a');")
	ca := openConn(t, a.Path("w2.db"), "_busy_timeout=10000")
	cb := openConn(t, b.Path("w2.db"), "_busy_timeout=10000")
	if got := queryInt(t, cb, "select count(*) from t"); got != 2 {
		t.Fatalf("B reads %d rows, want 2", got)
	}
	done := make(chan error, 1)
	go func() {
		for k := 1; k <= 30; k++ {
			if _, err := ca.ExecContext(context.Background(), fmt.Sprintf("begin; insert into t values (%d, 'a'); insert into t values (%d, 'a'); commit;", k, k)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	seen := map[int64]bool{}
	for finished := false; !finished; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("A's commits: %v", err)
			}
			finished = true
		default:
		}
		n, err := queryIntErr(cb, "select count(*) from t")
		if err != nil {
			continue
		}
		if n%2 != 0 {
			t.Fatalf("B read %d rows: half of a transaction", n)
		}
		seen[n] = true
		time.Sleep(2 * time.Millisecond)
	}
	eventuallyInt(t, "B's open connection", cb, "select count(*) from t", 62)
	t.Logf("B saw %d distinct counts during A's stream", len(seen))
	// B writes: it waits for A's lease (idle release), then commits.
	execConn(t, cb, "insert into t values (99, 'b')")
	eventuallyInt(t, "A's open connection", ca, "select count(*) from t where host = 'b'", 1)
	execConn(t, ca, "insert into t values (100, 'a')")
	eventuallyInt(t, "B after A wrote again", cb, "select count(*) from t", 64)
	for _, c := range []*sql.Conn{ca, cb} {
		if out := queryInt(t, c, "select count(*) from pragma_integrity_check where integrity_check = 'ok'"); out != 1 {
			t.Fatal("integrity_check not ok")
		}
	}
}

// TestWALRandomised interleaves, from a seed, writes (one or more rows
// with a running total, in one transaction), checkpoints of every kind and
// reads on two hosts with a WAL connection each, plus fresh CLI readers.
// Every read must be a state some transaction committed (never half of
// one), no older than what that connection read before, and no older than
// its own host's last commit; at the end both hosts read the last state.
// A write may fail with an I/O error when it starts within milliseconds of
// the other host's commit, before this host learns of it (see the README):
// it must then leave nothing behind, and most writes must succeed.
func TestWALRandomised(t *testing.T) {
	seed := seedOf(t, "KVFS_WAL_SEED")
	rng := mrand.New(mrand.NewPCG(seed, 0x77616c))
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	hosts := []*mount{a, b}
	mustSQL(t, a.Path("rnd.db"), "pragma journal_mode=wal; create table t(id integer primary key, total integer);")
	conns := []*sql.Conn{openConn(t, a.Path("rnd.db"), "_busy_timeout=20000"), openConn(t, b.Path("rnd.db"), "_busy_timeout=20000")}
	// states[i] is the row count after commit i; every row's total is the
	// count when it was inserted, so sum(total) = n(n+1)/2 for n rows.
	states := map[int64]int{0: 0}
	var n int64
	var writes, failed int
	seen := []int64{0, 0} // the newest state each connection read
	mine := []int64{0, 0} // each host's last commit
	read := func(h int) {
		var count, sum int64
		if err := conns[h].QueryRowContext(context.Background(), "select count(*), coalesce(sum(total), 0) from t").Scan(&count, &sum); err != nil {
			return // SQLITE_BUSY while the host applies the other's commit
		}
		if _, ok := states[count]; !ok || sum != count*(count+1)/2 {
			t.Fatalf("host %d read %d rows, sum %d: not a committed state", h, count, sum)
		}
		if count < seen[h] || count < mine[h] {
			t.Fatalf("host %d read %d rows after reading %d and committing %d", h, count, seen[h], mine[h])
		}
		seen[h] = count
	}
	for op := 0; op < 80; op++ {
		h := rng.IntN(2)
		switch k := rng.IntN(10); {
		case k < 5:
			rows := 1 + rng.IntN(3)
			if rng.IntN(8) == 0 {
				rows = 300 + rng.IntN(300) // spills frames before its commit
			}
			var q strings.Builder
			q.WriteString("begin immediate;")
			for i := 1; i <= rows; i++ {
				fmt.Fprintf(&q, "insert into t(total) values ((select count(*) from t) + 1);")
			}
			q.WriteString("commit;")
			writes++
			if _, err := conns[h].ExecContext(context.Background(), q.String()); err != nil {
				if !strings.Contains(err.Error(), "disk I/O error") {
					t.Fatalf("op %d: host %d writes %d rows: %v", op, h, rows, err)
				}
				failed++
				t.Logf("op %d: host %d writes %d rows: %v (raced the other host's commit)", op, h, rows, err)
				conns[h].ExecContext(context.Background(), "rollback")
				continue
			}
			n += int64(rows)
			states[n] = op
			mine[h], seen[h] = n, n
		case k < 7:
			mode := []string{"passive", "full", "restart", "truncate"}[rng.IntN(4)]
			conns[h].ExecContext(context.Background(), "pragma wal_checkpoint("+mode+")")
		case k < 9:
			read(h)
		default:
			out, err := runSQL(hosts[h].Path("rnd.db"), ".timeout 20000\nselect count(*), coalesce(sum(total), 0) from t;")
			if err == nil {
				var count, sum int64
				fmt.Sscanf(out, "%d|%d", &count, &sum)
				if _, ok := states[count]; !ok || sum != count*(count+1)/2 || count < mine[h] {
					t.Fatalf("op %d: a CLI on host %d read %q (host's last commit %d rows)", op, h, out, mine[h])
				}
			}
		}
	}
	for h := range conns {
		eventuallyInt(t, fmt.Sprintf("host %d at the end", h), conns[h], "select count(*) from t", n)
	}
	if failed*4 > writes {
		t.Fatalf("%d of %d writes failed", failed, writes)
	}
}

// TestWALQuotaFailedCommitLeavesNothing: a WAL transaction over the quota
// fails at its commit frame with SQLITE_FULL. Its frames must not survive
// in the -wal: here its process is then killed (it was the last connection,
// so the -wal and -shm stay), and the next opener rebuilds the wal-index
// from the -wal; it must find the database as before the failed insert.
func TestWALQuotaFailedCommitLeavesNothing(t *testing.T) {
	m := mountKVFS(t, mountOpts{Quota: pager.Quota{MaxBytes: 200 << 10}})
	path := m.Path("wq.db")
	mustSQL(t, path, "pragma journal_mode=wal; create table t(x); insert into t values (randomblob(1000));")
	before := mustSQL(t, path, "select count(*), sum(length(x)) from t;")
	cmd := exec.Command("sqlite3", path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(stdin, "insert into t select randomblob(100000) from (select 1 union all select 2 union all select 3);")
	fmt.Fprintln(stdin, "select 'done';")
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(out.String(), "done"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("the CLI never finished its insert: %q", out.String())
		}
	}
	cmd.Process.Kill() // the last connection dies: -wal and -shm stay
	cmd.Wait()
	if !strings.Contains(out.String(), "database or disk is full") {
		t.Fatalf("over quota: %q, want SQLITE_FULL", out.String())
	}
	if after := mustSQL(t, path, "select count(*), sum(length(x)) from t; pragma integrity_check;"); after != before+"ok\n" {
		t.Fatalf("after the refused insert and a recovery: %q, before %q", after, before)
	}
	mustSQL(t, path, "insert into t values (randomblob(1000));")
}

// TestCopyOverStaleWAL: cp of another database over a WAL database whose
// -wal a killed client left on the host is an ordinary write, committed at
// its close (before, kvfs took it for a checkpoint: a new page size was
// refused with EINVAL, the same one never reached etcd). Every host reads
// the copy's bytes, and SQLite on this host then finds what it finds on a
// local disk (it recovers the old log over the copy, or not).
func TestCopyOverStaleWAL(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	local := t.TempDir()
	src := filepath.Join(t.TempDir(), "src.db")
	mustSQL(t, src, "pragma page_size=1024; create table c(x); insert into c values ('copied');")
	image, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	results := map[string]string{}
	for _, dir := range []string{local, a.Dir} {
		path := filepath.Join(dir, "w.db")
		mustSQL(t, path, "pragma journal_mode=wal; create table t(x); insert into t values (1);")
		// A client killed while it has the database open leaves its -wal.
		cmd := exec.Command("sqlite3", path)
		stdin, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		io.WriteString(stdin, "insert into t values (2);\n")
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if st, err := os.Stat(path + "-wal"); err == nil && st.Size() > 32 {
				if out, _ := runSQL(path, "select count(*) from t;"); out == "2\n" {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the client's insert never showed", dir)
			}
		}
		cmd.Process.Kill()
		cmd.Wait()
		if _, err := os.Stat(path + "-wal"); err != nil {
			t.Fatalf("%s: no -wal left by the killed client: %v", dir, err)
		}
		if err := writeFile(path, image); err != nil {
			t.Fatalf("%s: cp over the database: %v", dir, err)
		}
		got, err := os.ReadFile(path)
		if err != nil || !bytes.Equal(got, image) {
			t.Fatalf("%s: the copy reads %d bytes (%v), want the %d copied", dir, len(got), err, len(image))
		}
		out, err := runSQL(path, ".tables\nselect * from c;")
		results[dir] = fmt.Sprintf("%q %v", out, err != nil)
	}
	if results[local] != results[a.Dir] {
		t.Fatalf("SQLite after the copy: local %s, kvfs %s", results[local], results[a.Dir])
	}
	eventually(t, "B reads the copy", fmt.Sprintf("%x", sha256.Sum256(image)), func() string {
		got, _ := os.ReadFile(b.Path("w.db"))
		return fmt.Sprintf("%x", sha256.Sum256(got))
	})
	// SQLite recovered the old log over the copy (as it does on a local
	// disk): damaged on purpose, not for the integrity check at unmount.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(a.Path("w.db" + suffix))
	}
}

// TestWALCopiedIn: a database and its -wal copied onto the mount by a
// program that is not SQLite (as cp does), with one frame then damaged by
// hand, read as on a local disk: SQLite's recovery counts the transactions
// before the damaged frame, kvfs commits those when SQLite reads the log's
// header to recover it, and another host reads them once SQLite has
// checkpointed. A -wal header of a newer version makes SQLite refuse the
// database on both. These are SQLite's wal-18.1, wal2-7.1 and wal2-10.1;
// before, kvfs committed the frames as the copy wrote them.
func TestWALCopiedIn(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	local := t.TempDir()
	// The source, on a local disk: three transactions of two 1 KiB frames.
	src := filepath.Join(t.TempDir(), "src.db")
	c, closeSrc := openConnCloser(t, src, "")
	for _, q := range []string{
		"pragma page_size=1024", "pragma journal_mode=wal", "pragma wal_autocheckpoint=0",
		"create table t1(a, b, unique(a, b))", "insert into t1 values(0, 0)", "pragma wal_checkpoint",
		"insert into t1 values(1, 2)", "insert into t1 values(3, 4)", "insert into t1 values(5, 6)",
	} {
		execConn(t, c, q)
	}
	dbImage, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	walImage, err := os.ReadFile(src + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	closeSrc()
	const frame = 24 + 1024
	if len(walImage) != 32+6*frame {
		t.Fatalf("source -wal of %d bytes, want 6 frames of %d", len(walImage), frame)
	}
	// copyIn copies the source into dir as name and writes patch at off
	// of the -wal through a read-write handle, as a test tool would.
	copyIn := func(dir, name string, patch []byte, off int64) string {
		path := filepath.Join(dir, name)
		if err := writeFile(path, dbImage); err != nil {
			t.Fatalf("%s: copy the database: %v", dir, err)
		}
		if err := writeFile(path+"-wal", walImage); err != nil {
			t.Fatalf("%s: copy the -wal: %v", dir, err)
		}
		f, err := os.OpenFile(path+"-wal", os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.WriteAt(patch, off); err != nil {
			t.Fatalf("%s: patch the -wal at %d: %v", dir, off, err)
		}
		return path
	}
	for n := 0; n <= 6; n++ {
		name := fmt.Sprintf("damaged%d.db", n)
		// The first byte of frame n+1's second salt.
		off := int64(24 + n*frame + 20)
		results := map[string]string{}
		for _, dir := range []string{local, a.Dir} {
			out, err := runSQL(copyIn(dir, name, make([]byte, 4), off), "select * from t1; pragma integrity_check;")
			results[dir] = fmt.Sprintf("%q %v", out, err)
		}
		if results[local] != results[a.Dir] {
			t.Fatalf("frame %d damaged: local %s, kvfs %s", n+1, results[local], results[a.Dir])
		}
		want := mustSQL(t, filepath.Join(local, name), "select * from t1;")
		eventuallySQL(t, "host B reads "+name, b.Path(name), "select * from t1;", want)
	}
	// A header of a newer version, checksum and all: SQLite will not
	// recover the log.
	hdr := slices.Clone(walImage[:32])
	binary.BigEndian.PutUint32(hdr[4:], 3007001)
	var order binary.ByteOrder = binary.LittleEndian
	if hdr[3]&1 == 1 {
		order = binary.BigEndian
	}
	var s1, s2 uint32
	for i := 0; i < 24; i += 8 {
		s1 += order.Uint32(hdr[i:]) + s2
		s2 += order.Uint32(hdr[i+4:]) + s1
	}
	binary.BigEndian.PutUint32(hdr[24:], s1)
	binary.BigEndian.PutUint32(hdr[28:], s2)
	results := map[string]string{}
	for _, dir := range []string{local, a.Dir} {
		out, err := runSQL(copyIn(dir, "newer.db", hdr, 0), "select count(*) from t1;")
		results[dir] = fmt.Sprintf("%q %v", out, err != nil)
	}
	if results[local] != results[a.Dir] {
		t.Fatalf("a -wal of a newer version: local %s, kvfs %s", results[local], results[a.Dir])
	}
	if !strings.Contains(results[local], "unable to open") {
		t.Fatalf("a -wal of a newer version: SQLite says %s", results[local])
	}
	if got := headWrites(t, a, "newer.db"); got != 2 {
		t.Fatalf("newer.db: %d head writes, want 2 (creation, the copy)", got)
	}
	// Damaged on purpose, not for the integrity check at unmount.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		os.Remove(a.Path("newer.db" + suffix))
	}
}

// TestWALRestartOverSamePage: after a checkpoint SQLite restarts the log
// and writes its frames over the old ones, each as a header, then a page.
// When the old frame under a new commit frame holds the same page bytes
// (two empty tables' root pages), kvfs once took the header alone for the
// whole frame, committed early, and refused SQLite's page write (disk I/O
// error). Every statement must give what it gives on a local disk.
func TestWALRestartOverSamePage(t *testing.T) {
	m := mountKVFS(t, mountOpts{})
	scripts := []string{
		"PRAGMA journal_mode=WAL; CREATE TABLE t1(x); INSERT INTO t1 VALUES(1); PRAGMA wal_checkpoint; CREATE TABLE t2(y); SELECT count(*) FROM sqlite_master; PRAGMA integrity_check;",
		"PRAGMA page_size=1024; PRAGMA journal_mode=WAL; CREATE TABLE t1(x); INSERT INTO t1 VALUES(zeroblob(2000*1020)); CREATE TABLE t2(y); PRAGMA wal_checkpoint; SELECT rootpage>=2000 FROM sqlite_master WHERE tbl_name='t2'; PRAGMA integrity_check;",
	}
	local := t.TempDir()
	for i, sql := range scripts {
		name := fmt.Sprintf("r%d.db", i)
		want, wantErr := runSQL(filepath.Join(local, name), sql)
		got, gotErr := runSQL(m.Path(name), sql)
		if got != want || (gotErr == nil) != (wantErr == nil) {
			t.Fatalf("script %d: kvfs %q (%v), local %q (%v)", i, got, gotErr, want, wantErr)
		}
	}
}
