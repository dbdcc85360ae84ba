package tests

import (
	"bufio"
	"database/sql"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// attachDBs are the databases of the multi-database crash trials: the
// first is the main one, the others attached as d1, d2.
var attachDBs = []string{"m0.db", "m1.db", "m2.db"}

// TestCrashKill9Attach kills kvfs, or the sqlite3 client, in the middle of a
// stream of transactions over three attached databases (each inserts the
// same ids into all three), then remounts or reopens: every database
// passes integrity_check and holds exactly the same rows — every
// acknowledged transaction, the one in flight in all or in none.
func TestCrashKill9Attach(t *testing.T) {
	runAttachCrashTrials(t, []string{"kvfs-delete", "kvfs-persist", "client-delete"}, 2)
}

// TestCrashKill9AttachIntegration is TestCrashKill9Attach with more trials.
func TestCrashKill9AttachIntegration(t *testing.T) {
	if os.Getenv("KVFS_INTEGRATION") == "" {
		t.Skip("integration tier: run with KVFS_INTEGRATION=1 (make test-integration)")
	}
	runAttachCrashTrials(t, []string{"kvfs-delete", "kvfs-truncate", "kvfs-persist", "client-delete", "client-persist"}, 8)
}

func runAttachCrashTrials(t *testing.T, kinds []string, trials int) {
	requireFUSE(t)
	kvfsBinary(t)
	base := crashSeedBase(t)
	for k, kind := range kinds {
		t.Run(kind, func(t *testing.T) {
			victim, mode, _ := strings.Cut(kind, "-")
			for i := range trials {
				seed := base + uint64(k*trials+i)
				if os.Getenv(crashSeedEnv) != "" {
					seed = base
				}
				t.Run(strconv.Itoa(i), func(t *testing.T) {
					t.Logf("seed %d (replay: %s=%d go test -count=1 -run '%s' ./tests)", seed, crashSeedEnv, seed, t.Name())
					if victim == "kvfs" {
						attachKVFSCrashTrial(t, mode, seed)
					} else {
						attachClientCrashTrial(t, mode, seed)
					}
				})
			}
		})
	}
}

// attachSetup is the SQL that attaches the other databases in mode.
func attachSetup(p *kvfsProc, mode string) string {
	s := fmt.Sprintf("pragma journal_mode=%s;\n", mode)
	for i, n := range attachDBs[1:] {
		s += fmt.Sprintf("attach '%s' as d%d;\npragma d%d.journal_mode=%s;\n", p.Path(n), i+1, i+1, mode)
	}
	return s
}

// attachTxn is the SQL of one transaction inserting ids first..first+n-1
// into every database.
func attachTxn(first, n int) string {
	var b strings.Builder
	b.WriteString("begin;\n")
	for i := range attachDBs {
		schema := "main"
		if i > 0 {
			schema = fmt.Sprintf("d%d", i)
		}
		fmt.Fprintf(&b, "with recursive r(x) as (select %d union all select x+1 from r where x < %d) "+
			"insert into %s.t(id, v) select x, printf('%%.*c', 10 + x * 7919 %% 1500, 'x') from r;\n", first, first+n-1, schema)
	}
	b.WriteString("commit;\n")
	return b.String()
}

// checkAttachRows checks every database after the crash: integrity, rows
// exactly 1..max, the same max in all. It returns that max.
func checkAttachRows(t *testing.T, p *kvfsProc) int {
	t.Helper()
	maxes := make([]int, len(attachDBs))
	for i, n := range attachDBs {
		out := mustSQL(t, p.Path(n), ".timeout 5000\npragma integrity_check;\nselect count(*), coalesce(max(id), 0), "+
			"coalesce(sum(length(v) = 10 + id * 7919 % 1500), 0) from t;")
		var count, maxID, good int
		if _, err := fmt.Sscanf(out, "ok\n%d|%d|%d\n", &count, &maxID, &good); err != nil {
			t.Fatalf("%s after the crash: %q: %v", n, out, err)
		}
		if count != maxID || good != count {
			t.Fatalf("%s after the crash: %d rows, max id %d, %d intact: rows missing or damaged", n, count, maxID, good)
		}
		maxes[i] = maxID
	}
	for i := range maxes {
		if maxes[i] != maxes[0] {
			t.Fatalf("after the crash the databases disagree: max ids %v (%v): not atomic", maxes, attachDBs)
		}
	}
	return maxes[0]
}

// attachKVFSCrashTrial kills kvfs during the stream (go-sqlite3 client) and
// remounts.
func attachKVFSCrashTrial(t *testing.T, mode string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x6d6a))
	prefix := fmt.Sprintf("/crash-attach-%d/", seq.Add(1))
	a := startKVFS(t, procOpts{Endpoints: sharedEtcd.Endpoints(), Prefix: prefix})
	db, err := sql.Open("sqlite3", fmt.Sprintf("file:%s?_busy_timeout=5000", a.Path(attachDBs[0])))
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	setup := attachSetup(a, mode) + "create table main.t(id integer primary key, v text);\n" +
		"create table d1.t(id integer primary key, v text);\ncreate table d2.t(id integer primary key, v text);\n"
	if _, err := db.Exec(setup); err != nil {
		t.Fatalf("setup: %v\n%s", err, a.out)
	}
	var w crashWriter
	wrng := rand.New(rand.NewPCG(rng.Uint64(), rng.Uint64()))
	done := w.start(func() int {
		if wrng.IntN(8) == 0 {
			return 50 + wrng.IntN(150)
		}
		return 1 + wrng.IntN(3)
	}, func(_, first, n int) error {
		_, err := db.Exec(attachTxn(first, n))
		return err
	})
	delay := 100*time.Millisecond + time.Duration(rng.IntN(1200))*time.Millisecond
	w.killDuring(t, a, done, delay)
	t.Logf("%s: killed kvfs after %s: %d transactions acknowledged (ids 1..%d), in flight %d..%d: %v",
		mode, delay, w.commits, w.acked, w.acked+1, w.attempted, w.err)
	db.Close()
	a.Detach()
	b := startKVFS(t, procOpts{Endpoints: sharedEtcd.Endpoints(), Prefix: prefix, Dir: a.Dir})
	w.checkAllOrNothing(t, checkAttachRows(t, b))
	b.Stop()
}

