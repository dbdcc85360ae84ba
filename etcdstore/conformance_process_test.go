package etcdstore

import (
	"os"
	"testing"

	"github.com/kvfs/kvfs/etcdstore/etcdtest"
)

// IntegrationEnv enables the integration tier (make test-integration).
const integrationEnv = "KVFS_INTEGRATION"

func processOptions(o serverOpts) etcdtest.Options {
	return etcdtest.Options{
		MaxRequestBytes:   o.Limits.MaxRequestBytes,
		MaxTxnOps:         o.Limits.MaxTxnOps,
		QuotaBackendBytes: o.QuotaBackendBytes,
	}
}

// processHarness runs each server as a separate etcd process.
func processHarness() harness {
	return harness{name: "process", start: func(t *testing.T, o serverOpts) server {
		p := etcdtest.StartProcess(t, processOptions(o))
		return server{
			cfg:  Config{Endpoints: p.Endpoints(), Limits: o.Limits},
			stop: func() { p.Kill() },
		}
	}}
}

// clusterHarness runs each server as a 3-member cluster; stopping it
// freezes every member, as a partition would.
func clusterHarness() harness {
	return harness{name: "cluster", start: func(t *testing.T, o serverOpts) server {
		c := etcdtest.StartCluster(t, 3, processOptions(o))
		return server{
			cfg: Config{Endpoints: c.Endpoints(), Limits: o.Limits},
			stop: func() {
				for _, m := range c.Members {
					m.Pause()
				}
			},
		}
	}}
}

func TestConformanceProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("starts etcd processes; run without -short")
	}
	runConformance(t, processHarness())
}

func TestConformanceCluster(t *testing.T) {
	if os.Getenv(integrationEnv) == "" {
		t.Skipf("integration tier: set %s=1 or run `make test-integration`", integrationEnv)
	}
	runConformance(t, clusterHarness())
}
