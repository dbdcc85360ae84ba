package tests

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// attachWorkload is SQL over n databases in dir (a0.db, attached a1.db as
// d1, ...), every one in journal mode mode: a table in each, transactions
// that write all of them (SQLite commits each through a super-journal,
// a0.db-mjXXXXXX9XX), one of 1,000 rows per database, one rolled back, and
// the sums that must agree at the end.
func attachWorkload(dir string, n int, mode string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "pragma journal_mode=%s;\n", mode)
	for i := 1; i < n; i++ {
		fmt.Fprintf(&b, "attach '%s' as d%d;\npragma d%d.journal_mode=%s;\n", filepath.Join(dir, fmt.Sprintf("a%d.db", i)), i, i, mode)
	}
	schema := func(i int) string {
		if i == 0 {
			return "main"
		}
		return fmt.Sprintf("d%d", i)
	}
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "create table %s.t(k integer primary key, v text, c integer);\n", schema(i))
	}
	for txn := 1; txn <= 20; txn++ {
		b.WriteString("begin;\n")
		for i := 0; i < n; i++ {
			fmt.Fprintf(&b, "insert into %s.t(v, c) values ('txn %d db %d', %d);\n", schema(i), txn, i, txn)
		}
		b.WriteString("commit;\n")
	}
	b.WriteString("begin;\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "with recursive r(x) as (select 1 union all select x+1 from r where x < 1000) "+
			"insert into %s.t(v, c) select printf('bulk %%04d', x) || hex(randomblob(50)), 0 from r;\n", schema(i))
	}
	b.WriteString("commit;\nbegin;\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "insert into %s.t(v, c) values ('rolled back', -1);\n", schema(i))
	}
	b.WriteString("rollback;\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "select '%s', count(*), sum(c), sum(length(v)) from %s.t;\n", schema(i), schema(i))
	}
	return b.String()
}

// headRevision returns the etcd mod revision of database name's head on
// mount m's prefix: it moves exactly when a commit of name lands.
func (m *mount) headRevision(t *testing.T, name string) int64 {
	t.Helper()
	kv, _, err := m.Store.Get(context.Background(), m.headKey(t, name), 0)
	if err != nil {
		t.Fatal(err)
	}
	return kv.ModRevision
}

// TestAttachTransactions runs transactions across 2 and 5 attached kvfs
// databases in the rollback modes: the same results as local files, every
// database intact after a remount, and no super-journal left or listed.
func TestAttachTransactions(t *testing.T) {
	for _, tc := range []struct {
		mode, name    string
		n             int
		noPassthrough bool
	}{
		{"delete", "delete-2", 2, false},
		{"delete", "delete-5", 5, false},
		{"truncate", "truncate-2", 2, false},
		{"persist", "persist-5", 5, false},
		{"delete", "delete-2-requests", 2, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := mountKVFS(t, mountOpts{NoPassthrough: tc.noPassthrough})
			native := t.TempDir()
			want := mustSQL(t, filepath.Join(native, "a0.db"), attachWorkload(native, tc.n, tc.mode))
			got := mustSQL(t, m.Path("a0.db"), attachWorkload(m.Dir, tc.n, tc.mode))
			// The sums depend on randomblob only through lengths.
			if got != want {
				t.Fatalf("kvfs output:\n%s\nnative:\n%s", got, want)
			}
			entries, err := os.ReadDir(m.Dir)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				if strings.Contains(e.Name(), "-mj") {
					t.Errorf("super-journal %s left in the mount", e.Name())
				}
			}
			if names := m.databases(t); len(names) != tc.n {
				t.Errorf("databases in etcd: %v, want a0.db … a%d.db", names, tc.n-1)
			}
			prefix := m.Prefix
			m.Unmount()
			m2 := mountKVFS(t, mountOpts{Prefix: prefix})
			for i := 0; i < tc.n; i++ {
				name := fmt.Sprintf("a%d.db", i)
				q := "pragma integrity_check; select count(*), sum(c) from t;"
				if g, w := mustSQL(t, m2.Path(name), q), mustSQL(t, filepath.Join(native, name), q); g != w {
					t.Errorf("%s after remount: %q, native %q", name, g, w)
				}
			}
		})
	}
}

// TestAttachLocalDatabase runs a transaction across a kvfs database and one
// on a local disk: SQLite's super-journal then lives on the local disk, and
// each file commits at its own journal's end (not atomic across the two
// filesystems, as the README says).
func TestAttachLocalDatabase(t *testing.T) {
	m := mountKVFS(t, mountOpts{})
	local := filepath.Join(t.TempDir(), "local.db")
	sql := fmt.Sprintf(`attach '%s' as l;
create table t(x); create table l.t(x);
begin; insert into t values (1); insert into l.t values (2); commit;
select (select sum(x) from t), (select sum(x) from l.t);`, local)
	if got := mustSQL(t, m.Path("k.db"), sql); got != "1|2\n" {
		t.Fatalf("got %q", got)
	}
	if got := mustSQL(t, m.Path("k.db"), "select * from t;"); got != "1\n" {
		t.Fatalf("kvfs database after the transaction: %q", got)
	}
}

