package tests

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvfs/kvfs/pager"
)

// TestAnyNames: any bytes but '/' and NUL make a database name, as on a
// local file system — control bytes, spaces, bytes that are not UTF-8 —
// and the directory lists them back exactly, also after a remount; a
// name longer than 255 bytes gets ENAMETOOLONG and creates nothing.
func TestAnyNames(t *testing.T) {
	m := mountKVFS(t, mountOpts{})
	names := []string{"ctl\x01.db", "tab\t.db", "new\nline.db", "caf\xe9 \xff\xfe.db", "with space.db", "%2F.db"}
	for i, name := range names {
		mustSQL(t, m.Path(name), fmt.Sprintf("create table t(x); insert into t values (%d);", i))
	}
	list := func(dir string) []string {
		entries, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			got = append(got, e.Name())
		}
		return got
	}
	want := slices.Sorted(slices.Values(names))
	if got := list(m.Dir); !slices.Equal(got, want) {
		t.Fatalf("listing %q, want %q", got, want)
	}
	long := strings.Repeat("x", 256)
	if _, err := os.Create(m.Path(long)); !errors.Is(err, syscall.ENAMETOOLONG) {
		t.Errorf("create of a 256-byte name: %v, want ENAMETOOLONG", err)
	}
	m.Unmount()
	m2 := mountKVFS(t, mountOpts{Prefix: m.Prefix})
	if got := list(m2.Dir); !slices.Equal(got, want) {
		t.Fatalf("listing after remount %q, want %q", got, want)
	}
	for i, name := range names {
		if out := mustSQL(t, m2.Path(name), "select x from t;"); strings.TrimSpace(out) != fmt.Sprint(i) {
			t.Errorf("%q holds %q, want %d", name, out, i)
		}
	}
}

func TestQuotaGivesSQLiteFull(t *testing.T) {
	m := mountKVFS(t, mountOpts{Quota: pager.Quota{MaxBytes: 200 << 10}})
	db := m.Path("q.db")
	mustSQL(t, db, "create table t(x); insert into t values (randomblob(1000));")
	before := mustSQL(t, db, "select count(*), sum(length(x)) from t;")
	out, err := runSQL(db, "insert into t select randomblob(100000) from (select 1 union all select 2 union all select 3);")
	if err == nil || !strings.Contains(out, "database or disk is full") {
		t.Fatalf("over quota: %v %q, want SQLITE_FULL", err, out)
	}
	if after := mustSQL(t, db, "select count(*), sum(length(x)) from t;"); after != before {
		t.Fatalf("after refused insert: %q, before %q", after, before)
	}
	// Within the quota it keeps working.
	mustSQL(t, db, "insert into t values (randomblob(1000));")
}

// TestTwoHosts: two mounts on one etcd stand for two hosts. Each writes in
// turn and reads the other's commits, with locks left to the kernel (a
// writer waits, in its busy timeout, for the other host to release the
// lease once idle) and with locks forwarded (it asks for the lease at its
// RESERVED lock).
func TestTwoHosts(t *testing.T) {
	for _, forward := range []bool{false, true} {
		t.Run(fmt.Sprintf("forward=%v", forward), func(t *testing.T) {
			a := mountKVFS(t, mountOpts{HandoffWait: 10 * time.Second, ForwardLocks: forward})
			b := mountKVFS(t, mountOpts{Prefix: a.Prefix, HandoffWait: 10 * time.Second, ForwardLocks: forward})
			mustSQL(t, a.Path("s.db"), "create table t(host, n);")
			for i := 0; i < 3; i++ {
				mustSQL(t, a.Path("s.db"), "pragma busy_timeout=10000; insert into t values ('a', 1);")
				mustSQL(t, b.Path("s.db"), "pragma busy_timeout=10000; insert into t values ('b', 1);")
			}
			want := "a|3\nb|3\n"
			for _, m := range []*mount{a, b} {
				var out string
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
					if out = mustSQL(t, m.Path("s.db"), "select host, count(*) from t group by host;"); out == want {
						break
					}
				}
				if out != want {
					t.Fatalf("host %s reads %q, want %q", m.Prefix, out, want)
				}
			}
		})
	}
}
