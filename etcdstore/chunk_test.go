package etcdstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

// TestChunkOps pins the ops ChunkOps and AppendChunkPuts build: chunk keys,
// each value's header (count, chunk size) and payload, and the tail delete.
func TestChunkOps(t *testing.T) {
	value := make([]byte, 1000)
	for i := range value {
		value[i] = byte(i * 7)
	}
	for _, tt := range []struct{ size, chunk, want int }{
		{0, 10, 1}, {1, 10, 1}, {10, 10, 1}, {11, 10, 2}, {1000, 300, 4}, {1000, 1000, 1}, {1000, 1, 1000},
	} {
		t.Run(fmt.Sprintf("%d/%d", tt.size, tt.chunk), func(t *testing.T) {
			v := value[:tt.size]
			ops, err := ChunkOps("/b", v, tt.chunk)
			if err != nil || len(ops) != tt.want+1 {
				t.Fatalf("ChunkOps: %d ops, %v; want %d", len(ops), err, tt.want+1)
			}
			prefix := []Op{OpDelete("/x")}
			puts, n, err := AppendChunkPuts(prefix, "/b", v, tt.chunk)
			if err != nil || n != tt.want || len(puts) != 1+n || puts[0].Key() != "/x" {
				t.Fatalf("AppendChunkPuts: %d ops, count %d, %v", len(puts), n, err)
			}
			var got []byte
			for i := range n {
				for _, op := range []Op{ops[i], puts[1+i]} {
					if op.Key() != ChunkKey("/b", i) || !op.op.IsPut() {
						t.Fatalf("op %d: key %q", i, op.Key())
					}
					val := op.op.ValueBytes()
					if binary.BigEndian.Uint32(val) != uint32(n) || binary.BigEndian.Uint32(val[4:]) != uint32(tt.chunk) {
						t.Fatalf("chunk %d header % x", i, val[:8])
					}
					if op.Size() != len(op.Key())+len(val)+opOverhead {
						t.Fatalf("chunk %d size %d", i, op.Size())
					}
				}
				if !bytes.Equal(ops[i].op.ValueBytes(), puts[1+i].op.ValueBytes()) {
					t.Fatalf("chunk %d differs between ChunkOps and AppendChunkPuts", i)
				}
				got = append(got, ops[i].op.ValueBytes()[chunkHeader:]...)
			}
			if !bytes.Equal(got, v) {
				t.Fatal("chunks do not reassemble the value")
			}
			tail := ops[n]
			if want := ChunkTailDelete("/b", n); tail.Key() != want.Key() || !tail.op.IsDelete() ||
				string(tail.op.RangeBytes()) != string(want.op.RangeBytes()) || tail.Key() != ChunkKey("/b", n) {
				t.Fatalf("tail delete %q..%q", tail.Key(), tail.op.RangeBytes())
			}
		})
	}
	for _, chunk := range []int{0, -1} {
		if _, err := ChunkOps("/b", value, chunk); !errors.Is(err, ErrTooLarge) {
			t.Fatalf("chunk size %d: %v", chunk, err)
		}
		if ops, _, err := AppendChunkPuts(nil, "/b", value, chunk); !errors.Is(err, ErrTooLarge) || ops != nil {
			t.Fatalf("AppendChunkPuts chunk size %d: %v", chunk, err)
		}
	}
	if _, _, err := AppendChunkPuts(nil, "/b", make([]byte, maxChunks+1), 1); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too many chunks: %v", err)
	}
}