// TestAttachCommitIsOneEtcdTransaction streams transactions over 3
// attached databases on host A (a counter row in each, in DELETE and
// PERSIST mode): after each, every database's head in etcd carries the
// same modification revision — one etcd transaction flipped them all —
// and host B, mounting the same etcd, ends on the last counter in each.
func TestAttachCommitIsOneEtcdTransaction(t *testing.T) {
	for _, mode := range []string{"delete", "persist"} {
		t.Run(mode, func(t *testing.T) {
			a := mountKVFS(t, mountOpts{})
			b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
			names := []string{"c0.db", "c1.db", "c2.db"}
			attach := func(m *mount) string {
				var s strings.Builder
				fmt.Fprintf(&s, "pragma journal_mode=%s;\n", mode)
				for i, n := range names[1:] {
					fmt.Fprintf(&s, "attach '%s' as d%d;\npragma d%d.journal_mode=%s;\n", m.Path(n), i+1, i+1, mode)
				}
				return s.String()
			}
			setup := attach(a) + "create table t(c); insert into t values (0);\n" +
				"create table d1.t(c); insert into d1.t values (0);\ncreate table d2.t(c); insert into d2.t values (0);\n"
			mustSQL(t, a.Path(names[0]), setup)
			for i := 1; i <= 15; i++ {
				mustSQL(t, a.Path(names[0]), attach(a)+fmt.Sprintf(
					"begin; update t set c = %d; update d1.t set c = %d; update d2.t set c = %d; commit;\n", i, i, i))
				var revs []int64
				for _, n := range names {
					revs = append(revs, a.headRevision(t, n))
				}
				if revs[0] != revs[1] || revs[1] != revs[2] {
					t.Fatalf("transaction %d: heads at revisions %v, want one", i, revs)
				}
			}
			for _, n := range names {
				eventuallySQL(t, "host B reads "+n, b.Path(n), "select c from t;", "15\n")
			}
		})
	}
}

