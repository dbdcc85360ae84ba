package pager

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvfs/kvfs/etcdstore"
)

// Metrics are the pager's Prometheus metrics. Create them with NewMetrics
// and pass them in Options; a nil *Metrics records nothing.
type Metrics struct {
	commits     *prometheus.CounterVec
	commitTime  *prometheus.HistogramVec
	commitBytes *prometheus.CounterVec
	pagesRead   *prometheus.CounterVec
	// reads holds pagesRead's children by readSource, resolved once:
	// pageRead runs on every page read.
	reads [3]prometheus.Counter
}

// readSource is where the pager found a page.
type readSource int

const (
	fromCache readSource = iota
	fromDelta
	fromShard
)

var readSourceNames = [...]string{"cache", "delta", "shard"}

// NewMetrics registers the pager's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		commits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvfs_pager_commits_total",
			Help: "Commits by database, path (fast: one etcd txn; staged: several and a head flip) and result.",
		}, []string{"db", "path", "result"}),
		commitTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kvfs_pager_commit_seconds",
			Help:    "Time from Commit to etcd's acknowledgement of the head, by path.",
			Buckets: prometheus.ExponentialBuckets(0.0002, 2, 16),
		}, []string{"path"}),
		commitBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvfs_pager_commit_bytes_total",
			Help: "LTX bytes of committed deltas, by database.",
		}, []string{"db"}),
		pagesRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvfs_pager_pages_read_total",
			Help: "Pages the pager served, by source: page cache, or a delta fetched or cached as a blob.",
		}, []string{"source"}),
	}
	reg.MustRegister(m.commits, m.commitTime, m.commitBytes, m.pagesRead)
	for i, name := range readSourceNames {
		m.reads[i] = m.pagesRead.WithLabelValues(name)
	}
	return m
}

// registerCaches exposes the caches' counters of p.
func (m *Metrics) registerCaches(reg prometheus.Registerer, p *Pager) {
	for _, c := range []struct {
		name  string
		stats func() (int64, int, uint64, uint64, uint64)
	}{
		{"page", p.pages.stats}, {"blob", p.blobs.stats}, {"chunk", p.chunks.stats},
	} {
		stats := c.stats
		labels := prometheus.Labels{"cache": c.name}
		reg.MustRegister(
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kvfs_pager_cache_hits_total", Help: "Cache hits by cache.", ConstLabels: labels},
				func() float64 { _, _, h, _, _ := stats(); return float64(h) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "kvfs_pager_cache_misses_total", Help: "Cache misses by cache.", ConstLabels: labels},
				func() float64 { _, _, _, mi, _ := stats(); return float64(mi) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "kvfs_pager_cache_bytes", Help: "Bytes held by cache.", ConstLabels: labels},
				func() float64 { b, _, _, _, _ := stats(); return float64(b) }),
		)
	}
}

// commitResult names an error for the result label.
func commitResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrFenced):
		return "fenced"
	case errors.Is(err, ErrConflict):
		return "conflict"
	case errors.Is(err, ErrQuotaExceeded):
		return "quota"
	default:
		return "error"
	}
}

func (m *Metrics) commit(db string, info CommitInfo, seconds float64, err error) {
	if m == nil {
		return
	}
	path := "fast"
	switch {
	case info.Staged:
		path = "staged"
	case info.Txns == 0 && err == nil:
		path = "empty"
	}
	m.commits.WithLabelValues(etcdstore.DisplayName(db), path, commitResult(err)).Inc()
	if err == nil && info.Txns > 0 {
		m.commitTime.WithLabelValues(path).Observe(seconds)
		m.commitBytes.WithLabelValues(etcdstore.DisplayName(db)).Add(float64(info.Bytes))
	}
}

// pageRead counts a page served from the page cache, a delta or a shard.
func (m *Metrics) pageRead(s readSource) {
	if m != nil {
		m.reads[s].Inc()
	}
}
