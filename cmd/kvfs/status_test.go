package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestStatus(t *testing.T) {
	s := newTestStore(t)
	src := makeDB(t, 300)
	s.kvfs(0, "import", src, "a.db")
	sqlite(t, src, "insert into kv values ('k2', 'v2');")
	s.kvfs(0, "import", "--force", src, "a.db")

	out, _ := s.kvfs(0, "status")
	for _, want := range []string{"etcd (prefix " + s.prefix + ")", "3.6.", "alarms: none", "quota headroom: ", "of 2.0 GiB", "databases: 1", "a.db"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status: no %q in\n%s", want, out)
		}
	}
	out, _ = s.kvfs(0, "status", "a.db", "--quota-bytes", "10MiB")
	for _, want := range []string{"database a.db", "txid 2, generation 2", "write lease:        -", "deltas outstanding: 2 (of 2 deltas stored", "orphans:            0", "of 10.0 MiB"} {
		if !strings.Contains(out, want) {
			t.Fatalf("status a.db: no %q in\n%s", want, out)
		}
	}
	out, _ = s.kvfs(0, "status", "--json")
	var cs clusterStatus
	if err := json.Unmarshal([]byte(out), &cs); err != nil {
		t.Fatal(err)
	}
	if len(cs.Members) != 1 || cs.Members[0].DBSize <= 0 || cs.QuotaBytes != 2<<30 || cs.HeadroomBytes != cs.QuotaBytes-cs.Members[0].DBSize ||
		len(cs.Databases) != 1 || cs.Databases[0].PIDXRows != 2 || cs.Databases[0].Head.TXID != 2 {
		t.Fatalf("status --json: %+v", cs)
	}
	_, errOut := s.kvfs(1, "status", "nope.db")
	if !strings.Contains(errOut, "nope.db: database not found") {
		t.Fatalf("status of a missing database: %q", errOut)
	}
}