// TestStaleSuperJournal deletes a super-journal that lists a database
// whose open transaction is not its own (the journal does not point back to
// it, as after a client died before writing its pointers): that transaction
// is not committed by the deletion, and commits later at its own end.
func TestStaleSuperJournal(t *testing.T) {
	m := mountKVFS(t, mountOpts{})
	ctx := context.Background()
	mustSQL(t, m.Path("s.db"), "create table t(x); insert into t values (1);")
	conn := openConn(t, m.Path("s.db"), "_busy_timeout=5000")
	// A tiny page cache spills the transaction's pages to the file before
	// its commit: kvfs holds them as an open transaction.
	if _, err := conn.ExecContext(ctx, "pragma cache_size=2; begin; insert into t values (2); "+
		"insert into t select randomblob(800) from (with recursive r(x) as (select 1 union all select x+1 from r where x < 200) select x from r);"); err != nil {
		t.Fatal(err)
	}
	before := m.headRevision(t, "s.db")
	super := m.Path("s.db-mj0A1B2C9D4")
	if err := os.WriteFile(super, []byte(m.Path("s.db-journal")+"\x00"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(super); err != nil {
		t.Fatal(err)
	}
	if m.headRevision(t, "s.db") != before {
		t.Fatal("deleting a super-journal committed a transaction that was not its own")
	}
	if _, err := conn.ExecContext(ctx, "commit"); err != nil {
		t.Fatal(err)
	}
	if got := mustSQL(t, m.Path("s.db"), "select count(*) from t;"); got != "202\n" {
		t.Fatalf("after commit: %q", got)
	}
}

// TestAttachOtherHostHoldsLease: a transaction over two databases, one of
// whose write leases another host holds, gets SQLITE_BUSY and changes
// neither; once that host is done, the same transaction commits both.
func TestAttachOtherHostHoldsLease(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	ctx := context.Background()
	mustSQL(t, a.Path("x.db"), "create table t(v);")
	mustSQL(t, a.Path("y.db"), "create table t(v);")
	eventuallySQL(t, "host B sees y.db", b.Path("y.db"), "select count(*) from t;", "0\n")

	conn := openConn(t, b.Path("y.db"), "_busy_timeout=10000")
	if _, err := conn.ExecContext(ctx, "begin immediate; insert into t values ('b');"); err != nil {
		t.Fatal(err)
	}
	before := a.headRevision(t, "x.db")
	txn := fmt.Sprintf(".timeout %%d\nattach '%s' as y;\nbegin; insert into main.t values ('a'); insert into y.t values ('a'); commit;\n", a.Path("y.db"))
	out, err := runSQL(a.Path("x.db"), fmt.Sprintf(txn, 200))
	if err == nil || !strings.Contains(out, "database is locked") {
		t.Fatalf("transaction while host B holds y.db: %v %q, want database is locked", err, out)
	}
	if a.headRevision(t, "x.db") != before {
		t.Fatal("x.db changed although the transaction failed")
	}
	if _, err := conn.ExecContext(ctx, "commit"); err != nil {
		t.Fatal(err)
	}
	mustSQL(t, a.Path("x.db"), fmt.Sprintf(txn, 10000))
	if got := mustSQL(t, a.Path("x.db"), "select group_concat(v) from t;"); got != "a\n" {
		t.Fatalf("x.db: %q", got)
	}
	eventuallySQL(t, "y.db on host B", b.Path("y.db"), "select group_concat(v) from (select v from t order by v);", "a,b\n")
}

// TestCopiesIntoKVFS: VACUUM INTO, the CLI's .backup and .clone make
// copies on the mount, from a local database and from a kvfs one, equal to
// their source.
func TestCopiesIntoKVFS(t *testing.T) {
	m := mountKVFS(t, mountOpts{})
	local := filepath.Join(t.TempDir(), "src.db")
	fill := `create table t(id integer primary key, v text); create index t_v on t(v);
with recursive r(x) as (select 1 union all select x+1 from r where x < 3000)
insert into t(v) select printf('row %05d ', x) || hex(randomblob(60)) from r;`
	mustSQL(t, local, fill)
	mustSQL(t, local, ".backup '"+m.Path("src.db")+"'")
	want := mustSQL(t, local, ".dump")
	for i, src := range []string{local, m.Path("src.db")} {
		for _, c := range []struct{ name, cmd string }{
			{"vacuum", "vacuum into '%s';"},
			{"backup", ".backup '%s'"},
			{"clone", ".clone '%s'"},
		} {
			dst := m.Path(fmt.Sprintf("%s-%d.db", c.name, i))
			mustSQL(t, src, fmt.Sprintf(c.cmd, dst))
			if got := mustSQL(t, dst, ".dump"); got != want {
				t.Fatalf("%s of %s: .dump differs: %s", c.name, src, firstDiff(got, want))
			}
			if got := mustSQL(t, dst, "pragma integrity_check;"); got != "ok\n" {
				t.Fatalf("%s of %s: %q", c.name, src, got)
			}
		}
	}
}

// TestAttachReaderOnOtherHost: while host A streams transactions over three
// attached databases (a counter row in each), a reader on host B reads the
// three counters in one statement, again and again: it never sees one
// database ahead of another, and it follows the stream.
func TestAttachReaderOnOtherHost(t *testing.T) {
	a := mountKVFS(t, mountOpts{})
	b := mountKVFS(t, mountOpts{Prefix: a.Prefix})
	names := []string{"r0.db", "r1.db", "r2.db"}
	attach := func(m *mount) string {
		return fmt.Sprintf(".timeout 5000\nattach '%s' as d1;\nattach '%s' as d2;\n", m.Path(names[1]), m.Path(names[2]))
	}
	mustSQL(t, a.Path(names[0]), attach(a)+"create table t(c); insert into t values (0);\n"+
		"create table d1.t(c); insert into d1.t values (0);\ncreate table d2.t(c); insert into d2.t values (0);\n")
	for _, n := range names {
		eventuallySQL(t, "host B sees "+n, b.Path(n), "select c from t;", "0\n")
	}
	const commits = 40
	done := make(chan error, 1)
	go func() {
		for i := 1; i <= commits; i++ {
			if _, err := runSQL(a.Path(names[0]), attach(a)+fmt.Sprintf(
				"begin; update t set c = %d; update d1.t set c = %d; update d2.t set c = %d; commit;\n", i, i, i)); err != nil {
				done <- err
				return
			}
			// A stream paced like an application's, not a tight loop:
			// each remote commit is applied on host B under PENDING, and
			// back-to-back commits could keep its reader waiting until the
			// stream ends (a CI run saw 7 reads, all before or after).
			time.Sleep(15 * time.Millisecond)
		}
		done <- nil
	}()
	seen := map[string]bool{}
	reads := 0
	read := func() string {
		out, err := runSQL(b.Path(names[0]), attach(b)+"select (select c from main.t), (select c from d1.t), (select c from d2.t);\n")
		if err != nil {
			t.Fatalf("read on host B: %v", err)
		}
		var x, y, z int
		if _, err := fmt.Sscanf(out, "%d|%d|%d\n", &x, &y, &z); err != nil {
			t.Fatalf("read on host B: %q: %v", out, err)
		}
		if x != y || y != z {
			t.Fatalf("host B read counters %d, %d, %d: one database ahead of another", x, y, z)
		}
		reads++
		seen[out] = true
		return out
	}
	for running := true; running; {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
			running = false
		default:
			read()
		}
	}
	final := fmt.Sprintf("%d|%d|%d\n", commits, commits, commits)
	for deadline := time.Now().Add(10 * time.Second); read() != final; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("host B never read the last counters %q", final)
		}
	}
	t.Logf("%d reads on host B saw %d states", reads, len(seen))
	if len(seen) < 3 {
		t.Fatalf("host B saw only %d states during %d commits: it did not follow the stream", len(seen), commits)
	}
}
