package tests

import (
	"database/sql"
	"fmt"
	"path/filepath"
	"testing"
)

// goWorkload runs the journal-mode workload through go-sqlite3 (SQLite
// linked into this process): schema, a 10,000-row transaction, 1,000
// autocommit inserts, updates, deletes, VACUUM and an integrity check.
func goWorkload(t *testing.T, path, mode string) {
	t.Helper()
	dsn := fmt.Sprintf("file:%s?_journal_mode=%s&_busy_timeout=10000", path, mode)
	if mode == "exclusive" {
		dsn = fmt.Sprintf("file:%s?_locking_mode=EXCLUSIVE&_busy_timeout=10000", path)
	}
	db, err := sql.Open("sqlite3", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	exec := func(q string, args ...any) {
		t.Helper()
		if _, err := db.Exec(q, args...); err != nil {
			t.Fatalf("%s: %s: %v", mode, q, err)
		}
	}
	exec("create table t(id integer primary key, a text, b integer)")
	exec("create index t_a on t(a)")
	exec(`with recursive n(i) as (select 1 union all select i+1 from n where i < 10000)
		insert into t(a, b) select printf('row-%05d', i), i * 7 % 1000 from n`)
	for i := 0; i < 1000; i++ {
		exec("insert into t(a, b) values (?, ?)", fmt.Sprintf("auto-%04d", i), i)
	}
	exec("update t set b = b + 1 where id % 3 = 0")
	exec("delete from t where id % 7 = 0")
	exec("vacuum")
	var ok string
	if err := db.QueryRow("pragma integrity_check").Scan(&ok); err != nil || ok != "ok" {
		t.Fatalf("%s: integrity_check %q %v", mode, ok, err)
	}
}

// TestGoSQLiteWorkloadMatchesNative: the go-sqlite3 workload in every
// rollback-journal mode gives the database a local file gets, before and
// after unmount and remount.
func TestGoSQLiteWorkloadMatchesNative(t *testing.T) {
	m := mountKVFS(t, mountOpts{})
	modes := []string{"delete", "truncate", "persist", "memory", "off", "exclusive"}
	dumps := map[string]string{}
	for _, mode := range modes {
		native := filepath.Join(t.TempDir(), "native.db")
		goWorkload(t, native, mode)
		goWorkload(t, m.Path("go-"+mode+".db"), mode)
		dumps[mode] = mustSQL(t, native, ".dump")
		if kv := mustSQL(t, m.Path("go-"+mode+".db"), ".dump"); kv != dumps[mode] {
			t.Fatalf("%s: .dump differs from native: %s", mode, firstDiff(kv, dumps[mode]))
		}
	}
	prefix := m.Prefix
	m.Unmount()
	m2 := mountKVFS(t, mountOpts{Prefix: prefix})
	for _, mode := range modes {
		if kv := mustSQL(t, m2.Path("go-"+mode+".db"), ".dump"); kv != dumps[mode] {
			t.Fatalf("%s after remount: %s", mode, firstDiff(kv, dumps[mode]))
		}
	}
}
