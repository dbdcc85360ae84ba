package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/kvfs/kvfs/fence"
)

// scrapeTimeout bounds the etcd reads one scrape or health check makes.
const scrapeTimeout = 3 * time.Second

// newRegistry returns a registry with the Go runtime and process
// collectors; the packages' metrics are added by the mount.
func newRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// storeCollector exports, at each scrape, etcd's size and headroom and every
// database's usage and quota, read from etcd.
type storeCollector struct {
	sess    *session
	mounted *atomic.Bool

	mountUp, etcdUp, backend, inUse, quota, headroom *prometheus.Desc
	used, maxBytes, size, txid                       *prometheus.Desc
}

func newStoreCollector(sess *session, mounted *atomic.Bool) *storeCollector {
	db := []string{"db"}
	return &storeCollector{
		sess: sess, mounted: mounted,
		mountUp:  prometheus.NewDesc("kvfs_mount_up", "1 while the mount serves requests.", nil, nil),
		etcdUp:   prometheus.NewDesc("kvfs_etcd_up", "1 when an etcd member answered the last status request.", nil, nil),
		backend:  prometheus.NewDesc("kvfs_etcd_backend_bytes", "Size of the largest etcd member's backend file (what the quota counts).", nil, nil),
		inUse:    prometheus.NewDesc("kvfs_etcd_backend_in_use_bytes", "Bytes in use in that backend; the rest is reclaimable by defragmentation.", nil, nil),
		quota:    prometheus.NewDesc("kvfs_etcd_quota_backend_bytes", "etcd's backend quota as configured (etcd.quota_backend_bytes).", nil, nil),
		headroom: prometheus.NewDesc("kvfs_etcd_headroom_bytes", "Backend quota minus the largest member's backend size.", nil, nil),
		used:     prometheus.NewDesc("kvfs_quota_used_bytes", "Bytes the database stores in etcd: deltas, page index rows and shards.", db, nil),
		maxBytes: prometheus.NewDesc("kvfs_quota_max_bytes", "The database's byte quota; 0 is unlimited.", db, nil),
		size:     prometheus.NewDesc("kvfs_db_size_bytes", "Database file size at its head.", db, nil),
		txid:     prometheus.NewDesc("kvfs_db_txid", "Last committed transaction of the database.", db, nil),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.mountUp, c.etcdUp, c.backend, c.inUse, c.quota, c.headroom, c.used, c.maxBytes, c.size, c.txid} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	gauge(c.mountUp, b2f(c.mounted.Load()))
	quota := float64(c.sess.cfg.Etcd.QuotaBackendBytes)
	gauge(c.quota, quota)
	members, err := c.sess.store.Status(ctx)
	gauge(c.etcdUp, b2f(err == nil))
	if err == nil {
		var size, inUse int64
		for _, m := range members {
			if m.DBSize > size {
				size, inUse = m.DBSize, m.DBSizeInUse
			}
		}
		gauge(c.backend, float64(size))
		gauge(c.inUse, float64(inUse))
		gauge(c.headroom, quota-float64(size))
	}
	dbs, err := c.sess.listHeads(ctx, "")
	if err != nil {
		return
	}
	for _, d := range dbs {
		gauge(c.used, float64(d.Usage), d.Name)
		gauge(c.maxBytes, float64(c.sess.cfg.QuotaFor(d.Name).MaxBytes), d.Name)
		gauge(c.size, float64(d.Head.Size()), d.Name)
		gauge(c.txid, float64(d.Head.TXID), d.Name)
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// health is the /healthz answer.
type health struct {
	OK         bool   `json:"ok"`
	Mounted    bool   `json:"mounted"`
	Etcd       string `json:"etcd"` // "ok" or the error
	LeasesHeld int    `json:"leases_held"`
}

// metricsServer serves /metrics and /healthz.
type metricsServer struct {
	srv  *http.Server
	addr net.Addr
	done chan struct{}
}

// serveMetrics listens on addr and serves reg's metrics and the health of
// the mount.
func serveMetrics(addr string, reg *prometheus.Registry, sess *session, fm *fence.Manager, mounted *atomic.Bool) (*metricsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), scrapeTimeout)
		defer cancel()
		h := health{Mounted: mounted.Load(), Etcd: "ok", LeasesHeld: fm.Stats().Held}
		if _, err := sess.store.Status(ctx); err != nil {
			h.Etcd = err.Error()
		}
		h.OK = h.Mounted && h.Etcd == "ok"
		w.Header().Set("Content-Type", "application/json")
		if !h.OK {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		json.NewEncoder(w).Encode(h)
	})
	ms := &metricsServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, addr: ln.Addr(), done: make(chan struct{})}
	go func() {
		defer close(ms.done)
		if err := ms.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			sess.log.Error("metrics server", "err", err)
		}
	}()
	return ms, nil
}

// Close stops the server.
func (ms *metricsServer) Close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	ms.srv.Shutdown(ctx)
	<-ms.done
}
