package pager

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// metricsEnv returns a test environment whose pager records metrics in a
// registry of its own.
func metricsEnv(t *testing.T) (*env, *Metrics, *prometheus.Registry) {
	reg := prometheus.NewRegistry()
	m := NewMetrics(reg)
	e := newEnv(t, Options{})
	e.p = e.pager(Options{Metrics: m, Registerer: reg})
	return e, m, reg
}

func TestMetrics(t *testing.T) {
	e, m, reg := metricsEnv(t)
	db, f := e.create("m.db")
	writeDB(t, db, 4096, 3, 1)
	ctx := ctxT(t)
	snap, _ := db.Snapshot(ctx)
	buf := make([]byte, 4096)
	snap.ReadPage(ctx, 2, buf)
	snap.ReadPage(ctx, 2, buf)
	snap.Close()
	f.steal()
	tx, _ := db.Begin(ctx)
	tx.WritePage(ctx, 2, buf)
	tx.Commit(ctx)

	if got := testutil.ToFloat64(m.commits.WithLabelValues("m.db", "fast", "ok")); got != 1 {
		t.Errorf("fast ok commits = %v", got)
	}
	if got := testutil.ToFloat64(m.commits.WithLabelValues("m.db", "fast", "fenced")); got != 1 {
		t.Errorf("fenced commits = %v", got)
	}
	if got := testutil.ToFloat64(m.pagesRead.WithLabelValues("cache")); got < 1 {
		t.Errorf("cache reads = %v", got)
	}
	n, err := testutil.GatherAndCount(reg, "kvfs_pager_cache_hits_total", "kvfs_pager_commit_seconds")
	if err != nil || n < 4 {
		t.Errorf("gathered %d series: %v", n, err)
	}
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "kvfs_pager_") || mf.GetHelp() == "" {
			t.Errorf("metric %s: bad name or no help", mf.GetName())
		}
	}
}

// TestMetricsNameNotUTF8: a database whose name is not UTF-8 is labelled
// by its quoted name (Prometheus refuses the raw bytes).
func TestMetricsNameNotUTF8(t *testing.T) {
	e, m, reg := metricsEnv(t)
	db, _ := e.create("caf\xe9.db")
	writeDB(t, db, 4096, 2, 1)
	if got := testutil.ToFloat64(m.commits.WithLabelValues(`"caf\xe9.db"`, "fast", "ok")); got != 1 {
		t.Errorf("commits labelled by the quoted name = %v", got)
	}
	if _, err := reg.Gather(); err != nil {
		t.Fatal(err)
	}
}
