package main

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/kvfs/kvfs/etcdstore"
)

func TestEtcdCommand(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var code int
	var out string
	go func() {
		defer close(done)
		code, out, _ = runCmd(ctx, "etcd", "--data-dir", dir)
	}()
	t.Cleanup(func() { cancel(); <-done })

	// The running server is reachable through its endpoint file.
	var info etcdstore.EndpointInfo
	var err error
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if info, err = etcdstore.ReadEndpointFile(dir); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatalf("endpoint file never appeared: %v", err)
	}
	s, err := etcdstore.Open(context.Background(), etcdstore.Config{Endpoints: info.Endpoints, Limits: info.Limits})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	defer s.Close()
	if _, err := s.Txn(context.Background(), nil, []etcdstore.Op{etcdstore.OpPut("/k", []byte("v"))}); err != nil {
		t.Fatalf("txn: %v", err)
	}
	// A second instance on the same data dir fails clearly.
	code2, _, errOut := runCmd(context.Background(), "etcd", "--data-dir", dir)
	if code2 != 1 || !strings.Contains(errOut, "in use") {
		t.Fatalf("second instance: %d %q", code2, errOut)
	}
	cancel()
	<-done
	if code != 0 || !strings.Contains(out, "serving on") {
		t.Fatalf("etcd: exit %d, output %q", code, out)
	}
	if _, err := etcdstore.ReadEndpointFile(dir); !errors.Is(err, etcdstore.ErrNotRunning) {
		t.Fatalf("endpoint file after stop: %v", err)
	}
}
