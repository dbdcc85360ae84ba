package fence

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// gather returns the registry's samples as name{label=value,...} → value.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for i, lp := range m.GetLabel() {
				sep := ","
				if i == 0 {
					sep = "{"
				}
				name += sep + lp.GetName() + "=" + lp.GetValue()
			}
			if len(m.GetLabel()) > 0 {
				name += "}"
			}
			out[name] = value(mf.GetType(), m)
		}
	}
	return out
}

func value(typ dto.MetricType, m *dto.Metric) float64 {
	switch typ {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	case dto.MetricType_HISTOGRAM:
		return float64(m.GetHistogram().GetSampleCount())
	}
	return -1
}

func TestMetrics(t *testing.T) {
	cfg := startEmbedded(t)
	reg := prometheus.NewRegistry()
	metrics := NewMetrics(reg)
	a := newManager(t, cfg, "host-a", Options{Metrics: metrics})
	b := newManager(t, cfg, "host-b", Options{Metrics: metrics})
	const db = "m.db"

	la := mustAcquire(t, a, db)
	if _, err := b.Acquire(ctxT(t), db); err == nil {
		t.Fatal("second acquire succeeded")
	}
	got := gather(t, reg)
	for name, want := range map[string]float64{
		"kvfs_fence_generation{db=m.db}":                         1,
		"kvfs_fence_acquisitions_total{db=m.db,result=acquired}": 1,
		"kvfs_fence_acquisitions_total{db=m.db,result=held}":     1,
		"kvfs_fence_acquire_seconds":                             1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v (all: %v)", name, got[name], want, got)
		}
	}

	// A revoked lease is a loss; a handoff is counted as such.
	if err := a.store.Revoke(ctxT(t), la.ID()); err != nil {
		t.Fatal(err)
	}
	waitDone(t, la, 5*time.Second)
	lb, err := b.AcquireWithHandoff(ctxT(t), db, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		<-lb.HandoffRequested()
		lb.Release(ctxT(t))
	}()
	if _, err := a.AcquireWithHandoff(ctxT(t), db, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	got = gather(t, reg)
	for name, want := range map[string]float64{
		"kvfs_fence_generation{db=m.db}":                         3,
		"kvfs_fence_acquisitions_total{db=m.db,result=acquired}": 3,
		"kvfs_fence_losses_total{db=m.db}":                       1,
		"kvfs_fence_handoffs_total{db=m.db}":                     1,
		"kvfs_fence_acquire_seconds":                             3,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v (all: %v)", name, got[name], want, got)
		}
	}
	// A nil registerer and nil metrics are allowed.
	NewMetrics(nil)
	var nilMetrics *Metrics
	nilMetrics.acquired(db, 1, 0)
}
