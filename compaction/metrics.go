package compaction

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/pager"
)

// Metrics are compaction's Prometheus metrics; a nil *Metrics records
// nothing.
type Metrics struct {
	runs      *prometheus.CounterVec
	duration  prometheus.Histogram
	reclaimed prometheus.Counter
	deltas    *prometheus.GaugeVec
	lag       *prometheus.GaugeVec
	history   prometheus.Counter
	defrags   prometheus.Counter
	etcdSize  prometheus.Gauge
	etcdInUse prometheus.Gauge
}

// NewMetrics registers compaction's metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvfs_compaction_runs_total", Help: "Compaction passes by result (ok, fenced, error).",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "kvfs_compaction_duration_seconds", Help: "Duration of compaction passes.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
		reclaimed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvfs_compaction_reclaimed_bytes_total", Help: "Delta and page index row bytes compaction deleted.",
		}),
		deltas: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kvfs_compaction_deltas_outstanding", Help: "Deltas not yet folded into shards, by database.",
		}, []string{"db"}),
		lag: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kvfs_compaction_lag_txids", Help: "Head txid minus the txid the last complete pass folded up to, by database.",
		}, []string{"db"}),
		history: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvfs_compaction_etcd_history_compactions_total", Help: "etcd history compactions run.",
		}),
		defrags: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "kvfs_compaction_etcd_defrags_total", Help: "etcd member defragmentations run.",
		}),
		etcdSize: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvfs_compaction_etcd_db_size_bytes", Help: "Largest etcd member backend size seen.",
		}),
		etcdInUse: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "kvfs_compaction_etcd_db_in_use_bytes", Help: "In-use bytes of that member's backend.",
		}),
	}
	reg.MustRegister(m.runs, m.duration, m.reclaimed, m.deltas, m.lag, m.history, m.defrags, m.etcdSize, m.etcdInUse)
	return m
}

func (m *Metrics) pass(db string, res pager.CompactResult, d time.Duration, err error, s pager.Stats) {
	if m == nil {
		return
	}
	result := "ok"
	switch {
	case err == nil:
	case isFenced(err):
		result = "fenced"
	default:
		result = "error"
	}
	m.runs.WithLabelValues(result).Inc()
	m.duration.Observe(d.Seconds())
	m.reclaimed.Add(float64(res.BytesFreed))
	m.deltas.WithLabelValues(etcdstore.DisplayName(db)).Set(float64(s.Rows))
	m.lag.WithLabelValues(etcdstore.DisplayName(db)).Set(float64(s.Head.TXID - min(s.Folded, s.Head.TXID)))
}

func (m *Metrics) etcd(st []etcdstore.MemberStatus) {
	if m == nil {
		return
	}
	var big etcdstore.MemberStatus
	for _, s := range st {
		if s.DBSize > big.DBSize {
			big = s
		}
	}
	m.etcdSize.Set(float64(big.DBSize))
	m.etcdInUse.Set(float64(big.DBSizeInUse))
}

func (m *Metrics) historyCompacted() {
	if m != nil {
		m.history.Inc()
	}
}

func (m *Metrics) defragmented() {
	if m != nil {
		m.defrags.Inc()
	}
}
