package etcdstore

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"
)

// BenchmarkFencedTxn measures sequential fenced commits against the embedded
// server with fsync: each txn compares a fence value and the previous head
// revision, and puts a 4 KiB value and the head (kvfs's fast-path shape).
func BenchmarkFencedTxn(b *testing.B) {
	for _, size := range []int{4 << 10, 64 << 10} {
		b.Run(fmt.Sprintf("value=%dKiB", size>>10), func(b *testing.B) {
			dir := b.TempDir()
			e, err := StartEmbedded(context.Background(), EmbedConfig{DataDir: dir})
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			s, err := Open(context.Background(), e.Config())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			fence, head := "/b/fence", "/b/head"
			if _, err := s.Txn(ctx, nil, []Op{OpPut(fence, []byte("gen-1"))}); err != nil {
				b.Fatal(err)
			}
			res, err := s.Txn(ctx, nil, []Op{OpPut(head, []byte("0"))})
			if err != nil {
				b.Fatal(err)
			}
			headRev := res.Revision
			value := make([]byte, size)
			lat := make([]time.Duration, 0, b.N)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				res, err := s.Txn(ctx,
					[]Cmp{CmpValue(fence, []byte("gen-1")), CmpModRevision(head, headRev)},
					[]Op{OpPut(fmt.Sprintf("/b/delta/%016x", i), value), OpPut(head, []byte(fmt.Sprint(i)))})
				if err != nil {
					b.Fatal(err)
				}
				headRev = res.Revision
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "txn/s")
		})
	}
}
