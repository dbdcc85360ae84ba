package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/kvfs/kvfs/etcdstore"
)

// fillToNoSpace writes 1 MiB values under prefix until etcd raises
// NOSPACE, and returns how many it wrote.
func fillToNoSpace(t *testing.T, s *etcdstore.Store, prefix string) int {
	t.Helper()
	ctx := context.Background()
	v := make([]byte, 1<<20)
	for i := 0; i < 200; i++ {
		if _, err := s.PutChunked(ctx, fmt.Sprintf("%s%04d", prefix, i), v, nil); err != nil {
			if !errors.Is(err, etcdstore.ErrNoSpace) {
				t.Fatalf("fill, after %d MiB: %v, want ErrNoSpace", i, err)
			}
			return i
		}
	}
	t.Fatal("no NOSPACE after 200 MiB")
	return 0
}

// TestReclaim fills an etcd with a 16 MiB quota until NOSPACE: with the
// fill deleted (only history holds it) reclaim compacts, defragments and
// disarms, and writes work again; with the fill live it still disarms but
// exits 1 saying the data itself fills the quota.
func TestReclaim(t *testing.T) {
	// The quota as kvfs is told it: a burst of puts can take etcd's backend
	// well past its quota before the alarm (the size etcd checks is
	// updated once per backend commit), so the size at the alarm
	// overstates it.
	t.Setenv("KVFS_ETCD_QUOTA_BACKEND_BYTES", "16MiB")
	ctx := context.Background()
	e, err := etcdstore.StartEmbedded(ctx, etcdstore.EmbedConfig{DataDir: t.TempDir(), UnsafeNoFsync: true, QuotaBackendBytes: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	s, err := etcdstore.Open(ctx, etcdstore.Config{Endpoints: e.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	etcd := []string{"--etcd", strings.Join(e.Endpoints(), ",")}
	reclaim := func(want int) string {
		t.Helper()
		code, out, errOut := runCmd(ctx, append([]string{"reclaim"}, etcd...)...)
		if code != want {
			t.Fatalf("reclaim: exit %d, want %d\nstdout: %s\nstderr: %s", code, want, out, errOut)
		}
		return out + errOut
	}
	alarms := func() []string {
		t.Helper()
		a, err := s.Alarms(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}

	// No alarm: it compacts and defragments, and says there is nothing to disarm.
	out := reclaim(0)
	for _, want := range []string{"alarms: none", "compacting history up to revision", "defragmenting " + e.Endpoints()[0], "no NOSPACE alarm to disarm", "etcd after: "} {
		if !strings.Contains(out, want) {
			t.Fatalf("reclaim without an alarm: no %q in\n%s", want, out)
		}
	}

	// Space held by history only.
	n := fillToNoSpace(t, s, "/fill/")
	if a := alarms(); len(a) != 1 || !strings.HasPrefix(a[0], "NOSPACE") {
		t.Fatalf("alarms after %d MiB: %v", n, a)
	}
	if _, err := s.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpDeletePrefix("/fill/")}); err != nil {
		t.Fatalf("delete under NOSPACE: %v", err)
	}
	if _, err := s.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpPut("/x", []byte("x"))}); !errors.Is(err, etcdstore.ErrNoSpace) {
		t.Fatalf("put after the delete, before reclaim: %v, want ErrNoSpace", err)
	}
	out = reclaim(0)
	t.Logf("kvfs reclaim after %d MiB, deleted:\n%s", n, out)
	for _, want := range []string{"alarms: NOSPACE(member ", "disarming NOSPACE", "done", "alarms: none", "% of the quota, 16.0 MiB (etcd.quota_backend_bytes)"} {
		if !strings.Contains(out, want) {
			t.Fatalf("reclaim: no %q in\n%s", want, out)
		}
	}
	if a := alarms(); len(a) != 0 {
		t.Fatalf("alarms after reclaim: %v\n%s", a, out)
	}
	size, err := s.BackendSize(ctx)
	if err != nil || size > 4<<20 {
		t.Fatalf("backend after reclaim: %d bytes (%v), want the fill gone\n%s", size, err, out)
	}
	if _, err := s.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpPut("/x", []byte("x"))}); err != nil {
		t.Fatalf("put after reclaim: %v", err)
	}

	// Space held by live data: reclaim cannot free it.
	fillToNoSpace(t, s, "/live/")
	code, out, errOut := runCmd(ctx, append([]string{"reclaim"}, etcd...)...)
	if code != 1 || !strings.Contains(out, "disarming NOSPACE") || !strings.Contains(errOut, "live data still takes") || !strings.Contains(errOut, "kvfs rm") {
		t.Fatalf("reclaim with live data filling the quota: exit %d\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	t.Logf("kvfs reclaim with live data:\n%s%s", out, errOut)

	// Usage errors.
	if code, _, errOut := runCmd(ctx, append([]string{"reclaim", "extra"}, etcd...)...); code != 2 || !strings.Contains(errOut, "Usage: kvfs reclaim") {
		t.Fatalf("reclaim with an argument: exit %d %q", code, errOut)
	}
	if code, _, errOut := runCmd(ctx, "reclaim", "--help"); code != 0 || !strings.Contains(errOut, "NOSPACE") || !strings.Contains(errOut, "disk I/O error") {
		t.Fatalf("reclaim --help: exit %d %q", code, errOut)
	}
}
