package tests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

// workload is the same SQL for kvfs and a local file: a schema, a 10,000-row
// transaction, 1,000 autocommit inserts, updates, deletes, VACUUM and an
// integrity check, in one connection so per-connection journal modes hold.
func workload(pragma string) string {
	var b strings.Builder
	b.WriteString(pragma + ";\n")
	b.WriteString(`create table t(id integer primary key, a text, b integer);
create index t_a on t(a);
begin;
with recursive n(i) as (select 1 union all select i+1 from n where i < 10000)
insert into t(a, b) select printf('row-%05d', i), i * 7 % 1000 from n;
commit;
`)
	for i := 0; i < 1000; i++ {
		fmt.Fprintf(&b, "insert into t(a, b) values ('auto-%04d', %d);\n", i, i)
	}
	b.WriteString(`update t set b = b + 1 where id % 3 = 0;
delete from t where id % 7 = 0;
vacuum;
pragma integrity_check;
select count(*), sum(b) from t;
`)
	return b.String()
}

func TestJournalModesMatchNative(t *testing.T) {
	modes := map[string]string{
		"delete":    "pragma journal_mode=delete",
		"truncate":  "pragma journal_mode=truncate",
		"persist":   "pragma journal_mode=persist",
		"memory":    "pragma journal_mode=memory",
		"off":       "pragma journal_mode=off",
		"exclusive": "pragma locking_mode=exclusive",
		"wal":       "pragma journal_mode=wal",
		// SQLite reads the database through a shared mapping of the file.
		"wal-mmap": "pragma journal_mode=wal; pragma mmap_size=268435456",
		// WAL with a heap-memory wal-index (no -shm), as Prisma uses it.
		"wal-exclusive": "pragma locking_mode=exclusive; pragma journal_mode=wal",
		// Journal writes as FUSE requests (no passthrough: not root, or
		// a kernel before 6.9).
		"persist-requests":   "pragma journal_mode=persist",
		"exclusive-requests": "pragma locking_mode=exclusive",
		"wal-requests":       "pragma journal_mode=wal",
	}
	for name, pragma := range modes {
		t.Run(name, func(t *testing.T) {
			m := mountKVFS(t, mountOpts{NoPassthrough: strings.HasSuffix(name, "-requests")})
			sql := workload(pragma)
			native := filepath.Join(t.TempDir(), "native.db")
			want := mustSQL(t, native, sql)
			got := mustSQL(t, m.Path("w.db"), sql)
			if got != want {
				t.Fatalf("kvfs output %q, native %q", got, want)
			}
			if !strings.Contains(got, "ok\n") {
				t.Fatalf("integrity check: %q", got)
			}
			dump := mustSQL(t, native, ".dump")
			if kv := mustSQL(t, m.Path("w.db"), ".dump"); kv != dump {
				t.Fatalf("kvfs .dump differs from native: %s", firstDiff(kv, dump))
			}
			// Unmount and mount again on the same etcd: identical.
			prefix := m.Prefix
			m.Unmount()
			m2 := mountKVFS(t, mountOpts{Prefix: prefix, NoPassthrough: strings.HasSuffix(name, "-requests")})
			if kv := mustSQL(t, m2.Path("w.db"), ".dump"); kv != dump {
				t.Fatalf("after remount .dump differs: %s", firstDiff(kv, dump))
			}
			if out := mustSQL(t, m2.Path("w.db"), "pragma integrity_check;"); out != "ok\n" {
				t.Fatalf("after remount: %q", out)
			}
		})
	}
}

// firstDiff describes the first line where got and want differ.
func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) && i < len(w); i++ {
		if g[i] != w[i] {
			return fmt.Sprintf("line %d: got %q, want %q", i+1, g[i], w[i])
		}
	}
	return fmt.Sprintf("got %d lines, want %d", len(g), len(w))
}

// TestForwardedLocksMatchNative runs the workload with locks forwarded to
// kvfs (kvfs mount --forward-locks): same results as a local file.
func TestForwardedLocksMatchNative(t *testing.T) {
	m := mountKVFS(t, mountOpts{ForwardLocks: true})
	for _, mode := range []string{"delete", "memory"} {
		sql := workload("pragma journal_mode=" + mode)
		native := filepath.Join(t.TempDir(), "native.db")
		if got, want := mustSQL(t, m.Path(mode+".db"), sql), mustSQL(t, native, sql); got != want {
			t.Fatalf("%s: kvfs output %q, native %q", mode, got, want)
		}
		if kv, dump := mustSQL(t, m.Path(mode+".db"), ".dump"), mustSQL(t, native, ".dump"); kv != dump {
			t.Fatalf("%s: .dump differs: %s", mode, firstDiff(kv, dump))
		}
	}
}
