package fence

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/kvfs/kvfs/etcdstore"
)

// Acquisition results, the values of the result label of
// kvfs_fence_acquisitions_total.
const (
	resultAcquired = "acquired" // the lease was granted
	resultHeld     = "held"     // another owner holds it (Acquire)
	resultBusy     = "busy"     // the holder did not hand over in time (AcquireWithHandoff)
	resultError    = "error"    // etcd failed or the context ended
)

// Metrics are the Prometheus collectors of the fence package. Create them
// with NewMetrics and pass them in Options.Metrics; one Metrics may serve
// several Managers. A nil *Metrics records nothing.
type Metrics struct {
	generation   *prometheus.GaugeVec
	acquisitions *prometheus.CounterVec
	losses       *prometheus.CounterVec
	handoffs     *prometheus.CounterVec
	acquireTime  prometheus.Histogram
}

// NewMetrics creates the fence collectors and registers them with reg
// (nil: not registered, for tests). It panics if reg already holds them,
// as prometheus.MustRegister does.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		generation: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "kvfs_fence_generation",
			Help: "Generation of the write lease this host holds on the database; 0 when it holds none.",
		}, []string{"db"}),
		acquisitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvfs_fence_acquisitions_total",
			Help: "Write lease acquisition attempts by result (acquired, held, busy, error).",
		}, []string{"db", "result"}),
		losses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvfs_fence_losses_total",
			Help: "Write leases lost without a release: expired, fenced by etcd, or past the holder's own deadline.",
		}, []string{"db"}),
		handoffs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvfs_fence_handoffs_total",
			Help: "Write leases this host obtained by asking the previous holder to hand over.",
		}, []string{"db"}),
		acquireTime: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "kvfs_fence_acquire_seconds",
			Help:    "Time to obtain a write lease, including any handoff wait.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10), // 1 ms .. ~262 s
		}),
	}
	if reg != nil {
		reg.MustRegister(m.generation, m.acquisitions, m.losses, m.handoffs, m.acquireTime)
	}
	return m
}

func (m *Metrics) acquired(db string, gen uint64, seconds float64) {
	if m == nil {
		return
	}
	m.acquisitions.WithLabelValues(etcdstore.DisplayName(db), resultAcquired).Inc()
	m.generation.WithLabelValues(etcdstore.DisplayName(db)).Set(float64(gen))
	m.acquireTime.Observe(seconds)
}

func (m *Metrics) failed(db, result string) {
	if m == nil {
		return
	}
	m.acquisitions.WithLabelValues(etcdstore.DisplayName(db), result).Inc()
}

func (m *Metrics) ended(db string, lost bool) {
	if m == nil {
		return
	}
	m.generation.WithLabelValues(etcdstore.DisplayName(db)).Set(0)
	if lost {
		m.losses.WithLabelValues(etcdstore.DisplayName(db)).Inc()
	}
}

func (m *Metrics) handedOff(db string) {
	if m == nil {
		return
	}
	m.handoffs.WithLabelValues(etcdstore.DisplayName(db)).Inc()
}