// attachClientCrashTrial kills the sqlite3 CLI during the stream and
// reopens: SQLite's next opener rolls back whatever was in flight.
func attachClientCrashTrial(t *testing.T, mode string, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 0x636c))
	prefix := fmt.Sprintf("/crash-attach-%d/", seq.Add(1))
	a := startKVFS(t, procOpts{Endpoints: sharedEtcd.Endpoints(), Prefix: prefix})
	mustSQL(t, a.Path(attachDBs[0]), attachSetup(a, mode)+"create table main.t(id integer primary key, v text);\n"+
		"create table d1.t(id integer primary key, v text);\ncreate table d2.t(id integer primary key, v text);\n")
	var script strings.Builder
	script.WriteString(attachSetup(a, mode))
	next := 1
	for txn := 1; txn <= 3000; txn++ {
		n := 1 + rng.IntN(3)
		if rng.IntN(8) == 0 {
			n = 50 + rng.IntN(150)
		}
		script.WriteString(attachTxn(next, n))
		next += n
		fmt.Fprintf(&script, "select 'acked', %d;\n", next-1)
	}
	cmd := exec.Command("sqlite3", "-batch", "-bail", a.Path(attachDBs[0]))
	cmd.Stdin = strings.NewReader(script.String())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := 0
	lines := make(chan int)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "acked|"); ok {
				n, _ := strconv.Atoi(v)
				lines <- n
			}
		}
	}()
	deadline := time.After(100*time.Millisecond + time.Duration(rng.IntN(1200))*time.Millisecond)
wait:
	for {
		select {
		case n, ok := <-lines:
			if !ok {
				t.Fatal("the client finished before the kill: make the script longer")
			}
			acked = n
		case <-deadline:
			break wait
		}
	}
	cmd.Process.Kill()
	for n := range lines {
		acked = n
	}
	cmd.Wait()
	maxID := checkAttachRows(t, a)
	t.Logf("%s: killed sqlite3: ids up to %d acknowledged, %d present", mode, acked, maxID)
	if maxID < acked {
		t.Fatalf("after the kill: max id %d, but ids up to %d were acknowledged", maxID, acked)
	}
	// The databases take transactions again.
	mustSQL(t, a.Path(attachDBs[0]), attachSetup(a, mode)+attachTxn(maxID+1, 1))
	if got := checkAttachRows(t, a); got != maxID+1 {
		t.Fatalf("after another transaction: max id %d, want %d", got, maxID+1)
	}
	a.Stop()
}

// TestCrashAtSuperJournal kills kvfs exactly at the commit point of a
// transaction over three attached databases (the failpoint
// KVFS_TEST_FAILPOINT): just before its etcd commit, the remount shows the
// transaction in no database; just after the commit landed, before SQLite
// heard of it, in every database.
func TestCrashAtSuperJournal(t *testing.T) {
	requireFUSE(t)
	for _, tc := range []struct {
		point string
		want  int // rows per database after the remount
	}{{"super-journal-commit", 10}, {"super-journal-committed", 15}} {
		for _, mode := range []string{"delete", "persist"} {
			t.Run(tc.point+"/"+mode, func(t *testing.T) {
				prefix := fmt.Sprintf("/crash-super-%d/", seq.Add(1))
				setup := startKVFS(t, procOpts{Endpoints: sharedEtcd.Endpoints(), Prefix: prefix})
				mustSQL(t, setup.Path(attachDBs[0]), attachSetup(setup, mode)+
					"create table main.t(id integer primary key, v text);\n"+
					"create table d1.t(id integer primary key, v text);\ncreate table d2.t(id integer primary key, v text);\n"+
					attachTxn(1, 10))
				setup.Stop()
				a := startKVFS(t, procOpts{Endpoints: sharedEtcd.Endpoints(), Prefix: prefix, Dir: setup.Dir,
					Env: []string{"KVFS_TEST_FAILPOINT=" + tc.point}})
				out, err := runSQL(a.Path(attachDBs[0]), attachSetup(a, mode)+attachTxn(11, 5))
				if err == nil {
					t.Fatalf("the transaction succeeded although kvfs died at its commit point: %q", out)
				}
				select {
				case <-a.done:
				case <-time.After(10 * time.Second):
					t.Fatal("kvfs still runs after its failpoint")
				}
				a.Detach()
				b := startKVFS(t, procOpts{Endpoints: sharedEtcd.Endpoints(), Prefix: prefix, Dir: setup.Dir})
				if got := checkAttachRows(t, b); got != tc.want {
					t.Fatalf("after kvfs died at %s: %d rows in every database, want %d", tc.point, got, tc.want)
				}
				b.Stop()
			})
		}
	}
}
