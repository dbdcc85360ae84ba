package main

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/kvfs/kvfs/etcdstore"
	"github.com/kvfs/kvfs/pager"
)

func TestVerify(t *testing.T) {
	s := newTestStore(t)
	src := makeDB(t, 500)
	s.kvfs(0, "import", src, "a.db")
	s.kvfs(0, "import", src, "b.db")
	sqlite(t, src, "insert into kv values ('more', 'rows');")
	s.kvfs(0, "import", "--force", src, "b.db") // a second delta
	out, _ := s.kvfs(0, "verify")
	if !strings.Contains(out, "a.db: ok: txid 1") || !strings.Contains(out, "b.db: ok: txid 2") || !strings.Contains(out, "2 deltas, 2 page index rows") {
		t.Fatalf("verify: %q", out)
	}

	ctx := context.Background()
	st := s.open()
	keys := etcdstore.NewKeys(s.prefix)
	// corrupt rewrites one stored chunk with edit applied to its payload
	// and returns a function restoring it.
	corrupt := func(key string, edit func([]byte) []byte) func() {
		t.Helper()
		kv, _, err := st.Get(ctx, key, 0)
		if err != nil {
			t.Fatal(err)
		}
		orig := append([]byte(nil), kv.Value...)
		v := edit(append([]byte(nil), kv.Value...))
		if _, err := st.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpPut(key, v)}); err != nil {
			t.Fatal(err)
		}
		return func() {
			if _, err := st.Txn(ctx, nil, []etcdstore.Op{etcdstore.OpPut(key, orig)}); err != nil {
				t.Fatal(err)
			}
		}
	}

	// A flipped bit inside a delta's page data fails the LTX checksum.
	restore := corrupt(etcdstore.ChunkKey(keys.Delta(s.id("b.db"), 2), 0), func(v []byte) []byte {
		v[len(v)/2] ^= 0x40
		return v
	})
	_, errOut := s.kvfs(1, "verify")
	if !strings.Contains(errOut, "kvfs verify: b.db: delta 2 (") || !strings.Contains(errOut, "ltx: corrupt blob") {
		t.Fatalf("corrupt delta: %q", errOut)
	}
	restore()

	// A page index row naming a page its delta lacks.
	restore = corrupt(etcdstore.ChunkKey(keys.PIDX(s.id("a.db"), 1), 0), func(v []byte) []byte {
		_, payload, err := etcdstore.DecodeChunk(v)
		if err != nil {
			t.Fatal(err)
		}
		pg, _ := pager.DecodeRow(payload)
		pg = append(pg, pg[len(pg)-1]+1000)
		row := encodeTestPgnos(pg)
		return append(v[:len(v)-len(payload)], row...)
	})
	_, errOut = s.kvfs(1, "verify", "a.db")
	if !strings.Contains(errOut, "kvfs verify: a.db: page index row 1: page ") || !strings.Contains(errOut, "is not in delta 1") {
		t.Fatalf("bad page index row: %q", errOut)
	}
	restore()

	// A head whose usage disagrees with what is stored.
	restore = corrupt(keys.Head(s.id("a.db")), func(v []byte) []byte {
		return []byte(strings.Replace(string(v), `"used_bytes":`, `"used_bytes":1`, 1))
	})
	_, errOut = s.kvfs(1, "verify", "a.db")
	if !strings.Contains(errOut, "usage: the stored deltas, page index rows, log rows and shards take ") {
		t.Fatalf("bad usage: %q", errOut)
	}
	restore()
	s.kvfs(0, "verify")
}

// encodeTestPgnos is the pager's page index row encoding.
func encodeTestPgnos(pgnos []uint32) []byte {
	b := binary.AppendUvarint(nil, uint64(len(pgnos)))
	prev := uint32(0)
	for _, p := range pgnos {
		b = binary.AppendUvarint(b, uint64(p-prev))
		prev = p
	}
	return b
}
