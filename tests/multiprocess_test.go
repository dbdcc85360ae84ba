package tests

import (
	"database/sql"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	_ "github.com/mattn/go-sqlite3"
)

// TestMultiProcessCounter runs several sqlite3 CLI processes on one mount,
// each incrementing one counter in `begin immediate` transactions with a
// busy timeout, while this process reads it: no update is lost (the counter
// ends at the total and every transaction saw its own value), every read
// sees a whole transaction (the counter equals the log's row count) and a
// count that never goes backwards, and the database passes integrity_check.
func TestMultiProcessCounter(t *testing.T) {
	const (
		procs = 4
		incs  = 100 // per process
		total = procs * incs
	)
	m := mountKVFS(t, mountOpts{})
	for _, mode := range []string{"delete", "truncate"} {
		t.Run(mode, func(t *testing.T) {
			path := m.Path("counter-" + mode + ".db")
			mustSQL(t, path, fmt.Sprintf(`pragma journal_mode=%s;
create table c(n integer not null);
insert into c values (0);
create table log(p integer not null, i integer not null, n integer not null);`, mode))

			reader, err := sql.Open("sqlite3", fmt.Sprintf("file:%s?mode=ro&_busy_timeout=10000", path))
			if err != nil {
				t.Fatal(err)
			}
			defer reader.Close()
			reader.SetMaxOpenConns(1)

			begin := time.Now()
			var wg sync.WaitGroup
			errs := make(chan error, procs)
			for p := range procs {
				var b strings.Builder
				fmt.Fprintf(&b, ".timeout 10000\npragma journal_mode=%s;\n", mode)
				for i := range incs {
					fmt.Fprintf(&b, "begin immediate; update c set n = n + 1; insert into log(p, i, n) select %d, %d, n from c; commit;\n", p, i)
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := runSQL(path, b.String()); err != nil {
						errs <- fmt.Errorf("writer %d: %w", p, err)
					}
				}()
			}
			writersDone := make(chan struct{})
			go func() { wg.Wait(); close(writersDone) }()

			// Read until the writers are done, then once more.
			last, reads := 0, 0
			for finished := false; ; {
				select {
				case <-writersDone:
					finished = true
				default:
				}
				var n, logged int
				if err := reader.QueryRow("select n, (select count(*) from log) from c").Scan(&n, &logged); err != nil {
					t.Fatalf("read %d: %v", reads, err)
				}
				reads++
				if n != logged {
					t.Fatalf("read %d: counter %d but %d log rows: a read saw part of a transaction", reads, n, logged)
				}
				if n < last {
					t.Fatalf("read %d: counter went back from %d to %d", reads, last, n)
				}
				last = n
				if finished {
					break
				}
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(begin)
			close(errs)
			for err := range errs {
				t.Error(err)
			}
			if t.Failed() {
				return
			}
			t.Logf("%s: %d processes × %d increments in %s (%.0f tx/s); %d concurrent reads",
				mode, procs, incs, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), reads)

			want := fmt.Sprintf("%d\n%d|%d|1|%d\n%d\nok\n", total, total, total, total, procs)
			got := mustSQL(t, path, `select n from c;
select count(*), count(distinct n), min(n), max(n) from log;
select count(*) from (select p from log group by p having count(*) = `+fmt.Sprint(incs)+`);
pragma integrity_check;`)
			if got != want {
				t.Fatalf("final state:\n%s\nwant (counter | log rows, distinct values, min, max | processes with all increments | integrity):\n%s", got, want)
			}
			if last != total {
				t.Fatalf("last read saw %d, want %d", last, total)
			}
		})
	}
}
