package etcdstore

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"
)

func TestValidateName(t *testing.T) {
	good := []string{"app.db", "a", ".hidden", "with space", "ünïcode.db", strings.Repeat("x", MaxNameLen), "-journal", "a.db-wal",
		"tab\tname", "new\nline", "del\x7f", "bad\xffutf8", "\x01\x1f"}
	for _, n := range good {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", n, err)
		}
	}
	bad := map[string]string{
		"":                                "empty",
		".":                               "reserved",
		"..":                              "reserved",
		"a/b":                             "'/'",
		"/":                               "'/'",
		"nul\x00byte":                     "NUL",
		strings.Repeat("x", MaxNameLen+1): "longer",
	}
	for n, reason := range bad {
		err := ValidateName(n)
		var ne *NameError
		if !errors.As(err, &ne) || !errors.Is(err, ErrInvalidName) {
			t.Errorf("ValidateName(%q) = %v, want *NameError", n, err)
			continue
		}
		if !strings.Contains(err.Error(), reason) {
			t.Errorf("ValidateName(%q) = %q, want mention of %q", n, err, reason)
		}
		if ne.TooLong != (len(n) > MaxNameLen) {
			t.Errorf("ValidateName(%q): TooLong %v", n, ne.TooLong)
		}
	}
}

func TestDisplayName(t *testing.T) {
	for in, want := range map[string]string{"app.db": "app.db", "ünï": "ünï", "bad\xff": `"bad\xff"`, "new\nline": "new\nline"} {
		if got := DisplayName(in); got != want {
			t.Errorf("DisplayName(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKeysLayout(t *testing.T) {
	k := NewKeys("")
	if k.Prefix() != "/kvfs/" || NewKeys("/x").Prefix() != "/x/" {
		t.Fatalf("prefixes: %q %q", k.Prefix(), NewKeys("/x").Prefix())
	}
	// The layout is a contract with data already in etcd: pin it.
	want := map[string]string{
		k.Head("app.db"):                            "/kvfs/db/app.db/head",
		k.Fence("app.db"):                           "/kvfs/db/app.db/fence",
		k.Handoff("app.db"):                         "/kvfs/db/app.db/handoff",
		ChunkKey(k.Delta("app.db", 42), 3):          "/kvfs/db/app.db/delta/000000000000002a/0003",
		ChunkKey(k.PIDX("app.db", 7), 0):            "/kvfs/db/app.db/pidx/0000000000000007/0000",
		ChunkKey(k.ShardVersion("app.db", 2, 5), 0): "/kvfs/db/app.db/shard/00000002/0000000000000005/0000",
		k.Compaction("app.db"):                      "/kvfs/db/app.db/compaction",
		k.Attrs("app.db"):                           "/kvfs/db/app.db/attrs",
		k.RootAttrs():                               "/kvfs/root",
	}
	for got, w := range want {
		if got != w {
			t.Errorf("key %q, want %q", got, w)
		}
	}
	// A database's prefix never covers another database's keys.
	if strings.HasPrefix(k.Head("ab"), k.DB("a")) {
		t.Fatal("prefix of db a covers db ab")
	}
	// Fixed-width hex: byte order is numeric order.
	if !(k.PIDX("d", 9) < k.PIDX("d", 10) && k.Delta("d", 255) < k.Delta("d", 256) && k.Shard("d", 15) < k.Shard("d", 16)) {
		t.Fatal("keys not in numeric order")
	}
}

// TestKeysMatchFmt checks the keys built without fmt against the fmt
// formats they replaced, on edge and random values.
func TestKeysMatchFmt(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	k := NewKeys("/p/")
	txids := []uint64{0, 1, 15, 16, 0xffff, 1 << 32, math.MaxUint64}
	chunks := []int{-1, 0, 1, 15, 16, 0xfff, 0x1000, 0xffff, 0x10000, 0x10001, math.MaxInt32}
	for range 200 {
		txids = append(txids, rng.Uint64()>>rng.UintN(64))
		chunks = append(chunks, rng.IntN(maxChunks+2))
	}
	for _, name := range []string{"a", "app.db", "ünï code.db"} {
		if got, want := k.Head(name), k.DB(name)+"head"; got != want {
			t.Errorf("Head = %q, want %q", got, want)
		}
		if got, want := k.Fence(name), k.DB(name)+"fence"; got != want {
			t.Errorf("Fence = %q, want %q", got, want)
		}
		for _, txid := range txids {
			if got, want := k.Delta(name, txid), k.Deltas(name)+fmt.Sprintf("%016x", txid); got != want {
				t.Errorf("Delta = %q, want %q", got, want)
			}
			if got, want := k.PIDX(name, txid), k.PIDXs(name)+fmt.Sprintf("%016x", txid); got != want {
				t.Errorf("PIDX = %q, want %q", got, want)
			}
		}
	}
	for _, i := range chunks {
		if got, want := ChunkKey("/p/base", i), fmt.Sprintf("%s/%04x", "/p/base", i); got != want {
			t.Errorf("ChunkKey(%d) = %q, want %q", i, got, want)
		}
	}
}

func TestKeysParse(t *testing.T) {
	k := NewKeys("/p/")
	cases := []struct {
		key  string
		want KeyInfo
	}{
		{k.Head("a"), KeyInfo{DB: "a", Kind: KindHead}},
		{k.Fence("a"), KeyInfo{DB: "a", Kind: KindFence}},
		{k.Handoff("a"), KeyInfo{DB: "a", Kind: KindHandoff}},
		{k.Generation("a"), KeyInfo{DB: "a", Kind: KindGeneration}},
		{ChunkKey(k.Delta("a", 1<<40), 5), KeyInfo{DB: "a", Kind: KindDelta, TXID: 1 << 40, Chunk: 5}},
		{ChunkKey(k.PIDX("a", 1<<31), 2), KeyInfo{DB: "a", Kind: KindPIDX, TXID: 1 << 31, Chunk: 2}},
		{ChunkKey(k.ShardVersion("a", 9, 3), 0xffff), KeyInfo{DB: "a", Kind: KindShard, Shard: 9, TXID: 3, Chunk: 0xffff}},
		{k.Compaction("a"), KeyInfo{DB: "a", Kind: KindCompaction}},
		{k.Attrs("a"), KeyInfo{DB: "a", Kind: KindAttrs}},
		{ChunkKey(k.Log("a", 7), 1), KeyInfo{DB: "a", Kind: KindLog, TXID: 7, Chunk: 1}},
		{k.Epoch("a", 1<<33), KeyInfo{DB: "a", Kind: KindEpoch, TXID: 1 << 33}},
	}
	for _, c := range cases {
		got, ok := k.Parse(c.key)
		if !ok || got != c.want {
			t.Errorf("Parse(%q) = %+v %v, want %+v", c.key, got, ok, c.want)
		}
	}
	for _, bad := range []string{"", "/p/", "/p/db/", "/p/db/a", "/p/db/a/", "/p/db/a/heads", "/q/db/a/head",
		"/p/db/a/pidx/7", "/p/db/a/pidx/000000000000000A/0000", "/p/db/a/pidx/0000000000000001", "/p/db/a/pidx/0000000g", "/p/db/a/delta/0000000000000001", "/p/db/a/delta/0000000000000001/1",
		"/p/db/a\x00/head", "/p/db/a/shard/00000001/0000/x", "/p/db/a/shard/00000001/0000",
		"/p/db/a/log/0000000000000001", "/p/db/a/epoch/0000000000000001/0000", "/p/db/a/epoch/1"} {
		if info, ok := k.Parse(bad); ok {
			t.Errorf("Parse(%q) = %+v, want not ok", bad, info)
		}
	}
}

func FuzzKeysParse(f *testing.F) {
	k := NewKeys("")
	f.Add(k.Head("a"))
	f.Add(ChunkKey(k.Delta("db", 3), 1))
	f.Add(ChunkKey(k.PIDX("x", 5), 0))
	f.Fuzz(func(t *testing.T, key string) {
		info, ok := k.Parse(key)
		if !ok {
			return
		}
		// Anything Parse accepts is rebuilt to the same key.
		var rebuilt string
		switch info.Kind {
		case KindHead:
			rebuilt = k.Head(info.DB)
		case KindFence:
			rebuilt = k.Fence(info.DB)
		case KindHandoff:
			rebuilt = k.Handoff(info.DB)
		case KindGeneration:
			rebuilt = k.Generation(info.DB)
		case KindDelta:
			rebuilt = ChunkKey(k.Delta(info.DB, info.TXID), info.Chunk)
		case KindPIDX:
			rebuilt = ChunkKey(k.PIDX(info.DB, info.TXID), info.Chunk)
		case KindShard:
			rebuilt = ChunkKey(k.ShardVersion(info.DB, info.Shard, info.TXID), info.Chunk)
		case KindCompaction:
			rebuilt = k.Compaction(info.DB)
		case KindLog:
			rebuilt = ChunkKey(k.Log(info.DB, info.TXID), info.Chunk)
		case KindEpoch:
			rebuilt = k.Epoch(info.DB, info.TXID)
		case KindAttrs:
			rebuilt = k.Attrs(info.DB)
		}
		if rebuilt != key {
			t.Fatalf("Parse(%q) = %+v, rebuilt %q", key, info, rebuilt)
		}
	})
}
